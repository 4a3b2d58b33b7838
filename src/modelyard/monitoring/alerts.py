"""Alerts: rules over what modelyard already sees (status changes, exits, downloads, models)
and two periodic checks (free disk, memory), firing and resolved.

An alert is one rule about one subject; while it fires, firing again changes nothing
(deduplication). Each change is published as ``alert.changed`` for the dashboard; the webhooks
hear of it unless the same alert was last notified less than ``alert_cooldown_s`` ago, so an
instance that keeps crashing sends one ``instance_exited`` and one ``crash_loop``, not a storm.
A resolution is notified exactly when its firing was.

Everything runs on the event loop: bus listeners (which may be called from download worker
threads) hop onto it, and nothing here waits for a webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import psutil

from modelyard.clock import iso, utcnow
from modelyard.config import Settings
from modelyard.downloads.states import DownloadState
from modelyard.events import (
    ALERT_CHANGED,
    DOWNLOAD_REMOVED,
    DOWNLOAD_STATE,
    INSTANCE_CRASH_LOOP,
    INSTANCE_EXITED,
    MODEL_STATE,
    PROVIDER_REMOVED,
    PROVIDER_STATUS,
    Event,
    EventBus,
    InstanceCrashLoop,
    InstanceExited,
    ModelStateChange,
)
from modelyard.metrics import Metrics
from modelyard.models.types import ModelStatus
from modelyard.monitoring.alert_types import Alert, AlertDetails, AlertStatus, Rule, Severity
from modelyard.monitoring.webhooks import Webhooks
from modelyard.providers.base import ProviderState

if TYPE_CHECKING:
    from modelyard.downloads.views import DownloadView
    from modelyard.runtimes.health import ProviderStatus

log = logging.getLogger(__name__)
RECENT = 100
_BAD = {ProviderState.ERROR, ProviderState.DEGRADED}
# A model that is one of these no longer failed to start ("removed": it is gone).
_SETTLED = {ModelStatus.LOADED, ModelStatus.AVAILABLE, "removed"}
_INSTANCE_RULES = (Rule.INSTANCE_DOWN, Rule.INSTANCE_EXITED, Rule.CRASH_LOOP)


class Alerts:
    """The alerts firing now, the recent changes, and the rules that make them."""

    def __init__(
        self, settings: Settings, bus: EventBus, webhooks: Webhooks, metrics: Metrics
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.webhooks = webhooks
        self.metrics = metrics
        self.firing: dict[str, Alert] = {}
        self.recent: deque[Alert] = deque(maxlen=RECENT)
        self._notified_at: dict[str, float] = {}
        self._was_running: set[str] = set()
        self._down_since: dict[str, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._checker: asyncio.Task[None] | None = None
        for event_type in (
            PROVIDER_STATUS,
            PROVIDER_REMOVED,
            INSTANCE_EXITED,
            INSTANCE_CRASH_LOOP,
            DOWNLOAD_STATE,
            DOWNLOAD_REMOVED,
            MODEL_STATE,
        ):
            bus.add_listener(event_type.name, self._heard)

    def start(self) -> None:
        if not self.settings.alerts:
            return
        self._loop = asyncio.get_running_loop()
        self.webhooks.start()
        self._checker = asyncio.create_task(self._check_resources(), name="alert-checks")

    # -- firing and resolving ---------------------------------------------------------------

    def fire(
        self,
        rule: Rule,
        subject: str,
        severity: Severity,
        summary: str,
        details: AlertDetails | None = None,
    ) -> Alert | None:
        """Fire an alert; None when it is already firing (deduplicated)."""
        alert_id = f"{rule.value}:{subject}"
        if alert_id in self.firing:
            return None
        now = time.monotonic()
        last = self._notified_at.get(alert_id)
        notify = last is None or now - last >= self.settings.alert_cooldown_s
        alert = Alert(
            id=alert_id,
            rule=rule,
            subject=subject,
            status=AlertStatus.FIRING,
            severity=severity,
            summary=summary,
            details=details or {},
            started_at=iso(utcnow()) or "",
            notified=notify,
        )
        self.firing[alert_id] = alert
        if notify:
            self._notified_at[alert_id] = now
        self._changed(alert)
        return alert

    def resolve(self, rule: Rule, subject: str, summary: str) -> Alert | None:
        """Resolve a firing alert; None when it was not firing."""
        firing = self.firing.pop(f"{rule.value}:{subject}", None)
        if firing is None:
            return None
        alert = firing.model_copy(
            update={
                "status": AlertStatus.RESOLVED,
                "summary": summary,
                "resolved_at": iso(utcnow()) or "",
            }
        )
        self._changed(alert)
        return alert

    def _changed(self, alert: Alert) -> None:
        self.recent.append(alert)
        self.metrics.alerts_firing.labels(alert.rule.value).set(
            sum(1 for a in self.firing.values() if a.rule is alert.rule)
        )
        (log.warning if alert.status is AlertStatus.FIRING else log.info)(
            "alert %s %s: %s", alert.id, alert.status.value, alert.summary
        )
        self.bus.publish(ALERT_CHANGED, alert, key=alert.id)
        if alert.notified and self.settings.alerts:
            self.webhooks.send(alert)

    # -- rules over events ------------------------------------------------------------------

    def _heard(self, event: Event[Any]) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: modelyard is exiting
                loop.call_soon_threadsafe(self._handle, event)

    def _handle(self, event: Event[Any]) -> None:
        payload = event.payload  # the declared payload of the event's type
        if event.type == PROVIDER_STATUS.name:
            self._status(payload)
        elif event.type == PROVIDER_REMOVED.name:
            self._forget_instance(f"{payload['provider']}/{payload['instance_id']}")
        elif event.type == INSTANCE_EXITED.name:
            self._exited(payload)
        elif event.type == INSTANCE_CRASH_LOOP.name:
            self._crash_loop(payload)
        elif event.type == DOWNLOAD_STATE.name:
            self._download(payload)
        elif event.type == DOWNLOAD_REMOVED.name:
            task = payload["id"]
            self.resolve(Rule.DOWNLOAD_FAILED, task, f"download {task} is gone")
        elif event.type == MODEL_STATE.name:
            self._model(payload)

    def _status(self, status: ProviderStatus) -> None:
        key = f"{status.provider}/{status.instance_id}"
        if status.state is ProviderState.RUNNING:
            self._was_running.add(key)
            self._cancel_down(key)
            for rule in _INSTANCE_RULES:
                self.resolve(rule, key, f"{key} is running again")
            return
        down = status.state in _BAD or (
            status.state is ProviderState.STOPPED
            and not status.managed
            and key in self._was_running
        )
        if not down or not (key in self._was_running or status.managed):
            self._cancel_down(key)
            return
        if key not in self._down_since and self._loop is not None:
            self._down_since[key] = self._loop.call_later(
                self.settings.alert_down_after_s, self._still_down, key, status
            )

    def _still_down(self, key: str, status: ProviderStatus) -> None:
        self._down_since.pop(key, None)
        self.fire(
            Rule.INSTANCE_DOWN,
            key,
            Severity.CRITICAL,
            f"{key} has been {status.state} for {self.settings.alert_down_after_s:g} s"
            + (f" ({status.reason_code})" if status.reason_code else ""),
            {"state": status.state.value, "reason": status.reason_code, "hint": status.hint},
        )

    def _cancel_down(self, key: str) -> None:
        handle = self._down_since.pop(key, None)
        if handle is not None:
            handle.cancel()

    def _forget_instance(self, key: str) -> None:
        self._cancel_down(key)
        self._was_running.discard(key)
        for rule in _INSTANCE_RULES:
            self.resolve(rule, key, f"{key} was removed")

    def _exited(self, exited: InstanceExited) -> None:
        key = f"{exited['provider']}/{exited['instance_id']}"
        code = exited["exit_code"]
        how = "was killed or crashed" if code is None or code < 0 else f"exited with {code}"
        restart = exited["restart_in_s"]
        self.fire(
            Rule.INSTANCE_EXITED,
            key,
            Severity.CRITICAL,
            f"{key} (PID {exited['pid']}) {how} without being asked to; "
            + (f"restarting in {restart:g} s" if restart is not None else "not restarted"),
            {
                "pid": exited["pid"],
                "exit_code": code,
                "restart": exited["restart"],
                "last_log_line": _last(exited["log_tail"]),
            },
        )

    def _crash_loop(self, loop: InstanceCrashLoop) -> None:
        key = f"{loop['provider']}/{loop['instance_id']}"
        self.fire(
            Rule.CRASH_LOOP,
            key,
            Severity.CRITICAL,
            f"{key} is in a crash loop: {loop['exits']} exits within {loop['window_s']:g} s"
            + ("; restarts stopped" if loop["gave_up"] else ""),
            {"exits": loop["exits"], "last_log_line": _last(loop["log_tail"])},
        )

    def _download(self, download: DownloadView) -> None:
        task = download.id
        if download.state is DownloadState.FAILED:
            name = download.model_name or download.filename or download.url or task
            self.fire(
                Rule.DOWNLOAD_FAILED,
                task,
                Severity.WARNING,
                f"download of {name} failed: {download.error or 'unknown error'}",
                {"code": download.error_code, "attempts": download.attempts},
            )
        else:
            self.resolve(Rule.DOWNLOAD_FAILED, task, f"download {task} is {download.state}")

    def _model(self, change: ModelStateChange) -> None:
        subject = f"{change['provider']}/{change['instance_id']}/{change['name']}"
        name, status = change["name"], change["status"]
        if status == ModelStatus.FAILED:
            self.fire(
                Rule.MODEL_START_FAILED,
                subject,
                Severity.WARNING,
                f"model {name} on {change['provider']}/{change['instance_id']} failed to start",
            )
        elif status in _SETTLED:
            self.resolve(Rule.MODEL_START_FAILED, subject, f"model {name} is {status}")

    # -- periodic checks --------------------------------------------------------------------

    async def _check_resources(self) -> None:
        while True:
            try:
                free, memory = await asyncio.to_thread(self._measure)
                self._thresholds(free, memory)
            except OSError as exc:
                log.warning("alert checks failed: %s", exc)
            await asyncio.sleep(self.settings.alert_check_s)

    def _measure(self) -> tuple[int, float]:
        directory = self.settings.resolved_models_dir
        return shutil.disk_usage(directory).free, psutil.virtual_memory().percent

    def _thresholds(self, free: int, memory_percent: float) -> None:
        directory = str(self.settings.resolved_models_dir)
        floor = self.settings.alert_disk_free_bytes
        if free < floor:
            self.fire(
                Rule.DISK_LOW,
                directory,
                Severity.WARNING,
                f"{free / 2**30:.1f} GiB free in {directory} (alert below {floor / 2**30:.1f} GiB)",
                {"free_bytes": free},
            )
        else:
            self.resolve(Rule.DISK_LOW, directory, f"{free / 2**30:.1f} GiB free in {directory}")
        ceiling = self.settings.alert_memory_percent
        if memory_percent > ceiling:
            self.fire(
                Rule.MEMORY_HIGH,
                "ram",
                Severity.WARNING,
                f"{memory_percent:.0f} % of the RAM in use (alert above {ceiling:g} %)",
                {"percent": memory_percent},
            )
        else:
            self.resolve(Rule.MEMORY_HIGH, "ram", f"{memory_percent:.0f} % of the RAM in use")

    async def close(self) -> None:
        self._loop = None
        for handle in self._down_since.values():
            handle.cancel()
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker
        await self.webhooks.close()


def _last(lines: list[str]) -> str | None:
    return lines[-1] if lines else None
