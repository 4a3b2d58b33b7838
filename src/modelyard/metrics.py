"""Prometheus metrics, one registry per app so several apps can live in one process (tests)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_STATES = ("UNKNOWN", "STOPPED", "STARTING", "RUNNING", "DEGRADED", "ERROR")


@dataclass(frozen=True)
class ModelSeries:
    """One model's series of the gateway's metrics, each labelled once: ``labels()`` costs
    about 5 µs a call, and every gateway request made five of them."""

    in_flight: Gauge
    queue_wait: Histogram
    ttft: Histogram


class Metrics:
    """Every metric modelyard exports at ``GET /metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.provider_state = Gauge(
            "modelyard_provider_state",
            "1 for the instance's current state, 0 for the others",
            ["provider", "instance", "state"],
            registry=r,
        )
        self.provider_up = Gauge(
            "modelyard_provider_up",
            "1 when the instance is RUNNING",
            ["provider", "instance"],
            registry=r,
        )
        self.instance_exits = Counter(
            "modelyard_instance_exits_total",
            "Exits of managed processes that modelyard did not ask for",
            ["provider", "instance"],
            registry=r,
        )
        self.instance_restarts = Counter(
            "modelyard_instance_restarts_total",
            "Restarts of managed processes by their restart policy",
            ["provider", "instance"],
            registry=r,
        )
        self.alerts_firing = Gauge(
            "modelyard_alerts_firing", "Alerts firing now, per rule", ["rule"], registry=r
        )
        self.check_duration = Histogram(
            "modelyard_provider_check_duration_seconds",
            "Duration of one status check layer",
            ["provider", "layer"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
            registry=r,
        )
        self.pull_total = Counter(
            "models_pull_total", "Finished model downloads", ["model_name", "status"], registry=r
        )
        self.pull_duration = Histogram(
            "models_pull_duration_seconds",
            "Duration of finished model downloads",
            ["model_name"],  # seed 000's label
            buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400),
            registry=r,
        )
        self.download_bytes = Counter(
            "modelyard_download_bytes_total", "Bytes written by downloads", ["source"], registry=r
        )
        self.active_downloads = Gauge(
            "modelyard_active_downloads", "Downloads in the downloading state", registry=r
        )
        self.chat_tokens = Counter(
            "modelyard_chat_tokens_total", "Tokens generated in chats", ["provider"], registry=r
        )

        latency = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
        self.gateway_requests = Counter(
            "modelyard_gateway_requests_total",
            "Gateway requests by the model they reached and status (499: the client left)",
            ["model", "status"],
            registry=r,
        )
        self.gateway_ttft = Histogram(
            "modelyard_gateway_ttft_seconds",
            "Gateway: arrival to the first bytes of the answer (queue and load included)",
            ["model"],
            buckets=latency,
            registry=r,
        )
        self.gateway_queue_wait = Histogram(
            "modelyard_gateway_queue_wait_seconds",
            "Gateway: arrival to the request's turn at its model (a load included)",
            ["model"],
            buckets=latency,
            registry=r,
        )
        self.model_load_duration = Histogram(
            "modelyard_model_load_duration_seconds",
            "Loads decided by the scheduler, from start to loaded",
            ["model"],
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.model_evictions = Counter(
            "modelyard_model_evictions_total",
            "Models that left memory, by reason (ttl, evicted, requested, died, runtime…)",
            ["model", "reason"],
            registry=r,
        )
        self.model_in_flight = Gauge(
            "modelyard_model_in_flight", "Requests a model is answering now", ["model"], registry=r
        )

        # Never removed (a model's gateway series outlive it, as Prometheus expects).
        self._model_series: dict[str, ModelSeries] = {}
        self._gateway_requests: dict[tuple[str, int], Counter] = {}

    def model_series(self, model: str) -> ModelSeries:
        series = self._model_series.get(model)
        if series is None:
            series = ModelSeries(
                self.model_in_flight.labels(model),
                self.gateway_queue_wait.labels(model),
                self.gateway_ttft.labels(model),
            )
            self._model_series[model] = series
        return series

    def gateway_request(self, model: str, status: int) -> None:
        """Count one gateway request by the model it reached and its status."""
        counter = self._gateway_requests.get((model, status))
        if counter is None:
            counter = self.gateway_requests.labels(model, str(status))
            self._gateway_requests[(model, status)] = counter
        counter.inc()

    def set_provider_state(self, provider: str, instance: str, state: str) -> None:
        for name in _STATES:
            self.provider_state.labels(provider, instance, name).set(1 if name == state else 0)
        self.provider_up.labels(provider, instance).set(1 if state == "RUNNING" else 0)

    def forget_instance(self, provider: str, instance: str) -> None:
        for name in _STATES:
            self.provider_state.remove(provider, instance, name)
        self.provider_up.remove(provider, instance)
        self.instance_exits.remove(provider, instance)
        self.instance_restarts.remove(provider, instance)

    def render(self) -> bytes:
        return generate_latest(self.registry)
