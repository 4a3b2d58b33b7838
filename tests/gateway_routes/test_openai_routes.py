"""The gateway on modelyard's port with the official openai SDK, in front of the genuine
llama-server on a generated GGUF file of the models directory: a model loaded on demand by
its first request, names, listings with state, auth, errors in OpenAI's shape."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.app_server import RunningApp, make_settings, running_app
from tests.support.llama import LLAMA_SERVER


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[RunningApp]:
    tmp = tmp_path_factory.mktemp("gateway")
    models = tmp / "models"
    models.mkdir()
    shutil.copy(tiny_gguf, models / "tiny.gguf")
    settings = make_settings(
        tmp,
        models_dir=models,
        llama_server=LLAMA_SERVER,
        aliases={"small": "llamacpp/local/tiny.gguf"},
    )
    with running_app(settings) as running:
        running.http.post("/api/models/sync")
        yield running


def client(app: RunningApp, key: str = "sk-no-key-required") -> openai.OpenAI:
    return openai.OpenAI(base_url=app.url + "/v1", api_key=key, max_retries=0)


def test_a_request_loads_the_model_and_is_answered(app: RunningApp) -> None:
    sdk = client(app)
    answer = sdk.chat.completions.create(
        model="tiny.gguf", messages=[{"role": "user", "content": "hi"}], max_tokens=8
    )
    assert answer.choices[0].message.content is not None
    assert answer.usage is not None and answer.usage.completion_tokens == 8
    listed = {m.id: m for m in sdk.models.list().data}
    state = listed["tiny.gguf"].model_extra["modelyard"]  # type: ignore[index]
    assert state["state"] == "loaded" and state["in_flight"] == 0
    assert state["qualified_name"] == "llamacpp/local/tiny.gguf"
    assert "small" in listed  # the alias from the config file

    chunks = list(
        sdk.chat.completions.create(
            model="llamacpp/local/tiny.gguf",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=6,
            stream=True,
        )
    )
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 1


def test_an_unknown_model_is_a_404_in_openais_shape(app: RunningApp) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client(app).chat.completions.create(
            model="nope", messages=[{"role": "user", "content": "hi"}]
        )
    body = raised.value.body
    assert isinstance(body, dict) and body["code"] == "model_not_found"
    answer = httpx.post(app.url + "/v1/chat/completions", json={"model": "nope"})
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "model_not_found"
