"""Ollama pulls: the layer arithmetic, then the official client against the Ollama stand-in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from modelyard.instance_config import InstanceConfig
from modelyard.providers.ollama.pull import feed
from modelyard.providers.pull import LayerTracker
from modelyard.store.tables import ModelSourceRow
from tests.downloads.support import Recorder, create, wait_bytes, wait_state
from tests.fakes.fixtures import FakeServer
from tests.fakes.ollama_pull import NOT_FOUND
from tests.fakes.ollama_state import OllamaState, PullFailure
from tests.support.app_server import RunningApp
from tests.support.servers import closed_port
from tests.support.waiting import wait_until

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64


def line(digest: str, total: int, completed: int | None = None) -> tuple[Any, ...]:
    return (f"pulling {digest[7:19]}", digest, total, completed)


def test_a_layer_counts_as_done_when_the_next_layer_arrives() -> None:
    tracker = LayerTracker()
    feed(tracker, "pulling manifest", None, None, None)
    feed(tracker, *line(A, 1000))  # completed left out while 0
    feed(tracker, *line(A, 1000, 600))
    assert (tracker.downloaded, tracker.total, tracker.current_layer) == (600, 1000, 1)

    feed(tracker, *line(B, 50, 10))  # A finished between ticks: no line with 1000/1000

    assert (tracker.downloaded, tracker.total) == (1010, 1050)
    assert (tracker.current_layer, tracker.total_layers) == (2, 2)
    assert tracker.status == f"pulling {B[7:19]}"


def test_a_later_status_finishes_the_last_layer_and_marks_verifying() -> None:
    tracker = LayerTracker()
    feed(tracker, *line(A, 1000, 400))
    feed(tracker, "verifying sha256 digest", None, None, None)
    assert tracker.downloaded == tracker.total == 1000 and tracker.verifying
    feed(tracker, "writing manifest", None, None, None)
    feed(tracker, "success", None, None, None)
    assert (tracker.current_layer, tracker.total_layers, tracker.status) == (1, 1, "success")


def test_progress_never_goes_backwards() -> None:
    tracker = LayerTracker()
    feed(tracker, *line(A, 1000, 700))
    feed(tracker, *line(A, 1000, 300))  # Ollama rolled a failed part back
    assert tracker.downloaded == 700
    feed(tracker, *line(A, 1000, 5000))  # never more than the layer
    assert tracker.downloaded == 1000


def test_a_resumed_pull_starts_from_what_the_last_run_reached() -> None:
    tracker = LayerTracker(floor=800, total_floor=1500)
    assert (tracker.downloaded, tracker.total) == (800, 1500)
    feed(tracker, *line(A, 500, 500))  # Ollama reports the layers again, from the start
    assert (tracker.downloaded, tracker.total) == (800, 1500)
    feed(tracker, *line(B, 1000, 450))
    assert (tracker.downloaded, tracker.total) == (950, 1500)


def test_already_present_layers_count_at_once() -> None:
    tracker = LayerTracker()
    for digest in (A, B, C):
        feed(tracker, *line(digest, 100, 100))
    assert tracker.downloaded == tracker.total == 300 and tracker.total_layers == 3


@pytest.fixture
def ollama_app(
    modelyard: Callable[..., RunningApp], ollama_server: FakeServer[OllamaState]
) -> Callable[..., RunningApp]:
    def start(**settings: Any) -> RunningApp:
        instance = InstanceConfig(provider="ollama", id="default", base_url=ollama_server.url)
        return modelyard([instance], **settings)

    return start


def test_a_pull_sums_bytes_over_layers_and_records_the_model(
    ollama_app: Callable[..., RunningApp], ollama_server: FakeServer[OllamaState]
) -> None:
    state = ollama_server.state
    state.pull_tick, state.pull_chunk_bytes = 0.02, 5_000_000
    state.add_registry_model("qwen2.5:0.5b", [300_000_000, 1_400, 60_000_000])
    app = ollama_app()
    recorder = Recorder().attach(app.services.bus)

    task = create(app.http, source="ollama", model_name="qwen2.5:0.5b")
    done = wait_state(app.http, task["id"], {"completed", "failed"})

    assert done["state"] == "completed", done
    assert done["downloaded"] == done["total"] >= 360_000_000 and done["progress"] == 100.0
    assert done["current_layer"] == done["total_layers"] >= 2
    assert done["current_status"] == "success" and done["path"] is None
    assert state.model("qwen2.5:0.5b") is not None
    progress = [data for _, data in recorder.of(task["id"], "download.progress")]
    assert len(progress) >= 2
    for key in ("downloaded", "progress", "current_layer"):
        values = [data[key] for data in progress]
        assert values == sorted(values), key
    assert "verifying" in recorder.states(task["id"])
    with app.services.db.session() as s:
        row = s.get(ModelSourceRow, ("ollama", "default", "qwen2.5:0.5b"))
        assert row is not None and row.source == "ollama"
        assert row.request["model_name"] == "qwen2.5:0.5b"


def test_an_unknown_model_fails_with_ollamas_message(
    ollama_app: Callable[..., RunningApp],
) -> None:
    app = ollama_app()
    task = create(app.http, source="ollama", model_name="no-such-model")
    done = wait_state(app.http, task["id"], {"completed", "failed"})
    assert done["state"] == "failed" and done["error"] == NOT_FOUND
    assert done["error_code"] == "pull_failed" and done["attempts"] == 1


def test_a_mid_stream_error_fails_the_task_without_retrying(
    ollama_app: Callable[..., RunningApp], ollama_server: FakeServer[OllamaState]
) -> None:
    state = ollama_server.state
    state.pull_chunk_bytes = 10_000_000
    state.add_registry_model("llama3.2", [200_000_000, 1_400])
    state.pull_failure = PullFailure(after_bytes=50_000_000, message="digest mismatch, retry")
    app = ollama_app()

    task = create(app.http, source="ollama", model_name="llama3.2")
    done = wait_state(app.http, task["id"], {"completed", "failed"})

    assert done["state"] == "failed" and done["error"] == "digest mismatch, retry"
    assert done["attempts"] == 1 and done["downloaded"] >= 40_000_000  # its last report
    assert len(ollama_server.log.for_path("/api/pull")) == 1


def test_pause_closes_the_stream_and_resume_continues(
    ollama_app: Callable[..., RunningApp], ollama_server: FakeServer[OllamaState]
) -> None:
    state = ollama_server.state
    state.pull_tick, state.pull_chunk_bytes = 0.02, 1_000_000
    state.add_registry_model("gemma3:1b", [200_000_000, 1_400])
    app = ollama_app()
    recorder = Recorder().attach(app.services.bus)
    task = create(app.http, source="ollama", model_name="gemma3:1b")
    before = wait_bytes(app.http, task["id"], 10_000_000)["downloaded"]

    paused = app.http.post(f"/api/downloads/{task['id']}/pause").json()
    assert paused["state"] == "paused" and paused["downloaded"] >= before
    (request,) = ollama_server.log.for_path("/api/pull")
    wait_until(lambda: request.disconnected, "the pull stream to be closed")

    state.pull_tick = 0.001
    app.http.post(f"/api/downloads/{task['id']}/resume")
    done = wait_state(app.http, task["id"], {"completed", "failed"})
    assert done["state"] == "completed"
    downloaded = [data["downloaded"] for _, data in recorder.of(task["id"], "download.progress")]
    assert downloaded == sorted(downloaded)  # across the pause as well


def test_cancel_closes_the_stream(
    ollama_app: Callable[..., RunningApp], ollama_server: FakeServer[OllamaState]
) -> None:
    state = ollama_server.state
    state.pull_tick, state.pull_chunk_bytes = 0.01, 1_000_000
    state.add_registry_model("phi4-mini", [100_000_000, 1_400])
    app = ollama_app()
    task = create(app.http, source="ollama", model_name="phi4-mini")
    wait_bytes(app.http, task["id"], 5_000_000)

    cancelled = app.http.post(f"/api/downloads/{task['id']}/cancel").json()

    assert cancelled["state"] == "cancelled"
    (request,) = ollama_server.log.for_path("/api/pull")
    wait_until(lambda: request.disconnected, "the pull stream to be closed")
    assert state.model("phi4-mini") is None


def test_a_stalled_stream_is_retried_then_fails(
    ollama_app: Callable[..., RunningApp], ollama_server: FakeServer[OllamaState]
) -> None:
    state = ollama_server.state
    state.pull_tick, state.pull_chunk_bytes = 5.0, 1_000_000
    state.add_registry_model("mistral:7b", [100_000_000])
    app = ollama_app(download_stall_s=0.3, download_max_attempts=2)

    task = create(app.http, source="ollama", model_name="mistral:7b")
    done = wait_state(app.http, task["id"], {"completed", "failed"})

    assert done["state"] == "failed" and done["error_code"] == "stalled"
    assert done["attempts"] == 2
    assert len(ollama_server.log.for_path("/api/pull")) == 2


def test_an_unreachable_ollama_is_retried_then_fails(
    modelyard: Callable[..., RunningApp],
) -> None:
    down = InstanceConfig(
        provider="ollama", id="default", base_url=f"http://127.0.0.1:{closed_port()}"
    )
    app = modelyard([down], download_max_attempts=2)

    task = create(app.http, source="ollama", model_name="llama3.2")
    done = wait_state(app.http, task["id"], {"completed", "failed"})

    assert done["state"] == "failed" and done["error_code"] == "connection_error"
    assert done["attempts"] == 2
    log = app.http.get(f"/api/downloads/{task['id']}/log").json()["lines"]
    assert any("retrying in" in entry for entry in log)


def test_pulls_go_to_the_instance_asked_for(
    modelyard: Callable[..., RunningApp], ollama_server: FakeServer[OllamaState]
) -> None:
    ollama_server.state.add_registry_model("llama3.2:1b", [1_000_000])
    other = InstanceConfig(provider="ollama", id="box", base_url=ollama_server.url)
    app = modelyard([other])

    task = create(app.http, source="ollama", model_name="llama3.2:1b", instance_id="box")
    done = wait_state(app.http, task["id"], {"completed", "failed"})

    assert done["state"] == "completed" and done["instance_id"] == "box"
    wait_until(lambda: ollama_server.state.model("llama3.2:1b") is not None, "the model")
