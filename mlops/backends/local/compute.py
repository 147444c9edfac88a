"""The local backend: jobs are subprocesses laid out like SageMaker's containers.

A training job gets a folder ``<work_dir>/jobs/<job_name>/`` with the layout that SageMaker
mounts at ``/opt/ml``::

    input/config/hyperparameters.json   input/config/inputdataconfig.json
    input/config/resourceconfig.json    input/data/<channel>/...
    model/                              output/ (output/failure on error, output/data/)

and the ``SM_*`` environment variables of the SageMaker training toolkit, so the same entry
point runs unchanged in a SageMaker training job.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mlops.backends.base import LogSink, TrainingJobResult, TrainingJobSpec
from mlops.errors import BackendError

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = ["LocalBackend", "stage_channel"]

logger = logging.getLogger(__name__)


def stage_channel(source: Path, channel_dir: Path) -> None:
    """Put a channel's files in place: hard links when possible, copies otherwise."""
    channel_dir.mkdir(parents=True, exist_ok=True)
    files = [source] if source.is_file() else sorted(p for p in source.iterdir() if p.is_file())
    for path in files:
        target = channel_dir / path.name
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


class LocalBackend:
    """Runs jobs as subprocesses of this Python, on this machine."""

    name = "local"

    def __init__(self, settings: Settings) -> None:
        self._jobs_root = settings.work_dir.resolve() / "jobs"

    def run_training_job(
        self, spec: TrainingJobSpec, *, on_log: LogSink | None = None
    ) -> TrainingJobResult:
        """Run the training program in a subprocess; stream its output; wait for it."""
        root = self._jobs_root / spec.job_name
        if root.exists():
            raise BackendError(
                f"training job {spec.job_name!r} already exists at {root}; "
                "job names must be unique: pick another name or delete that folder"
            )
        sources = {
            channel: Path(uri.removeprefix("file://")) for channel, uri in spec.channels.items()
        }
        for channel, source in sources.items():  # before creating anything: the name stays free
            if not source.exists():
                raise BackendError(
                    f"channel {channel!r} of job {spec.job_name!r} points to "
                    f"{spec.channels[channel]}, which does not exist; run the prepare stage "
                    "first or fix the path"
                )
        config_dir, data_dir = root / "input" / "config", root / "input" / "data"
        model_dir, output_dir = root / "model", root / "output"
        for folder in (config_dir, data_dir, model_dir, output_dir / "data"):
            folder.mkdir(parents=True, exist_ok=True)

        for channel, source in sources.items():
            stage_channel(source, data_dir / channel)

        hyperparameters = {k: str(v) for k, v in spec.hyperparameters.items()}
        (config_dir / "hyperparameters.json").write_text(json.dumps(hyperparameters, indent=2))
        (config_dir / "inputdataconfig.json").write_text(
            json.dumps(
                {
                    c: {"ContentType": "application/x-parquet", "TrainingInputMode": "File"}
                    for c in spec.channels
                }
            )
        )
        (config_dir / "resourceconfig.json").write_text(
            json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]})
        )

        env = {
            **os.environ,
            "SM_INPUT_DIR": str(root / "input"),
            "SM_INPUT_CONFIG_DIR": str(config_dir),
            "SM_MODEL_DIR": str(model_dir),
            "SM_OUTPUT_DIR": str(output_dir),
            "SM_OUTPUT_DATA_DIR": str(output_dir / "data"),
            "SM_CHANNELS": json.dumps(sorted(spec.channels)),
            "SM_HPS": json.dumps(hyperparameters),
            "SM_CURRENT_HOST": "algo-1",
            "SM_HOSTS": json.dumps(["algo-1"]),
            "SM_NUM_CPUS": str(os.cpu_count() or 1),
            "SM_TRAINING_JOB_NAME": spec.job_name,
            "PYTHONUNBUFFERED": "1",
            **spec.environment,
        }
        for channel in spec.channels:
            env[f"SM_CHANNEL_{channel.upper()}"] = str(data_dir / channel)

        started = time.monotonic()
        logger.info("training job %s started in %s", spec.job_name, root)
        proc = subprocess.Popen(
            [sys.executable, "-m", spec.entry_point],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        # on_log runs in the caller's context (e.g. an orchestrator's run and settings context)
        reader = threading.Thread(
            target=contextvars.copy_context().run,
            args=(_pump, proc, spec.job_name, on_log),
            daemon=True,
            name="job-log",
        )
        reader.start()
        try:
            returncode = proc.wait(timeout=spec.max_runtime_s)
            status = "Completed" if returncode == 0 else "Failed"
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            status = "Stopped"
        reader.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
        duration = time.monotonic() - started

        failure = None
        if status != "Completed":
            failure_file = output_dir / "failure"
            failure = (
                failure_file.read_text().strip()
                if failure_file.exists()
                else f"the training program exited with code {proc.returncode}"
            )
            if status == "Stopped":
                failure = f"stopped after MaxRuntimeInSeconds={spec.max_runtime_s}"
        logger.info("training job %s %s in %.1fs", spec.job_name, status.lower(), duration)
        return TrainingJobResult(
            job_name=spec.job_name,
            status=status,
            model_dir=model_dir,
            output_dir=output_dir,
            duration_s=duration,
            failure_reason=failure,
        )


def _pump(proc: subprocess.Popen[str], job_name: str, on_log: LogSink | None) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip("\n")
        logger.debug("[%s] %s", job_name, line)
        if on_log is not None:
            on_log(line)
