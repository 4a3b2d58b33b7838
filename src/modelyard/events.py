"""The event bus (SPEC §7): snapshot first, then deltas, one bounded queue per subscriber.

``publish`` is safe to call from any thread (downloads run in worker threads). Progress events
carry a ``key`` and are *coalesced*: while a slow client still has an older event with the same
key queued, the newer one replaces it in place. Other events are never dropped; a client whose
queue overflows with them is marked ``overflowed`` and the WebSocket closes it, so it
reconnects and reads a fresh snapshot instead of silently missing a state change.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import inspect
import re
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SnapshotSource = Callable[[], Any | Awaitable[Any]]
Listener = Callable[["Event"], None]


@dataclass(frozen=True)
class Event:
    seq: int
    ts: str
    type: str
    data: dict[str, Any]
    key: str | None = None

    def envelope(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.ts, "type": self.type, "data": self.data}


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class TypeFilter:
    """A subscription's patterns, compiled once into one expression when they are set; each
    event type's verdict is then remembered, so publishing costs a dictionary look-up per
    subscriber however many patterns it has (a handful of event types exist)."""

    MAX_TYPES = 1024  # verdicts kept; beyond that, types are matched each time

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        # No pattern matches nothing ("(?!)"), as any() of nothing is false.
        self._expression = re.compile("|".join(map(fnmatch.translate, self.patterns)) or "(?!)")
        self._verdicts: dict[str, bool] = {}

    def __call__(self, event_type: str) -> bool:
        verdict = self._verdicts.get(event_type)
        if verdict is None:
            verdict = self._expression.match(event_type) is not None
            if len(self._verdicts) < self.MAX_TYPES:
                self._verdicts[event_type] = verdict
        return verdict


@dataclass(eq=False)
class Subscription:
    """One client's view of the bus."""

    maxsize: int
    wants: TypeFilter | None = None  # None: every event
    overflowed: bool = False
    _slots: deque[list[Event]] = field(default_factory=deque)
    _pending: dict[str, list[Event]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _loop: asyncio.AbstractEventLoop | None = None

    @property
    def patterns(self) -> tuple[str, ...] | None:
        return None if self.wants is None else self.wants.patterns

    def set_patterns(self, patterns: Iterable[str] | None) -> None:
        """Filter by fnmatch patterns (None: everything). Compiled here, not when publishing."""
        self.wants = None if patterns is None else TypeFilter(patterns)

    def offer(self, event: Event, *, coalesce: bool) -> None:
        wants = self.wants
        if wants is not None and not wants(event.type):
            return
        with self._lock:
            slot = self._pending.get(event.key) if event.key is not None else None
            if coalesce and slot is not None:
                slot[0] = event
                return
            if event.key is not None and not coalesce:
                self._pending.pop(event.key, None)
            if len(self._slots) >= self.maxsize:
                if not coalesce:
                    self.overflowed = True
                    self._wake()
                return
            new_slot = [event]
            self._slots.append(new_slot)
            if coalesce and event.key is not None:
                self._pending[event.key] = new_slot
        self._wake()

    def _wake(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wakeup.set()
        else:
            loop.call_soon_threadsafe(self._wakeup.set)

    def get_nowait(self) -> Event | None:
        with self._lock:
            if not self._slots:
                return None
            slot = self._slots.popleft()
            event = slot[0]
            if event.key is not None and self._pending.get(event.key) is slot:
                del self._pending[event.key]
            return event

    async def get(self) -> Event | None:
        """The next event, or None once the subscription has overflowed."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        while True:
            if self.overflowed:
                return None
            event = self.get_nowait()
            if event is not None:
                return event
            self._wakeup.clear()
            if self._slots or self.overflowed:
                continue
            await self._wakeup.wait()


class EventBus:
    """Publishes events to subscribers and listeners; builds snapshots for new clients."""

    def __init__(self, queue_size: int = 1000) -> None:
        self.queue_size = queue_size
        self._seq = 0
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []
        self._listeners: list[tuple[str, Listener]] = []
        self._snapshot_sources: dict[str, SnapshotSource] = {}

    @property
    def last_seq(self) -> int:
        return self._seq

    def publish(
        self, type: str, data: dict[str, Any], *, key: str | None = None, coalesce: bool = False
    ) -> Event:
        """Send an event. ``coalesce=True`` marks a progress event that may replace an older one."""
        with self._lock:
            self._seq += 1
            event = Event(seq=self._seq, ts=now_rfc3339(), type=type, data=data, key=key)
            subs = list(self._subs)
            listeners = list(self._listeners)
        for sub in subs:
            sub.offer(event, coalesce=coalesce)
        for pattern, listener in listeners:
            if fnmatch.fnmatchcase(type, pattern):
                listener(event)
        return event

    def subscribe(self, patterns: Iterable[str] | None = None) -> Subscription:
        sub = Subscription(maxsize=self.queue_size)
        sub.set_patterns(patterns)
        with contextlib.suppress(RuntimeError):  # subscribing outside a loop: bound on get()
            sub._loop = asyncio.get_running_loop()
        with self._lock:
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    def add_listener(self, pattern: str, listener: Listener) -> None:
        """Call ``listener`` in the publishing thread for matching events. Keep it quick."""
        with self._lock:
            self._listeners.append((pattern, listener))

    def add_snapshot_source(self, name: str, source: SnapshotSource) -> None:
        self._snapshot_sources[name] = source

    async def snapshot(self) -> dict[str, Any]:
        """The current state for a new client: every registered source, by name."""
        result: dict[str, Any] = {}
        for name, source in self._snapshot_sources.items():
            value = source()
            if inspect.isawaitable(value):
                value = await value
            result[name] = value
        return result
