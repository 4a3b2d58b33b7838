"""The download manager through a real modelyard: tasks, queue, commands, events, store."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

from modelyard.downloads.http_engine import part_path
from modelyard.store.tables import DownloadRow, ModelSourceRow
from tests.downloads.support import (
    MiB,
    Recorder,
    add_payload,
    create,
    files_under,
    task_of,
    wait_bytes,
    wait_state,
)
from tests.fakes.fileserver import FileServer
from tests.support.app_server import RunningApp

NATIVE_FIELDS = {
    "id",
    "source",
    "model_name",
    "url",
    "filename",
    "path",
    "state",
    "downloaded",
    "total",
    "progress",
    "speed_bps",
    "eta_s",
    "error",
    "attempts",
    "started_at",
    "finished_at",
}


def snapshot_downloads(app: RunningApp) -> list[dict[str, Any]]:
    """The ``downloads`` section of the snapshot a new /ws/events client gets."""
    with connect(app.url.replace("http", "ws") + "/ws/events") as ws:
        snapshot = json.loads(ws.recv(timeout=10))
    assert snapshot["type"] == "snapshot"
    downloads: list[dict[str, Any]] = snapshot["data"]["downloads"]
    return downloads


def metric_values(text: str) -> dict[str, float]:
    """Prometheus text format: sample name with labels → value."""
    lines = (line.rpartition(" ") for line in text.splitlines() if not line.startswith("#"))
    return {name: float(value) for name, _, value in lines if name}


def test_a_url_download_completes_verified_with_its_events_log_and_source(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard()
    recorder = Recorder().attach(app.services.bus)
    payload = add_payload(file_server, "tiny-q4_k_m.gguf", 3 * MiB + 7)

    task = create(app.http, source="url", url=payload.url, mode="embed")
    assert set(task) >= NATIVE_FIELDS and task["state"] in {"queued", "downloading"}
    documented = app.http.get("/openapi.json").json()["components"]["schemas"]["DownloadView"]
    assert set(task) == set(documented["properties"])
    done = wait_state(app.http, task["id"], {"completed", "failed"})

    models = app.settings.resolved_models_dir
    assert done["state"] == "completed", done
    assert (models / payload.name).read_bytes() == payload.data
    assert files_under(models) == [payload.name]  # no part file left behind
    assert done["sha256"] == payload.sha256 and done["progress"] == 100.0
    assert done["downloaded"] == done["total"] == len(payload.data)
    assert done["path"] == str(models / payload.name) and done["mode"] == "embed"
    assert done["started_at"] and done["finished_at"] and done["attempts"] == 1
    assert recorder.states(task["id"]) == ["queued", "downloading", "verifying", "completed"]

    log = app.http.get(f"/api/downloads/{task['id']}/log").json()
    assert Path(log["path"]).parent == app.settings.logs_dir / "downloads"
    assert any("completed" in line and payload.sha256 in line for line in log["lines"])

    with app.services.db.session() as s:
        row = s.get(DownloadRow, task["id"])
        source = s.get(ModelSourceRow, ("llamacpp", "local", payload.name))
        assert row is not None and row.state == "completed" and row.sha256 == payload.sha256
        assert source is not None and source.source == payload.url
        assert source.request["sha256"] == payload.sha256 and source.request["mode"] == "embed"

    metrics = metric_values(app.http.get("/metrics").text)
    assert metrics[f'models_pull_total{{model_name="{payload.name}",status="success"}}'] == 1
    assert metrics[f'models_pull_duration_seconds_count{{model_name="{payload.name}"}}'] == 1
    assert metrics['modelyard_download_bytes_total{source="url"}'] == len(payload.data)
    assert metrics["modelyard_active_downloads"] == 0


def test_a_second_request_for_the_same_source_returns_the_same_task(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard()
    payload = add_payload(file_server, "model.gguf", 4 * MiB)
    file_server.throttle(2 * MiB)

    first = create(app.http, source="url", url=payload.url)
    again = create(app.http, status=200, source="url", url=payload.url)
    assert again["id"] == first["id"]
    wait_state(app.http, first["id"], {"completed"})
    after = create(app.http, status=200, source="url", url=payload.url)  # the file is there
    assert after["id"] == first["id"]

    assert len(app.http.get("/api/downloads").json()["downloads"]) == 1
    assert sum(r.method == "GET" for r in file_server.requests) == 1


def test_the_concurrency_limit_queues_the_rest_in_order(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard(download_concurrency=1)
    recorder = Recorder().attach(app.services.bus)
    file_server.throttle(4 * MiB)
    payloads = [add_payload(file_server, f"m{i}.gguf", 2 * MiB, seed=i) for i in range(3)]

    tasks = [create(app.http, source="url", url=p.url) for p in payloads]
    assert [t["state"] for t in tasks] == ["downloading", "queued", "queued"]
    for task in tasks:
        wait_state(app.http, task["id"], {"completed"})

    starts = [recorder.of(t["id"], "download.state")[1] for t in tasks]
    assert all(data["state"] == "downloading" for _, data in starts)
    ends = [recorder.of(t["id"], "download.state")[-1][0] for t in tasks]
    assert starts[1][0] >= ends[0] and starts[2][0] >= ends[1]  # one at a time, in order


def test_pause_keeps_the_part_and_resume_continues_from_it(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard()
    recorder = Recorder().attach(app.services.bus)
    payload = add_payload(file_server, "model.gguf", 6 * MiB)
    file_server.throttle(2 * MiB)
    task = create(app.http, source="url", url=payload.url)
    wait_bytes(app.http, task["id"], MiB)

    paused = app.http.post(f"/api/downloads/{task['id']}/pause").json()
    dest = app.settings.resolved_models_dir / payload.name
    assert paused["state"] == "paused" and paused["speed_bps"] is None
    have = part_path(dest).stat().st_size
    assert have >= MiB and not dest.exists()
    assert app.http.post(f"/api/downloads/{task['id']}/pause").status_code == 409

    file_server.clear_faults()
    resumed = app.http.post(f"/api/downloads/{task['id']}/resume").json()
    assert resumed["state"] in {"queued", "downloading"}
    done = wait_state(app.http, task["id"], {"completed", "failed"})

    assert done["state"] == "completed" and dest.read_bytes() == payload.data
    ranges = [r.header("Range") for r in file_server.requests if r.method == "GET"]
    assert ranges == [None, f"bytes={have}-"]
    states = recorder.states(task["id"])
    assert states == [
        *("queued", "downloading", "paused"),
        *("queued", "downloading", "verifying", "completed"),
    ]
    progress = [data["downloaded"] for _, data in recorder.of(task["id"], "download.progress")]
    assert progress == sorted(progress)


def test_cancel_removes_the_part_and_retry_starts_again(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard()
    payload = add_payload(file_server, "model.gguf", 6 * MiB)
    file_server.throttle(2 * MiB)
    task = create(app.http, source="url", url=payload.url)
    wait_bytes(app.http, task["id"], MiB)

    cancelled = app.http.post(f"/api/downloads/{task['id']}/cancel").json()

    models = app.settings.resolved_models_dir
    assert cancelled["state"] == "cancelled" and cancelled["finished_at"]
    assert files_under(models) == []
    assert app.http.post(f"/api/downloads/{task['id']}/resume").status_code == 409

    file_server.clear_faults()
    retried = app.http.post(f"/api/downloads/{task['id']}/retry").json()
    assert retried["state"] in {"queued", "downloading"} and retried["finished_at"] is None
    done = wait_state(app.http, task["id"], {"completed", "failed"})
    assert done["state"] == "completed" and done["sha256"] == payload.sha256
    assert [r.header("Range") for r in file_server.requests] == [None, None]


def test_a_queued_task_can_be_paused_and_cancelled_before_it_starts(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard(download_concurrency=1)
    file_server.throttle(2 * MiB)
    first = add_payload(file_server, "first.gguf", 4 * MiB)
    second = add_payload(file_server, "second.gguf", MiB, seed=2)
    running = create(app.http, source="url", url=first.url)
    waiting = create(app.http, source="url", url=second.url)
    assert waiting["state"] == "queued"
    wait_bytes(app.http, running["id"], 1)

    assert app.http.post(f"/api/downloads/{waiting['id']}/pause").json()["state"] == "paused"
    assert app.http.post(f"/api/downloads/{waiting['id']}/cancel").json()["state"] == "cancelled"
    app.http.post(f"/api/downloads/{running['id']}/cancel")

    assert [r.path for r in file_server.requests] == ["first.gguf"]
    assert task_of(app.http, waiting["id"])["started_at"] is None


def test_delete_forgets_the_task_but_never_a_completed_file(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard()
    done_payload = add_payload(file_server, "done.gguf", MiB)
    done = create(app.http, source="url", url=done_payload.url)
    wait_state(app.http, done["id"], {"completed"})
    slow = add_payload(file_server, "slow.gguf", 6 * MiB, seed=2)
    file_server.throttle(2 * MiB, path="slow.gguf")
    running = create(app.http, source="url", url=slow.url)
    wait_bytes(app.http, running["id"], MiB)

    for task in (done, running):
        assert app.http.delete(f"/api/downloads/{task['id']}").status_code == 204
        assert app.http.get(f"/api/downloads/{task['id']}").json()["code"] == "download_not_found"
        assert not (app.settings.logs_dir / "downloads" / f"{task['id']}.log").exists()

    assert files_under(app.settings.resolved_models_dir) == ["done.gguf"]
    assert app.http.get("/api/downloads").json() == {"downloads": []}
    with app.services.db.session() as s:
        assert s.query(DownloadRow).count() == 0


def test_progress_events_are_paced_and_the_snapshot_lists_active_tasks(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard()
    recorder = Recorder().attach(app.services.bus)
    payload = add_payload(file_server, "model.gguf", 5 * MiB)
    file_server.throttle(2 * MiB)
    task = create(app.http, source="url", url=payload.url)
    wait_bytes(app.http, task["id"], MiB)

    assert [t["id"] for t in snapshot_downloads(app)] == [task["id"]]
    wait_state(app.http, task["id"], {"completed"})
    assert snapshot_downloads(app) == []

    progress = recorder.of(task["id"], "download.progress")
    assert len(progress) >= 3
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(progress)]
    assert min(gaps) >= 0.24  # at most one progress event every 250 ms per task
    speeds = [data["speed_bps"] for _, data in progress if data["speed_bps"]]
    assert speeds and all(s > 0 for s in speeds)
    assert any(data["eta_s"] is not None for _, data in progress)


def test_commands_on_unknown_or_finished_tasks_are_clear_errors(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard()
    payload = add_payload(file_server, "model.gguf", MiB)
    task = create(app.http, source="url", url=payload.url)
    wait_state(app.http, task["id"], {"completed"})

    for action in ("pause", "resume", "cancel", "retry"):
        resp = app.http.post(f"/api/downloads/{task['id']}/{action}")
        assert resp.status_code == 409 and resp.json()["code"] == "invalid_download_state"
        missing = app.http.post(f"/api/downloads/nope/{action}")
        assert missing.status_code == 404 and missing.json()["code"] == "download_not_found"
    assert app.http.delete("/api/downloads/nope").status_code == 404
    assert app.http.get("/api/downloads?state=sideways").status_code == 422
    listed = app.http.get("/api/downloads?state=completed").json()["downloads"]
    assert [t["id"] for t in listed] == [task["id"]]


def test_a_busy_destination_is_refused(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard()
    file_server.throttle(2 * MiB)
    one = add_payload(file_server, "a/model.gguf", 4 * MiB)
    two = add_payload(file_server, "b/model.gguf", 4 * MiB, seed=2)
    create(app.http, source="url", url=one.url)

    resp = app.http.post("/api/downloads", json={"source": "url", "url": two.url})

    assert resp.status_code == 409 and resp.json()["code"] == "destination_busy"


def test_an_existing_file_is_reused_only_when_its_checksum_proves_it(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard()
    payload = add_payload(file_server, "model.gguf", MiB)
    dest = app.settings.resolved_models_dir / payload.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(payload.data)

    unproven = app.http.post("/api/downloads", json={"source": "url", "url": payload.url})
    assert unproven.status_code == 409 and unproven.json()["code"] == "destination_exists"

    task = create(app.http, source="url", url=payload.url, sha256=payload.sha256)
    done = wait_state(app.http, task["id"], {"completed", "failed"})
    assert done["state"] == "completed" and file_server.requests == []
