"""The Providers page in a real browser: true states, start/stop, auto-refresh, reconnection."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from modelyard.instance_config import InstanceConfig, RestartPolicy
from tests.e2e.conftest import screenshot
from tests.support.app_server import RunningApp
from tests.support.llama import LLAMA_SERVER
from tests.support.servers import black_hole, closed_port, free_port


def card(page: Page, key: str) -> Any:
    return page.locator(f'article[data-key="{key}"]')


def test_states_start_stop_and_auto_refresh(
    page: Page,
    modelyard: Callable[..., RunningApp],
    tiny_gguf: Path,
    ollama_server: Any,
    openai_server: Any,
) -> None:
    openai_server.state.api_key = "sk-right"
    with black_hole() as hole:
        app = modelyard(
            [
                InstanceConfig(provider="ollama", id="default", base_url=ollama_server.url),
                InstanceConfig(
                    provider="llamacpp",
                    id="tiny",
                    base_url=f"http://127.0.0.1:{free_port()}",
                    managed=True,
                    model=str(tiny_gguf),
                    ctx_size=256,
                ),
                InstanceConfig(
                    provider="lmstudio",
                    id="off",
                    base_url=f"http://127.0.0.1:{closed_port()}",
                ),
                InstanceConfig(provider="ollama", id="hung", base_url=f"http://127.0.0.1:{hole}"),
                InstanceConfig(
                    provider="openai_compat",
                    id="vllm",
                    base_url=openai_server.url,
                    api_key="sk-wrong",
                ),
            ],
            llama_server=LLAMA_SERVER,
            api_timeout_ms=1500,
        )
        status_requests: list[str] = []
        page.on(
            "request",
            lambda r: status_requests.append(r.url) if "/api/providers/status" in r.url else None,
        )
        page.goto(f"{app.url}/#/providers")

        expect(card(page, "ollama/default").get_by_test_id("state")).to_have_text("RUNNING")
        expect(card(page, "ollama/default")).to_contain_text("0.12.3")
        expect(card(page, "lmstudio/off").get_by_test_id("state")).to_have_text("STOPPED")
        expect(card(page, "lmstudio/off").get_by_test_id("reason")).to_contain_text(
            "connection_refused"
        )
        expect(card(page, "ollama/hung").get_by_test_id("state")).to_have_text("DEGRADED")
        expect(card(page, "openai_compat/vllm").get_by_test_id("state")).to_have_text("ERROR")
        expect(card(page, "openai_compat/vllm").get_by_test_id("reason")).to_contain_text(
            "unauthorized"
        )
        tiny = card(page, "llamacpp/tiny")
        expect(tiny.get_by_test_id("state")).to_have_text("STOPPED")
        expect(tiny.get_by_test_id("checks")).to_contain_text("PID ✗")

        tiny.locator('[data-action="start"]').click()
        expect(tiny.get_by_test_id("state")).to_have_text("RUNNING", timeout=30000)
        expect(tiny.get_by_test_id("checks")).to_have_text("PID ✓Port ✓API ✓")
        # A start is a load of the scheduler: its model shows loaded, no request sent for it.
        row = tiny.locator('[data-testid="scheduler"] .schedule-row[data-model="tiny"]')
        expect(row).to_have_attribute("data-state", "loaded")
        screenshot(page, "providers")

        tiny.locator('[data-action="stop"]').click()
        expect(tiny.get_by_test_id("state")).to_have_text("STOPPED", timeout=20000)

        # Auto-refresh polls every 5 s while on, and not at all while off.
        toggle = page.locator("#auto-refresh")
        expect(toggle).to_be_checked()
        before = len(status_requests)
        page.wait_for_timeout(5600)
        assert len(status_requests) > before
        toggle.uncheck()
        off_count = len(status_requests)
        page.wait_for_timeout(5600)
        assert len(status_requests) == off_count
        toggle.check()
        page.wait_for_timeout(5600)
        assert len(status_requests) > off_count


def test_add_and_remove_an_instance_and_history(
    page: Page, modelyard: Callable[..., RunningApp]
) -> None:
    app = modelyard([])
    page.goto(f"{app.url}/#/providers")
    page.locator("#add-instance").click()
    form = page.locator("#add-form")
    form.locator('select[name="provider"]').select_option("ollama")
    form.locator('input[name="id"]').fill("lan-box")
    form.locator('input[name="base_url"]').fill("ftp://nowhere")
    form.get_by_role("button", name="Add").click()
    expect(form.locator(".field-error")).to_contain_text("http")
    form.locator('input[name="base_url"]').fill(f"http://127.0.0.1:{closed_port()}")
    form.get_by_role("button", name="Add").click()
    new = card(page, "ollama/lan-box")
    expect(new.get_by_test_id("state")).to_have_text("STOPPED")
    new.get_by_role("button", name="History").click()
    expect(new.locator(".history")).to_contain_text("STOPPED")
    new.get_by_role("button", name="Remove").click()
    page.locator("dialog").get_by_role("button", name="Remove").click()
    expect(new).to_have_count(0)


def test_connection_indicator_recovers_after_a_server_restart(
    page: Page, modelyard: Callable[..., RunningApp]
) -> None:
    app = modelyard([])
    page.goto(f"{app.url}/#/providers")
    conn = page.locator("#conn")
    expect(conn).to_have_attribute("data-state", "open")
    app.stop()
    expect(conn).not_to_have_attribute("data-state", "open", timeout=10000)
    expect(conn).to_contain_text("Reconnecting")
    again = RunningApp(app.settings).start()
    try:
        expect(conn).to_have_attribute("data-state", "open", timeout=20000)
        expect(conn).to_contain_text("Live")
    finally:
        again.stop()


def test_edit_an_instance(
    page: Page, modelyard: Callable[..., RunningApp], ollama_server: Any
) -> None:
    app = modelyard([])
    created = app.http.post(
        "/api/providers/ollama/instances",
        json={"id": "box", "base_url": f"http://127.0.0.1:{closed_port()}", "api_key": "sk-old"},
    )
    assert created.status_code == 201
    page.goto(f"{app.url}/#/providers")
    box = card(page, "ollama/box")
    expect(box.get_by_test_id("state")).to_have_text("STOPPED")
    box.locator('[data-action="edit"]').click()
    form = page.locator("#add-form")
    expect(form.locator('input[name="id"]')).to_be_disabled()
    form.locator('input[name="base_url"]').fill(ollama_server.url)
    form.get_by_role("button", name="Save").click()
    expect(box.get_by_test_id("state")).to_have_text("RUNNING")
    expect(box).to_contain_text(ollama_server.url)
    # The key was given for the old URL: it is not sent on to the new one.
    (edited,) = app.http.get("/api/providers").json()["instances"]
    assert edited["has_api_key"] is False
    assert all("authorization" not in r.headers for r in ollama_server.log.entries())


# Set by the page: whether an open History/Logs panel went back to "Loading…" or vanished.
WATCH_PANELS = """(count) => {
    window.__panelLost = false;
    const check = () => {
        const boxes = [...document.querySelectorAll('#provider-list .card-extra')];
        if (boxes.length < count || boxes.some((b) => b.textContent.trim() === 'Loading…')) {
            window.__panelLost = true;
        }
    };
    new MutationObserver(check).observe(document.getElementById('provider-list'),
        { childList: true, subtree: true, characterData: true });
}"""


def test_open_panels_stay_open_and_refresh(
    page: Page,
    modelyard: Callable[..., RunningApp],
    tiny_gguf: Path,
    ollama_server: Any,
) -> None:
    app = modelyard(
        [
            InstanceConfig(provider="ollama", id="default", base_url=ollama_server.url),
            InstanceConfig(
                provider="llamacpp",
                id="tiny",
                base_url=f"http://127.0.0.1:{free_port()}",
                managed=True,
                model=str(tiny_gguf),
                ctx_size=256,
            ),
        ],
        llama_server=LLAMA_SERVER,
    )
    page.goto(f"{app.url}/#/providers")
    tiny = card(page, "llamacpp/tiny")
    ollama = card(page, "ollama/default")
    expect(tiny.get_by_test_id("state")).to_have_text("STOPPED")
    expect(page.locator("#auto-refresh")).to_be_checked()

    tiny.get_by_role("button", name="Logs").click()
    logs = tiny.locator(".card-extra pre.log")
    expect(logs).to_have_text("(empty log)")
    ollama.get_by_role("button", name="History").click()
    history_rows = ollama.locator(".card-extra .history tbody tr")
    expect(history_rows.first).to_contain_text("RUNNING")
    page.evaluate(WATCH_PANELS, 2)

    # Refresh all runs a new check: the open History panel shows it, without going blank.
    before = history_rows.count()
    page.locator("#refresh-all").click()
    page.wait_for_function(
        "(n) => document.querySelectorAll("
        "'[data-key=\"ollama/default\"] .history tbody tr').length > n",
        arg=before,
    )

    # Start: the open Logs panel follows the server's output as it comes up.
    tiny.locator('[data-action="start"]').click()
    expect(tiny.get_by_test_id("state")).to_have_text("RUNNING", timeout=30000)
    expect(logs).not_to_have_text("(empty log)")
    expect(logs).to_contain_text("llama")

    # The next auto-refresh reloads both panels; they keep their content throughout.
    with page.expect_request(lambda r: r.url.endswith("/api/providers/status")):
        pass
    with page.expect_response(lambda r: r.url.endswith("/instances/default/history")):
        pass
    expect(history_rows.first).to_be_visible()
    expect(logs).to_contain_text("llama")
    assert page.evaluate("window.__panelLost") is False

    tiny.locator('[data-action="stop"]').click()
    expect(tiny.get_by_test_id("state")).to_have_text("STOPPED", timeout=20000)
    expect(logs).to_contain_text("llama")
    assert page.evaluate("window.__panelLost") is False


def one_model_server(caps: dict[str, bool]) -> bool:
    """A server modelyard can run for one model (llama.cpp): the form asks for the model."""
    return caps["manageable"] and not caps["loads_models"]


def test_the_add_form_offers_what_the_chosen_kind_can_do(
    page: Page, modelyard: Callable[..., RunningApp]
) -> None:
    app = modelyard([])
    kinds = {k["kind"]: k for k in app.http.get("/api/providers/kinds").json()["kinds"]}
    page.goto(f"{app.url}/#/providers")
    page.locator("#add-instance").click()
    form = page.locator("#add-form")
    provider = form.locator('select[name="provider"]')
    # Every kind the server knows is offered, under its label.
    expect(provider.locator("option")).to_have_text([k["label"] for k in kinds.values()])
    managed = form.locator('input[name="managed"]')
    model = form.locator('input[name="model"]')
    api_key = form.locator('input[name="api_key"]')
    # No command or key variable: only the config file gives those, and the form says so.
    expect(form.locator('[name="command"], [name="api_key_env"]')).to_have_count(0)
    expect(form.locator('[data-role="config-only"]')).to_be_visible()
    for kind, info in kinds.items():
        provider.select_option(kind)
        caps = info["capabilities"]
        for field, shown in ((managed, caps["manageable"]), (model, one_model_server(caps))):
            if shown:
                expect(field).to_be_visible()
            else:
                expect(field).to_be_hidden()
        placeholder = "required" if caps["needs_api_key"] else "optional"
        expect(api_key).to_have_attribute("placeholder", placeholder)


def test_a_killed_server_comes_back_with_its_restart_count(
    page: Page, modelyard: Callable[..., RunningApp], tiny_gguf: Path
) -> None:
    app = modelyard(
        [
            InstanceConfig(
                provider="llamacpp",
                id="tiny",
                base_url=f"http://127.0.0.1:{free_port()}",
                managed=True,
                model=str(tiny_gguf),
                ctx_size=256,
                restart=RestartPolicy.ON_FAILURE,
            )
        ],
        llama_server=LLAMA_SERVER,
        restart_backoff_s=0.5,
    )
    page.goto(f"{app.url}/#/providers")
    tiny = card(page, "llamacpp/tiny")
    expect(tiny.get_by_test_id("restarts")).to_have_text("on-failure")
    tiny.locator('[data-action="start"]').click()
    expect(tiny.get_by_test_id("state")).to_have_text("RUNNING", timeout=30000)
    pid = app.http.get("/api/providers/llamacpp/instances/tiny/status").json()["pid"]

    os.kill(pid, signal.SIGKILL)  # behind modelyard's back: no click, no refresh
    expect(tiny.get_by_test_id("restarts")).to_have_text("on-failure · restarted 1×", timeout=30000)
    expect(tiny.get_by_test_id("state")).to_have_text("RUNNING", timeout=30000)
    tiny.locator('[data-action="stop"]').click()
    expect(tiny.get_by_test_id("state")).to_have_text("STOPPED", timeout=20000)


def test_restart_policy_and_memory_limit_set_in_the_form_show_on_the_card(
    page: Page, modelyard: Callable[..., RunningApp], tiny_gguf: Path
) -> None:
    app = modelyard([], llama_server=LLAMA_SERVER)
    page.goto(f"{app.url}/#/providers")
    page.locator("#add-instance").click()
    form = page.locator("#add-form")
    restart, limit = (
        form.locator('select[name="restart"]'),
        form.locator('[name="memory_limit_mib"]'),
    )
    form.locator('select[name="provider"]').select_option("llamacpp")
    expect(restart).to_be_hidden()  # only a managed process is restarted or limited
    form.locator('input[name="managed"]').check()
    expect(restart).to_be_visible()
    form.locator('input[name="id"]').fill("kept")
    form.locator('input[name="base_url"]').fill(f"http://127.0.0.1:{free_port()}")
    form.locator('input[name="model"]').fill(str(tiny_gguf))
    restart.select_option("always")
    limit.fill("512")
    form.get_by_role("button", name="Add").click()

    kept = card(page, "llamacpp/kept")
    expect(kept.get_by_test_id("restarts")).to_have_text("always")
    expect(kept.get_by_test_id("memory-limit")).to_have_text("512 MiB · from the next start")
    (saved,) = app.http.get("/api/providers").json()["instances"]
    assert (saved["restart"], saved["memory_limit_bytes"]) == ("always", 512 * 2**20)

    kept.locator('[data-action="start"]').click()
    expect(kept.get_by_test_id("state")).to_have_text("RUNNING", timeout=30000)
    how = app.http.get("/api/providers/llamacpp/instances/kept/status").json()
    held = "enforced" if how["memory_enforcement"].startswith("cgroup") else "watched"
    expect(kept.get_by_test_id("memory-limit")).to_have_text(
        f"512 MiB · {held} ({how['memory_enforcement']})"
    )
    screenshot(page, "providers-restart-and-limit")
    kept.locator('[data-action="stop"]').click()
    expect(kept.get_by_test_id("state")).to_have_text("STOPPED", timeout=20000)

    # The edit form shows what is set; back to the default policy and no limit.
    kept.locator('[data-action="edit"]').click()
    expect(restart).to_have_value("always")
    expect(limit).to_have_value("512")
    restart.select_option("")
    limit.fill("")
    form.get_by_role("button", name="Save").click()
    expect(kept.get_by_test_id("restarts")).to_have_text("default")
    expect(kept.get_by_test_id("memory-limit")).to_have_count(0)


TALKER = (
    "import time\n"
    "print('main: loading model', flush=True)\n"
    "print('E  common_init: error: failed to load the draft model', flush=True)\n"
    "n = 0\n"
    "while True:\n"
    "    n += 1; print(f'tick {n}', flush=True); time.sleep(0.2)\n"
)


def test_the_log_viewer_filters_follows_and_downloads(
    page: Page, modelyard: Callable[..., RunningApp], tmp_path: Path
) -> None:
    script = tmp_path / "talker.py"
    script.write_text(TALKER)
    talker = InstanceConfig(
        provider="llamacpp",
        id="talker",
        base_url=f"http://127.0.0.1:{free_port()}",
        managed=True,
        command=[sys.executable, str(script)],
    )
    app = modelyard([talker])
    app.http.post("/api/providers/llamacpp/instances/talker/start")
    page.goto(f"{app.url}/#/providers")
    box = card(page, "llamacpp/talker")
    box.get_by_role("button", name="Logs").click()
    lines = box.get_by_test_id("log-lines")
    expect(lines).to_contain_text("tick 1")

    box.locator('select[name="level"]').select_option("error")
    expect(lines).to_have_text("E  common_init: error: failed to load the draft model")
    box.locator('select[name="level"]').select_option("")
    box.locator('input[name="q"]').fill("tick 2")
    expect(lines).to_contain_text("tick 2")
    expect(lines).not_to_contain_text("loading model")

    # Follow: with auto-refresh off, new lines can only arrive over the WebSocket.
    box.locator('input[name="q"]').fill("")
    expect(lines).to_contain_text("loading model")
    page.locator("#auto-refresh").uncheck()
    box.locator('input[name="follow"]').check()
    last = app.http.get(
        "/api/providers/llamacpp/instances/talker/logs", params={"q": "tick", "lines": 1}
    ).json()["lines"][0]
    expect(lines).to_contain_text(f"tick {int(last.split()[1]) + 3}", timeout=20000)
    ticks = [int(line.split()[1]) for line in lines.inner_text().splitlines() if "tick" in line]
    assert ticks == list(range(ticks[0], ticks[-1] + 1))  # none missing between load and follow
    screenshot(page, "providers-logs")

    with page.expect_download() as caught:
        box.get_by_role("button", name="Download").click()
    saved = tmp_path / "saved.log"
    caught.value.save_as(saved)
    assert "E  common_init: error" in saved.read_text()
    assert caught.value.suggested_filename == "llamacpp-talker.log"
    app.http.post("/api/providers/llamacpp/instances/talker/stop")
