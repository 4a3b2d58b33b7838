"""Pull totals end as the model's real ones (issue 18, item 2). Ollama's progress ticks every
60 ms, so a layer that finishes within one tick never appears in the stream; the figures
summed from the stream fall short. When the pull ends, modelyard settles them on Ollama's own
record (the size in ``/api/tags``, the blobs in the manifest), and until then it never shows a
total as final."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.instance_config import InstanceConfig
from modelyard.providers.ollama.pull import feed
from modelyard.providers.pull import LayerTracker
from tests.downloads.support import Recorder, add_payload, create, wait_state
from tests.fakes.fileserver import FileServer
from tests.fakes.fixtures import FakeServer
from tests.fakes.ollama_state import OllamaState
from tests.support.app_server import RunningApp
from tests.support.waiting import wait_until

NAME = "tiny-tail:latest"
BIG = 60_000_000
# A weights layer on many ticks, then a 2,000-byte template and the 1,400-byte config blob:
# both finish within one tick, so the stream never names them.
LAYERS = [BIG, 2_000]
CONFIG = 1_400
SIZE = BIG + 2_000 + CONFIG  # 60,003,400 bytes in 3 blobs


def test_settling_replaces_the_sums_of_the_layers_seen() -> None:
    tracker = LayerTracker()
    digest = "sha256:" + "a" * 64
    feed(tracker, f"pulling {digest[7:19]}", digest, BIG, BIG // 2)
    feed(tracker, "success", None, None, None)
    assert (tracker.total, tracker.total_layers, tracker.final) == (BIG, 1, False)
    tracker.settle(SIZE, 3)
    assert (tracker.downloaded, tracker.total, tracker.final) == (SIZE, SIZE, True)
    assert (tracker.current_layer, tracker.total_layers) == (3, 3)
    tracker.settle(SIZE, None)  # the blobs unknown: the layers seen stand
    assert tracker.total_layers == 1


@pytest.fixture
def pulling(
    modelyard: Callable[..., RunningApp],
    ollama_server: FakeServer[OllamaState],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[bool], RunningApp]:
    """An app whose Ollama stand-in streams like Ollama; ``manifests``: whether it keeps its
    manifests where this machine's Ollama does (``OLLAMA_MODELS``)."""

    def start(manifests: bool) -> RunningApp:
        state = ollama_server.state
        state.pull_tick, state.pull_chunk_bytes = 0.02, 6_000_000
        state.add_registry_model(NAME, LAYERS, config_size=CONFIG)
        models = tmp_path / "ollama-models"
        state.models_dir = models if manifests else None
        monkeypatch.setenv("OLLAMA_MODELS", str(models))
        instance = InstanceConfig(provider="ollama", id="default", base_url=ollama_server.url)
        return modelyard([instance])

    return start


def _pull(app: RunningApp) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Pull NAME through the seed's endpoint; its last answer and the progress events."""
    recorder = Recorder().attach(app.services.bus)
    started = app.http.post("/api/models/pull", json={"model_name": NAME})
    assert started.status_code == 200, started.text
    pull_id = started.json()["pull_id"]

    done: dict[str, Any] = {}

    def finished() -> bool:
        done.update(app.http.get(f"/api/models/pull/{pull_id}").json())
        return done["status"] != "PULLING"

    wait_until(finished, what="the pull to end")
    progress = [data for _, data in recorder.of(pull_id, "download.progress")]
    return done, progress


def test_a_pull_ends_with_the_size_and_layers_ollama_records(
    pulling: Callable[[bool], RunningApp], ollama_server: FakeServer[OllamaState]
) -> None:
    app = pulling(True)
    done, progress = _pull(app)

    assert done["status"] == "COMPLETED", done
    model = ollama_server.state.model(NAME)
    assert model is not None and model.size == SIZE
    assert (done["total_bytes"], done["downloaded_bytes"]) == (SIZE, SIZE)
    assert (done["current_layer"], done["total_layers"], done["total_final"]) == (3, 3, True)
    native = app.http.get(f"/api/downloads/{done['pull_id']}").json()
    assert (native["total"], native["downloaded"], native["total_final"]) == (SIZE, SIZE, True)

    # While it ran the stream only ever showed the weights layer: never a final total.
    running = [p for p in progress if p["state"] == "downloading"]
    assert running, progress
    assert all(p["total_final"] is False for p in running)
    assert all((p["total"] or 0) <= BIG and p["total_layers"] <= 1 for p in running)


def test_without_the_manifest_the_size_still_settles_and_the_layers_stay_as_seen(
    pulling: Callable[[bool], RunningApp],
) -> None:
    app = pulling(False)
    done, _ = _pull(app)
    assert done["status"] == "COMPLETED", done
    assert (done["total_bytes"], done["downloaded_bytes"], done["total_final"]) == (
        SIZE,
        SIZE,
        True,
    )
    assert done["total_layers"] == 1  # the only layer the stream showed


def test_a_file_download_total_is_final_once_the_server_gives_it(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    """A URL's total is its server's Content-Length: final from the first report."""
    payload = add_payload(file_server, "weights.gguf", 2_000_000)
    app = modelyard([])
    task = create(app.http, source="url", url=payload.url)
    done = wait_state(app.http, task["id"], {"completed", "failed"})
    assert done["state"] == "completed" and done["total_final"] is True, done
    assert httpx.get(payload.url).content == Path(done["path"]).read_bytes()
