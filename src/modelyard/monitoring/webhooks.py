"""Delivering alerts to webhooks: a body each kind of receiver understands, signed with
HMAC-SHA256, retried with a doubling backoff, and every attempt kept in a delivery log.

Each webhook has its own queue and worker, so a receiver that is down delays only its own
deliveries, and a resolved alert never overtakes the firing one it resolves.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel

from modelyard.clock import iso, utcnow
from modelyard.config import Settings, WebhookConfig, WebhookFormat
from modelyard.monitoring.alert_types import Alert, AlertStatus

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Modelyard-Signature"
EVENT_HEADER = "X-Modelyard-Event"
DELIVERY_LOG = 200  # attempts kept


class Delivery(BaseModel):
    """One attempt to deliver one alert to one webhook."""

    webhook: str  # the URL without its query (a token may be there)
    alert_id: str
    status: AlertStatus
    attempt: int
    at: str
    ok: bool
    http_status: int | None
    error: str | None
    next_retry_s: float | None  # None: delivered, or given up


def format_of(hook: WebhookConfig) -> WebhookFormat:
    if hook.format is not WebhookFormat.AUTO:
        return hook.format
    host = (urlsplit(hook.url).hostname or "").lower()
    if host == "hooks.slack.com":
        return WebhookFormat.SLACK
    if host in ("discord.com", "discordapp.com") and "/api/webhooks/" in hook.url:
        return WebhookFormat.DISCORD
    return WebhookFormat.GENERIC


def headline(alert: Alert) -> str:
    mark = "RESOLVED" if alert.status is AlertStatus.RESOLVED else alert.severity.upper()
    return f"[{mark}] {alert.summary}"


@dataclass(frozen=True)
class Request:
    body: bytes
    headers: dict[str, str]


def render(hook: WebhookConfig, alert: Alert) -> Request:
    """The body and headers for this receiver, signed when the webhook has a secret."""
    kind = format_of(hook)
    headers = {EVENT_HEADER: f"alert.{alert.status.value}", "User-Agent": "modelyard"}
    text = headline(alert)
    if alert.details:
        text += "\n" + "\n".join(f"{k}: {v}" for k, v in alert.details.items() if v is not None)
    if kind is WebhookFormat.NTFY:
        body = text.encode()
        headers |= {
            "Content-Type": "text/plain; charset=utf-8",
            "Title": f"modelyard: {alert.rule}",
            "Priority": "high" if alert.status is AlertStatus.FIRING else "default",
            "Tags": "warning" if alert.status is AlertStatus.FIRING else "white_check_mark",
        }
    else:
        if kind is WebhookFormat.SLACK:
            payload: object = {"text": text}
        elif kind is WebhookFormat.DISCORD:
            payload = {"content": text[:2000]}
        else:
            payload = alert.model_dump(mode="json")
        body = json.dumps(payload).encode()
        headers["Content-Type"] = "application/json"
    if hook.secret:
        digest = hmac.new(hook.secret.encode(), body, hashlib.sha256).hexdigest()
        headers[SIGNATURE_HEADER] = f"sha256={digest}"
    return Request(body, headers)


def _shown(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class Webhooks:
    """A queue and a worker per configured webhook."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hooks = list(settings.webhooks)
        self.deliveries: deque[Delivery] = deque(maxlen=DELIVERY_LOG)
        self._queues: list[asyncio.Queue[Alert]] = []
        self._workers: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        if not self.hooks or self._workers:
            return
        self._loop = asyncio.get_running_loop()
        self._client = httpx.AsyncClient(
            timeout=self.settings.webhook_timeout_s, follow_redirects=False
        )
        for hook in self.hooks:
            queue: asyncio.Queue[Alert] = asyncio.Queue()
            self._queues.append(queue)
            self._workers.append(asyncio.create_task(self._work(hook, queue)))

    def send(self, alert: Alert) -> None:
        """Queue the alert for every webhook (from any thread; nothing waits for delivery)."""
        loop = self._loop
        if loop is None:
            return
        for queue in self._queues:
            with contextlib.suppress(RuntimeError):  # the loop closed: modelyard is exiting
                loop.call_soon_threadsafe(queue.put_nowait, alert)

    async def _work(self, hook: WebhookConfig, queue: asyncio.Queue[Alert]) -> None:
        while True:
            alert = await queue.get()
            await self._deliver(hook, alert)

    async def _deliver(self, hook: WebhookConfig, alert: Alert) -> None:
        assert self._client is not None
        request = render(hook, alert)
        attempts = self.settings.webhook_attempts
        for attempt in range(1, attempts + 1):
            started = time.monotonic()
            status: int | None = None
            error: str | None = None
            try:
                answer = await self._client.post(
                    hook.url, content=request.body, headers=request.headers
                )
                status = answer.status_code
                if not answer.is_success:
                    error = f"HTTP {status}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            delay = min(
                self.settings.webhook_backoff_s * 2 ** (attempt - 1),
                self.settings.webhook_backoff_max_s,
            )
            retry = None if error is None or attempt == attempts else delay
            self.deliveries.append(
                Delivery(
                    webhook=_shown(hook.url),
                    alert_id=alert.id,
                    status=alert.status,
                    attempt=attempt,
                    at=iso(utcnow()) or "",
                    ok=error is None,
                    http_status=status,
                    error=error,
                    next_retry_s=retry,
                )
            )
            if error is None:
                log.info(
                    "alert %s (%s) delivered to %s in %.0f ms",
                    alert.id,
                    alert.status.value,
                    _shown(hook.url),
                    (time.monotonic() - started) * 1000,
                )
                return
            if retry is None:
                log.error(
                    "alert %s (%s) not delivered to %s after %d attempts: %s",
                    alert.id,
                    alert.status.value,
                    _shown(hook.url),
                    attempts,
                    error,
                )
                return
            await asyncio.sleep(retry)

    async def close(self) -> None:
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        if self._client is not None:
            await self._client.aclose()
