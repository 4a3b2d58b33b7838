"""Polling for a condition that another thread or process makes true.

The timeout only stops a broken test from hanging; it is never a speed assertion.
"""

from __future__ import annotations

import time
from collections.abc import Callable

HANG_GUARD_S = 60.0


def wait_until(
    predicate: Callable[[], object], what: str = "a condition", timeout: float = HANG_GUARD_S
) -> None:
    """Return once ``predicate()`` is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)
