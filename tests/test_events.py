"""The event bus and WS /ws/events: snapshot, then deltas; filters; bounded queues (SPEC §7)."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from websockets.sync.client import connect

from modelyard.downloads.states import DownloadState, SourceKind
from modelyard.downloads.views import DownloadView
from modelyard.events import (
    DOWNLOAD_PROGRESS,
    DOWNLOAD_STATE,
    EVENT_TYPES,
    MODEL_STATE,
    PROVIDER_STATUS,
    EventBus,
)
from modelyard.instance_config import ModelMode
from tests.support.app_server import RunningApp
from tests.support.waiting import wait_until


def test_progress_coalesces_but_state_changes_are_never_dropped() -> None:
    bus = EventBus(queue_size=3)
    sub = bus.subscribe(["download.*"])
    for i in range(50):
        bus.publish(DOWNLOAD_PROGRESS, {"id": "a", "n": i}, key="dl:a")
    bus.publish(DOWNLOAD_STATE, {"id": "a", "state": "completed"}, key="dl:a")
    bus.publish(PROVIDER_STATUS, {"ignored": True})
    events = []
    while (event := sub.get_nowait()) is not None:
        events.append(event)
    assert [e.type for e in events] == ["download.progress", "download.state"]
    assert events[0].data["n"] == 49  # the newest progress replaced the older ones
    assert events[0].seq < events[1].seq


def test_a_slow_client_overflowing_with_state_changes_is_told_to_reconnect() -> None:
    bus = EventBus(queue_size=2)
    sub = bus.subscribe()
    for i in range(3):
        bus.publish(DOWNLOAD_STATE, {"i": i})
    assert sub.overflowed
    assert asyncio.run(sub.get()) is None


def test_a_listener_hears_the_types_it_names_even_when_added_after_they_were_published() -> None:
    bus = EventBus()
    heard: list[tuple[str, str]] = []
    bus.add_listener("download.*", lambda e: heard.append(("early", e.type)))
    bus.publish(DOWNLOAD_STATE, {"id": "a", "state": "queued"})
    bus.publish(PROVIDER_STATUS, {"id": "p"})
    bus.add_listener(DOWNLOAD_STATE, lambda e: heard.append(("late", e.type)))
    bus.add_listener(PROVIDER_STATUS, lambda e: heard.append(("late", e.type)))
    bus.publish(DOWNLOAD_STATE, {"id": "a", "state": "downloading"})
    bus.publish(PROVIDER_STATUS, {"id": "p"})
    bus.publish(DOWNLOAD_PROGRESS, {"id": "a", "n": 1})
    assert heard == [
        ("early", "download.state"),
        ("early", "download.state"),
        ("late", "download.state"),
        ("late", "provider.status"),
        ("early", "download.progress"),
    ]


def test_publish_from_threads_wakes_an_async_reader() -> None:
    bus = EventBus()

    async def main() -> list[int]:
        sub = bus.subscribe()
        threading.Timer(0.05, lambda: bus.publish(MODEL_STATE, {"n": 1})).start()
        event = await asyncio.wait_for(sub.get(), timeout=5)
        assert event is not None
        return [event.data["n"]]

    assert asyncio.run(main()) == [1]


def test_websocket_snapshot_then_filtered_deltas(modelyard: Callable[..., RunningApp]) -> None:
    app = modelyard(monitor=False)
    ws_url = app.url.replace("http", "ws") + "/ws/events"
    with connect(ws_url, open_timeout=5) as ws:
        snapshot = json.loads(ws.recv(timeout=5))
        assert snapshot["type"] == "snapshot"
        assert {"seq", "ts", "type", "data"} <= snapshot.keys()
        assert "providers" in snapshot["data"]
        ws.send(json.dumps({"subscribe": ["download.*"]}))
        assert json.loads(ws.recv(timeout=5))["type"] == "subscribed"
        app.services.bus.publish(PROVIDER_STATUS, {"skip": True})
        app.services.bus.publish(DOWNLOAD_STATE, {"id": "x", "state": "queued"})
        event = json.loads(ws.recv(timeout=5))
        assert event["type"] == "download.state" and event["data"]["id"] == "x"
        assert event["ts"].endswith("Z")
        ws.send("not json")
        assert json.loads(ws.recv(timeout=5))["data"]["code"] == "invalid_json"
    # The server notices the close on its own schedule, so wait for it rather than race it.
    wait_until(lambda: app.services.bus.subscriber_count == 0, "the client to be unsubscribed")


# -- the catalogue --------------------------------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs" / "API.md"


def test_every_event_type_is_declared_once_and_documented() -> None:
    spec_types = {
        "provider.status",
        "download.progress",
        "download.state",
        "model.state",
        "catalog.changed",
        "batch.progress",
    }  # SPEC §7 names these
    assert spec_types <= set(EVENT_TYPES)
    assert all(name == event_type.name for name, event_type in EVENT_TYPES.items())
    documented = set(re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \|", DOCS.read_text(), re.M))
    assert documented == set(EVENT_TYPES)
    coalesced = {t.name for t in EVENT_TYPES.values() if t.coalesces}
    assert coalesced == {"download.progress", "model.schedule"}


def test_the_openapi_description_lists_the_event_types(
    modelyard: Callable[..., RunningApp],
) -> None:
    description = modelyard(monitor=False).http.get("/openapi.json").json()["info"]["description"]
    for event_type in EVENT_TYPES.values():
        assert f"- `{event_type.name}`: {event_type.description}" in description


def test_a_typed_payload_goes_out_as_json_and_typed_listeners_get_the_object() -> None:
    bus = EventBus()
    heard: list[DownloadView] = []
    bus.add_listener(DOWNLOAD_STATE, lambda event: heard.append(event.payload))
    sub = bus.subscribe(["download.state"])
    view = DownloadView(
        id="abc",
        source=SourceKind.URL,
        model_name=None,
        url="http://127.0.0.1:9/m.gguf",
        repo=None,
        revision=None,
        filename="m.gguf",
        path="/models/m.gguf",
        instance_id=None,
        sha256=None,
        mode=ModelMode.EMBED,
        state=DownloadState.QUEUED,
        downloaded=0,
        total=None,
        total_final=False,
        speed_bps=None,
        eta_s=None,
        error=None,
        error_code=None,
        attempts=0,
        current_layer=0,
        total_layers=0,
        current_status=None,
        force=False,
        verified=True,
        progress=0.0,
        created_at=datetime(2026, 12, 7, 5, 15, 34, tzinfo=timezone(timedelta(hours=-7))),
        started_at=None,
        finished_at=None,
    )

    bus.publish(DOWNLOAD_STATE, view, key="download:abc")

    assert heard == [view]
    event = sub.get_nowait()
    assert event is not None and event.payload is view
    envelope = json.loads(json.dumps(event.envelope()))
    assert envelope["type"] == "download.state" and envelope["ts"].endswith("Z")
    data = envelope["data"]
    assert (data["source"], data["mode"], data["state"]) == ("url", "embed", "queued")
    assert data["created_at"] == "2026-12-07T12:15:34Z"  # the same instant, in UTC
