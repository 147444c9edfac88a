"""The local backend: training, processing and transform jobs as subprocesses on this
machine, laid out like SageMaker's containers (see :mod:`mlops.backends.local.compute`), and
endpoints as a gateway process on loopback (:mod:`.gateway`, behind the endpoint Protocol in
:mod:`.endpoint`)."""

from __future__ import annotations

from mlops.backends.local.compute import LocalBackend, stage_channel

__all__ = ["LocalBackend", "stage_channel"]
