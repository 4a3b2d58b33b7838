"""A chat answer holds its model's turn like a gateway request: while the Chat page's answer
streams, a gateway request for another model that needs its memory waits for the answer to
end (or is refused with 503 and ``Retry-After``), the answering model is not evicted
mid-answer, and every in-flight count returns to zero."""

from __future__ import annotations

import concurrent.futures
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from modelyard.instance_config import InstanceConfig
from tests.fakes.common import ReplyScript
from tests.fakes.fixtures import FakeServer, serve
from tests.fakes.ollama import create_ollama_app
from tests.fakes.ollama_state import OllamaState
from tests.support.app_server import RunningApp, make_settings, running_app
from tests.support.chat import send
from tests.support.llama import LLAMA_SERVER
from tests.support.waiting import wait_until

App = Callable[..., RunningApp]
OLLAMA_MODEL = "ollama/default/llama3.2:latest"
GGUF = "llamacpp/local/tiny.gguf"
PIECES = [f" word{i}" for i in range(30)]


@pytest.fixture
def ollama() -> Iterator[FakeServer[OllamaState]]:
    state = OllamaState(pull_tick=0.005)
    state.add_model("llama3.2", size=2_000_000_000, parameter_size="3.2B")
    with serve(create_ollama_app(state), state) as server:
        yield server


def setup(tmp: Path, tiny_gguf: Path, ollama_url: str, **values: object) -> dict[str, object]:
    models = tmp / "models"
    models.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_gguf, models / "tiny.gguf")
    instances = [InstanceConfig(provider="ollama", id="default", base_url=ollama_url)]
    return {"instances": instances, "models_dir": models, "llama_server": LLAMA_SERVER, **values}


def room_for_one(tmp: Path, tiny_gguf: Path, ollama_url: str) -> int:
    """A memory budget that holds either model but not both (the scheduler's estimates)."""
    probe = setup(tmp / "probe", tiny_gguf, ollama_url)
    instances = probe.pop("instances")
    assert isinstance(instances, list)
    with running_app(make_settings(tmp / "probe", instances, **probe)) as app:
        assert app.http.post("/api/models/sync").status_code == 200
        backend = app.services.gateway.backend
        sizes = sorted(backend.estimate_bytes(key) for key in (OLLAMA_MODEL, GGUF))
    assert sizes[0] > 0
    return sizes[1] + sizes[0] // 2


def schedule(app: RunningApp) -> dict[str, dict[str, object]]:
    listing = app.http.get("/v1/models").json()["data"]
    return {m["modelyard"]["qualified_name"]: m["modelyard"] for m in listing}


def chat(app: RunningApp) -> str:
    created = app.http.post("/api/conversations", json={"provider": "ollama", "model": "llama3.2"})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def test_an_answering_model_is_not_evicted_for_a_gateway_request(
    modelyard: App, tmp_path: Path, tiny_gguf: Path, ollama: FakeServer[OllamaState]
) -> None:
    budget = room_for_one(tmp_path, tiny_gguf, ollama.url)
    values = setup(tmp_path, tiny_gguf, ollama.url, memory_budget_bytes=budget)
    app = modelyard(values.pop("instances"), **values)
    assert app.http.post("/api/models/sync").status_code == 200
    ollama.state.reply = ReplyScript(pieces=PIECES, token_delay=0.1)
    cid = chat(app)
    client = openai.OpenAI(base_url=app.url + "/v1", api_key="none", max_retries=0)

    def gateway() -> float:
        client.chat.completions.create(
            model="tiny.gguf", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
        return time.monotonic()

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answer = pool.submit(send, app.http, cid, content="Tell me a story")
        wait_until(lambda: schedule(app)[OLLAMA_MODEL]["in_flight"] == 1, "the answer's turn")
        assert schedule(app)[OLLAMA_MODEL]["state"] == "loaded"
        other = pool.submit(gateway)
        wait_until(lambda: schedule(app)[GGUF]["queued"] == 1, "the gateway request queued")
        during = schedule(app)
        events = answer.result()
        answered_at = time.monotonic()
        finished_at = other.result()

    assert during[OLLAMA_MODEL]["state"] == "loaded" and during[OLLAMA_MODEL]["in_flight"] == 1
    assert during[GGUF]["state"] == "unloaded"  # waits for the answer to end
    assert events[-1]["type"] == "done" and events[-1]["state"] == "complete"
    assert "".join(e["text"] for e in events if e["type"] == "token") == "".join(PIECES)
    assert finished_at >= answered_at - 0.5  # served only once the answer was over
    after = schedule(app)
    assert after[GGUF]["state"] == "loaded"
    assert after[OLLAMA_MODEL]["state"] == "unloaded"
    assert after[OLLAMA_MODEL]["last_eviction"] == "evicted"  # after its answer, not during
    assert [view["in_flight"] for view in after.values()] == [0] * len(after)


def test_a_gateway_request_is_refused_with_retry_after_while_the_answer_lasts(
    modelyard: App, tmp_path: Path, tiny_gguf: Path, ollama: FakeServer[OllamaState]
) -> None:
    budget = room_for_one(tmp_path, tiny_gguf, ollama.url)
    values = setup(tmp_path, tiny_gguf, ollama.url, memory_budget_bytes=budget)
    app = modelyard(values.pop("instances"), queue_timeout_s=1.0, **values)
    assert app.http.post("/api/models/sync").status_code == 200
    ollama.state.reply = ReplyScript(pieces=PIECES, token_delay=0.15)
    cid = chat(app)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        answer = pool.submit(send, app.http, cid, content="Tell me a story")
        wait_until(lambda: schedule(app)[OLLAMA_MODEL]["in_flight"] == 1, "the answer's turn")
        refused = httpx.post(
            app.url + "/v1/chat/completions",
            json={"model": "tiny.gguf", "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        assert schedule(app)[OLLAMA_MODEL]["in_flight"] == 1
        stopped = app.http.post(f"/api/conversations/{cid}/stop")
        events = answer.result()

    assert refused.status_code == 503 and refused.json()["error"]["code"] == "queue_timeout"
    assert int(refused.headers["retry-after"]) >= 1
    assert stopped.status_code == 200
    assert events[-1]["type"] == "done" and events[-1]["state"] == "stopped"
    after = schedule(app)
    assert after[OLLAMA_MODEL]["state"] == "loaded"  # never evicted mid-answer
    assert [view["in_flight"] for view in after.values()] == [0] * len(after)
