"""The event bus and WS /ws/events: snapshot, then deltas; filters; bounded queues (SPEC §7)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable

from websockets.sync.client import connect

from modelyard.events import EventBus
from tests.support.app_server import RunningApp
from tests.support.waiting import wait_until


def test_progress_coalesces_but_state_changes_are_never_dropped() -> None:
    bus = EventBus(queue_size=3)
    sub = bus.subscribe(["download.*"])
    for i in range(50):
        bus.publish("download.progress", {"id": "a", "n": i}, key="dl:a", coalesce=True)
    bus.publish("download.state", {"id": "a", "state": "completed"}, key="dl:a")
    bus.publish("provider.status", {"ignored": True})
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
        bus.publish("download.state", {"i": i})
    assert sub.overflowed
    assert asyncio.run(sub.get()) is None


def test_publish_from_threads_wakes_an_async_reader() -> None:
    bus = EventBus()

    async def main() -> list[int]:
        sub = bus.subscribe()
        threading.Timer(0.05, lambda: bus.publish("model.state", {"n": 1})).start()
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
        app.services.bus.publish("provider.status", {"skip": True})
        app.services.bus.publish("download.state", {"id": "x", "state": "queued"})
        event = json.loads(ws.recv(timeout=5))
        assert event["type"] == "download.state" and event["data"]["id"] == "x"
        assert event["ts"].endswith("Z")
        ws.send("not json")
        assert json.loads(ws.recv(timeout=5))["data"]["code"] == "invalid_json"
    # The server notices the close on its own schedule, so wait for it rather than race it.
    wait_until(lambda: app.services.bus.subscriber_count == 0, "the client to be unsubscribed")
