"""Shared fixtures: unique LSL stream names/source ids, thread errors raised."""

from __future__ import annotations

import os
import time
import uuid

import pytest

# errors inside worker threads (acquisition, inference) propagate in tests
os.environ.setdefault("BCI_APP_RAISE_IN_THREADS", "1")


def unique_stream_id(prefix: str = "bci-test") -> tuple[str, str]:
    """A ``(name, source_id)`` pair no other test (or test run) uses."""
    tag = uuid.uuid4().hex[:10]
    return f"{prefix}-{tag}", f"{prefix}-{tag}-sid"


@pytest.fixture
def stream_id(request) -> tuple[str, str]:
    """Unique ``(name, source_id)`` for an LSL stream made by this test."""
    return unique_stream_id(request.node.name[:24].replace("[", "-").replace("]", ""))


def wait_until(cond, timeout: float = 10.0, interval: float = 0.01, what: str = "condition"):
    """Poll ``cond()`` until truthy; fail the test with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def wait():
    return wait_until
