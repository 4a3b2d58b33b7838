"""History kept by modelyard: samples written, averaged into 5-minute points, pruned, and read
back through the API as a chart would."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from modelyard.instance_config import InstanceConfig
from modelyard.monitoring.history import COARSE, COARSE_S, FINE, HistoryStore
from modelyard.store.db import Database
from modelyard.store.tables import SampleRow
from tests.support.app_server import RunningApp
from tests.support.catalog import assert_problem
from tests.support.servers import closed_port
from tests.support.waiting import wait_until


def test_samples_are_averaged_and_pruned(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'h.db'}")
    db.migrate()
    store = HistoryStore(db)
    now = int(time.time())
    start = now - 2 * 3600
    for ts in range(start, now, 10):  # two hours, every 10 s: 0, 1, 2 … within each bucket
        store.write(ts, {"system.cpu_percent": float(ts % COARSE_S // 10), "x.up": 1.0})
    store.downsample(now)

    with db.session() as s:
        fine = [r.ts for r in s.query(SampleRow).filter_by(resolution=FINE, series="x.up")]
        coarse = s.query(SampleRow).filter_by(resolution=COARSE, series="system.cpu_percent")
        averages = {r.ts: r.value for r in coarse}
    assert min(fine) >= now - 3600  # fine points older than an hour are gone
    whole = [ts for ts in averages if ts >= start - start % COARSE_S + COARSE_S]
    assert whole and all(averages[ts] == 14.5 for ts in whole)  # mean of 0..29
    assert max(averages) < now - now % COARSE_S  # only complete buckets

    store.downsample(now + 8 * 86400)  # a week later: everything has aged out
    with db.session() as s:
        assert s.query(SampleRow).count() == 0
    db.dispose()


def test_the_api_serves_series(modelyard: Callable[..., RunningApp]) -> None:
    off = InstanceConfig(provider="ollama", id="off", base_url=f"http://127.0.0.1:{closed_port()}")
    app = modelyard([off], history_sample_s=1)

    def points(name: str) -> list[list[float]]:
        answer = app.http.get("/api/history", params={"series": name, "range": "1h"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["resolution_s"] == 1
        found: list[list[float]] = body["series"][name]
        return found

    wait_until(lambda: len(points("system.cpu_percent")) >= 2, "two samples")
    names = app.http.get("/api/history/series").json()["series"]
    assert {"provider.ollama/off.up", "system.ram_percent", "downloads.bytes_per_s"} <= set(names)
    assert {value for _, value in points("provider.ollama/off.up")} == {0.0}
    week = app.http.get("/api/history", params={"series": "system.ram_percent", "range": "7d"})
    assert week.json()["resolution_s"] == COARSE_S
    assert_problem(
        app.http.get("/api/history", params={"series": "x", "range": "1y"}), 422, "validation_error"
    )
    assert_problem(app.http.get("/api/history"), 422, "validation_error")
