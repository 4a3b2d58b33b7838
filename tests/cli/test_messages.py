"""What the CLI says when something is wrong: flags named as flags, instance keys checked
before a request, API hints in the CLI's words, a page past the end, a server that is not
modelyard, and the server's own settings file. Also the compatibility endpoints' ``success:
false`` on every error (SPEC §8)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from modelyard.cli.app import app as cli
from modelyard.cli.client import server_url
from modelyard.config import Settings
from tests.fakes.fixtures import FakeServer
from tests.fakes.ollama import OllamaState
from tests.fakes.plain_http import PlainHttpState
from tests.support.app_server import RunningApp, make_settings, running_app
from tests.support.catalog import assert_problem, instance
from tests.support.servers import closed_port

runner = CliRunner()
# Unset: the CLI then finds the server the way a user's shell would, from the settings.
NO_SERVER_ENV: dict[str, str | None] = {
    "MODELYARD_URL": None,
    "MODELYARD_HOST": None,
    "MODELYARD_PORT": None,
    "MODELYARD_API_KEY": None,
    "MODELYARD_CONFIG": None,
}


def invoke(env: dict[str, str | None], *args: str) -> Any:
    result = runner.invoke(
        cli, list(args), env={**NO_SERVER_ENV, "COLUMNS": "200", **env}, catch_exceptions=False
    )
    assert "Traceback" not in result.output
    return result


def run(app: RunningApp, *args: str) -> Any:
    return invoke({"MODELYARD_URL": app.url}, *args)


def said(result: Any) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[RunningApp]:
    """A modelyard with three GGUF models and no other instance."""
    tmp = tmp_path_factory.mktemp("cli-messages")
    models = tmp / "models"
    models.mkdir()
    for name in ("a.gguf", "b.gguf", "c.gguf"):
        shutil.copy(tiny_gguf, models / name)
    with running_app(make_settings(tmp, [], models_dir=models, monitor=False)) as running:
        running.http.post("/api/models/sync").raise_for_status()
        yield running


# -- a bad query parameter ---------------------------------------------------------------------


def test_the_api_hint_for_a_bad_query_parameter_names_it_and_its_values(app: RunningApp) -> None:
    sort = assert_problem(
        app.http.get("/api/models/search", params={"sort": "bogus"}), 422, "validation_error"
    )
    assert sort["detail"].startswith("query parameter 'sort': ")
    assert (
        sort["hint"]
        == "Give query parameter 'sort' one of: 'name', 'size', 'modified' or 'status'."
    )
    page = assert_problem(
        app.http.get("/api/models/search", params={"page": 0}), 422, "validation_error"
    )
    assert page["hint"] == "Give query parameter 'page' a value that is greater than or equal to 1."
    # A request body's problem keeps the body hint.
    body = assert_problem(app.http.post("/api/models/start", json={}), 422, "validation_error")
    assert "JSON object" in body["hint"]


def test_ls_with_a_bad_sort_names_the_flag_and_its_values(app: RunningApp) -> None:
    result = run(app, "ls", "--sort", "bogus")
    assert result.exit_code == 1
    text = said(result)
    assert "error: invalid value for --sort: Input should be 'name', 'size'" in text
    assert "hint: Give --sort one of: 'name', 'size', 'modified' or 'status'." in text
    assert "JSON" not in text and "query parameter" not in text
    deep = run(app, "ls", "--page", "2000000")
    assert deep.exit_code == 1
    assert "invalid value for --page: Input should be less than or equal to" in said(deep)


# -- instance keys and API hints ---------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("providers", "start", "ollama/a/b"),
        ("providers", "stop", "ollama/"),
        ("providers", "restart", "/default"),
        ("providers", "start", "ollama", "a/b"),
    ],
)
def test_a_malformed_instance_key_is_refused_before_asking(
    app: RunningApp, args: tuple[str, ...]
) -> None:
    result = run(app, *args)
    assert result.exit_code == 1
    text = said(result)
    assert "is not PROVIDER/ID" in text and "e.g. llamacpp/qwen-small" in text
    assert "Not Found" not in text and "openapi" not in text


def test_api_hints_are_said_the_cli_way(app: RunningApp) -> None:
    result = run(app, "providers", "start", "ollama/nope")
    assert result.exit_code == 1
    text = said(result)
    assert "there is no ollama instance 'nope'" in text
    assert "hint: 'modelyard providers list' lists the instances." in text
    assert "GET /api" not in text
    missing = run(app, "start", "llamacpp", "missing.gguf")
    assert missing.exit_code == 1 and "GET /api" not in said(missing)
    assert "'modelyard ls'" in said(missing)


# -- a page past the end -----------------------------------------------------------------------


def test_a_page_past_the_end_says_how_many_pages_there_are(app: RunningApp) -> None:
    past = run(app, "ls", "--page", "5")
    assert past.exit_code == 0
    assert "Page 5 is past the end: 3 models fit on 1 page of 100 (use --page 1)." in said(past)
    assert "No models match" not in past.output
    small = run(app, "ls", "--page", "3", "--page-size", "2")
    assert "Page 3 is past the end: 3 models fit on 2 pages of 2 (use --page 1 to 2)." in said(
        small
    )
    assert "No models match" in run(app, "ls", "--q", "zzz", "--page", "2").output


# -- a server that is not modelyard ------------------------------------------------------------


def test_a_server_that_is_not_modelyard_is_named_as_such(
    plain_http_server: FakeServer[PlainHttpState],
) -> None:
    result = invoke({"MODELYARD_URL": plain_http_server.url}, "status")
    assert result.exit_code == 1
    text = said(result)
    assert f"the server at {plain_http_server.url} does not look like modelyard" in text
    assert "HTTP 404" in text and "hint: Check MODELYARD_URL" in text
    assert "<html" not in result.output and "nginx" not in result.output


def test_a_json_api_that_is_not_modelyard_is_named_as_such(
    ollama_server: FakeServer[OllamaState],
) -> None:
    result = invoke({"MODELYARD_URL": ollama_server.url}, "ls")
    assert result.exit_code == 1
    assert "does not look like modelyard" in said(result)


# -- the settings file -------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[RunningApp]:
    settings = make_settings(tmp_path, [], monitor=False, api_key="file-secret")
    with running_app(settings) as running:
        yield running


def test_the_cli_finds_the_server_through_the_config_file(
    served: RunningApp, tmp_path: Path
) -> None:
    cfg = tmp_path / "modelyard.toml"
    port = served.settings.port
    cfg.write_text(f'host = "0.0.0.0"\nport = {port}\napi_key = "file-secret"\n')
    found = invoke({"MODELYARD_CONFIG": str(cfg)}, "status", "--json")
    assert found.exit_code == 0, found.output
    assert '"cache_ttl_ms"' in found.output
    # MODELYARD_URL still wins over the file.
    elsewhere = f"http://127.0.0.1:{closed_port()}"
    other = invoke({"MODELYARD_CONFIG": str(cfg), "MODELYARD_URL": elsewhere}, "status")
    assert other.exit_code == 1 and f"not running at {elsewhere}" in said(other)


def test_a_bad_config_file_is_said_cleanly(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("port = 'eighty'\n")
    bad = invoke({"MODELYARD_CONFIG": str(cfg)}, "status")
    assert bad.exit_code == 1
    assert "error: invalid setting port" in said(bad) and str(cfg) in said(bad)
    assert "hint: See docs/CONFIGURATION.md" in said(bad)
    gone = invoke({"MODELYARD_CONFIG": str(tmp_path / "nope.toml")}, "ls")
    assert gone.exit_code == 1 and "nope.toml does not exist" in said(gone)


def test_an_any_address_bind_means_the_loopback_of_its_family() -> None:
    assert server_url(Settings(host="0.0.0.0", port=18610)) == "http://127.0.0.1:18610"
    assert server_url(Settings(host="::", port=18610)) == "http://[::1]:18610"
    assert server_url(Settings(host="::1", port=18610)) == "http://[::1]:18610"
    assert server_url(Settings(host="box.lan", port=18610)) == "http://box.lan:18610"


# -- success: false on the compatibility endpoints --------------------------------------------


@pytest.fixture
def with_ollama(
    modelyard: Callable[..., RunningApp], ollama_server: FakeServer[OllamaState]
) -> RunningApp:
    return modelyard([instance("ollama", ollama_server.url)], monitor=False)


def test_delete_answers_errors_with_success_false(with_ollama: RunningApp) -> None:
    http = with_ollama.http
    missing = assert_problem(http.delete("/api/models/ollama/nope:1b"), 404, "model_not_found")
    assert missing["success"] is False
    unknown = assert_problem(http.delete("/api/models/nope/x"), 404, "unknown_provider")
    assert unknown["success"] is False
    bad = http.delete("/api/models/llamacpp/sub/%2E%2E/%2E%2E/x.gguf")
    assert assert_problem(bad, 400, "invalid_path")["success"] is False


@pytest.mark.parametrize(
    "path",
    ["/api/models/list", "/api/models/available", "/api/models/status", "/api/models/health"],
)
def test_other_compatibility_endpoints_answer_errors_with_success_false(
    with_ollama: RunningApp, path: str
) -> None:
    refused = with_ollama.http.put(path)
    assert assert_problem(refused, 405, "method_not_allowed")["success"] is False


def test_native_endpoints_do_not_grow_a_success_field(with_ollama: RunningApp) -> None:
    start = with_ollama.http.post("/api/models/start", json={"provider": "nope", "name": "x"})
    assert "success" not in assert_problem(start, 404, "unknown_provider")
    search = with_ollama.http.get("/api/models/search", params={"sort": "bogus"})
    assert "success" not in assert_problem(search, 422, "validation_error")
