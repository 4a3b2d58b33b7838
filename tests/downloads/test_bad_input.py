"""Bad download requests: a 4xx problem+json with a stable code, and nothing written anywhere."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from modelyard.instance_config import InstanceConfig
from modelyard.store.tables import DownloadRow
from tests.downloads.support import files_under
from tests.support.app_server import RunningApp, make_settings, running_app
from tests.support.servers import closed_port

GOOD_URL = "http://127.0.0.1:9/model.gguf"  # never contacted: every request here is refused


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """One modelyard for the whole table (nothing it is asked should change it)."""
    ollama = InstanceConfig(
        provider="ollama", id="default", base_url=f"http://127.0.0.1:{closed_port()}"
    )
    with running_app(make_settings(tmp_path_factory.mktemp("bad"), [ollama])) as running:
        yield running


def url(value: str, **more: Any) -> dict[str, Any]:
    return {"source": "url", "url": value, **more}


def named(value: str, **more: Any) -> dict[str, Any]:
    return url(GOOD_URL, filename=value, **more)


def ollama(name: str, **more: Any) -> dict[str, Any]:
    return {"source": "ollama", "model_name": name, **more}


def hf(**fields: Any) -> dict[str, Any]:
    return {"source": "hf", **fields}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param(url("file:///etc/passwd"), 400, "unsupported_scheme", id="file-url"),
        pytest.param(url("ftp://127.0.0.1/x.gguf"), 400, "unsupported_scheme", id="ftp-url"),
        pytest.param(url("127.0.0.1/x.gguf"), 400, "unsupported_scheme", id="no-scheme"),
        pytest.param(url("http:///x.gguf"), 400, "invalid_url", id="host-less"),
        pytest.param(url("https://"), 400, "invalid_url", id="only-a-scheme"),
        pytest.param(url("http://127.0.0.1:99999/x"), 400, "invalid_url", id="bad-port"),
        pytest.param(url("http://127.0.0.1/dir/"), 400, "filename_required", id="no-file-name"),
        pytest.param({"source": "url"}, 400, "url_required", id="no-url"),
        pytest.param(named("dir/model.gguf"), 400, "invalid_filename", id="slash"),
        pytest.param(named("../model.gguf"), 400, "invalid_filename", id="dot-dot"),
        pytest.param(named(".."), 400, "invalid_filename", id="just-dot-dot"),
        pytest.param(named("model\x00.gguf"), 400, "invalid_filename", id="nul"),
        pytest.param(named(".hidden.gguf"), 400, "invalid_filename", id="leading-dot"),
        pytest.param(named("a\\b.gguf"), 400, "invalid_filename", id="backslash"),
        pytest.param(url(GOOD_URL, sha256="abc"), 400, "invalid_sha256", id="short-sha256"),
        pytest.param(url(GOOD_URL, mode="chat"), 400, "invalid_mode", id="unknown-mode"),
        pytest.param({"source": "torrent", "url": GOOD_URL}, 400, "unknown_source", id="torrent"),
        pytest.param({"source": ""}, 400, "unknown_source", id="empty-source"),
        pytest.param(url("hf://owner/repo/x.gguf"), 400, "unknown_source", id="hf-as-url"),
        pytest.param(ollama("bad name!"), 400, "invalid_model_name", id="ollama-space"),
        pytest.param(ollama(""), 400, "invalid_model_name", id="ollama-empty"),
        pytest.param(ollama("llama3:"), 400, "invalid_model_name", id="ollama-empty-tag"),
        pytest.param(ollama("a/b/c/d"), 400, "invalid_model_name", id="ollama-four-parts"),
        pytest.param(ollama("../../x"), 400, "invalid_model_name", id="ollama-traversal"),
        pytest.param(ollama("llama3", instance_id="nope"), 404, "instance_not_found", id="inst"),
        pytest.param(hf(url="hf://owner"), 400, "hf_invalid_repo", id="hf-no-repo"),
        pytest.param(hf(repo="../x", filename="a.gguf"), 400, "hf_invalid_repo", id="hf-repo"),
        pytest.param(hf(repo="o/r"), 400, "hf_missing_filename", id="hf-no-file"),
        pytest.param(
            hf(repo="o/r", filename="../../etc/passwd"), 400, "hf_invalid_filename", id="hf-path"
        ),
        pytest.param(
            hf(repo="o/r", filename="a.gguf", revision="../main"),
            400,
            "hf_invalid_revision",
            id="hf-revision",
        ),
        pytest.param(url(GOOD_URL, colour="blue"), 422, "validation_error", id="unknown-field"),
        pytest.param(url(GOOD_URL, force="maybe"), 422, "validation_error", id="bad-type"),
    ],
)
def test_bad_requests_are_refused_with_a_code(
    app: RunningApp, body: dict[str, Any], status: int, code: str
) -> None:
    resp = app.http.post("/api/downloads", json=body)

    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.json()
    assert problem["code"] == code and problem["hint"] and problem["detail"]
    nothing_written(app)


def test_malformed_json_is_refused(app: RunningApp) -> None:
    resp = app.http.post(
        "/api/downloads", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400 and resp.json()["code"] == "invalid_json"
    nothing_written(app)


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        pytest.param("/api/models/download", {"url": "file:///etc/passwd"}, "unsupported_scheme"),
        pytest.param(
            "/api/models/download", {"url": GOOD_URL, "filename": "../x"}, "invalid_filename"
        ),
        pytest.param("/api/models/pull", {"model_name": "bad name!"}, "invalid_model_name"),
        pytest.param(
            "/api/models/pull", {"model_name": "x", "provider": "llamacpp"}, "unsupported_provider"
        ),
        pytest.param(
            "/api/models/pull", {"model_name": "x", "instance_id": "nope"}, "instance_not_found"
        ),
    ],
)
def test_compatibility_endpoints_refuse_with_success_false(
    app: RunningApp, path: str, body: dict[str, Any], code: str
) -> None:
    resp = app.http.post(path, json=body)

    assert 400 <= resp.status_code < 500
    assert resp.json()["code"] == code and resp.json()["success"] is False
    nothing_written(app)


def nothing_written(app: RunningApp) -> None:
    assert app.http.get("/api/downloads").json() == {"downloads": []}
    assert files_under(app.settings.resolved_models_dir) == []
    assert files_under(app.settings.logs_dir / "downloads") == []
    with app.services.db.session() as s:
        assert s.query(DownloadRow).count() == 0


def test_unknown_downloads_are_404(app: RunningApp) -> None:
    for path in ("/api/downloads/nope", "/api/downloads/nope/log", "/api/models/pull/nope"):
        resp = app.http.get(path)
        assert resp.status_code == 404 and resp.json()["code"] == "download_not_found"
    status = app.http.get("/api/models/download/status", params={"url": GOOD_URL})
    assert status.status_code == 404 and status.json()["success"] is False
