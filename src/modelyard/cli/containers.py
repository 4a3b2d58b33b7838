"""``modelyard containers ...``: container instances' resource use, log, removal, recreation."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import typer
from rich.table import Table

from modelyard.cli.app import STATE_STYLE, app, client, console, print_json, split_key
from modelyard.cli.models import human

containers_app = typer.Typer(
    help="Container instances: resource use, logs, remove, recreate with another tag.",
    no_args_is_help=True,
)
app.add_typer(containers_app, name="containers")

INSTANCE = typer.Argument(..., help="PROVIDER/ID")


def _path(instance: str, tail: str = "") -> str:
    provider, instance_id = split_key(instance)
    return f"/api/providers/{provider}/instances/{instance_id}/container{tail}"


def _row(table: Table, use: dict[str, Any]) -> None:
    cpu = f"{use['cpu_percent']:.1f} %" if use.get("cpu_percent") is not None else "–"
    memory = "–"
    if use.get("memory_bytes") is not None:
        limit = use.get("memory_limit_bytes") or 0
        memory = human(use["memory_bytes"]) + (f" / {human(limit)}" if limit else "")
    table.add_row(
        f"{use['provider']}/{use['instance_id']}",
        use["name"],
        use["image"],
        use["status"],
        cpu,
        memory,
    )


def _table(uses: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("INSTANCE", "CONTAINER", "IMAGE", "STATUS", "CPU", "MEMORY"):
        table.add_column(col)
    for use in uses:
        _row(table, use)
    return table


@containers_app.command("list")
def list_containers(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every container instance with its CPU and memory use."""
    with client() as c:
        data = c.get("/api/containers")
    if as_json:
        print_json(data)
    else:
        console.print(_table(data["containers"]))


@containers_app.command()
def stats(
    instance: str = INSTANCE, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """One container's CPU and memory use."""
    with client() as c:
        data = c.get(_path(instance, "/stats"))
    if as_json:
        print_json(data)
    else:
        console.print(_table([data]))


@containers_app.command()
def logs(
    instance: str = INSTANCE,
    tail: int = typer.Option(200, "--tail", "-n", min=1, help="Lines from the end."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file."),
) -> None:
    """The container's output (stdout and stderr)."""
    query = urlencode({"tail": tail, "follow": str(follow).lower()})
    with client() as c, c.stream("GET", f"{_path(instance, '/logs')}?{query}") as resp:
        if output is not None:
            with open(output, "wb") as fh:
                for chunk in resp.iter_bytes():
                    fh.write(chunk)
            console.print(f"wrote {output}", highlight=False)
            return
        for chunk in resp.iter_bytes():
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()


@containers_app.command()
def remove(instance: str = INSTANCE) -> None:
    """Remove the stopped container (its log goes with it)."""
    with client() as c:
        c.delete(_path(instance))
    console.print(f"{instance}: container removed", highlight=False)


@containers_app.command()
def recreate(
    instance: str = INSTANCE,
    tag: str | None = typer.Option(
        None, "--tag", "-t", help="Another tag of the configured image (default: the config's)."
    ),
) -> None:
    """Stop, remove and start the container anew, from another tag of its image."""
    with client() as c:
        s = c.post(_path(instance, "/recreate"), {"tag": tag} if tag else {})
    style = STATE_STYLE.get(s["state"], "")
    image = (s.get("container") or {}).get("image", "?")
    console.print(f"{instance}: [{style}]{s['state']}[/] ({image})", highlight=False)
