"""Faults through the whole manager: each ends in the right state with the right file on disk."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psutil

from modelyard.downloads.http_engine import CHUNK_BYTES, part_path
from tests.downloads.support import (
    MiB,
    add_payload,
    create,
    files_under,
    wait_bytes,
    wait_state,
)
from tests.fakes.fileserver import FileServer
from tests.fakes.huggingface import FakeHub
from tests.support.app_server import RunningApp
from tests.support.waiting import wait_until

QUICK = {"download_backoff_s": 0.05}  # retries without the production waits


def log_lines(app: RunningApp, task_id: str) -> list[str]:
    lines: list[str] = app.http.get(f"/api/downloads/{task_id}/log").json()["lines"]
    return lines


def get_ranges(server: FileServer) -> list[str | None]:
    return [r.header("Range") for r in server.requests if r.method == "GET"]


def test_connection_cut_three_times_completes_with_the_right_sha256(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard(**QUICK)
    payload = add_payload(file_server, "model.gguf", 5 * MiB + 1234)
    file_server.cut(after_bytes=1_500_000, times=3)

    task = create(app.http, source="url", url=payload.url, sha256=payload.sha256)
    done = wait_state(app.http, task["id"], {"completed", "failed"})

    assert done["state"] == "completed" and done["sha256"] == payload.sha256
    assert done["attempts"] == 4
    dest = app.settings.resolved_models_dir / payload.name
    assert dest.read_bytes() == payload.data and not part_path(dest).exists()
    assert get_ranges(file_server) == [None, "bytes=1500000-", "bytes=3000000-", "bytes=4500000-"]
    assert sum("connection_error" in line for line in log_lines(app, task["id"])) == 3


def test_a_server_ignoring_range_on_resume_restarts_and_is_right(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard(**QUICK)
    payload = add_payload(file_server, "model.gguf", 5 * MiB)
    file_server.cut(after_bytes=2 * MiB, times=1)
    file_server.ignore_range()

    task = create(app.http, source="url", url=payload.url, sha256=payload.sha256)
    done = wait_state(app.http, task["id"], {"completed", "failed"})

    assert done["state"] == "completed" and done["attempts"] == 2
    assert (app.settings.resolved_models_dir / payload.name).read_bytes() == payload.data
    assert get_ranges(file_server) == [None, f"bytes={2 * MiB}-"]
    assert [r.status for r in file_server.requests] == [200, 200]
    assert any("starting over" in line for line in log_lines(app, task["id"]))


def test_a_stall_is_retried_and_resumes(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard(download_stall_s=0.5, **QUICK)
    payload = add_payload(file_server, "model.gguf", 4 * MiB)
    file_server.stall(after_bytes=MiB + 10, seconds=30)

    task = create(app.http, source="url", url=payload.url)
    done = wait_state(app.http, task["id"], {"completed", "failed"})

    assert done["state"] == "completed" and done["sha256"] == payload.sha256
    assert done["attempts"] == 2
    assert get_ranges(file_server)[1] is not None  # resumed, not started over
    assert any("stalled" in line for line in log_lines(app, task["id"]))


def test_server_errors_are_retried(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard(**QUICK)
    payload = add_payload(file_server, "model.gguf", MiB)
    file_server.fail(503, times=2)

    task = create(app.http, source="url", url=payload.url)
    done = wait_state(app.http, task["id"], {"completed", "failed"})

    assert done["state"] == "completed" and done["attempts"] == 3


def test_404_fails_at_once_without_retries_or_a_part_file(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard(**QUICK)

    task = create(app.http, source="url", url=file_server.url_for("missing.gguf"))
    done = wait_state(app.http, task["id"], {"completed", "failed"})

    assert done["state"] == "failed" and done["error_code"] == "http_error"
    assert "404" in done["error"] and done["attempts"] == 1
    assert len(file_server.requests) == 1
    assert files_under(app.settings.resolved_models_dir) == []
    metrics = app.http.get("/metrics").text
    assert 'models_pull_total{model_name="missing.gguf",status="failed"} 1.0' in metrics


def test_a_checksum_mismatch_fails_and_leaves_nothing_under_the_final_name(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard(**QUICK)
    payload = add_payload(file_server, "model.gguf", 3 * MiB)
    file_server.corrupt()

    task = create(app.http, source="url", url=payload.url, sha256=payload.sha256)
    done = wait_state(app.http, task["id"], {"completed", "failed"})

    assert done["state"] == "failed" and done["error_code"] == "checksum_mismatch"
    assert done["attempts"] == 1 and len(file_server.requests) == 1
    assert files_under(app.settings.resolved_models_dir) == []


def test_a_file_too_big_for_the_limit_is_refused(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard(download_max_bytes=MiB)
    payload = add_payload(file_server, "model.gguf", 2 * MiB)

    task = create(app.http, source="url", url=payload.url)
    done = wait_state(app.http, task["id"], {"completed", "failed"})

    assert done["state"] == "failed" and done["error_code"] == "too_large"
    assert files_under(app.settings.resolved_models_dir) == []


def test_a_disk_too_small_fails_before_writing(
    modelyard: Callable[..., RunningApp], file_server: FileServer, small_disk: Path
) -> None:
    app = modelyard(models_dir=small_disk, disk_margin_bytes=0)
    payload = add_payload(file_server, "model.gguf", 5 * MiB)

    task = create(app.http, source="url", url=payload.url)
    done = wait_state(app.http, task["id"], {"completed", "failed"})

    assert done["state"] == "failed" and done["error_code"] == "insufficient_disk_space"
    assert done["downloaded"] == 0 and done["attempts"] == 1
    assert files_under(small_disk) == []
    assert file_server.requests[0].sent < MiB  # refused after the headers, not mid-way


def test_forcing_past_the_disk_check_still_fails_clearly_and_frees_the_disk(
    modelyard: Callable[..., RunningApp], file_server: FileServer, small_disk: Path
) -> None:
    app = modelyard(models_dir=small_disk)
    payload = add_payload(file_server, "model.gguf", 5 * MiB)

    task = create(app.http, source="url", url=payload.url, force=True)
    done = wait_state(app.http, task["id"], {"completed", "failed"})

    assert done["state"] == "failed" and done["error_code"] == "insufficient_disk_space"
    assert files_under(small_disk) == []


def test_a_hub_file_that_cannot_fit_is_refused_up_front(
    modelyard: Callable[..., RunningApp], fake_hub: FakeHub, small_disk: Path
) -> None:
    fake_hub.add_repo("owner/big-GGUF", {"big-Q4_K_M.gguf": b"x" * (2 * MiB)})
    app = modelyard(models_dir=small_disk, hf_endpoint=fake_hub.endpoint, disk_margin_bytes=0)

    resp = app.http.post(
        "/api/downloads", json={"source": "hf", "url": "hf://owner/big-GGUF/big-Q4_K_M.gguf"}
    )

    assert resp.status_code == 507 and resp.json()["code"] == "insufficient_disk_space"
    assert app.http.get("/api/downloads").json() == {"downloads": []}
    assert files_under(small_disk) == [] and fake_hub.cdn.requests == []


def download_workers(*, busy: bool = True) -> list[psutil.Process]:
    """This process's download workers: by default those with a job (a worker opens its task's
    log when it gets one; an idle one has no file open)."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            worker = "modelyard.downloads.worker" in " ".join(p.cmdline())
            if worker and bool(p.open_files()) == busy:
                found.append(p)
        except psutil.NoSuchProcess:
            pass  # it exited meanwhile
    return found


def test_a_worker_killed_mid_download_fails_the_task_and_retry_resumes(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard()
    payload = add_payload(file_server, "model.gguf", CHUNK_BYTES + 4 * MiB)
    file_server.throttle(2 * MiB)
    task = create(app.http, source="url", url=payload.url, sha256=payload.sha256)
    wait_bytes(app.http, task["id"], CHUNK_BYTES + MiB)  # a whole buffer was handed over

    (worker,) = download_workers()
    worker.kill()  # as the OOM killer would
    done = wait_state(app.http, task["id"], {"completed", "failed"})

    assert done["state"] == "failed" and done["error_code"] == "worker_failed"
    kept = part_path(app.settings.resolved_models_dir / payload.name).stat().st_size
    assert kept >= CHUNK_BYTES  # SIGKILL loses at most the buffers in flight
    file_server.clear_faults()
    app.http.post(f"/api/downloads/{task['id']}/retry")
    done = wait_state(app.http, task["id"], {"completed", "failed"})
    assert done["state"] == "completed" and done["sha256"] == payload.sha256
    assert file_server.requests[-1].header("Range") == f"bytes={kept}-"
    wait_until(lambda: not download_workers(), "the worker to exit")


def test_one_worker_does_download_after_download_and_stays_idle_between(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard()
    first = add_payload(file_server, "first.gguf", MiB)
    second = add_payload(file_server, "second.gguf", 2 * MiB)
    done = wait_state(app.http, create(app.http, source="url", url=first.url)["id"], {"completed"})
    assert done["sha256"] == first.sha256
    wait_until(lambda: len(download_workers(busy=False)) == 1, "an idle worker")
    (idle,) = download_workers(busy=False)  # it has let go of the first task's log

    failed = create(app.http, source="url", url=file_server.url_for("missing.gguf"))
    assert wait_state(app.http, failed["id"], {"completed", "failed"})["state"] == "failed"
    wait_until(lambda: download_workers(busy=False) == [idle], "the same worker, idle")

    file_server.throttle(2 * MiB)
    task = create(app.http, source="url", url=second.url, sha256=second.sha256)
    wait_bytes(app.http, task["id"], 1)
    assert [w.pid for w in download_workers()] == [idle.pid]  # the same process again
    done = wait_state(app.http, task["id"], {"completed", "failed"})
    assert done["state"] == "completed" and done["sha256"] == second.sha256
    assert (app.settings.resolved_models_dir / second.name).read_bytes() == second.data
    assert any("HTTP 404" in line for line in log_lines(app, failed["id"]))
    assert not any("HTTP 404" in line for line in log_lines(app, task["id"]))

    app.stop()  # shutting down lets the idle worker go too
    wait_until(lambda: not download_workers(busy=False) and not download_workers(), "no worker")


def test_a_cancelled_download_lets_its_worker_go_and_the_next_gets_a_new_one(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard()
    slow = add_payload(file_server, "slow.gguf", 6 * MiB)
    after = add_payload(file_server, "after.gguf", MiB)
    file_server.throttle(2 * MiB, path="slow.gguf")
    task = create(app.http, source="url", url=slow.url)
    wait_bytes(app.http, task["id"], 1)
    (busy,) = download_workers()

    app.http.post(f"/api/downloads/{task['id']}/cancel").raise_for_status()
    wait_until(lambda: not busy.is_running(), "the cancelled download's worker to exit")
    assert not part_path(app.settings.resolved_models_dir / slow.name).exists()

    done = wait_state(app.http, create(app.http, source="url", url=after.url)["id"], {"completed"})
    assert done["sha256"] == after.sha256


def test_an_idle_worker_that_died_is_replaced(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard()
    first = add_payload(file_server, "first.gguf", MiB)
    second = add_payload(file_server, "second.gguf", MiB)
    wait_state(app.http, create(app.http, source="url", url=first.url)["id"], {"completed"})
    wait_until(lambda: len(download_workers(busy=False)) == 1, "an idle worker")
    (idle,) = download_workers(busy=False)
    idle.kill()
    wait_until(lambda: not idle.is_running(), "modelyard to notice the idle worker's exit")

    task = create(app.http, source="url", url=second.url, sha256=second.sha256)
    done = wait_state(app.http, task["id"], {"completed", "failed"})

    assert done["state"] == "completed" and done["sha256"] == second.sha256
