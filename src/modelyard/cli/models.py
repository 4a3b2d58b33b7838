"""``modelyard ls``, ``rm``, ``start`` and ``stop``: the model catalog from a terminal."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import typer
from rich.table import Table

from modelyard.cli.app import app, client, console, fail, print_json
from modelyard.cli.client import Client
from modelyard.cli.resolve import Model, resolve

MODEL_STYLE = {
    "loaded": "green",
    "starting": "cyan",
    "downloading": "cyan",
    "available": "",
    "failed": "red",
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(i)?)?b?\s*$", re.IGNORECASE)
_START_TIMEOUT_S = 600.0  # a big model can take minutes to load; the server has its own limit


def parse_size(text: str | None) -> int | None:
    """``"500M"`` → 500_000_000, ``"2GiB"`` → 2 × 2**30, ``"123"`` → 123 bytes."""
    if text is None:
        return None
    match = _SIZE.match(text)
    if match is None:
        fail(f"{text!r} is not a size", "Use bytes or a unit: 500M, 2G, 1.5GiB.")
    prefix = (match[2] or "").lower()
    scale = (1024 if match[3] else 1000) ** ("kmgt".index(prefix) + 1) if prefix else 1
    return int(float(match[1]) * scale)


def human(size: int | None) -> str:
    """Bytes in SI units, like the web UI."""
    if size is None:
        return "–"
    units = ("B", "KB", "MB", "GB", "TB")
    value, index = float(size), 0
    while value >= 1000 and index < len(units) - 1:
        value, index = value / 1000, index + 1
    return f"{value:.0f} B" if index == 0 else f"{value:.1f} {units[index]}"


def _table(models: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("PROVIDER", "INSTANCE", "NAME", "STATUS", "SIZE", "PARAMS", "QUANT", "MODE"):
        table.add_column(column, justify="right" if column == "SIZE" else "left")
    for m in models:
        style = MODEL_STYLE.get(m["status"], "")
        table.add_row(
            m["provider"],
            m["instance_id"],
            m["name"],
            f"[{style}]{m['status']}[/]" if style else m["status"],
            human(m.get("size")),
            m.get("parameter_size") or "–",
            m.get("quantization") or "–",
            m.get("mode") or "llm",
        )
    return table


def _path(provider: str, name: str) -> str:
    """The model's URL path. Dot segments are percent-encoded: an HTTP client would otherwise
    resolve ``../`` itself, and the server could not refuse the name."""
    segments = [
        quote(part, safe=":") if part not in (".", "..") else part.replace(".", "%2E")
        for part in name.split("/")
    ]
    return f"/api/models/{quote(provider, safe='')}/{'/'.join(segments)}"


def _ref(provider: str, name: str, instance: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"provider": provider, "name": name}
    if instance:
        body["instance_id"] = instance
    return body


@app.command("ls")
def list_models(
    q: str = typer.Option("", "--q", "-q", help="Name contains this text (any case)."),
    status: str | None = typer.Option(None, help="loaded, starting, available, … (csv)."),
    provider: str | None = typer.Option(None, help="ollama, llamacpp, lmstudio, … (csv)."),
    source: str | None = typer.Option(None, help="ollama, local, hf, url, … (csv)."),
    min_size: str | None = typer.Option(None, "--min-size", help="At least this big: 500M, 2G."),
    max_size: str | None = typer.Option(None, "--max-size", help="At most this big."),
    sort: str = typer.Option("name", help="name, size, modified or status."),
    desc: bool = typer.Option(False, "--desc", help="Sort descending."),
    page: int = typer.Option(1, min=1, help="Page number."),
    page_size: int = typer.Option(100, "--page-size", min=1, max=500, help="Models per page."),
    sync: bool = typer.Option(False, "--sync", help="Ask every instance first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The models of every instance, searched, filtered and sorted."""
    params = {
        "q": q or None,
        "status": status,
        "provider": provider,
        "source": source,
        "min_size": parse_size(min_size),
        "max_size": parse_size(max_size),
        "sort": sort,
        "order": "desc" if desc else "asc",
        "page": page,
        "page_size": page_size,
    }
    with client() as c:
        if sync:
            c.post("/api/models/sync")
        data = c.get("/api/models/search", **params)
    if as_json:
        print_json(data)
        return
    models = data["models"]
    if not models and data["total"] > 0:
        console.print(f"[dim]{_past_the_end(data)}[/]", highlight=False)
        return
    if not models:
        filtered = any(params[k] is not None for k in ("q", "status", "provider", "source"))
        filtered = filtered or min_size is not None or max_size is not None
        console.print("[dim]No models match.[/]" if filtered else "[dim]No models yet.[/]")
        return
    console.print(_table(models))
    first = (data["page"] - 1) * data["page_size"] + 1
    more = " — use --page for more" if first + len(models) - 1 < data["total"] else ""
    console.print(f"[dim]{first}–{first + len(models) - 1} of {data['total']}{more}[/]")


def _past_the_end(data: dict[str, Any]) -> str:
    """'Page 5 is past the end: 18 models fit on 1 page of 100 (use --page 1).'"""
    total, size = int(data["total"]), int(data["page_size"])
    pages = -(-total // size)
    models = "model" if total == 1 else "models"
    use = "--page 1" if pages == 1 else f"--page 1 to {pages}"
    return (
        f"Page {data['page']} is past the end: {total} {models} fit on {pages} "
        f"page{'' if pages == 1 else 's'} of {size} (use {use})."
    )


WORDS = typer.Argument(
    ...,
    metavar="[PROVIDER] NAME",
    help="The model's name, as 'modelyard ls' shows it; or its provider, then the name.",
    show_default=False,
)
PROVIDER = typer.Option(
    None, "--provider", "-p", help="ollama, llamacpp or lmstudio (when NAME is on several)."
)
INSTANCE = typer.Option(None, "--instance", "-i", help="Instance id.")


def _target(
    c: Client,
    words: list[str],
    provider: str | None,
    instance: str | None,
    prefer: Callable[[Model], bool] | None = None,
) -> tuple[str, str, str | None]:
    """(provider, name, instance) from ``PROVIDER NAME``, or from ``NAME`` and the catalog."""
    if len(words) > 2:
        fail(f"too many arguments: {' '.join(words)}", "Give NAME, or PROVIDER NAME.")
    if len(words) == 2:
        if provider is not None and provider != words[0]:
            fail(f"two providers given: {words[0]!r} and --provider {provider!r}", "Give one.")
        return words[0], words[1], instance
    model = resolve(c, words[0], provider=provider, instance=instance, prefer=prefer)
    return str(model["provider"]), str(model["name"]), model.get("instance_id") or instance


@app.command("start")
def start_model(
    words: list[str] = WORDS,
    provider: str | None = PROVIDER,
    instance: str | None = INSTANCE,
    force: bool = typer.Option(False, "--force", help="Start even if it may not fit in memory."),
    ctx_size: int | None = typer.Option(None, "--ctx-size", "-c", min=256, help="Context size."),
) -> None:
    """Load a model and wait until the runtime says it is loaded."""
    with client() as c:
        provider, name, instance = _target(c, words, provider, instance)
        body = {**_ref(provider, name, instance), "force": force}
        if ctx_size:
            body["ctx_size"] = ctx_size
        with console.status(f"Starting {name}…"):
            started = c.request("POST", "/api/models/start", json=body, timeout=_START_TIMEOUT_S)
    where = (started.get("loaded") or {}).get("base_url")
    at = f" at {where}" if where else ""
    console.print(f"[green]{started['status']}[/] {started['provider']}/{started['name']}{at}")


def _is_loaded(model: Model) -> bool:
    return model.get("status") in {"loaded", "starting"}


@app.command("stop")
def stop_model(
    words: list[str] = WORDS,
    provider: str | None = PROVIDER,
    instance: str | None = INSTANCE,
) -> None:
    """Unload a model (a GGUF model's server stops)."""
    with client() as c:
        target = _target(c, words, provider, instance, _is_loaded)
        stopped = c.request("POST", "/api/models/stop", json=_ref(*target))
    console.print(f"{stopped['status']} {stopped['provider']}/{stopped['name']}")


@app.command("rm")
def remove_model(
    words: list[str] = WORDS,
    provider: str | None = PROVIDER,
    instance: str | None = INSTANCE,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a model from disk (a running GGUF model must be stopped first)."""
    with client() as c:
        provider, name, instance = _target(c, words, provider, instance)
        if not yes and not typer.confirm(f"Delete {provider}/{name}?", default=False):
            console.print("Nothing deleted.")
            raise typer.Exit(1)
        params = {"instance_id": instance} if instance else None
        c.request("DELETE", _path(provider, name), params=params)
    console.print(f"deleted {provider}/{name}")
