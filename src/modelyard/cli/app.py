"""The Typer app and the helpers every command module shares."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from modelyard.cli.client import Client, ClientError
from modelyard.config import load_settings
from modelyard.errors import ConfigError
from modelyard.instance_config import INSTANCE_ID

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
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    if hint:
        err_console.print(f"[dim]hint:[/] {escape(hint)}", highlight=False)
    raise typer.Exit(code)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# API hints that name an endpoint, said the CLI's way (the API's hints are for HTTP clients).
_CLI_WORDS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = tuple(
    (re.compile(pattern), words)
    for pattern, words in (
        (r"GET /api/providers(?![/\w])", "'modelyard providers list'"),
        (r"GET /api/models/list(?![/\w])", "'modelyard ls'"),
        (r"GET /api/downloads(?![/\w])", "'modelyard downloads'"),
        (r"POST /api/downloads(?![/\w])|POST /api/models/download(?![/\w])", "'modelyard pull'"),
        (r"(?<![\w-])sync first", "run 'modelyard ls --sync' first"),
        (r"(?<![\w-])force=true", "--force"),
        (r"see the Providers page", "see 'modelyard status'"),
        (r"on the Providers page", "in 'modelyard status'"),
        (r"\bquery parameter '(\w+)'", lambda m: _flag(m[1])),
    )
)
_ROUTE_HINT = (
    "Check that MODELYARD_URL (or the config file's host and port) points at modelyard, "
    "of the same version as this CLI."
)


def cli_words(text: str) -> str:
    """An API message or hint with endpoints and parameters named as the CLI names them."""
    for pattern, words in _CLI_WORDS:
        text = pattern.sub(words, text)
    return text


def explain(exc: ClientError) -> tuple[str, str]:
    """(message, hint) for a ClientError, in the CLI's words: the one place that translates."""
    if exc.code == "validation_error" and exc.errors:
        loc = [str(p) for p in exc.errors[0].get("loc", [])]
        if len(loc) >= 2 and loc[0] == "query":
            msg = str(exc.errors[0].get("msg", "")) or exc.message
            return f"invalid value for {_flag(loc[1])}: {msg}", cli_words(exc.hint)
    if exc.code in ("route_not_found", "method_not_allowed"):
        return f"the server does not know this request (HTTP {exc.status})", _ROUTE_HINT
    return exc.message, cli_words(exc.hint)


def make_client() -> Client:
    """A client for the server the settings name; MODELYARD_URL wins over host and port."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        path = os.environ.get("MODELYARD_CONFIG", "")
        where = f" (config file {path}, or a MODELYARD_* variable)" if path else ""
        fail(f"{exc.detail}{'' if path in exc.detail else where}", exc.hint)
    return Client.from_env(settings)


@contextmanager
def client() -> Iterator[Client]:
    """A client for the running server; ClientErrors become a clean message and exit 1."""
    try:
        with make_client() as c:
            yield c
    except ClientError as exc:
        fail(*explain(exc))


def print_json(data: Any) -> None:
    console.print_json(json.dumps(data))


_INSTANCE_ID = re.compile(INSTANCE_ID)  # as InstanceConfig.id accepts it
_PROVIDER = re.compile(r"[A-Za-z0-9_-]{1,32}")
_KEY_HINT = (
    "Use PROVIDER/ID (or PROVIDER ID), e.g. llamacpp/qwen-small; an id is 1–64 letters, "
    "digits, '.', '_' or '-'. 'modelyard providers list' shows the instances."
)


def split_key(value: str, second: str | None = None) -> tuple[str, str]:
    """'provider/id' or 'provider id' → (provider, id); anything else fails with the form."""
    if second is not None:
        provider, instance_id, shown = value, second, f"{value} {second}"
    elif "/" not in value:
        fail(f"{value!r} does not name an instance", _KEY_HINT)
    else:
        provider, _, instance_id = value.partition("/")
        shown = value
    if not _PROVIDER.fullmatch(provider) or not _INSTANCE_ID.fullmatch(instance_id):
        fail(f"{shown!r} is not PROVIDER/ID", _KEY_HINT)
    return provider, instance_id


Command = Callable[..., None]
