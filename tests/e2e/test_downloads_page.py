"""Get models and Downloads in a real browser: start a URL download, watch it move, pause,
resume, reload mid-download, see it complete; browse a Hugging Face repo's quantizations."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from modelyard.instance_config import InstanceConfig
from tests.downloads.support import MiB, add_payload, create, wait_bytes, wait_state
from tests.e2e.conftest import screenshot
from tests.fakes.fileserver import FileServer
from tests.fakes.huggingface import FakeHub
from tests.support.app_server import RunningApp


@pytest.fixture
def files(tmp_path: Path) -> Iterator[FileServer]:
    with FileServer(tmp_path / "www") as server:
        yield server


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[FakeHub]:
    hub = FakeHub(tmp_path / "hub").start()
    try:
        yield hub
    finally:
        hub.stop()


def task_card(page: Page, task_id: str) -> Locator:
    return page.locator(f'article[data-id="{task_id}"]')


def progress_of(card: Locator) -> float:
    return float(card.get_by_role("progressbar").get_attribute("aria-valuenow") or 0)


def test_a_url_download_from_get_models_to_completed(
    page: Page, modelyard: Callable[..., RunningApp], files: FileServer, ollama_server: Any
) -> None:
    instance = InstanceConfig(provider="ollama", id="default", base_url=ollama_server.url)
    app = modelyard([instance])
    payload = add_payload(files, "qwen2.5-0.5b-instruct-q4_k_m.gguf", 12 * MiB)
    files.throttle(MiB)

    page.goto(f"{app.url}/#/get")
    form = page.locator("#url-form")
    form.locator('input[name="url"]').fill(payload.url)
    form.locator('input[name="sha256"]').fill(payload.sha256)
    form.get_by_role("button", name="Download").click()
    expect(page.locator(".toast")).to_contain_text("Downloading qwen2.5-0.5b-instruct-q4_k_m.gguf")
    (task,) = app.http.get("/api/downloads").json()["downloads"]

    page.goto(f"{app.url}/#/downloads")
    card = task_card(page, task["id"])
    expect(card.get_by_test_id("state")).to_have_text("downloading")
    first = card.get_by_role("progressbar").get_attribute("aria-valuenow") or "0"
    expect(card.get_by_role("progressbar")).not_to_have_attribute("aria-valuenow", first)
    assert progress_of(card) > float(first)  # the bar moves with the bytes
    # A speed and a time left (a 1 MiB/s throttle reads as KB/s or MB/s, by how busy CI is).
    expect(card.get_by_test_id("numbers")).to_contain_text(re.compile(r"\d [KM]B/s · .+ left"))

    card.locator('[data-action="pause"]').click()
    expect(card.get_by_test_id("state")).to_have_text("paused")
    assert app.http.get(f"/api/downloads/{task['id']}").json()["state"] == "paused"
    card.locator('[data-action="resume"]').click()
    expect(card.get_by_test_id("state")).to_have_text("downloading")

    page.reload()  # mid-download: the same task, from the server
    card = task_card(page, task["id"])
    expect(card.get_by_test_id("state")).to_have_text("downloading")
    expect(page.locator("article.download-card")).to_have_count(1)
    card.locator('[data-action="log"]').click()
    expect(card.get_by_test_id("log")).to_contain_text("paused")

    files.clear_faults()  # the rest at full speed
    expect(card.get_by_test_id("state")).to_have_text("completed", timeout=60000)
    expect(card.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    expect(card).to_contain_text(str(app.settings.resolved_models_dir / payload.name))
    assert (app.settings.resolved_models_dir / payload.name).read_bytes() == payload.data


def test_a_downloads_log_opens_in_the_log_viewer(
    page: Page, modelyard: Callable[..., RunningApp], files: FileServer, tmp_path: Path
) -> None:
    app = modelyard([])
    payload = add_payload(files, "logged.gguf", 8 * MiB)
    files.throttle(MiB)
    task = create(app.http, source="url", url=payload.url, sha256=payload.sha256)
    wait_state(app.http, task["id"], {"downloading"})

    page.goto(f"{app.url}/#/downloads")
    card = task_card(page, task["id"])
    card.locator('[data-action="log"]').click()
    lines = card.get_by_test_id("log-lines")  # the instance log's viewer
    expect(lines).to_contain_text("attempt 1 of")
    card.locator('input[name="follow"]').check()
    # Paused behind the page's back: the line comes over the log's WebSocket, and the viewer
    # (the same element) survives the card's redraw for the new state.
    assert app.http.post(f"/api/downloads/{task['id']}/pause").status_code == 200
    expect(card.get_by_test_id("state")).to_have_text("paused")
    expect(lines).to_contain_text("paused")
    expect(card.locator('input[name="follow"]')).to_be_checked()
    card.locator('input[name="q"]').fill("paused")
    expect(lines).not_to_contain_text("attempt 1 of")
    screenshot(page, "downloads-log")

    with page.expect_download() as caught:
        card.get_by_role("button", name="Download").click()
    saved = tmp_path / "saved.log"
    caught.value.save_as(saved)
    assert "attempt 1 of" in saved.read_text() and "paused" in saved.read_text()
    card.locator('[data-action="log"]').click()  # closed: the viewer and its socket go
    expect(card.get_by_test_id("log")).to_have_count(0)


def test_downloads_page_shows_every_state_with_its_actions(
    page: Page, modelyard: Callable[..., RunningApp], files: FileServer
) -> None:
    app = modelyard()
    done = add_payload(files, "nomic-embed-text-v1.5.Q8_0.gguf", 2 * MiB)
    create(app.http, source="url", url=done.url, mode="embed")
    failed = create(app.http, source="url", url=files.url_for("gone/llama-3.2-1b-q4_0.gguf"))
    wait_state(app.http, failed["id"], {"failed"})
    big = add_payload(files, "Qwen2.5-7B-Instruct-Q4_K_M.gguf", 8 * MiB, seed=2)
    other = add_payload(files, "gemma-3-4b-it-Q5_K_M.gguf", 8 * MiB, seed=3)
    for payload in (big, other):
        files.throttle(MiB // 2, path=payload.name)
    running = create(app.http, source="url", url=big.url)
    paused = create(app.http, source="url", url=other.url)
    wait_bytes(app.http, paused["id"], MiB // 2)
    app.http.post(f"/api/downloads/{paused['id']}/pause")
    wait_bytes(app.http, running["id"], MiB)

    page.goto(f"{app.url}/#/downloads")
    expect(task_card(page, failed["id"]).get_by_test_id("error")).to_contain_text("http_error")
    expect(task_card(page, failed["id"]).locator('[data-action="retry"]')).to_be_visible()
    expect(task_card(page, paused["id"]).locator('[data-action="resume"]')).to_be_visible()
    expect(task_card(page, running["id"]).get_by_test_id("numbers")).to_contain_text("left")
    expect(page.locator("#download-summary")).to_contain_text("1 running")
    screenshot(page, "downloads")

    page.get_by_role("group", name="Show").get_by_role("button", name="Active").click()
    expect(page.locator("article.download-card")).to_have_count(2)
    task_card(page, running["id"]).locator('[data-action="cancel"]').click()
    page.locator("dialog").get_by_role("button", name="Cancel download").click()
    expect(task_card(page, running["id"])).to_have_count(0)  # not active any more
    assert app.http.get(f"/api/downloads/{running['id']}").json()["state"] == "cancelled"
    page.get_by_role("group", name="Show").get_by_role("button", name="All").click()
    task_card(page, failed["id"]).locator('[data-action="delete"]').click()
    page.locator("dialog").get_by_role("button", name="Delete").click()
    expect(task_card(page, failed["id"])).to_have_count(0)


def test_get_models_validates_names_and_browses_a_hub_repo(
    page: Page, modelyard: Callable[..., RunningApp], hub: FakeHub, ollama_server: Any
) -> None:
    hub.add_repo(
        "bartowski/Qwen2.5-0.5B-Instruct-GGUF",
        {
            "Qwen2.5-0.5B-Instruct-Q4_K_M.gguf": b"q" * 400_000,
            "Qwen2.5-0.5B-Instruct-Q8_0.gguf": b"8" * 700_000,
            "Qwen2.5-0.5B-Instruct-f16.gguf": b"f" * 1_300_000,
            "README.md": b"# Qwen",
        },
    )
    ollama_server.state.add_registry_model("qwen2.5:0.5b", [20_000_000, 1_400])
    instance = InstanceConfig(provider="ollama", id="default", base_url=ollama_server.url)
    app = modelyard([instance], hf_endpoint=hub.endpoint)
    page.goto(f"{app.url}/#/get")

    form = page.locator("#hf-form")
    form.locator('input[name="repo"]').fill("bartowski/Qwen2.5-0.5B-Instruct-GGUF")
    form.get_by_role("button", name="List files").click()
    rows = page.locator("#hf-results tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("Q4_K_M")
    expect(rows.first.get_by_test_id("fit")).to_have_text("fits")
    page.locator("#hf-panel").evaluate("panel => panel.scrollIntoView()")
    screenshot(page, "get-models")
    page.locator("#hf-results").get_by_role("button", name="Q8_0").click()
    expect(rows).to_have_count(1)
    rows.first.get_by_role("button", name="Download").click()
    expect(page.locator(".toast").last).to_contain_text("Qwen2.5-0.5B-Instruct-Q8_0.gguf")

    ollama = page.locator("#ollama-form")
    ollama.locator('input[name="model_name"]').fill("bad name!")
    expect(ollama.locator(".field-error")).to_contain_text("model:tag")
    ollama.get_by_role("button", name="Pull").click()
    assert len(app.http.get("/api/downloads").json()["downloads"]) == 1  # only the Hub file
    ollama.locator('input[name="model_name"]').fill("qwen2.5:0.5b")
    ollama.get_by_role("button", name="Pull").click()
    expect(page.locator(".toast").last).to_contain_text("Downloading qwen2.5:0.5b")

    url = page.locator("#url-form")
    url.locator('input[name="url"]').fill("ftp://127.0.0.1/x.gguf")
    url.get_by_role("button", name="Download").click()
    expect(url.locator(".field-error")).to_contain_text("http")

    sources = {t["source"] for t in app.http.get("/api/downloads").json()["downloads"]}
    assert sources == {"ollama", "hf"}

    form.locator('input[name="repo"]').fill("nobody/Nothing-GGUF")
    form.get_by_role("button", name="List files").click()
    expect(form.locator(".field-error")).to_contain_text("Check the repo id")


def test_a_pull_shows_its_total_as_a_floor_until_ollama_settles_it(
    page: Page,
    modelyard: Callable[..., RunningApp],
    ollama_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Layers that finish between two of Ollama's ticks are not in the stream: while a pull
    runs its total is 'at least'; when it ends, it is the model's size and blob count."""
    state = ollama_server.state
    state.pull_tick, state.pull_chunk_bytes = 0.1, 1_000_000
    state.models_dir = tmp_path / "ollama-models"
    monkeypatch.setenv("OLLAMA_MODELS", str(state.models_dir))
    state.add_registry_model("tiny-tail", [30_000_000, 2_000], config_size=1_400)
    instance = InstanceConfig(provider="ollama", id="default", base_url=ollama_server.url)
    app = modelyard([instance])
    page.goto(f"{app.url}/#/downloads")

    task = create(app.http, source="ollama", model_name="tiny-tail")
    numbers = task_card(page, task["id"]).get_by_test_id("numbers")
    expect(numbers).to_contain_text(re.compile(r"of at least [\d.]+ MB .*layer 1 of at least 1"))
    wait_state(app.http, task["id"], {"completed"})
    expect(numbers).to_contain_text("of 30.0 MB")  # 30,003,400 bytes
    expect(numbers).to_contain_text("layer 3 of 3")
    expect(numbers).not_to_contain_text("at least")


def test_a_file_taken_as_found_is_shown_not_verified(
    page: Page, modelyard: Callable[..., RunningApp], files: FileServer
) -> None:
    payload = add_payload(files, "found.gguf", 1 * MiB)
    app = modelyard([])
    dest = app.settings.resolved_models_dir / "found.gguf"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(payload.data)
    taken = app.http.post("/api/models/download", json={"url": payload.url}).json()
    fetched = create(app.http, source="url", url=add_payload(files, "fetched.gguf", MiB).url)
    wait_state(app.http, fetched["id"], {"completed"})

    page.goto(f"{app.url}/#/downloads")
    found = task_card(page, taken["download_id"])
    expect(found.get_by_test_id("state")).to_have_text("completed")
    expect(found.get_by_test_id("not-verified")).to_have_text("not verified")
    expect(task_card(page, fetched["id"]).get_by_test_id("state")).to_have_text("completed")
    expect(task_card(page, fetched["id"]).get_by_test_id("not-verified")).to_have_count(0)
