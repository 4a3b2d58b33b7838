"""Speed, ETA and pacing of one running download's progress reports.

A run calls ``Meter.advance`` for every report its worker process or Ollama stream makes
(up to twenty a second); it only stores two numbers. Publishing is paced: at most one progress
event every 250 ms per task (SPEC §5), and a store write about once a second.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

EVENT_INTERVAL_S = 0.25
STORE_INTERVAL_S = 1.0
WINDOW_S = 5.0  # speed is averaged over this much recent time


class Meter:
    """Bytes over time for one run of a task; speed is measured over a sliding window."""

    def __init__(self, downloaded: int, clock: Callable[[], float]) -> None:
        self.clock = clock
        now = clock()
        self.downloaded = downloaded
        self.total: int | None = None
        self._samples: deque[tuple[float, int]] = deque([(now, downloaded)])
        self.published_at = now - EVENT_INTERVAL_S  # the first report goes out at once
        self.published_bytes = -1
        self.stored_at = now
        self.stored_bytes = downloaded
        self.counted_bytes = downloaded  # already added to the bytes-downloaded metric

    def advance(self, downloaded: int, total: int | None) -> None:
        """Record the bytes on disk now (a restart from zero moves them back)."""
        if downloaded < self.downloaded:
            self.counted_bytes = min(self.counted_bytes, downloaded)
            self._samples.clear()
            self._samples.append((self.clock(), downloaded))
        self.downloaded = downloaded
        if total is not None:
            self.total = total

    def event_due(self) -> bool:
        """Whether a progress event may go out now (and something changed since the last)."""
        return (
            self.clock() - self.published_at >= EVENT_INTERVAL_S
            and self.downloaded != self.published_bytes
        )

    def store_due(self) -> bool:
        return self.clock() - self.stored_at >= STORE_INTERVAL_S

    def mark_published(self) -> None:
        now = self.clock()
        self.published_at = now
        self.published_bytes = self.downloaded
        self._samples.append((now, self.downloaded))
        while len(self._samples) > 2 and now - self._samples[1][0] >= WINDOW_S:
            self._samples.popleft()

    def mark_stored(self) -> None:
        self.stored_at = self.clock()
        self.stored_bytes = self.downloaded

    def take_new_bytes(self) -> int:
        """Bytes written since the last call (for the bytes-downloaded counter)."""
        new = max(0, self.downloaded - self.counted_bytes)
        self.counted_bytes = self.downloaded
        return new

    def speed(self) -> float | None:
        """Bytes per second over the window; None until a little time has passed."""
        start_t, start_bytes = self._samples[0]
        elapsed = self.clock() - start_t
        if elapsed < EVENT_INTERVAL_S:
            return None
        return max(0.0, (self.downloaded - start_bytes) / elapsed)

    def eta(self, speed: float | None) -> float | None:
        """Seconds left at ``speed``, when the total is known."""
        if not speed or self.total is None:
            return None
        return max(0.0, (self.total - self.downloaded) / speed)
