"""``modelyard status`` and ``modelyard providers ...``."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from modelyard.cli.app import STATE_STYLE, app, client, console, print_json, split_key

providers_app = typer.Typer(
    help="List instances and start, stop or restart managed ones.", no_args_is_help=True
)
app.add_typer(providers_app, name="providers")


def _status_table(statuses: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("INSTANCE", "STATE", "PID", "PORT", "API", "VERSION", "LATENCY", "REASON"):
        table.add_column(col)
    for s in statuses:
        style = STATE_STYLE.get(s["state"], "")

        def mark(v: Any) -> str:
            return "–" if v is None else ("✓" if v else "✗")

        latency = f"{s['latency_ms']:.0f} ms" if s.get("latency_ms") is not None else "–"
        reason = s.get("reason_code") or ""
        restarts = s.get("restarts") or 0  # by the restart policy: ↻ and the count
        state = f"[{style}]{s['state']}[/]" + (f" ↻{restarts}" if restarts else "")
        table.add_row(
            f"{s['provider']}/{s['instance_id']}",
            state,
            mark(s.get("pid_exists")) if s.get("managed") else "–",
            mark(s.get("port_listening")),
            mark(s.get("api_responding")),
            s.get("version") or "–",
            latency,
            reason,
        )
    return table


@app.command()
def status(
    refresh: bool = typer.Option(
        False, "--refresh", "-r", help="Check now instead of using the cache."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The state of every provider instance."""
    with client() as c:
        data = c.get("/api/providers/status", refresh=str(refresh).lower() if refresh else None)
    if as_json:
        print_json(data)
        return
    console.print(_status_table(data["providers"]))
    hints = [s for s in data["providers"] if s["state"] not in ("RUNNING",) and s.get("hint")]
    for s in hints:
        console.print(f"[dim]{s['provider']}/{s['instance_id']}:[/] {s['hint']}", highlight=False)


@providers_app.command("list")
def list_instances(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The configured instances."""
    with client() as c:
        data = c.get("/api/providers")
    if as_json:
        print_json(data)
        return
    table = Table(box=None, header_style="bold")
    for col in ("INSTANCE", "BASE URL", "MANAGED", "MODEL", "ORIGIN"):
        table.add_column(col)
    for i in data["instances"]:
        table.add_row(
            f"{i['provider']}/{i['id']}",
            i["base_url"],
            "yes" if i["managed"] else "no",
            i.get("model") or "",
            i["origin"],
        )
    console.print(table)


def _act(action: str, instance: str, second: str | None) -> None:
    provider, instance_id = split_key(instance, second)
    with client() as c:
        s = c.post(f"/api/providers/{provider}/instances/{instance_id}/{action}")
    style = STATE_STYLE.get(s["state"], "")
    console.print(f"{provider}/{instance_id}: [{style}]{s['state']}[/]", highlight=False)
    if s["state"] not in ("RUNNING", "STARTING", "STOPPED") and s.get("hint"):
        console.print(f"[dim]hint:[/] {s['hint']}", highlight=False)


@providers_app.command()
def start(
    instance: str = typer.Argument(..., help="PROVIDER/ID"), instance_id: str = typer.Argument(None)
) -> None:
    """Start a managed instance."""
    _act("start", instance, instance_id)


@providers_app.command()
def stop(
    instance: str = typer.Argument(..., help="PROVIDER/ID"), instance_id: str = typer.Argument(None)
) -> None:
    """Stop a managed instance."""
    _act("stop", instance, instance_id)


@providers_app.command()
def restart(
    instance: str = typer.Argument(..., help="PROVIDER/ID"), instance_id: str = typer.Argument(None)
) -> None:
    """Restart a managed instance."""
    _act("restart", instance, instance_id)
