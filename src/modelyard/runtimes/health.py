"""Provider status (SPEC §3): three layers checked in parallel with hard timeouts, a cache,
the last 10 checks per instance, and an adaptive monitor that publishes changes as events.

The state is *derived* from what the layers saw just now, never remembered from a command:
RUNNING only when the API answered and was recognised as that provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel

from modelyard.clock import iso, utcnow
from modelyard.config import Settings
from modelyard.errors import InvalidInput
from modelyard.events import PROVIDER_STATUS, EventBus
from modelyard.metrics import Metrics
from modelyard.providers.base import ApiProbe, ProviderState
from modelyard.providers.registry import registry
from modelyard.runtimes.container_runtime import ContainerCheck, ContainerInfo, container_verdict
from modelyard.runtimes.instances import Instance, InstanceRegistry
from modelyard.runtimes.process_records import ProcessCheck
from modelyard.runtimes.processes import ProcessManager
from modelyard.runtimes.restart_ledger import RestartLedger

HISTORY = 10
MISSING_API_KEY = "missing_api_key"  # a cloud API with no key: it cannot run, nothing is tried
_START_IT = "Start it from the Providers page."
MONITOR_INTERVALS = {
    ProviderState.UNKNOWN: 0.0,
    ProviderState.STARTING: 2.0,
    ProviderState.DEGRADED: 2.0,
    ProviderState.RUNNING: 10.0,
    ProviderState.STOPPED: 30.0,
    ProviderState.ERROR: 30.0,
}


class ProviderStatus(BaseModel):
    provider: str
    instance_id: str
    base_url: str
    state: ProviderState
    managed: bool
    pid: int | None = None
    pid_exists: bool | None = None
    port_listening: bool = False
    api_responding: bool = False
    latency_ms: float | None = None
    version: str | None = None
    reason_code: str | None = None
    hint: str | None = None
    checked_at: str
    models_loaded: int | None = None
    container: ContainerInfo | None = None  # in place of the process, for a container instance
    restarts: int = 0  # by the restart policy, since modelyard started
    memory_limit_bytes: int | None = None  # the running process's limit
    memory_enforcement: str | None = None  # cgroup-v2, cgroup-v1 or watchdog (sampled)

    def signature(self) -> tuple[Any, ...]:
        """What makes a change worth an event (not latency or time)."""
        return (
            self.state,
            self.reason_code,
            self.pid,
            self.pid_exists,
            self.port_listening,
            self.api_responding,
            self.version,
            self.models_loaded,
            self.container,
            self.restarts,
        )


@dataclass(frozen=True)
class PortResult:
    listening: bool
    reason: str | None  # connection_refused | timeout | unreachable


def _host_port(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    default = 443 if parts.scheme == "https" else 80
    return parts.hostname or "127.0.0.1", parts.port or default


async def check_port(base_url: str, timeout: float) -> PortResult:
    host, port = _host_port(base_url)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        return PortResult(False, "timeout")
    except ConnectionRefusedError:
        return PortResult(False, "connection_refused")
    except OSError:
        return PortResult(False, "unreachable")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return PortResult(True, None)


class HealthChecker:
    """Checks instances, caches results, keeps history and runs the monitor."""

    def __init__(
        self,
        settings: Settings,
        instances: InstanceRegistry,
        processes: ProcessManager,
        bus: EventBus,
        metrics: Metrics,
        restarts: RestartLedger | None = None,
    ) -> None:
        self.settings = settings
        self.restarts = restarts or RestartLedger()
        self.instances = instances
        self.processes = processes
        self.bus = bus
        self.metrics = metrics
        self._latest: dict[str, tuple[float, ProviderStatus]] = {}
        self._dumped: dict[str, dict[str, Any]] = {}  # key -> JSON form of the latest status
        self._history: dict[str, deque[ProviderStatus]] = {}
        self._inflight: dict[str, asyncio.Task[ProviderStatus]] = {}
        self._started_seq: dict[str, int] = {}  # checks begun per instance
        self._recorded_seq: dict[str, int] = {}  # the newest check whose result was recorded
        self._next_due: dict[str, float] = {}
        # Instances stopped because their start timed out: key -> the status's hint.
        self._start_timeouts: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.api_timeout_ms / 1000),
            follow_redirects=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        self._monitor: asyncio.Task[None] | None = None

    @property
    def ttl_s(self) -> float:
        return self.settings.status_cache_ttl_ms / 1000

    # -- checking ---------------------------------------------------------------------------

    async def check(self, instance: Instance, *, fresh: bool = False) -> ProviderStatus:
        """Check one instance now; concurrent callers share the check under way.

        ``fresh`` (after a start or stop) never shares a check that began before the change:
        a new one starts, and the older one's result, arriving later, is not recorded.
        """
        key = instance.key
        task = self._inflight.get(key)
        if fresh or task is None or task.done():
            self._started_seq[key] = seq = self._started_seq.get(key, 0) + 1
            task = asyncio.create_task(self._check(instance, seq))
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._drop_inflight(key, t))
        return await asyncio.shield(task)

    def _drop_inflight(self, key: str, task: asyncio.Task[ProviderStatus]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]

    async def status(self, instance: Instance, *, refresh: bool = False) -> ProviderStatus:
        cached = self._latest.get(instance.key)
        if not refresh and cached and time.monotonic() - cached[0] < self.ttl_s:
            return cached[1]
        return await self.check(instance)

    async def statuses(self, *, refresh: bool = False) -> list[ProviderStatus]:
        """Every instance's status; stale or missing entries are checked in parallel."""
        items = self.instances.list()
        return list(await asyncio.gather(*(self.status(i, refresh=refresh) for i in items)))

    def as_json(self, status: ProviderStatus) -> dict[str, Any]:
        """The JSON form of a recorded status, serialised once (the cached path stays cheap)."""
        key = f"{status.provider}/{status.instance_id}"
        latest = self._latest.get(key)
        if latest is not None and latest[1] is status:
            return self._dumped[key]
        return status.model_dump(mode="json")

    def age_ms(self, statuses: list[ProviderStatus]) -> int:
        """How old the oldest of these results is."""
        now = time.monotonic()
        keys = (f"{s.provider}/{s.instance_id}" for s in statuses)
        ages = [now - self._latest[k][0] for k in keys if k in self._latest]
        return int(max(ages, default=0.0) * 1000)

    def cached(self) -> list[ProviderStatus]:
        return [entry[1] for entry in self._latest.values()]

    def history(self, instance: Instance) -> list[ProviderStatus]:
        return list(reversed(self._history.get(instance.key, ())))

    def start_timed_out(self, instance: Instance, log_tail: list[str]) -> None:
        """``instance``'s server did not load within ``start_timeout_s`` and is being stopped:
        until it is started or stopped again its status says so (ERROR ``start_timeout``, with
        ``log_tail``), not STOPPED as if nobody had started it."""
        if self.instances.find(instance.key) is None:
            return  # a local file's server: removed with its process
        tail = " | ".join(log_tail) or "(empty)"
        self._start_timeouts[instance.key] = (
            f"The API did not answer within {self.settings.start_timeout_s:g} s, so modelyard "
            f"stopped it. Last log lines: {tail}"
        )
        self.poke(instance)

    def forget_start_timeout(self, instance: Instance) -> None:
        """A start or stop by hand: the timed-out start is no longer the news."""
        self._start_timeouts.pop(instance.key, None)

    def forget(self, instance: Instance) -> None:
        self._start_timeouts.pop(instance.key, None)
        self._latest.pop(instance.key, None)
        self._dumped.pop(instance.key, None)
        self._history.pop(instance.key, None)
        self._next_due.pop(instance.key, None)
        self.metrics.forget_instance(instance.config.provider, instance.config.id)

    async def _check(self, instance: Instance, seq: int) -> ProviderStatus:
        cfg = instance.config
        provider = registry.get(cfg.provider)
        # The process layer runs beside the port and API layers: a container's is a request to
        # Docker, which must not add its time to theirs.
        layer = asyncio.to_thread(self.processes.check, cfg.key) if cfg.managed else None
        proc_check = asyncio.ensure_future(layer) if layer is not None else None
        try:
            api_key = cfg.resolved_api_key()
        except InvalidInput as exc:  # this instance's error, never the status page's
            proc = await proc_check if proc_check is not None else None
            status = self._status(
                instance, ProviderState.ERROR, proc, reason=exc.error_code, hint=exc.hint
            )
            return self._record(instance, status, seq)
        if provider.capabilities.needs_api_key and not api_key:
            proc = await proc_check if proc_check is not None else None
            status = self._status(
                instance,
                ProviderState.STOPPED,
                proc,
                reason=MISSING_API_KEY,
                hint=f"Set {cfg.api_key_env or provider.api_key_env or 'an API key'} "
                f"or give the instance an api_key to enable {provider.label}.",
            )
            return self._record(instance, status, seq)
        connect_s = self.settings.connect_timeout_ms / 1000
        api_s = self.settings.api_timeout_ms / 1000
        started = time.perf_counter()
        port, api = await asyncio.gather(
            self._timed(cfg.provider, "port", check_port(cfg.base_url, connect_s)),
            self._timed(cfg.provider, "api", self._probe_api(instance, api_key, api_s)),
        )
        latency = (time.perf_counter() - started) * 1000 if api.responded else None
        proc = await proc_check if proc_check is not None else None
        status = self._derive(instance, proc, port, api, latency)
        return self._record(instance, status, seq)

    async def _timed(self, provider: str, layer: str, coro: Any) -> Any:
        started = time.perf_counter()
        try:
            return await coro
        finally:
            self.metrics.check_duration.labels(provider, layer).observe(
                time.perf_counter() - started
            )

    async def _probe_api(self, instance: Instance, api_key: str, timeout: float) -> ApiProbe:
        provider = registry.get(instance.config.provider)
        try:
            async with asyncio.timeout(timeout):
                return await provider.probe(self._client, instance.config, api_key)
        except (TimeoutError, httpx.TimeoutException):
            return ApiProbe(responded=False, reason_code="timeout")
        except httpx.ConnectError as exc:
            refused = "refused" in str(exc).lower() or isinstance(
                exc.__cause__, ConnectionRefusedError
            )
            return ApiProbe(
                responded=False, reason_code="connection_refused" if refused else "unreachable"
            )
        except httpx.HTTPError:
            return ApiProbe(
                responded=False,
                state=ProviderState.DEGRADED,
                reason_code="bad_response",
                hint="The server closed the connection or answered something that is not HTTP.",
            )

    def _derive(
        self,
        instance: Instance,
        proc: ProcessCheck | None,
        port: PortResult,
        api: ApiProbe,
        latency: float | None,
    ) -> ProviderStatus:
        def make(
            state: ProviderState, reason: str | None = None, hint: str | None = None
        ) -> ProviderStatus:
            status = self._status(instance, state, proc, reason=reason, hint=hint)
            status.port_listening = port.listening or api.responded
            status.api_responding = api.ok
            status.latency_ms = round(latency, 2) if latency is not None else None
            return status

        if isinstance(proc, ContainerCheck):
            verdict = container_verdict(self.settings, proc, api)
            if verdict is not None:
                return make(*verdict)
        if proc is not None and not proc.alive and (api.ok or api.state is ProviderState.STARTING):
            # A managed instance whose port is served by a server modelyard did not start (or
            # no longer runs): modelyard can neither stop nor vouch for it.
            return make(ProviderState.ERROR, "port_in_use", _not_ours_hint(instance))
        if api.ok:
            status = make(ProviderState.RUNNING)
            status.version = api.version
            status.models_loaded = api.models_loaded
            return status
        if api.state is not None and api.state is not ProviderState.DEGRADED:
            return make(api.state, api.reason_code, api.hint)
        if proc is not None and proc.record is not None:
            return self._derive_managed(instance, proc, make, api)
        if api.state is ProviderState.DEGRADED:
            return make(api.state, api.reason_code, api.hint)
        if port.listening or api.reason_code == "timeout":
            reason = api.reason_code or "timeout"
            return make(
                ProviderState.DEGRADED,
                reason,
                f"Port is open but the API did not answer within "
                f"{self.settings.api_timeout_ms} ms; the server may be hung or overloaded.",
            )
        if instance.config.managed:
            provider = registry.get(instance.config.provider)
            missing = provider.binary_missing(self.settings, instance.config)
            if missing:
                return make(ProviderState.ERROR, "binary_not_found", missing)
            timed_out = self._start_timeouts.get(instance.key)
            if timed_out is not None:
                return make(ProviderState.ERROR, "start_timeout", timed_out)
            return make(ProviderState.STOPPED, "not_running", _START_IT)
        reason = port.reason or api.reason_code or "connection_refused"
        return make(ProviderState.STOPPED, reason, _stopped_hint(instance, reason))

    def _derive_managed(
        self,
        instance: Instance,
        proc: ProcessCheck,
        make: Callable[..., ProviderStatus],
        api: ApiProbe,
    ) -> ProviderStatus:
        record = proc.record
        assert record is not None
        if not proc.alive and proc.stopping:
            return make(ProviderState.STOPPED, "not_running", _START_IT)
        tail = " | ".join(self.processes.log_tail(instance.key, 5)[-5:])
        if not proc.alive and self.restarts.in_crash_loop(instance.key):
            return make(
                ProviderState.ERROR,
                "crash_loop",
                "The process keeps exiting (a crash loop): no more restarts until it is "
                f"started by hand. Last log lines: {tail or '(empty)'}",
            )
        if not proc.alive:
            code = f" with code {proc.exit_code}" if proc.exit_code is not None else ""
            return make(
                ProviderState.ERROR,
                "process_exited",
                f"The process exited{code}. Last log lines: {tail or '(empty)'}",
            )
        age = (utcnow() - datetime.fromisoformat(record.started_at)).total_seconds()
        if age < self.settings.start_timeout_s:
            return make(
                ProviderState.STARTING, api.reason_code or "starting", "Waiting for the API."
            )
        if api.state is ProviderState.DEGRADED:
            return make(api.state, api.reason_code, api.hint)
        return make(
            ProviderState.ERROR,
            "start_timeout",
            f"The API did not answer within {self.settings.start_timeout_s:.0f} s. "
            f"Last log lines: {tail or '(empty)'}",
        )

    def _status(
        self,
        instance: Instance,
        state: ProviderState,
        proc: ProcessCheck | None,
        *,
        reason: str | None,
        hint: str | None,
    ) -> ProviderStatus:
        cfg = instance.config
        record = proc.record if proc is not None else None
        return ProviderStatus(
            provider=cfg.provider,
            instance_id=cfg.id,
            base_url=cfg.base_url,
            state=state,
            managed=cfg.managed,
            pid=proc.record.pid if proc is not None and proc.record is not None else None,
            # managed: False when no process is recorded; external: unknown (None)
            pid_exists=(proc.alive if proc.record is not None else False)
            if proc is not None
            else None,
            reason_code=reason,
            hint=hint,
            checked_at=iso(utcnow()) or "",
            container=proc.info() if isinstance(proc, ContainerCheck) else None,
            restarts=self.restarts.restarts(cfg.key),
            memory_limit_bytes=record.memory_limit_bytes or None if record else None,
            memory_enforcement=record.memory_enforcement if record else None,
        )

    def _record(self, instance: Instance, status: ProviderStatus, seq: int) -> ProviderStatus:
        if self.instances.find(instance.key) is None:
            return status  # deleted while being checked
        if seq < self._recorded_seq.get(instance.key, 0):
            return status  # a newer check (begun after a start or stop) has been recorded
        self._recorded_seq[instance.key] = seq
        previous = self._latest.get(instance.key)
        self._latest[instance.key] = (time.monotonic(), status)
        self._dumped[instance.key] = status.model_dump(mode="json")
        self._history.setdefault(instance.key, deque(maxlen=HISTORY)).append(status)
        self._next_due[instance.key] = time.monotonic() + MONITOR_INTERVALS[status.state]
        self.metrics.set_provider_state(status.provider, status.instance_id, status.state.value)
        if previous is None or previous[1].signature() != status.signature():
            self.bus.publish(PROVIDER_STATUS, status, key=f"provider:{instance.key}")
        return status

    # -- monitor ----------------------------------------------------------------------------

    def poke(self, instance: Instance | None = None) -> None:
        """Re-check soon: one instance, or all."""
        for item in [instance] if instance else self.instances.list():
            self._next_due[item.key] = 0.0
        self._wake.set()

    async def watch_until_settled(self, instance: Instance, timeout: float) -> ProviderStatus:
        """Check quickly after a start until the state leaves STARTING (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        status = await self.check(instance)
        while status.state is ProviderState.STARTING and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            status = await self.check(instance)
        return status

    def start_monitor(self) -> None:
        if self._monitor is None:
            self._monitor = asyncio.create_task(self._run_monitor(), name="provider-monitor")

    async def _run_monitor(self) -> None:
        while True:
            now = time.monotonic()
            due = [i for i in self.instances.list() if self._next_due.get(i.key, 0.0) <= now]
            if due:
                await asyncio.gather(*(self.check(i) for i in due), return_exceptions=True)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=0.5)

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None
        await self._client.aclose()


def _not_ours_hint(instance: Instance) -> str:
    cfg = instance.config
    label = registry.get(cfg.provider).label
    return (
        f"A {label} server that modelyard did not start answers on {cfg.base_url}; stop that "
        "program yourself, or give this instance another port."
    )


def _stopped_hint(instance: Instance, reason: str) -> str:
    cfg = instance.config
    if reason == "unreachable":
        return f"{cfg.base_url} cannot be reached (DNS or network); check the address."
    if reason == "timeout":
        return f"Connecting to {cfg.base_url} timed out; check the host and firewall."
    how = registry.get(cfg.provider).start_hint
    return f"Nothing listens on {cfg.base_url}. {how} or fix the base URL."
