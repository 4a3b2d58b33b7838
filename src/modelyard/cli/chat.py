"""``modelyard chat MODEL``: talk to a model in the terminal, the answer streaming as it comes.

Commands: ``/system TEXT`` sets the system prompt (``/system`` alone shows it), ``/clear``
starts a fresh conversation, ``/model NAME`` switches model, ``/help``, ``/quit``. Ctrl-C
stops the answer being written (it is kept, marked stopped) without leaving; Ctrl-D or
``/quit`` leaves.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import typer

from modelyard.cli.app import app, cli_words, client, console, explain, fail
from modelyard.cli.client import Client, ClientError
from modelyard.cli.resolve import matching

PROMPT = "› "
HELP = (
    "/system TEXT  set the system prompt (/system alone shows it)\n"
    "/model NAME   switch to another model\n"
    "/clear        start a new conversation\n"
    "/quit         leave (or Ctrl-D); Ctrl-C stops an answer"
)


def _events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.startswith("data: "):
            yield json.loads(line[6:])


@dataclass(frozen=True)
class Found:
    """A model that can chat, as the catalog names it (``llama3.2`` → ``llama3.2:latest``)."""

    provider: str
    instance_id: str | None
    name: str


def lookup(c: Client, name: str, provider: str | None, instance: str | None = None) -> Found | None:
    """The catalog's model that can chat named ``name``; None when the catalog does not know
    it, or the server could not read it (HTTP 5xx). A server that cannot be reached, or
    refuses the request, raises ClientError: it must not pass for an unknown model."""
    try:
        models = c.get("/api/models/list").get("models", [])
    except ClientError as exc:
        if exc.status >= 500:
            return None
        raise
    found = matching(models, name, provider, instance)
    matches = [m for m in found if m.get("mode", "llm") == "llm"]
    if not matches:
        return None
    loaded = [m for m in matches if m.get("status") == "loaded"]
    chosen = (loaded or matches)[0]
    return Found(str(chosen["provider"]), chosen.get("instance_id"), str(chosen["name"]))


class ChatSession:
    """One terminal chat: the conversation being continued and the commands."""

    def __init__(self, c: Client, provider: str, model: str, instance: str | None) -> None:
        self.c = c
        self.provider = provider
        self.model = model
        self.instance = instance
        self.system = ""
        self.cid = ""

    def new_conversation(self) -> None:
        body: dict[str, Any] = {"provider": self.provider, "model": self.model}
        if self.instance:
            body["instance_id"] = self.instance
        if self.system:
            body["system"] = self.system
        created = self.c.post("/api/conversations", body)
        self.cid = created["id"]
        self.instance = created.get("instance_id") or self.instance

    def command(self, line: str) -> bool:
        """Run a /command; False means leave."""
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        if name in ("/quit", "/exit", "/q"):
            return False
        if name == "/system":
            if arg:
                self.system = arg
                self.c.request("PATCH", f"/api/conversations/{self.cid}", json={"system": arg})
                console.print("[dim]System prompt set.[/]")
            else:
                console.print(self.system or "[dim](no system prompt)[/]", highlight=False)
        elif name == "/clear":
            self.new_conversation()
            console.print("[dim]New conversation.[/]")
        elif name == "/model" and arg:
            self.switch(arg)
        else:
            console.print(HELP, highlight=False)
        return True

    def switch(self, name: str) -> None:
        # A model the catalog does not know is tried on the current provider.
        found = lookup(self.c, name, None) or Found(self.provider, None, name)
        body = {"provider": found.provider, "model": found.name}
        if found.instance_id:
            body["instance_id"] = found.instance_id
        changed = self.c.request("PATCH", f"/api/conversations/{self.cid}", json=body)
        self.provider, self.model = changed["provider"], changed["model"]
        self.instance = changed.get("instance_id") or None
        console.print(f"[dim]Now talking to {self.model} ({self.provider}).[/]", highlight=False)

    def answer(self, content: str) -> None:
        """Stream one answer; Ctrl-C stops it and keeps what was written."""
        url = f"/api/conversations/{self.cid}/messages"
        wrote = False
        try:
            with self.c.stream("POST", url, {"content": content}) as resp:
                for event in _events(resp.iter_lines()):
                    wrote = self._show(event, wrote)
        except KeyboardInterrupt:
            # Closing the request already stops the answer; this waits until it is stored.
            with contextlib.suppress(ClientError, KeyboardInterrupt):
                self.c.post(f"/api/conversations/{self.cid}/stop")
            console.print("\n[yellow]\\[stopped][/]")

    def _show(self, event: dict[str, Any], wrote: bool) -> bool:
        kind = event.get("type")
        if kind == "token":
            sys.stdout.write(event["text"])
            sys.stdout.flush()
            return True
        if kind == "status":
            console.print(f"[dim]{event['text']}[/]", highlight=False)
        elif kind == "done":
            console.print(("\n" if wrote else "") + _stats(event), highlight=False)
        elif kind == "error":
            if wrote:
                sys.stdout.write("\n")
            console.print(
                f"[bold red]error:[/] {event['detail']} ({event['code']})", highlight=False
            )
            if event.get("hint"):
                console.print(f"[dim]hint:[/] {cli_words(event['hint'])}", highlight=False)
        return wrote


def _stats(done: dict[str, Any]) -> str:
    parts = []
    tokens = (done.get("usage") or {}).get("completion_tokens")
    if tokens is not None:
        parts.append(f"{tokens} tokens")
    if done.get("tokens_per_s"):
        parts.append(f"{done['tokens_per_s']:.1f} tok/s")
    if done.get("ttft_ms") is not None:
        parts.append(f"first token {done['ttft_ms']:.0f} ms")
    parts.append(str(done.get("model")))
    stopped = " [yellow](stopped)[/]" if done.get("state") == "stopped" else ""
    return f"[dim]{' · '.join(parts)}[/]{stopped}"


def _read_line() -> str | None:
    """The next line typed; None on Ctrl-D. Ctrl-C at the prompt just gives a new prompt."""
    while True:
        try:
            return input(PROMPT)
        except EOFError:
            sys.stdout.write("\n")
            return None
        except KeyboardInterrupt:
            sys.stdout.write("\n")


@app.command()
def chat(
    model: str = typer.Argument(..., help="The model, as 'modelyard ls' names it."),
    provider: str = typer.Option(None, "--provider", "-p", help="ollama, llamacpp, …"),
    instance: str = typer.Option(None, "--instance", "-i", help="The instance id."),
    system: str = typer.Option(None, "--system", "-s", help="A system prompt."),
) -> None:
    """Chat with a model in the terminal (the answer streams as it is written)."""
    with contextlib.suppress(ImportError):  # line editing and history for input()
        import readline  # noqa: F401
    with client() as c:
        found = lookup(c, model, provider, instance)
        if found is None and provider is None:
            fail(
                f"no model that can chat is named {model!r}",
                "'modelyard ls' lists the models; or pass --provider to use it anyway.",
            )
        # The catalog's name (llama3.2 → llama3.2:latest) is the one the conversation keeps.
        if found is not None:
            session = ChatSession(c, found.provider, found.name, instance or found.instance_id)
        else:
            session = ChatSession(c, provider, model, instance)
        provider = session.provider
        session.system = system or ""
        session.new_conversation()
        console.print(
            f"Chatting with [bold]{model}[/] ({provider}). /help for commands, Ctrl-D to leave.",
            highlight=False,
        )
        while (line := _read_line()) is not None:
            text = line.strip()
            if not text:
                continue
            try:
                if text.startswith("/"):
                    if not session.command(text):
                        break
                else:
                    session.answer(text)
            except ClientError as exc:
                message, hint = explain(exc)
                console.print(f"[bold red]error:[/] {message}", highlight=False)
                if hint:
                    console.print(f"[dim]hint:[/] {hint}", highlight=False)
