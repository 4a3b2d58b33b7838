"""What the restart policy remembers per instance, shared by the supervisor that restarts and
the status checks that show the count."""

from __future__ import annotations

import time
from collections import deque


class RestartLedger:
    """Per instance: restarts by policy since modelyard started, the recent unexpected exits,
    and whether it is in a crash loop. Read by the status checks (the count is shown)."""

    def __init__(self) -> None:
        self._restarts: dict[str, int] = {}
        self._exits: dict[str, deque[float]] = {}
        self._looping: set[str] = set()

    def restarts(self, key: str) -> int:
        return self._restarts.get(key, 0)

    def in_crash_loop(self, key: str) -> bool:
        return key in self._looping

    def exited(self, key: str, window_s: float) -> int:
        """Note an unexpected exit now; how many there were within the window."""
        now = time.monotonic()
        exits = self._exits.setdefault(key, deque())
        exits.append(now)
        while exits and exits[0] < now - window_s:
            exits.popleft()
        return len(exits)

    def restarted(self, key: str) -> None:
        self._restarts[key] = self.restarts(key) + 1

    def looping(self, key: str) -> bool:
        """Mark a crash loop; False when it was already marked."""
        if key in self._looping:
            return False
        self._looping.add(key)
        return True

    def started_by_hand(self, key: str) -> None:
        """A start someone asked for ends a crash loop and its count of exits."""
        self._exits.pop(key, None)
        self._looping.discard(key)
