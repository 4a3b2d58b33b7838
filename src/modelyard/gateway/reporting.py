"""What the scheduler and the gateway show: ``model.schedule`` events, metrics, the request
log. ``ScheduleReporter`` is the scheduler's ``on_change``: called on the event loop with a
model's new view on every change, so it stays cheap (the event coalesces per model)."""

from __future__ import annotations

import logging
import time

from modelyard.events import GATEWAY_REQUEST, MODEL_SCHEDULE, EventBus, GatewayRequest
from modelyard.gateway.scheduling import Eviction, ModelState, ModelView
from modelyard.metrics import Metrics

log = logging.getLogger("modelyard.gateway.requests")


class ScheduleReporter:
    """Publishes each model's scheduling state and counts loads and evictions."""

    def __init__(self, bus: EventBus, metrics: Metrics) -> None:
        self.bus = bus
        self.metrics = metrics
        self._loading_since: dict[str, float] = {}
        self._evictions: dict[str, Eviction] = {}

    def __call__(self, view: ModelView) -> None:
        key = view.key
        if view.state is ModelState.LOADING:
            self._loading_since.setdefault(key, time.monotonic())
        else:
            began = self._loading_since.pop(key, None)
            if began is not None and view.state is ModelState.LOADED:
                self.metrics.model_load_duration.labels(key).observe(time.monotonic() - began)
        eviction = view.last_eviction
        if eviction is not None and self._evictions.get(key) is not eviction:
            self._evictions[key] = eviction
            self.metrics.model_evictions.labels(key, eviction.reason).inc()
        self.metrics.model_series(key).in_flight.set(view.in_flight)
        self.bus.publish(MODEL_SCHEDULE, view.wire(), key=key)

    def request(self, entry: GatewayRequest) -> None:
        """One finished gateway request: the log line, metrics, the event."""
        _log(entry)
        key = entry["key"]
        self.metrics.gateway_request(key, entry["status"])
        series = self.metrics.model_series(key)
        series.queue_wait.observe(entry["queue_ms"] / 1000)
        if entry["ttft_ms"] is not None:
            series.ttft.observe(entry["ttft_ms"] / 1000)
        self.bus.publish(GATEWAY_REQUEST, entry)

    def refusal(self, entry: GatewayRequest) -> None:
        """A request refused before it asked for a turn (by the guards, or for its body, its
        model or its key's limits): the log line, the count by status, the event. It waited
        for nothing, so the wait and TTFT histograms are left alone."""
        _log(entry)
        self.metrics.gateway_request(entry["key"], entry["status"])
        self.bus.publish(GATEWAY_REQUEST, entry)


def _log(entry: GatewayRequest) -> None:
    log.info(
        "%s model=%s key=%s caller=%s key_prefix=%s status=%s code=%s queue_ms=%s load=%s "
        "ttft_ms=%s tokens=%s/%s%s",
        entry["route"],
        _printable(entry["model"]),
        entry["key"] or "-",
        entry["caller"],
        entry["key_prefix"] or "-",
        entry["status"],
        entry["code"] or "-",
        entry["queue_ms"],
        "waited" if entry["waited_for_load"] else "no",
        entry["ttft_ms"],
        entry["prompt_tokens"],
        entry["completion_tokens"],
        " client_gone" if entry["client_gone"] else "",
    )


def _printable(text: str) -> str:
    """A name as the client sent it, its control characters escaped: one request, one line."""
    return text if text.isprintable() else repr(text)[1:-1]
