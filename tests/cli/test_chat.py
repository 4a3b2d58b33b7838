"""``modelyard chat`` driven through a pseudo-terminal, as a person would use it: streaming,
/system, /model, Ctrl-C to stop an answer without leaving, /clear, Ctrl-D to leave."""

from __future__ import annotations

import codecs
import contextlib
import os
import pty
import re
import select
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from modelyard.instance_config import InstanceConfig
from tests.fakes.common import ReplyScript
from tests.support.app_server import RunningApp
from tests.support.waiting import wait_until

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][AB0-2]|\r")


class Terminal:
    """A child process on a pseudo-terminal, read and written like a person would."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: the terminal is its controlling tty
            os.execvpe(argv[0], argv, env)
        self.pid, self.fd = pid, fd
        self.seen = ""
        self.status: int | None = None
        # A character may be split between two reads.
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def expect(self, text: str, timeout: float = 30) -> str:
        """Read until ``text`` shows; return what came before it (and consume both)."""
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} did not show; the terminal shows:\n{self.seen}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # the child exited and the terminal closed
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"exited before {text!r} showed:\n{self.seen}")
                # Stripped as a whole: an escape sequence may be split between reads too.
                self.seen = ANSI.sub("", self.seen + self.decoder.decode(chunk))
        before, _, self.seen = self.seen.partition(text)
        return before

    def wait_exit(self, timeout: float = 20) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with_pid, status = os.waitpid(self.pid, os.WNOHANG)
            if with_pid:
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
            select.select([self.fd], [], [], 0.05)
            with contextlib.suppress(OSError):
                os.read(self.fd, 4096)
        raise AssertionError("the chat did not exit")

    def close(self) -> None:
        if self.status is None:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
        os.close(self.fd)


@pytest.fixture
def terminal() -> Iterator[Callable[..., Terminal]]:
    started: list[Terminal] = []

    def start(url: str, *args: str) -> Terminal:
        env = {**os.environ, "MODELYARD_URL": url, "TERM": "xterm", "NO_COLOR": "1"}
        term = Terminal([sys.executable, "-m", "modelyard", "chat", *args], env)
        started.append(term)
        return term

    yield start
    for term in started:
        term.close()


def test_chat_in_a_terminal(
    modelyard: Callable[..., RunningApp], ollama_server: Any, terminal: Callable[..., Terminal]
) -> None:
    ollama_server.state.add_model("llama3.2")
    ollama_server.state.add_model("qwen2.5:0.5b")
    ollama_server.state.reply = ReplyScript(pieces=["Hi", " there", "!"])
    inst = InstanceConfig(provider="ollama", id="default", base_url=ollama_server.url)
    app = modelyard([inst])
    term = terminal(app.url, "llama3.2", "--provider", "ollama", "--system", "Be kind.")

    term.expect("Chatting with llama3.2 (ollama)")
    term.expect("› ")
    term.send("Hello\n")
    assert "Hi there!" in term.expect("tokens")
    term.expect("llama3.2")
    sent = ollama_server.log.for_path("/api/chat")[-1].json()["messages"]
    assert sent == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hello"},
    ]

    term.expect("› ")
    term.send("/system Be brief.\n")
    term.expect("System prompt set.")
    term.send("/model qwen2.5:0.5b\n")
    term.expect("Now talking to qwen2.5:0.5b (ollama).")

    # A long, slow answer: Ctrl-C stops it and the chat goes on.
    ollama_server.state.reply = ReplyScript(pieces=[f" w{i}" for i in range(500)], token_delay=0.02)
    term.send("Tell me everything\n")
    term.expect(" w3")
    term.send("\x03")
    term.expect("[stopped]")
    term.expect("› ")
    (conversation,) = app.http.get("/api/conversations").json()["conversations"]
    detail = app.http.get(f"/api/conversations/{conversation['id']}").json()
    assert detail["system"] == "Be brief." and detail["model"] == "qwen2.5:0.5b"
    answer = detail["messages"][-1]
    assert answer["state"] == "stopped" and answer["model"] == "qwen2.5:0.5b"
    assert answer["content"].startswith(" w0 w1 w2 w3")
    upstream = ollama_server.log.for_path("/api/chat")[-1]
    assert upstream.wait_finished(10) and upstream.disconnected

    ollama_server.state.reply = ReplyScript(pieces=["Fresh", " start"])
    term.send("/clear\n")
    term.expect("New conversation.")
    term.send("Again\n")
    term.expect("Fresh start")
    term.expect("› ")
    wait_until(
        lambda: len(app.http.get("/api/conversations").json()["conversations"]) == 2,
        "the second conversation to be stored",
    )

    term.send("\x04")  # Ctrl-D leaves
    assert term.wait_exit() == 0


def test_an_unknown_model_and_a_server_that_is_not_running(
    modelyard: Callable[..., RunningApp], terminal: Callable[..., Terminal]
) -> None:
    app = modelyard([])
    term = terminal(app.url, "no-such-model")
    term.expect("no model that can chat is named 'no-such-model'")
    assert term.wait_exit() == 1
    app.stop()
    down = terminal(app.url, "llama3.2", "--provider", "ollama")
    down.expect("modelyard is not running")
    assert down.wait_exit() == 1
