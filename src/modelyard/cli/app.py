"""The Typer app and the helpers every command module shares."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console

from modelyard.client import Client, ClientError

app = typer.Typer(
    help="modelyard: see, fetch, run and talk to the language models on your own machines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

STATE_STYLE = {
    "RUNNING": "green",
    "STARTING": "cyan",
    "DEGRADED": "yellow",
    "ERROR": "red",
    "STOPPED": "dim",
    "UNKNOWN": "dim",
}


def fail(message: str, hint: str = "", code: int = 1) -> NoReturn:
    """Print an error (no traceback) and exit."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    if hint:
        err_console.print(f"[dim]hint:[/] {hint}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def client() -> Iterator[Client]:
    """A client for the running server; ClientErrors become a clean message and exit 1."""
    try:
        with Client.from_env() as c:
            yield c
    except ClientError as exc:
        fail(exc.message, exc.hint)


def print_json(data: Any) -> None:
    console.print_json(json.dumps(data))


def split_key(value: str, second: str | None = None) -> tuple[str, str]:
    """'provider/id' or 'provider id' → (provider, id)."""
    if second:
        return value, second
    if "/" not in value:
        fail(f"{value!r} does not name an instance", "Use PROVIDER/ID, e.g. llamacpp/qwen-small.")
    provider, _, instance_id = value.partition("/")
    return provider, instance_id


Command = Callable[..., None]
