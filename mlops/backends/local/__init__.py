"""The local backend: jobs in subprocesses (:mod:`.compute`) and endpoints as a gateway
process on loopback (:mod:`.gateway`, wrapped by :mod:`.endpoint`)."""

from __future__ import annotations

from mlops.backends.local.compute import LocalBackend, stage_channel

__all__ = ["LocalBackend", "stage_channel"]
