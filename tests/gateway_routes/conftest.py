"""One modelyard for the gateway's route tests: the genuine llama-server for the models
directory's generated GGUF files (a chat model, an embedding model), an Ollama stand-in and
an Anthropic stand-in as instances, and aliases from the config file."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelyard.instance_config import InstanceConfig
from tests.fakes.anthropic import AnthropicState, create_anthropic_app
from tests.fakes.fixtures import FakeServer, serve
from tests.fakes.ollama import create_ollama_app
from tests.fakes.ollama_state import OllamaState
from tests.support.app_server import RunningApp, make_settings, running_app
from tests.support.llama import LLAMA_SERVER
from tests.support.tiny_gguf import write_tiny_gguf


@dataclass
class Stack:
    app: RunningApp
    ollama: FakeServer[OllamaState]
    anthropic: FakeServer[AnthropicState]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("gateway")
    models = tmp / "models"
    models.mkdir()
    shutil.copy(tiny_gguf, models / "tiny.gguf")
    write_tiny_gguf(models / "embed" / "mini.gguf", pooling=True)
    write_tiny_gguf(models / "rerank" / "judge.gguf", rerank=True)
    ollama_state = OllamaState(pull_tick=0.005)
    ollama_state.add_model("llama3.2", size=2_000_000_000, parameter_size="3.2B")
    anthropic_state = AnthropicState()
    with (
        serve(create_ollama_app(ollama_state), ollama_state) as ollama,
        serve(create_anthropic_app(anthropic_state), anthropic_state) as anthropic,
    ):
        instances = [
            InstanceConfig(provider="ollama", id="default", base_url=ollama.url),
            InstanceConfig(
                provider="anthropic",
                id="default",
                base_url=anthropic.url,
                api_key=anthropic_state.api_key,
            ),
        ]
        settings = make_settings(
            tmp,
            instances,
            models_dir=models,
            llama_server=LLAMA_SERVER,
            aliases={"small": "llamacpp/local/tiny.gguf"},
        )
        with running_app(settings) as app:
            synced = app.http.post("/api/models/sync")
            assert synced.status_code == 200, synced.text
            yield Stack(app, ollama, anthropic)
