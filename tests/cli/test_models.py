"""``modelyard ls``, ``start``, ``stop`` and ``rm`` against a running server (MODELYARD_URL):
search flags, a real llama.cpp start, confirmation before deleting, errors without tracebacks."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from modelyard.cli import app as cli
from modelyard.cli.models import human, parse_size
from tests.fakes.fixtures import serve
from tests.fakes.ollama import OllamaState, create_ollama_app
from tests.support.app_server import RunningApp, make_settings, running_app
from tests.support.catalog import LLAMA_SERVER, catalog, instance
from tests.support.servers import free_port

runner = CliRunner()


@pytest.fixture(scope="module")
def state() -> OllamaState:
    return OllamaState()


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path, state: OllamaState
) -> Iterator[RunningApp]:
    state.add_model("llama3.2:3b", size=2_019_393_189)
    state.add_model("qwen2.5:0.5b", size=397_821_319)
    state.add_model("nomic-embed-text", size=274_302_450, family="nomic-bert")
    state.load("qwen2.5:0.5b")
    tmp = tmp_path_factory.mktemp("cli")
    models = tmp / "models"
    models.mkdir()
    shutil.copy(tiny_gguf, models / "tiny.gguf")
    with serve(create_ollama_app(state), state) as ollama:
        settings = make_settings(
            tmp,
            [instance("ollama", ollama.url)],
            models_dir=models,
            llama_server=LLAMA_SERVER,
            monitor=False,
        )
        with running_app(settings) as running:
            running.http.post("/api/models/sync")
            yield running


def run(app: RunningApp, *args: str, input: str | None = None) -> Any:
    env = {"MODELYARD_URL": app.url, "COLUMNS": "200"}
    result = runner.invoke(cli, list(args), env=env, input=input, catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def _json_names(app: RunningApp, *flags: str) -> list[str]:
    result = run(app, "ls", "--json", *flags)
    assert result.exit_code == 0, result.output
    return [m["name"] for m in json.loads(result.output)["models"]]


def test_ls_prints_a_table_with_every_model(app: RunningApp) -> None:
    result = run(app, "ls")
    assert result.exit_code == 0, result.output
    for name in ("llama3.2:3b", "qwen2.5:0.5b", "nomic-embed-text:latest", "tiny.gguf"):
        assert name in result.output
    assert "loaded" in result.output and "2.0 GB" in result.output
    assert "1–4 of 4" in result.output


def test_ls_search_flags(app: RunningApp) -> None:
    assert _json_names(app, "--q", "QWEN") == ["qwen2.5:0.5b"]
    assert _json_names(app, "--status", "loaded") == ["qwen2.5:0.5b"]
    assert _json_names(app, "--provider", "llamacpp") == ["tiny.gguf"]
    assert _json_names(app, "--source", "ollama", "--max-size", "300M") == [
        "nomic-embed-text:latest"
    ]
    assert _json_names(app, "--min-size", "1GB", "--provider", "ollama") == ["llama3.2:3b"]
    assert _json_names(app, "--sort", "size", "--desc") == [
        "llama3.2:3b",
        "qwen2.5:0.5b",
        "nomic-embed-text:latest",
        "tiny.gguf",
    ]
    assert _json_names(app, "--sort", "size", "--page-size", "2", "--page", "2") == [
        "qwen2.5:0.5b",
        "llama3.2:3b",
    ]
    nothing = run(app, "ls", "--q", "zzz")
    assert nothing.exit_code == 0 and "No models match" in nothing.output


def test_ls_errors_are_clean(app: RunningApp) -> None:
    bad_size = run(app, "ls", "--min-size", "lots")
    assert bad_size.exit_code == 1 and "is not a size" in bad_size.output
    bad_status = run(app, "ls", "--status", "sleepy")
    assert bad_status.exit_code == 1 and "unknown status 'sleepy'" in bad_status.output
    down = runner.invoke(cli, ["ls"], env={"MODELYARD_URL": f"http://127.0.0.1:{free_port()}"})
    assert down.exit_code == 1 and "not running" in down.output


def test_start_and_stop_a_gguf_model(app: RunningApp) -> None:
    started = run(app, "start", "llamacpp", "tiny.gguf")
    assert started.exit_code == 0, started.output
    assert "loaded llamacpp/tiny.gguf at http://127.0.0.1:" in started.output
    assert catalog(app)[("llamacpp", "local", "tiny.gguf")]["status"] == "loaded"

    refused = run(app, "rm", "llamacpp", "tiny.gguf", "--yes")
    assert refused.exit_code == 1
    assert "tiny.gguf is running" in refused.output and "Stop the model first" in refused.output

    stopped = run(app, "stop", "llamacpp", "tiny.gguf")
    assert stopped.exit_code == 0 and "available llamacpp/tiny.gguf" in stopped.output


def test_a_name_alone_is_found_in_the_catalog(app: RunningApp) -> None:
    started = run(app, "start", "tiny.gguf")
    assert started.exit_code == 0, started.output
    assert "loaded llamacpp/tiny.gguf" in started.output
    assert run(app, "stop", "tiny.gguf").exit_code == 0
    assert catalog(app)[("llamacpp", "local", "tiny.gguf")]["status"] == "available"

    # An Ollama name without a tag means its :latest, as in Ollama.
    embed = run(app, "start", "nomic-embed-text")
    assert embed.exit_code == 0 and "ollama/nomic-embed-text:latest" in embed.output
    assert catalog(app)[("ollama", "default", "nomic-embed-text:latest")]["status"] == "loaded"
    assert run(app, "stop", "nomic-embed-text", "-p", "ollama").exit_code == 0

    unknown = run(app, "start", "no-such-model")
    assert unknown.exit_code == 1 and "no model is named 'no-such-model'" in unknown.output
    other = run(app, "start", "tiny.gguf", "--provider", "ollama")
    assert other.exit_code == 1 and "no model is named 'tiny.gguf' on ollama" in other.output
    wordy = run(app, "start", "llamacpp", "tiny.gguf", "extra")
    assert wordy.exit_code == 1 and "too many arguments" in wordy.output
    clash = run(app, "start", "llamacpp", "tiny.gguf", "--provider", "ollama")
    assert clash.exit_code == 1 and "two providers given" in clash.output


def test_a_name_on_two_instances_must_be_chosen(app: RunningApp, state: OllamaState) -> None:
    state.add_model("tiny.gguf", size=1_000_000)
    app.http.post("/api/models/sync").raise_for_status()
    try:
        gguf = app.settings.resolved_models_dir / "tiny.gguf"
        ambiguous = run(app, "rm", "tiny.gguf", "--yes")
        assert ambiguous.exit_code == 1 and gguf.exists()
        assert "'tiny.gguf' is on more than one instance" in ambiguous.output
        assert "llamacpp/local" in ambiguous.output and "ollama/default" in ambiguous.output
        assert "--provider" in ambiguous.output

        assert run(app, "start", "tiny.gguf", "-p", "llamacpp").exit_code == 0
        # Only one of the two is loaded: that is the one to stop.
        stopped = run(app, "stop", "tiny.gguf")
        assert stopped.exit_code == 0 and "available llamacpp/tiny.gguf" in stopped.output
    finally:
        state.remove_model("tiny.gguf")
        app.http.post("/api/models/sync").raise_for_status()


def test_start_and_stop_an_ollama_model(app: RunningApp) -> None:
    assert run(app, "start", "ollama", "llama3.2:3b").exit_code == 0
    assert catalog(app)[("ollama", "default", "llama3.2:3b")]["status"] == "loaded"
    assert run(app, "stop", "ollama", "llama3.2:3b", "--instance", "default").exit_code == 0
    assert catalog(app)[("ollama", "default", "llama3.2:3b")]["status"] == "available"


def test_rm_asks_first(app: RunningApp, tiny_gguf: Path) -> None:
    path = app.settings.resolved_models_dir / "spare.gguf"
    shutil.copy(tiny_gguf, path)
    kept = run(app, "rm", "llamacpp", "spare.gguf", input="n\n")
    assert kept.exit_code == 1 and "Nothing deleted" in kept.output and path.exists()
    gone = run(app, "rm", "llamacpp", "spare.gguf", input="y\n")
    assert gone.exit_code == 0 and "deleted llamacpp/spare.gguf" in gone.output
    assert not path.exists()
    again = run(app, "rm", "llamacpp", "spare.gguf", "--yes")
    assert again.exit_code == 1 and "no GGUF model 'spare.gguf'" in again.output


def test_unknown_provider_and_names(app: RunningApp) -> None:
    result = run(app, "start", "nope", "x")
    assert result.exit_code == 1 and "there is no provider 'nope'" in result.output
    traversal = run(app, "rm", "llamacpp", "../secret.gguf", "--yes")
    assert traversal.exit_code == 1 and "is not an acceptable path" in traversal.output


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("123", 123),
        ("500M", 500_000_000),
        ("2G", 2_000_000_000),
        ("1.5GiB", 1_610_612_736),
        ("10kb", 10_000),
    ],
)
def test_size_flags(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_human_sizes() -> None:
    assert [human(v) for v in (None, 999, 2_019_393_189, 10**13)] == [
        "–",
        "999 B",
        "2.0 GB",
        "10.0 TB",
    ]
