"""The catalogue of event types and the event bus (SPEC §7).

Every event type modelyard publishes is declared once below, with the type of its payload;
``publish`` takes a declared type and a payload of that type, never a bare string. Payload
classes that belong to their own domain (a download's view, a provider's status) are named for
the type checker only, so that the bus imports no service. A payload's wire form
(``Event.data``, a JSON object) is made once, when it is published.

The bus: a snapshot first, then deltas, one bounded queue per subscriber. ``publish`` is safe
to call from any thread (downloads report from worker threads). Events of a type declared to
*coalesce* (progress) carry a ``key``: while a slow client still has an older event with the
same key queued, the newer one replaces it in place. Other events are never dropped; a client
whose queue overflows with them is marked ``overflowed`` and the WebSocket closes it, so it
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
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Generic, TypedDict, TypeVar, overload

from pydantic import BaseModel

from modelyard.clock import iso, utcnow

if TYPE_CHECKING:
    from modelyard.downloads.views import DownloadView
    from modelyard.models.types import LoadedFigures
    from modelyard.runtimes.health import ProviderStatus

P = TypeVar("P", bound="BaseModel | Mapping[str, object]")


@dataclass(frozen=True, eq=False)
class EventType(Generic[P]):
    """A declared type of event: its name on the wire, what it says, whether it coalesces."""

    name: str
    description: str
    coalesces: bool = False  # a newer event with the same key may replace a queued one


_DECLARED: dict[str, EventType[Any]] = {}
EVENT_TYPES: Final[Mapping[str, EventType[Any]]] = MappingProxyType(_DECLARED)


def _declare(name: str, description: str, *, coalesces: bool = False) -> EventType[Any]:
    if name in _DECLARED:
        raise ValueError(f"event type {name} is declared twice")
    declared: EventType[Any] = EventType(name, description, coalesces)
    _DECLARED[name] = declared
    return declared


# -- payloads without a domain class of their own ---------------------------------------------


class ProviderRemoved(TypedDict):
    provider: str
    instance_id: str


class DownloadRemoved(TypedDict):
    id: str


class ModelStateChange(TypedDict):
    provider: str
    instance_id: str
    name: str
    status: str  # a model status, or "removed" when it is gone
    loaded: bool
    details: LoadedFigures | None  # what the runtime says of the loaded model


class CatalogCounts(TypedDict):
    added: int
    updated: int
    removed: int
    unchanged: int


class BatchProgress(TypedDict):
    batch_id: str
    action: str
    done: int
    total: int
    result: dict[str, Any]  # the item's result, as in the batch's answer


class ConversationChanged(TypedDict):
    id: str
    action: str  # created, updated, deleted or message


class ChatAnswer(TypedDict):
    key: str  # the model that answered: provider/instance/name
    state: str  # complete, stopped or error
    ttft_ms: float | None
    completion_tokens: int | None


class ModelSchedule(TypedDict):
    key: str  # provider/instance/name
    state: str  # unloaded, loading, loaded, unloading
    in_flight: int
    queued: int
    estimate_bytes: int
    load_progress: float | None
    ttl_left_s: float | None
    pinned: bool
    loaded_at: float | None  # epoch seconds
    last_used_at: float | None
    last_eviction: dict[str, Any] | None  # {"reason", "at", "for_model"}
    last_error: str | None


class GatewayRequest(TypedDict):
    model: str  # the name the client used
    key: str  # the model it reached: provider/instance/name
    route: str
    caller: str  # the key's name, or the local user
    key_prefix: str | None  # a stored key's prefix; None for local callers and built-in keys
    status: int  # 499: the client left before an answer started
    stream: bool
    queue_ms: float  # waiting for a turn: the queue and any load
    waited_for_load: bool
    ttft_ms: float | None
    duration_ms: (
        float  # arrival to the end of the answer (tokens/s = tokens over the part after ttft)
    )
    prompt_tokens: int | None
    completion_tokens: int | None
    client_gone: bool
    error: str | None
    code: str | None  # the refusal's or the failure's code (``unauthorized``…); None if answered


class InstanceExited(TypedDict):
    provider: str
    instance_id: str
    pid: int
    exit_code: int | None  # None: an adopted process, whose code only its parent could read
    restart: str  # the instance's restart policy
    restart_in_s: float | None  # when the policy starts it again; None: it will not
    log_tail: list[str]


class InstanceCrashLoop(TypedDict):
    provider: str
    instance_id: str
    exits: int  # unexpected exits within the window
    window_s: float
    gave_up: bool  # on-failure stops restarting; always goes on at the capped backoff
    log_tail: list[str]


# -- the catalogue ------------------------------------------------------------------------------

PROVIDER_STATUS: Final[EventType[ProviderStatus]] = _declare(
    "provider.status",
    "An instance's status changed: state, reason, PID, layers, version or loaded count.",
)
PROVIDER_REMOVED: Final[EventType[ProviderRemoved]] = _declare(
    "provider.removed", "An instance was deleted."
)
INSTANCE_EXITED: Final[EventType[InstanceExited]] = _declare(
    "instance.exited",
    "A managed process ended without being asked to (a crash, a kill behind modelyard's back).",
)
INSTANCE_CRASH_LOOP: Final[EventType[InstanceCrashLoop]] = _declare(
    "instance.crash_loop", "A managed process exited too often within the crash-loop window."
)
ALERT_CHANGED: Final[EventType[BaseModel]] = _declare(
    "alert.changed", "An alert fired or resolved (monitoring.alert_types.Alert)."
)
DOWNLOAD_STATE: Final[EventType[DownloadView]] = _declare(
    "download.state", "A download was created or changed state (its fields with it)."
)
DOWNLOAD_PROGRESS: Final[EventType[DownloadView]] = _declare(
    "download.progress",
    "A running download's bytes, speed and ETA: at most every 250 ms per task.",
    coalesces=True,
)
DOWNLOAD_REMOVED: Final[EventType[DownloadRemoved]] = _declare(
    "download.removed", "A download task was deleted."
)
MODEL_STATE: Final[EventType[ModelStateChange]] = _declare(
    "model.state", "A model's status or loaded details changed, or it is gone."
)
CATALOG_CHANGED: Final[EventType[CatalogCounts]] = _declare(
    "catalog.changed", "The catalog changed: how many models were added, updated, removed."
)
BATCH_PROGRESS: Final[EventType[BatchProgress]] = _declare(
    "batch.progress", "One item of a batch is done."
)
CONVERSATION_CHANGED: Final[EventType[ConversationChanged]] = _declare(
    "conversation.changed", "A conversation was created, renamed, deleted or got a message."
)
MODEL_SCHEDULE: Final[EventType[ModelSchedule]] = _declare(
    "model.schedule",
    "The scheduler's view of a model changed: state, in flight, queued, TTL, last eviction.",
    coalesces=True,
)
CHAT_ANSWER: Final[EventType[ChatAnswer]] = _declare(
    "chat.answer",
    "A chat answer ended: the model, how it ended, TTFT and tokens (no text).",
)
GATEWAY_REQUEST: Final[EventType[GatewayRequest]] = _declare(
    "gateway.request",
    "A gateway request finished: model, caller, status, queue time, TTFT, tokens (no prompt).",
)

# -- the bus ------------------------------------------------------------------------------------

SnapshotSource = Callable[[], Any | Awaitable[Any]]
Listener = Callable[["Event[Any]"], None]


@dataclass(frozen=True)
class Event(Generic[P]):
    """One published event: its number, time and type, the payload and its wire form."""

    seq: int
    ts: str
    type: str
    data: dict[str, Any]
    payload: P
    key: str | None = None

    def envelope(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.ts, "type": self.type, "data": self.data}


def wire_form(payload: BaseModel | Mapping[str, object]) -> dict[str, Any]:
    """A payload as the JSON object an event carries."""
    if isinstance(payload, BaseModel):
        return payload.model_dump(mode="json")
    return dict(payload)


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
    _slots: deque[list[Event[Any]]] = field(default_factory=deque)
    _pending: dict[str, list[Event[Any]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _loop: asyncio.AbstractEventLoop | None = None

    @property
    def patterns(self) -> tuple[str, ...] | None:
        return None if self.wants is None else self.wants.patterns

    def set_patterns(self, patterns: Iterable[str] | None) -> None:
        """Filter by fnmatch patterns (None: everything). Compiled here, not when publishing."""
        self.wants = None if patterns is None else TypeFilter(patterns)

    def offer(self, event: Event[Any], *, coalesce: bool) -> None:
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

    def get_nowait(self) -> Event[Any] | None:
        with self._lock:
            if not self._slots:
                return None
            slot = self._slots.popleft()
            event = slot[0]
            if event.key is not None and self._pending.get(event.key) is slot:
                del self._pending[event.key]
            return event

    async def get(self) -> Event[Any] | None:
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
        # Each event type's listeners, matched once: a request through the gateway publishes
        # three events, each tried against every listener's pattern otherwise.
        self._listeners_of: dict[str, list[Listener]] = {}
        self._snapshot_sources: dict[str, SnapshotSource] = {}

    @property
    def last_seq(self) -> int:
        return self._seq

    def publish(self, event_type: EventType[P], payload: P, *, key: str | None = None) -> Event[P]:
        """Send an event of a declared type; ``key`` names what a coalescing event is about."""
        data = wire_form(payload)
        with self._lock:
            self._seq += 1
            event = Event(self._seq, iso(utcnow()), event_type.name, data, payload, key)
            subs = list(self._subs)
            listeners = self._listeners_of.get(event.type)
            if listeners is None:
                listeners = [
                    listener
                    for pattern, listener in self._listeners
                    if fnmatch.fnmatchcase(event.type, pattern)
                ]
                self._listeners_of[event.type] = listeners
        for sub in subs:
            sub.offer(event, coalesce=event_type.coalesces)
        for listener in listeners:
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

    @overload
    def add_listener(
        self, selector: EventType[P], listener: Callable[[Event[P]], None]
    ) -> None: ...

    @overload
    def add_listener(self, selector: str, listener: Listener) -> None: ...

    def add_listener(self, selector: EventType[Any] | str, listener: Listener) -> None:
        """Call ``listener`` in the publishing thread for events of one type, or of the types
        an ``fnmatch`` pattern matches. Keep it quick."""
        pattern = selector.name if isinstance(selector, EventType) else selector
        with self._lock:
            self._listeners.append((pattern, listener))
            self._listeners_of = {}  # a new list: a publish holding the old one is unaffected

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
