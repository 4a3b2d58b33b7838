"""History kept by modelyard itself: a sample of every series every ``history_sample_s``
(kept an hour), averaged into 5-minute points (kept a week), in the store's ``samples`` table.

Sampling reads only what modelyard already holds in memory — the latest provider statuses,
the metrics' counters, psutil's CPU and memory counters — and writes in a thread, so no request
ever waits for it. Series are named ``provider.<kind>/<id>.up|latency_ms|models_loaded``,
``system.cpu_percent|ram_used_bytes|ram_percent|disk_free_bytes``, ``downloads.bytes_per_s``,
``chat.tokens_per_s``, and the gateway's answers overall and per model (monitoring/answers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from dataclasses import dataclass

import psutil
from sqlalchemy import Insert, delete, func, insert, select
from sqlalchemy.orm import Session

from modelyard.config import Settings
from modelyard.metrics import Metrics
from modelyard.monitoring.answers import AnswerTally
from modelyard.runtimes.health import HealthChecker
from modelyard.store.db import Database
from modelyard.store.tables import SampleRow

log = logging.getLogger(__name__)
FINE, COARSE = 0, 1
COARSE_S = 300
FINE_KEEP_S = 3600
COARSE_KEEP_S = 7 * 86400
RANGES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400}


@dataclass(frozen=True)
class Point:
    ts: int
    value: float


def _replacing(session: Session) -> Insert:
    """An insert that replaces a point already there (two samples within one second)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        statement = pg_insert(SampleRow)
        return statement.on_conflict_do_update(
            index_elements=["series", "resolution", "ts"],
            set_={"value": statement.excluded.value},
        )
    return insert(SampleRow).prefix_with("OR REPLACE")  # SQLite


class HistoryStore:
    """The samples table: write, downsample, prune, read."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def write(self, ts: int, values: dict[str, float]) -> None:
        if not values:
            return
        rows = [{"series": k, "resolution": FINE, "ts": ts, "value": v} for k, v in values.items()]
        with self.db.session() as s:
            s.execute(_replacing(s), rows)

    def downsample(self, now: int) -> None:
        """Average the fine points of every complete 5-minute bucket not yet averaged, then
        drop fine points older than an hour and coarse ones older than a week."""
        end = now - now % COARSE_S
        with self.db.session() as s:
            done = s.scalar(select(func.max(SampleRow.ts)).where(SampleRow.resolution == COARSE))
            start = (done + COARSE_S) if done is not None else 0
            bucket = (SampleRow.ts - SampleRow.ts % COARSE_S).label("bucket")
            averaged = s.execute(
                select(SampleRow.series, bucket, func.avg(SampleRow.value))
                .where(SampleRow.resolution == FINE, SampleRow.ts >= start, SampleRow.ts < end)
                .group_by(SampleRow.series, bucket)
            ).all()
            if averaged:
                s.execute(
                    _replacing(s),
                    [
                        {"series": name, "resolution": COARSE, "ts": ts, "value": value}
                        for name, ts, value in averaged
                    ],
                )
            s.execute(
                delete(SampleRow).where(
                    SampleRow.resolution == FINE, SampleRow.ts < now - FINE_KEEP_S
                )
            )
            s.execute(
                delete(SampleRow).where(
                    SampleRow.resolution == COARSE, SampleRow.ts < now - COARSE_KEEP_S
                )
            )

    def read(self, names: list[str], span_s: int) -> tuple[int, dict[str, list[Point]]]:
        """The points of the last ``span_s`` seconds: the samples for up to an hour, else the
        5-minute averages."""
        resolution = FINE if span_s <= FINE_KEEP_S else COARSE
        since = int(time.time()) - span_s
        found: dict[str, list[Point]] = {name: [] for name in names}
        with self.db.session() as s:
            rows = s.execute(
                select(SampleRow.series, SampleRow.ts, SampleRow.value)
                .where(
                    SampleRow.series.in_(names),
                    SampleRow.resolution == resolution,
                    SampleRow.ts >= since,
                )
                .order_by(SampleRow.series, SampleRow.ts)
            )
            for name, ts, value in rows:
                found[name].append(Point(ts, value))
        return resolution, found

    def names(self) -> list[str]:
        with self.db.session() as s:
            return list(s.scalars(select(SampleRow.series).distinct().order_by(SampleRow.series)))


class HistorySampler:
    """Samples every ``history_sample_s`` in the background; downsamples every 5 minutes."""

    def __init__(
        self,
        settings: Settings,
        store: HistoryStore,
        health: HealthChecker,
        metrics: Metrics,
        answers: AnswerTally,
    ) -> None:
        self.settings = settings
        self.store = store
        self.health = health
        self.metrics = metrics
        self.answers = answers
        self._task: asyncio.Task[None] | None = None
        self._counters: dict[str, tuple[float, float]] = {}  # name -> (monotonic, total)
        self._downsampled = 0

    def start(self) -> None:
        if self.settings.history and self._task is None:
            psutil.cpu_percent(None)  # the first call starts the measurement
            self._task = asyncio.create_task(self._run(), name="history-sampler")

    def sample(self) -> dict[str, float]:
        """The values now, from memory (the statuses as last checked, counters, psutil)."""
        values: dict[str, float] = {}
        for status in self.health.cached():
            name = f"provider.{status.provider}/{status.instance_id}"
            values[f"{name}.up"] = 1.0 if status.state.value == "RUNNING" else 0.0
            if status.latency_ms is not None:
                values[f"{name}.latency_ms"] = status.latency_ms
            if status.models_loaded is not None:
                values[f"{name}.models_loaded"] = float(status.models_loaded)
        memory = psutil.virtual_memory()
        values["system.cpu_percent"] = psutil.cpu_percent(None)
        values["system.ram_used_bytes"] = float(memory.total - memory.available)
        values["system.ram_percent"] = memory.percent
        with contextlib.suppress(OSError):
            free = shutil.disk_usage(self.settings.resolved_models_dir).free
            values["system.disk_free_bytes"] = float(free)
        values["downloads.bytes_per_s"] = self._rate("downloads", "modelyard_download_bytes")
        values["chat.tokens_per_s"] = self._rate("chat", "modelyard_chat_tokens")
        values.update(self.answers.take())
        return values

    def _rate(self, key: str, metric: str) -> float:
        total = sum(
            sample.value
            for family in self.metrics.registry.collect()
            if family.name == metric
            for sample in family.samples
            if sample.name.endswith("_total")
        )
        now = time.monotonic()
        before = self._counters.get(key)
        self._counters[key] = (now, total)
        if before is None or now <= before[0]:
            return 0.0
        return max(0.0, total - before[1]) / (now - before[0])

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.history_sample_s)
            try:
                now = int(time.time())
                values = self.sample()
                await asyncio.to_thread(self.store.write, now, values)
                if now - self._downsampled >= COARSE_S:
                    await asyncio.to_thread(self.store.downsample, now)
                    self._downsampled = now
            except Exception:  # a full disk or a locked database: the next round tries again
                log.exception("history sampling failed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
