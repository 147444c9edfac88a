"""Fixtures of the capture tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mlops.capture import CaptureWriter


@pytest.fixture
def writers() -> Iterator[list[CaptureWriter]]:
    """Writers made by a test, closed at its end whatever happens."""
    made: list[CaptureWriter] = []
    yield made
    for writer in made:
        writer.close()
