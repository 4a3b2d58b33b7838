"""History: 50 instances sampled for a simulated week (every series modelyard keeps, at the
default 10 s, downsampled as the sampler does), with the gateway's answers overall and the
most per-model series a sample can have (``MODEL_SERIES_MAX`` models answering all week), the
store's size, and a week's chart answered through the API — next to an hour's chart of one
series in the same run."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import httpx
from sqlalchemy import insert
from tests.support.app_server import make_settings, running_app

from modelyard.monitoring.answers import MODEL_SERIES_MAX, OVERALL, model_series
from modelyard.monitoring.history import COARSE_S, FINE, HistoryStore
from modelyard.store.db import Database
from modelyard.store.tables import SampleRow

TITLE = "History: 50 instances over a simulated week; a week's chart"
INSTANCES = 50
SAMPLE_S = 10
QUERIES = 200


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(workdir: Path) -> str:
    settings = make_settings(workdir, [], history=False, monitor=False)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    db.migrate()
    store = HistoryStore(db)
    now = int(time.time())
    start = now - 7 * 86400
    names = [f"provider.llamacpp/i{n}.{m}" for n in range(INSTANCES) for m in ("up", "latency_ms")]
    names += ["system.cpu_percent", "system.ram_percent", "downloads.bytes_per_s"]
    names += OVERALL
    names += [name for m in range(MODEL_SERIES_MAX) for name in model_series(f"llamacpp/i{m}/m")]
    began = time.perf_counter()
    bucket_start = start - start % COARSE_S
    for bucket in range(bucket_start, now, COARSE_S):
        # A bucket's 30 samples in one transaction (the sampler writes each on its own; the
        # rows, the averaging and the pruning are the same), then the 5-minute downsampling.
        rows = [
            {"series": name, "resolution": FINE, "ts": ts, "value": float(ts % 97)}
            for ts in range(bucket, min(bucket + COARSE_S, now), SAMPLE_S)
            for name in names
        ]
        with db.session() as s:
            s.execute(insert(SampleRow), rows)
        store.downsample(bucket + COARSE_S)
    store.downsample(now)
    fill_s = time.perf_counter() - began
    db.dispose()
    db_path = settings.data_dir / "modelyard.db"
    size = sum(p.stat().st_size for p in db_path.parent.glob("modelyard.db*"))

    with running_app(settings) as app, httpx.Client(base_url=app.url, timeout=30) as http:

        def timed(params: dict[str, str]) -> list[float]:
            took = []
            for _ in range(QUERIES):
                began = time.perf_counter()
                answer = http.get("/api/history", params=params)
                took.append(time.perf_counter() - began)
                assert answer.status_code == 200
            return took

        week_one = {"series": "provider.llamacpp/i7.up", "range": "7d"}
        points = len(http.get("/api/history", params=week_one).json()["series"][week_one["series"]])
        week = timed(week_one)
        hour = timed({"series": "provider.llamacpp/i7.up", "range": "1h"})
    p99_ms = _pct(week, 0.99) * 1000
    return "\n".join(
        [
            f"## {TITLE}",
            "",
            f"{len(names)} series ({INSTANCES} instances × up and latency, 3 system series, "
            f"the gateway's answers, tokens/s and TTFT overall and for {MODEL_SERIES_MAX} "
            "models, the most a sample keeps), "
            f"a sample every {SAMPLE_S} s for 7 days, written a 5-minute bucket at a time and "
            f"downsampled and pruned as the sampler does ({fill_s:.0f} s to fill).",
            "",
            "| figure | value | vs |",
            "|---|---|---|",
            f"| store size after the week | {size / 2**20:.1f} MiB | {size / (50 * 2**20):.2f}× "
            "the 50 MB budget |",
            f"| a week's chart of one series ({points} points): p50 / p99 | "
            f"{statistics.median(week) * 1000:.1f} / {p99_ms:.1f} ms | {p99_ms / 50:.2f}× the "
            "50 ms budget at p99 |",
            f"| an hour's chart of the same series: p50 / p99 | "
            f"{statistics.median(hour) * 1000:.1f} / {_pct(hour, 0.99) * 1000:.1f} ms | the "
            f"week's p50 is {statistics.median(week) / statistics.median(hour):.2f}× it |",
            "",
        ]
    )
