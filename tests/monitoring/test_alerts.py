"""Alerts for real: a genuine llama-server killed behind modelyard's back reaches a webhook
receiver on 127.0.0.1 (one that fails, then recovers), signed; the restart and the resolution
follow. Formats for Slack-, Discord- and ntfy-style receivers, deduplication, the cool-down,
and the resource and download rules."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelyard.config import WebhookConfig, WebhookFormat
from modelyard.instance_config import InstanceConfig, RestartPolicy
from modelyard.monitoring.alert_types import Rule, Severity
from modelyard.monitoring.webhooks import format_of
from tests.downloads.support import create
from tests.support.app_server import RunningApp
from tests.support.llama import LLAMA_SERVER
from tests.support.servers import ServerThread, closed_port, free_port
from tests.support.waiting import wait_until
from tests.support.webhook_receiver import Receiver

SECRET = "s3cret"


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, ServerThread]]:
    hook = Receiver(fail_first=2)
    server = hook.serve().start()
    yield hook, server
    server.stop()


def signed_ok(body: bytes, header: str) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


def test_a_killed_server_alerts_restarts_and_resolves(
    modelyard: Callable[..., RunningApp],
    tiny_gguf: Path,
    receiver: tuple[Receiver, ServerThread],
) -> None:
    hook, server = receiver
    cfg = InstanceConfig(
        provider="llamacpp",
        id="tiny",
        base_url=f"http://127.0.0.1:{free_port()}",
        managed=True,
        model=str(tiny_gguf),
        ctx_size=256,
        restart=RestartPolicy.ON_FAILURE,
    )
    app = modelyard(
        [cfg],
        llama_server=LLAMA_SERVER,
        restart_backoff_s=0.2,
        webhooks=[WebhookConfig(url=server.url + "/hook", secret=SECRET)],
        webhook_backoff_s=0.1,
    )
    assert app.http.post("/api/providers/llamacpp/instances/tiny/start").status_code == 200
    wait_until(
        lambda: (
            app.http.get("/api/providers/llamacpp/instances/tiny/status").json()["state"]
            == "RUNNING"
        ),
        "running",
    )
    pid = app.http.get("/api/providers/llamacpp/instances/tiny/status").json()["pid"]
    os.kill(pid, signal.SIGKILL)

    wait_until(lambda: len(hook.delivered()) >= 2, "the firing and the resolved alert")
    firing, resolved = (json.loads(r.body) for r in hook.delivered()[:2])
    assert (firing["rule"], firing["status"]) == ("instance_exited", "firing")
    assert firing["subject"] == "llamacpp/tiny" and firing["details"]["pid"] == pid
    assert firing["details"]["exit_code"] == -signal.SIGKILL
    assert (resolved["id"], resolved["status"]) == (firing["id"], "resolved")
    for request in hook.delivered():
        assert signed_ok(request.body, request.headers["x-modelyard-signature"])
        assert request.headers["content-type"] == "application/json"
    assert [r.answered for r in hook.received[:3]] == [503, 503, 204]  # failed, then recovered

    status = app.http.get("/api/providers/llamacpp/instances/tiny/status").json()
    assert status["state"] == "RUNNING" and status["restarts"] == 1 and status["pid"] != pid
    log = app.http.get("/api/alerts/deliveries").json()["deliveries"][::-1]
    attempts = [(d["status"], d["attempt"], d["ok"]) for d in log]
    assert attempts[:4] == [
        ("firing", 1, False),
        ("firing", 2, False),
        ("firing", 3, True),
        ("resolved", 1, True),
    ]
    assert log[0]["error"] == "HTTP 503" and log[0]["next_retry_s"] == pytest.approx(0.1)
    assert app.http.get("/api/alerts").json()["firing"] == []
    app.http.post("/api/providers/llamacpp/instances/tiny/stop")


def test_formats_for_generic_slack_discord_and_ntfy_receivers(
    modelyard: Callable[..., RunningApp],
) -> None:
    assert format_of(WebhookConfig(url="https://hooks.slack.com/services/T/B/x")) == "slack"
    discord = WebhookConfig(url="https://discord.com/api/webhooks/1/abc")
    assert format_of(discord) == "discord"
    assert format_of(WebhookConfig(url="https://ntfy.sh/ops")) == "generic"  # say ntfy
    hook = Receiver()
    with hook.serve() as server:
        hooks = [
            WebhookConfig(url=f"{server.url}/{kind.value}", format=kind)
            for kind in (WebhookFormat.SLACK, WebhookFormat.DISCORD, WebhookFormat.NTFY)
        ]
        app = modelyard([], webhooks=hooks, monitor=False)
        app.services.alerts.fire(
            Rule.DISK_LOW, "/srv/models", Severity.WARNING, "0.4 GiB free in /srv/models"
        )
        wait_until(lambda: len(hook.delivered()) == 3, "three deliveries")
    by_path = {r.path: r for r in hook.delivered()}
    assert json.loads(by_path["/slack"].body) == {"text": "[WARNING] 0.4 GiB free in /srv/models"}
    assert json.loads(by_path["/discord"].body) == {
        "content": "[WARNING] 0.4 GiB free in /srv/models"
    }
    ntfy = by_path["/ntfy"]
    assert ntfy.body == b"[WARNING] 0.4 GiB free in /srv/models"
    assert ntfy.headers["title"] == "modelyard: disk_low"
    assert ntfy.headers["priority"] == "high"
    assert "x-modelyard-signature" not in ntfy.headers  # no secret, no signature


def test_deduplication_and_cool_down(modelyard: Callable[..., RunningApp]) -> None:
    hook = Receiver()
    with hook.serve() as server:
        app = modelyard(
            [], webhooks=[WebhookConfig(url=server.url)], alert_cooldown_s=3600, monitor=False
        )
        alerts = app.services.alerts
        sub = app.services.bus.subscribe(["alert.changed"])
        first = alerts.fire(Rule.MEMORY_HIGH, "ram", Severity.WARNING, "97 % of the RAM")
        assert first is not None and first.notified
        assert alerts.fire(Rule.MEMORY_HIGH, "ram", Severity.WARNING, "98 %") is None  # dedup
        assert alerts.resolve(Rule.MEMORY_HIGH, "ram", "60 %") is not None
        again = alerts.fire(Rule.MEMORY_HIGH, "ram", Severity.WARNING, "96 %")
        assert again is not None and not again.notified  # within the cool-down
        wait_until(lambda: len(hook.delivered()) >= 2, "the first firing and resolution")
        time.sleep(0.5)  # what a storm would have sent by now
        assert [json.loads(r.body)["status"] for r in hook.delivered()] == ["firing", "resolved"]
        shown = app.http.get("/api/alerts").json()
        assert [a["id"] for a in shown["firing"]] == ["memory_high:ram"]
        assert len(shown["recent"]) == 3
        metrics = app.http.get("/metrics").text
        assert 'modelyard_alerts_firing{rule="memory_high"} 1.0' in metrics
        kinds = []
        while (event := sub.get_nowait()) is not None:
            kinds.append(event.data["status"])
        assert kinds == ["firing", "resolved", "firing"]  # the dashboard sees every change


def test_disk_memory_and_download_rules(modelyard: Callable[..., RunningApp]) -> None:
    app = modelyard(
        [],
        monitor=False,
        alert_disk_free_bytes=2**60,  # more than any disk: fires
        alert_memory_percent=0.01,  # less than any machine uses: fires
        alert_check_s=0.1,
        download_max_attempts=1,
    )

    def firing() -> dict[str, Any]:
        return {a["rule"]: a for a in app.http.get("/api/alerts").json()["firing"]}

    wait_until(lambda: {"disk_low", "memory_high"} <= set(firing()), "the resource alerts")
    assert firing()["disk_low"]["details"]["free_bytes"] > 0
    task = create(app.http, source="url", url=f"http://127.0.0.1:{closed_port()}/model.gguf")
    wait_until(lambda: "download_failed" in firing(), "the download alert")
    assert firing()["download_failed"]["subject"] == task["id"]
    assert app.http.delete(f"/api/downloads/{task['id']}").status_code in (200, 204)
    wait_until(lambda: "download_failed" not in firing(), "the resolution on removal")
