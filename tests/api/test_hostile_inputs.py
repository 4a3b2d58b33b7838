"""Inputs made to hurt (issue 19, holes 4, 6, 7, 9): each attack as it was found, and what
modelyard answers now."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from modelyard.errors import InvalidInput
from modelyard.events import DOWNLOAD_STATE, PROVIDER_STATUS, EventBus
from modelyard.gguf.metadata import read_gguf
from tests.fakes.fixtures import FakeServer
from tests.fakes.ollama import OllamaState
from tests.support.app_server import RunningApp
from tests.support.catalog import assert_problem, instance
from tests.support.waiting import wait_until

GGUF_MAGIC = b"GGUF"
ARRAY, UINT8 = 9, 0


def nested_arrays_gguf(path: Path, depth: int) -> Path:
    """A GGUF whose one metadata value is an array of an array of … ``depth`` deep."""
    key = b"evil.nested"
    header = GGUF_MAGIC + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key
    levels = struct.pack("<I", ARRAY) + struct.pack("<IQ", ARRAY, 1) * depth
    path.write_bytes(header + levels + struct.pack("<IQ", UINT8, 0))
    return path


def test_deeply_nested_arrays_are_an_invalid_file_not_a_crash(tmp_path: Path) -> None:
    path = nested_arrays_gguf(tmp_path / "evil.gguf", depth=5000)

    with pytest.raises(InvalidInput) as caught:
        read_gguf(path)

    assert caught.value.error_code == "invalid_gguf" and "nested" in caught.value.detail


def test_one_crafted_gguf_is_one_error_in_the_sync_not_a_failed_sync(
    modelyard: Callable[..., RunningApp],
    ollama_server: FakeServer[OllamaState],
    tiny_gguf: Path,
    tmp_path: Path,
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_gguf, models / "tiny.gguf")
    nested_arrays_gguf(models / "evil.gguf", depth=5000)
    ollama_server.state.add_model("llama3.2:3b")
    app = modelyard([instance("ollama", ollama_server.url)], models_dir=models)

    result = app.http.post("/api/models/sync")

    assert result.status_code == 200
    assert [(e["name"], e["code"]) for e in result.json()["errors"]] == [
        ("evil.gguf", "invalid_gguf")
    ]
    listed = {m["name"] for m in app.http.get("/api/models/list").json()["models"]}
    assert {"tiny.gguf", "evil.gguf", "llama3.2:3b"} <= listed  # everyone's models are there
    query = {"provider": "llamacpp", "instance_id": "local"}
    bad = app.http.get("/api/models/details", params={**query, "name": "evil.gguf"})
    assert_problem(bad, 400, "invalid_gguf")
    good = app.http.get("/api/models/details", params={**query, "name": "tiny.gguf"})
    assert good.status_code == 200 and good.json()["gguf"]["architecture"] == "llama"


def test_delete_removes_models_and_nothing_else(
    modelyard: Callable[..., RunningApp], tiny_gguf: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    (models / "sub").mkdir(parents=True)
    shutil.copy(tiny_gguf, models / "tiny.gguf")
    shutil.copy(tiny_gguf, models / "sub" / "nested.gguf")
    shutil.copy(tiny_gguf, models / "mmproj-tiny.gguf")  # a projector, not a model
    others = ["n.txt", "x.part", "tiny.gguf.part", "tiny.gguf.part.json", ".hidden.gguf"]
    for name in others:
        (models / name).write_bytes(b"not a model")
    app = modelyard(models_dir=models, monitor=False)
    # Names the path checks refuse already: partial downloads and hidden files.
    refused_by_path = ("x.part", "tiny.gguf.part", "tiny.gguf.part.json", ".hidden.gguf")
    for name in [*others, "mmproj-tiny.gguf", "sub"]:
        refused = app.http.delete(f"/api/models/llamacpp/{name}")
        assert_problem(refused, 400, "invalid_path" if name in refused_by_path else "not_a_model")
        assert (models / name).exists(), name
    for name in ("tiny.gguf", "sub/nested.gguf"):
        deleted = app.http.delete(f"/api/models/llamacpp/{name}")
        assert deleted.status_code == 200, deleted.text
        assert not (models / name).exists()
    assert sorted(p.name for p in models.iterdir()) == sorted([*others, "mmproj-tiny.gguf", "sub"])


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("clé-secrète".encode(), id="utf-8"),
        pytest.param(b"\xff\xfe\x80", id="not-utf-8"),
        pytest.param("my_ключ🔑".encode(), id="cyrillic-and-emoji"),
    ],
)
def test_a_non_ascii_bearer_token_is_refused_with_401(
    modelyard: Callable[..., RunningApp], token: bytes
) -> None:
    app = modelyard(monitor=False, api_key="admin-secret")
    headers = [(b"authorization", b"Bearer " + token)]
    resp = httpx.get(f"{app.url}/api/providers", headers=headers)
    assert_problem(resp, 401, "unauthorized")
    ws = app.url.replace("http", "ws") + "/ws/events?access_token=cl%C3%A9%FF"
    with pytest.raises(InvalidStatus), connect(ws, open_timeout=5):
        pass


def _chunked_post(url: str, path: str, total: int, chunk: int = 1 << 20) -> tuple[int, int, str]:
    """POST ``total`` bytes, chunked, on a raw socket, as fast as the server takes them.

    Returns (status, bytes sent before the answer came, the answer's body)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        )
        sock.sendall(head.encode())
        piece = f"{chunk:x}\r\n".encode() + b" " * chunk + b"\r\n"
        sent = 0
        sock.setblocking(False)
        answer = b""
        while sent < total:
            with contextlib.suppress(BlockingIOError):
                answer += sock.recv(65536)
            if answer:
                break
            try:
                sock.send(piece)
                sent += chunk
            except BlockingIOError:
                time.sleep(0.001)
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.setblocking(True)
        with contextlib.suppress(ConnectionResetError):
            while more := sock.recv(65536):  # the server closes the connection after it
                answer += more
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, sent, body.decode(errors="replace")


def test_a_200_mb_chunked_body_is_refused_without_being_read(
    modelyard: Callable[..., RunningApp],
) -> None:
    import psutil

    app = modelyard(monitor=False, max_body_bytes=1 << 20)
    server = psutil.Process()  # the app runs in this process
    before = server.memory_info().rss

    status, sent, body = _chunked_post(app.url, "/api/conversations", 200 << 20)

    assert status == 413 and json.loads(body)["code"] == "body_too_large"
    assert sent < 100 << 20  # answered long before the 200 MB were sent
    assert server.memory_info().rss - before < 20 << 20
    assert app.http.get("/api/version").status_code == 200  # still serving


def test_a_chunked_body_past_the_gateways_limit_is_refused_in_its_dialect(
    modelyard: Callable[..., RunningApp],
) -> None:
    # The guards call a gateway route themselves, past the app's exception handlers: the
    # refusal of a chunked body must still be a 413 the client's SDK can read.
    app = modelyard(monitor=False, gateway_max_body_bytes=1 << 20)

    status, sent, body = _chunked_post(app.url, "/v1/chat/completions", 64 << 20)

    refusal = json.loads(body)
    assert status == 413 and refusal["code"] == "body_too_large"
    assert refusal["error"]["code"] == "body_too_large"  # OpenAI's shape, for its SDK
    assert sent < 32 << 20
    assert app.http.get("/v1/models").status_code == 200  # still serving


def test_a_declared_length_over_the_limit_is_refused_before_anything_runs(
    modelyard: Callable[..., RunningApp],
) -> None:
    app = modelyard(monitor=False, max_body_bytes=1 << 20)
    resp = httpx.post(
        f"{app.url}/api/keys",
        content=b"{}" + b" " * (2 << 20),
        headers={"Content-Type": "application/json"},
    )
    assert_problem(resp, 413, "body_too_large")
    assert app.http.get("/api/keys").json()["keys"] == []


def test_a_hundred_thousand_patterns_are_refused_and_publishing_stays_quick(
    modelyard: Callable[..., RunningApp],
) -> None:
    app = modelyard(monitor=False)
    ws_url = app.url.replace("http", "ws") + "/ws/events"
    with connect(ws_url, open_timeout=5, max_size=None) as ws:
        ws.recv(timeout=5)  # the snapshot
        ws.send(json.dumps({"subscribe": [f"x{i}.*" for i in range(100_000)]}))
        reply = json.loads(ws.recv(timeout=30))
        assert (reply["type"], reply["data"]["code"]) == ("error", "subscription_too_large")
        ws.send(json.dumps({"subscribe": ["y" * 129]}))
        assert json.loads(ws.recv(timeout=10))["data"]["code"] == "subscription_too_large"
        ws.send(json.dumps({"subscribe": [f"download.{i}*" for i in range(64)]}))
        assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"
        assert app.http.get("/api/version").status_code == 200


def test_publishing_never_matches_patterns_again_for_a_known_type() -> None:
    """The matching cost is paid when patterns are set, not on the publisher's path: a
    subscription with the most patterns a socket may send is offered events through its
    compiled filter, whose verdict per type is remembered."""
    bus = EventBus()

    async def subscribe() -> None:
        sub = bus.subscribe([f"download.{i}*" for i in range(63)] + ["download.s*"])
        bus.publish(PROVIDER_STATUS, {})
        bus.publish(DOWNLOAD_STATE, {})
        assert sub.wants is not None
        assert sub.wants._verdicts == {"provider.status": False, "download.state": True}
        assert sub.get_nowait() is not None and sub.get_nowait() is None

    asyncio.run(subscribe())


def test_websockets_per_caller_are_bounded(modelyard: Callable[..., RunningApp]) -> None:
    app = modelyard(monitor=False, ws_max_connections=3)
    ws_url = app.url.replace("http", "ws") + "/ws/events"
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(connect(ws_url, open_timeout=5)) for _ in range(3)]
        for ws in sockets:
            ws.recv(timeout=5)
        with pytest.raises(InvalidStatus), connect(ws_url, open_timeout=5):
            pass
        sockets[0].close()

        def opens() -> bool:
            try:
                with connect(ws_url, open_timeout=5) as again:
                    return bool(json.loads(again.recv(timeout=5))["type"] == "snapshot")
            except InvalidStatus:
                return False

        wait_until(opens, "a socket to open once one of the three closed")
