"""deployments/iam-policy.json allows every AWS operation the package calls.

The calls are found in the source: a method call (or ``get_paginator("...")``) named like an
operation of a service the package uses, as botocore's service models name them, in
``mlops/`` and ``flows/``. Each is turned into its IAM action (S3 and SQS batch operations
have their own action names) and must be allowed by an ``Allow`` statement of the policy.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "deployments" / "iam-policy.json"

# botocore service -> IAM action prefix
SERVICES = {
    "s3": "s3",
    "sagemaker": "sagemaker",
    "sagemaker-runtime": "sagemaker",
    "cloudwatch": "cloudwatch",
    "application-autoscaling": "application-autoscaling",
    "sqs": "sqs",
    "sts": "sts",
    "logs": "logs",
}
# operations whose IAM action has another name (None: no permission needed)
ACTION_OF = {
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:ListObjects": "s3:ListBucket",
    "s3:HeadBucket": "s3:ListBucket",
    "s3:HeadObject": "s3:GetObject",
    "s3:DeleteObjects": "s3:DeleteObject",
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "sts:GetCallerIdentity": None,
}
# boto3's S3 transfer methods (not operations of the service model) and what they call
TRANSFERS = {
    "upload_file": ["s3:PutObject"],
    "upload_fileobj": ["s3:PutObject"],
    "download_file": ["s3:GetObject"],
    "download_fileobj": ["s3:GetObject"],
}
# the job calls SageMakerBackend._create_and_wait builds as create_/describe_/stop_<kind>_job
DYNAMIC = [
    f"sagemaker:{verb}{kind}Job"
    for verb in ("Create", "Describe", "Stop")
    for kind in ("Training", "Processing", "Transform")
]
# same-named methods of other libraries, in the files where they are not AWS calls
NOT_AWS = {
    "search": None,  # re.search everywhere
    "create_experiment": None,  # MLflow
    "list_artifacts": None,  # MLflow
    "create_project": {"mlops/monitoring/workspace.py"},  # Evidently's workspace
    "get_dashboard": {"mlops/monitoring/workspace.py"},
}


def _operations() -> dict[str, dict[str, str]]:
    import botocore.session
    from botocore import xform_name

    session = botocore.session.get_session()
    return {
        service: {
            xform_name(op): op for op in session.get_service_model(service).operation_names
        }
        for service in SERVICES
    }


def _required() -> dict[str, set[str]]:
    """IAM action (or alternatives) -> the files that need it."""
    operations = _operations()
    required: dict[str, set[str]] = {}
    files = [*sorted((ROOT / "mlops").rglob("*.py")), *sorted((ROOT / "flows").rglob("*.py"))]
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        names = set(re.findall(r"\.([a-z][a-z0-9_]+)\(", text))
        names |= set(re.findall(r"get_paginator\(\s*\"([a-z0-9_]+)\"", text))
        for name in names:
            skip = NOT_AWS.get(name, set())
            if name in NOT_AWS and (skip is None or rel in skip):
                continue
            for action in TRANSFERS.get(name, []):
                required.setdefault(action, set()).add(rel)
            candidates = [
                f"{SERVICES[service]}:{ops[name]}" for service, ops in operations.items()
                if name in ops
            ]  # fmt: skip
            actions = {ACTION_OF.get(c, c) for c in candidates}
            actions.discard(None)
            if actions:
                required.setdefault(" | ".join(sorted(a for a in actions if a)), set()).add(rel)
    for action in DYNAMIC:
        required.setdefault(action, set()).add("mlops/backends/sagemaker/compute.py")
    return required


def _allowed(policy: dict, action: str) -> bool:
    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow":
            continue
        patterns = statement["Action"]
        for pattern in [patterns] if isinstance(patterns, str) else patterns:
            if fnmatch.fnmatchcase(action.lower(), pattern.lower()):
                return True
    return False


def test_the_policy_allows_every_aws_call_of_the_package() -> None:
    policy = json.loads(POLICY.read_text())
    required = _required()
    # the scan finds the calls it should (a broken scan must not pass silently)
    for action in ("sagemaker:CreateModel", "s3:PutObject", "cloudwatch:PutDashboard"):
        assert any(action in key.split(" | ") for key in required), action
    missing = {
        key: sorted(files)
        for key, files in required.items()
        if not any(_allowed(policy, action) for action in key.split(" | "))
    }
    assert not missing, f"add to {POLICY.name}: {missing}"


def test_the_policy_is_a_valid_document_without_wildcard_services() -> None:
    policy = json.loads(POLICY.read_text())
    assert policy["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in policy["Statement"]]
    assert len(sids) == len(set(sids))
    for statement in policy["Statement"]:
        actions = statement["Action"]
        for action in [actions] if isinstance(actions, str) else actions:
            assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z]+", action), action
    assert not _allowed(policy, "sagemaker:DeleteDomain")  # the check refuses what is not there
