"""Hugging Face through the manager and the API: the Hub stand-in via HF_ENDPOINT, its CDN a
real Range-capable server on another host name."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from modelyard.config import load_settings
from modelyard.store.tables import ModelSourceRow
from tests.downloads.support import MiB, create, files_under, random_bytes, wait_state
from tests.fakes.huggingface import FakeHub
from tests.support.app_server import RunningApp, running_app
from tests.support.servers import free_port

TOKEN = "hf_granted"


def test_an_hf_uri_lands_under_hf_owner_repo_verified(
    modelyard: Callable[..., RunningApp], fake_hub: FakeHub
) -> None:
    data = random_bytes(3 * MiB)
    fake_hub.add_repo("bartowski/Tiny-GGUF", {"Q4_K_M/Tiny-Q4_K_M.gguf": data, "README.md": b"#"})
    app = modelyard(hf_endpoint=fake_hub.endpoint)
    source = "hf://bartowski/Tiny-GGUF/Q4_K_M/Tiny-Q4_K_M.gguf"

    task = create(app.http, source="hf", url=source)
    assert task["total"] == len(data) and task["sha256"] == hashlib.sha256(data).hexdigest()
    done = wait_state(app.http, task["id"], {"completed", "failed"})

    assert done["state"] == "completed", done
    assert (done["url"], done["repo"], done["revision"]) == (source, "bartowski/Tiny-GGUF", "main")
    assert done["filename"] == "Q4_K_M/Tiny-Q4_K_M.gguf"
    models = app.settings.resolved_models_dir
    assert files_under(models) == ["hf/bartowski/Tiny-GGUF/Q4_K_M/Tiny-Q4_K_M.gguf"]
    assert (models / files_under(models)[0]).read_bytes() == data
    with app.services.db.session() as s:
        key = ("llamacpp", "local", "hf/bartowski/Tiny-GGUF/Q4_K_M/Tiny-Q4_K_M.gguf")
        row = s.get(ModelSourceRow, key)
        assert row is not None and row.source == source
        assert row.request == {
            "source": "hf",
            "url": source,
            "repo": "bartowski/Tiny-GGUF",
            "filename": "Q4_K_M/Tiny-Q4_K_M.gguf",
            "revision": "main",
            "sha256": hashlib.sha256(data).hexdigest(),
            "mode": "llm",
        }
    again = create(
        app.http, status=200, source="hf", repo="bartowski/Tiny-GGUF", filename=done["filename"]
    )
    assert again["id"] == task["id"]


def test_hf_endpoint_and_token_come_from_the_environment(fake_hub: FakeHub, tmp_path: Path) -> None:
    fake_hub.tokens.add(TOKEN)
    data = random_bytes(MiB, seed=3)
    fake_hub.add_repo("meta/Gated-GGUF", {"g-Q8_0.gguf": data}, gated=True, granted={TOKEN})
    env = {"HF_ENDPOINT": fake_hub.endpoint, "HF_TOKEN": TOKEN}
    settings = load_settings(env, data_dir=tmp_path / "data", port=free_port(), instances=[])

    with running_app(settings) as app:
        task = create(app.http, source="hf", repo="meta/Gated-GGUF", filename="g-Q8_0.gguf")
        done = wait_state(app.http, task["id"], {"completed", "failed"})

    assert done["state"] == "completed", done
    hub_calls = [r.authorization for r in fake_hub.requests]
    assert hub_calls and all(auth == f"Bearer {TOKEN}" for auth in hub_calls)
    assert [r.header("Authorization") for r in fake_hub.cdn.requests] == [None]  # kept home


def test_a_gated_repo_without_a_token_is_refused_up_front(
    modelyard: Callable[..., RunningApp], fake_hub: FakeHub
) -> None:
    fake_hub.add_repo("meta/Gated-GGUF", {"g-Q8_0.gguf": b"gguf"}, gated=True)
    app = modelyard(hf_endpoint=fake_hub.endpoint)

    resp = app.http.post(
        "/api/downloads", json={"source": "hf", "url": "hf://meta/Gated-GGUF/g-Q8_0.gguf"}
    )

    assert resp.status_code == 403 and resp.json()["code"] == "hf_gated"
    missing = app.http.post(
        "/api/downloads", json={"source": "hf", "url": "hf://no/Such-GGUF/x.gguf"}
    )
    assert missing.status_code == 404 and missing.json()["code"] == "hf_repo_not_found"
    fake_hub.add_repo("owner/Open-GGUF", {"o-Q8_0.gguf": b"gguf"})
    absent = app.http.post(
        "/api/downloads", json={"source": "hf", "url": "hf://owner/Open-GGUF/o-Q8_0.gguf@nope"}
    )
    assert absent.status_code == 404 and absent.json()["code"] == "hf_revision_not_found"
    assert app.http.get("/api/downloads").json() == {"downloads": []}


def test_the_repo_listing_shows_quantizations_sizes_and_fit(
    modelyard: Callable[..., RunningApp], fake_hub: FakeHub
) -> None:
    files = {
        "model-Q4_K_M.gguf": b"q" * 4000,
        "model-Q8_0.gguf": b"8" * 8000,
        "F16/model-F16-00001-of-00002.gguf": b"a" * 9000,
        "F16/model-F16-00002-of-00002.gguf": b"b" * 7000,
        "mmproj-model-f16.gguf": b"p" * 1000,
        "README.md": b"# model",
    }
    fake_hub.add_repo("owner/model-GGUF", files)
    app = modelyard(hf_endpoint=fake_hub.endpoint)

    resp = app.http.get("/api/downloads/hf/files", params={"repo": "owner/model-GGUF"})

    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["repo"], body["revision"], body["ctx_size"]) == ("owner/model-GGUF", "main", 4096)
    listed = {f["filename"]: f for f in body["files"]}
    assert list(listed) == [
        "model-Q4_K_M.gguf",
        "model-Q8_0.gguf",
        "F16/model-F16-00001-of-00002.gguf",
        "mmproj-model-f16.gguf",
    ]
    q4 = listed["model-Q4_K_M.gguf"]
    assert (q4["quantization"], q4["size"], q4["is_projector"]) == ("Q4_K_M", 4000, False)
    assert q4["sha256"] == hashlib.sha256(files["model-Q4_K_M.gguf"]).hexdigest()
    assert q4["fit"]["verdict"] == "fits" and q4["fit"]["required"] == q4["memory"]["total"]
    assert q4["memory"]["ctx_size"] == 4096 and q4["disk"]["verdict"] == "fits"
    split = listed["F16/model-F16-00001-of-00002.gguf"]
    assert split["size"] == 16000 and split["quantization"] == "F16" and len(split["parts"]) == 2
    projector = listed["mmproj-model-f16.gguf"]
    assert projector["is_projector"] and projector["fit"] is None

    bigger = app.http.get(
        "/api/downloads/hf/files", params={"repo": "owner/model-GGUF", "ctx_size": 32768}
    ).json()
    assert bigger["files"][0]["memory"]["kv_cache"] > q4["memory"]["kv_cache"]
    missing = app.http.get("/api/downloads/hf/files", params={"repo": "owner/missing"})
    assert missing.status_code == 404 and missing.json()["code"] == "hf_repo_not_found"
    bad = app.http.get("/api/downloads/hf/files", params={"repo": "../../etc"})
    assert bad.status_code == 400 and bad.json()["code"] == "hf_invalid_repo"
