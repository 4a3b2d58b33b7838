"""Chat defects found by an audit, each checked the way a user meets it, against the
stand-ins (and the genuine llama-server for a context that is really exceeded):
Anthropic sampling options, a failed message that must not poison the conversation, useful
hints on upstream and internal errors, and the CLI's catalog names and unreachable server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from modelyard.chat.types import ChatOptions, Piece, Target, Turn
from modelyard.instance_config import InstanceConfig
from modelyard.providers.clients import Clients
from modelyard.providers.registry import registry
from tests.fakes.common import ReplyScript
from tests.support.app_server import RunningApp
from tests.support.chat import llama_server, send, text_of
from tests.support.servers import closed_port
from tests.support.tiny_gguf import write_tiny_gguf

PIECES = ["Hello", ",", " world", "!"]


def chat_with(app: RunningApp, provider: str, model: str, **extra: Any) -> str:
    resp = app.http.post("/api/conversations", json={"provider": provider, "model": model, **extra})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def messages_of(app: RunningApp, cid: str) -> list[dict[str, Any]]:
    return list(app.http.get(f"/api/conversations/{cid}").json()["messages"])


def anthropic_instance(server: Any) -> InstanceConfig:
    return InstanceConfig(
        provider="anthropic",
        id="default",
        base_url=server.url,
        api_key=server.state.api_key,
    )


def ollama_instance(url: str) -> InstanceConfig:
    return InstanceConfig(provider="ollama", id="default", base_url=url)


# -- 1. Anthropic with temperature and top_p ---------------------------------------------------


def test_anthropic_chat_with_temperature_and_top_p_streams_and_sends_them(
    modelyard: Callable[..., RunningApp], anthropic_server: Any
) -> None:
    anthropic_server.state.reply = ReplyScript(pieces=PIECES)
    app = modelyard([anthropic_instance(anthropic_server)])
    # Options saved on the conversation (the Chat page's settings) ...
    cid = chat_with(
        app, "anthropic", "claude-sonnet-4-6", options={"temperature": 0.3, "top_p": 0.8}
    )
    events = send(app.http, cid, content="Say hi")
    assert text_of(events) == "Hello, world!", events
    assert events[-1]["type"] == "done" and events[-1]["state"] == "complete"
    sent = anthropic_server.log.for_path("/v1/messages")[-1].json()
    assert (sent["temperature"], sent["top_p"], sent["stream"]) == (0.3, 0.8, True)
    assert sent["messages"] == [{"role": "user", "content": "Say hi"}]
    assert messages_of(app, cid)[-1]["content"] == "Hello, world!"

    # ... and options given with one message; Anthropic's temperature stops at 1.
    again = send(app.http, cid, content="Again", options={"temperature": 1.6, "top_p": 0.5})
    assert text_of(again) == "Hello, world!" and again[-1]["type"] == "done"
    sent = anthropic_server.log.for_path("/v1/messages")[-1].json()
    assert (sent["temperature"], sent["top_p"]) == (1.0, 0.5)


# -- 3. a failed message does not break the conversation ---------------------------------------


def test_a_failed_message_is_not_sent_again_with_the_next_ones(
    modelyard: Callable[..., RunningApp], ollama_server: Any
) -> None:
    ollama_server.state.add_model("llama3.2")
    app = modelyard([ollama_instance(ollama_server.url)])
    cid = chat_with(app, "ollama", "llama3.2")
    ollama_server.state.reply = ReplyScript(pieces=["Hi!"])
    assert send(app.http, cid, content="Hello")[-1]["type"] == "done"

    ollama_server.state.reply = ReplyScript(pieces=PIECES, error_after=0)  # the model breaks
    failed = send(app.http, cid, content="A message the model chokes on")
    assert failed[-1]["type"] == "error"

    ollama_server.state.reply = ReplyScript(pieces=["Fine", " now."])
    ok = send(app.http, cid, content="Are you there?")
    assert ok[-1]["type"] == "done" and text_of(ok) == "Fine now."
    assert ollama_server.log.for_path("/api/chat")[-1].json()["messages"] == [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": "Are you there?"},
    ]
    # The failed message stays in the conversation for the user to see, marked failed.
    stored = [(m["role"], m["content"], m["state"]) for m in messages_of(app, cid)]
    assert stored[2:4] == [
        ("user", "A message the model chokes on", "complete"),
        ("assistant", "", "error"),
    ]


def test_regenerating_a_failed_answer_sends_its_message_again(
    modelyard: Callable[..., RunningApp], ollama_server: Any
) -> None:
    ollama_server.state.add_model("llama3.2")
    app = modelyard([ollama_instance(ollama_server.url)])
    cid = chat_with(app, "ollama", "llama3.2")
    ollama_server.state.reply = ReplyScript(pieces=PIECES, error_after=0)
    assert send(app.http, cid, content="Try this")[-1]["type"] == "error"
    ollama_server.state.reply = ReplyScript(pieces=["Done."])
    again = send(app.http, cid, regenerate=True)
    assert again[-1]["type"] == "done" and text_of(again) == "Done."
    assert ollama_server.log.for_path("/api/chat")[-1].json()["messages"] == [
        {"role": "user", "content": "Try this"},
    ]


def test_a_message_too_long_for_the_context_does_not_break_the_next_ones(
    modelyard: Callable[..., RunningApp], tmp_path: Path
) -> None:
    """The genuine llama-server with a 256-token context refuses a long message; the next,
    short one must be answered (it used to be sent together with the long one, forever)."""
    model = write_tiny_gguf(tmp_path / "tiny.gguf")
    with llama_server(model, tmp_path / "server.log", "-c", "256") as url:
        inst = InstanceConfig(provider="llamacpp", id="tiny", base_url=url)
        app = modelyard([inst])
        cid = chat_with(app, "llamacpp", "tiny")
        too_long = "Please read all of this very long message about the sea. " * 40
        refused = send(app.http, cid, content=too_long, options={"max_tokens": 4})
        assert refused[-1]["type"] == "error", refused[-1]
        assert refused[-1]["code"] == "context_exceeded", refused[-1]

        for question in ("Hi", "And now?"):
            ok = send(app.http, cid, content=question, options={"max_tokens": 4})
            assert ok[-1]["type"] == "done", ok[-1]
            assert ok[-1]["state"] == "complete"
            assert ok[-1]["usage"]["prompt_tokens"] < 100  # the long message was not sent
            assert ok[-1]["trimmed"] == 0


# -- 6. hints on upstream and internal errors ---------------------------------------------------


def test_an_upstream_error_in_the_middle_of_a_stream_has_a_hint(
    modelyard: Callable[..., RunningApp], ollama_server: Any, openai_server: Any
) -> None:
    ollama_server.state.add_model("llama3.2")
    ollama_server.state.reply = ReplyScript(pieces=PIECES, error_after=2)
    openai_server.state.reply = ReplyScript(pieces=PIECES, error_after=1)
    vllm = InstanceConfig(provider="openai_compat", id="vllm", base_url=openai_server.url)
    app = modelyard([ollama_instance(ollama_server.url), vllm])

    for provider, model, key in (
        ("ollama", "llama3.2", "ollama/default"),
        ("openai_compat", "qwen", "openai_compat/vllm"),
    ):
        error = send(app.http, chat_with(app, provider, model), content="Hi")[-1]
        assert error["type"] == "error" and error["code"] == "upstream_error", error
        assert key in error["hint"] and "log" in error["hint"], error


def test_an_internal_error_has_a_hint_naming_the_instance(
    modelyard: Callable[..., RunningApp], ollama_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ollama_server.state.add_model("llama3.2")
    app = modelyard([ollama_instance(ollama_server.url)])

    async def broken(
        clients: Clients, target: Target, turns: list[Turn], options: ChatOptions
    ) -> AsyncIterator[Piece]:
        raise RuntimeError("a bug")  # a fault no stand-in can cause: a bug in modelyard
        yield Piece()  # pragma: no cover - makes this an async generator

    monkeypatch.setattr(registry.get("ollama"), "chat", broken)
    error = send(app.http, chat_with(app, "ollama", "llama3.2"), content="Hi")[-1]
    assert error["type"] == "error" and error["code"] == "internal_error", error
    assert "ollama/default" in error["hint"] and "log" in error["hint"], error


# -- 5 and 7. the CLI ---------------------------------------------------------------------------


def run_cli(url: str, *args: str, typed: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODELYARD_URL": url, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "modelyard", *args],
        input=typed,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_cli_chat_says_the_server_cannot_be_reached() -> None:
    done = run_cli(f"http://127.0.0.1:{closed_port()}", "chat", "llama3.2")
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "modelyard is not running" in output, output
    assert "modelyard serve" in output  # the hint: how to start it
    assert "no model" not in output and "Traceback" not in output, output


def test_cli_chat_stores_the_catalog_name_of_the_model(
    modelyard: Callable[..., RunningApp], ollama_server: Any
) -> None:
    ollama_server.state.add_model("llama3.2")
    ollama_server.state.add_model("qwen2.5")
    ollama_server.state.reply = ReplyScript(pieces=["Hi", " there"])
    app = modelyard([ollama_instance(ollama_server.url)])
    assert app.http.post("/api/models/sync").status_code == 200

    done = run_cli(app.url, "chat", "llama3.2", typed="Hello\n/model qwen2.5\nAgain\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Hi there" in done.stdout
    assert "Now talking to qwen2.5:latest (ollama)." in done.stdout, done.stdout
    (conversation,) = app.http.get("/api/conversations").json()["conversations"]
    assert conversation["model"] == "qwen2.5:latest"
    answers = [m for m in messages_of(app, conversation["id"]) if m["role"] == "assistant"]
    assert [m["model"] for m in answers] == ["llama3.2:latest", "qwen2.5:latest"]
    sent = [r.json()["model"] for r in ollama_server.log.for_path("/api/chat")]
    assert sent == ["llama3.2:latest", "qwen2.5:latest"]

    # Named with its provider and instance too, it is still kept under its catalog name.
    again = run_cli(app.url, "chat", "llama3.2", "--provider", "ollama", "--instance", "default")
    assert again.returncode == 0, again.stdout + again.stderr
    newest = app.http.get("/api/conversations").json()["conversations"][0]
    assert newest["id"] != conversation["id"] and newest["model"] == "llama3.2:latest"
