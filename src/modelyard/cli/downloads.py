"""``modelyard pull NAME|URL|hf://…`` with a live progress bar, and ``modelyard downloads``.

Both talk to the running server: it owns the download (so it survives this terminal), the CLI
only follows it. Ctrl-C during ``pull`` cancels the download on the server and says so.
"""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn
from rich.table import Table

from modelyard.cli.app import app, client, console, fail, print_json
from modelyard.cli.client import Client
from modelyard.cli.models import human

downloads_app = typer.Typer(
    help="List downloads, or pause, resume, cancel, retry or remove one.",
    invoke_without_command=True,
)
app.add_typer(downloads_app, name="downloads")

POLL_S = 0.25
FINISHED = {"completed", "failed", "cancelled"}
STATE_STYLE = {
    "queued": "dim",
    "downloading": "cyan",
    "verifying": "cyan",
    "completed": "green",
    "paused": "yellow",
    "failed": "red",
    "cancelled": "dim",
}


def request_body(
    source: str,
    *,
    instance: str | None,
    sha256: str | None,
    filename: str | None,
    mode: str | None,
    force: bool,
) -> dict[str, Any]:
    """The ``POST /api/downloads`` body for what the user typed (the server validates it)."""
    text = source.strip()
    if text.startswith("hf://"):
        body: dict[str, Any] = {"source": "hf", "url": text}
    elif "://" in text:
        body = {"source": "url", "url": text, "filename": filename}
    else:
        if filename or sha256:
            fail("--filename and --sha256 apply to URL and Hugging Face downloads only")
        body = {"source": "ollama", "model_name": text, "instance_id": instance}
    if instance and body["source"] != "ollama":
        fail("--instance applies to Ollama models only")
    body.update(sha256=sha256, mode=mode, force=force)
    return {k: v for k, v in body.items() if v is not None}


def speed(task: dict[str, Any]) -> str:
    value = task.get("speed_bps")
    return f"{human(int(value))}/s" if value else "–"


def eta(task: dict[str, Any]) -> str:
    value = task.get("eta_s")
    if value is None:
        return "–"
    seconds = int(value)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}:{seconds % 60:02d}"


def name_of(task: dict[str, Any]) -> str:
    return str(task.get("model_name") or task.get("filename") or task.get("url") or task["id"])


@app.command("pull")
def pull(
    source: str = typer.Argument(
        ...,
        help="An Ollama model name, an http(s) URL, or hf://owner/repo/file.gguf\\[@revision].",
    ),
    instance: str | None = typer.Option(
        None, "--instance", "-i", help="The Ollama instance to pull into (default: default)."
    ),
    sha256: str | None = typer.Option(None, "--sha256", help="The file's expected sha256."),
    filename: str | None = typer.Option(
        None, "--filename", "-o", help="File name in the models directory (URL downloads)."
    ),
    mode: str | None = typer.Option(None, "--mode", help="llm, embed or rerank."),
    force: bool = typer.Option(False, "--force", help="Skip the free-disk check."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Start it and return at once."),
) -> None:
    """Download a model; shows bytes, speed and ETA until it is done (Ctrl-C cancels it)."""
    body = request_body(
        source, instance=instance, sha256=sha256, filename=filename, mode=mode, force=force
    )
    with client() as c:
        task = c.post("/api/downloads", body)
        if detach:
            console.print(f"{task['id']} {task['state']} {name_of(task)}", highlight=False)
            return
        try:
            task = follow(c, task)
        except KeyboardInterrupt:
            task = c.post(f"/api/downloads/{task['id']}/cancel")
            console.print(
                f"[yellow]Cancelled[/] {name_of(task)} ({task['id']}); "
                "its partial file was removed.",
                highlight=False,
            )
            raise typer.Exit(130) from None
    finish(task)


def follow(c: Client, task: dict[str, Any]) -> dict[str, Any]:
    """Show the task's progress until it finishes; the task as it ended."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=False),
        TextColumn("{task.fields[speed]}", style="cyan"),
        TextColumn("ETA {task.fields[eta]}"),
        TextColumn("{task.fields[state]}", style="dim"),
    )
    with Progress(*columns, console=console) as bar:
        row = bar.add_task(name_of(task), total=None, speed="–", eta="–", state=task["state"])
        while True:
            show(bar, row, task)
            if task["state"] in FINISHED:
                return task
            time.sleep(POLL_S)
            task = c.get(f"/api/downloads/{task['id']}")


def show(bar: Progress, row: TaskID, task: dict[str, Any]) -> None:
    state = task["state"]
    if task.get("current_status") and task["source"] == "ollama":
        state = f"{state} · {task['current_status']}"
    floor = "" if task.get("total_final", True) else "≥"  # a pull's total may still grow
    if task.get("total_layers"):
        state += f" · layer {task['current_layer']}/{floor}{task['total_layers']}"
    if floor and task["total"]:
        state += " · total so far"
    if task.get("attempts", 0) > 1:
        state += f" · attempt {task['attempts']}"
    bar.update(
        row,
        completed=task["downloaded"],
        total=task["total"],
        speed=speed(task),
        eta=eta(task),
        state=state,
    )


def finish(task: dict[str, Any]) -> None:
    """Say how it ended; a failure exits 1 with the server's reason."""
    if task["state"] == "completed":
        where = f" → {task['path']}" if task.get("path") else ""
        checksum = f" (sha256 {task['sha256']})" if task.get("sha256") else ""
        console.print(f"[green]Completed[/] {name_of(task)}{where}{checksum}", highlight=False)
        return
    reason = task.get("error") or task["state"]
    fail(f"{name_of(task)}: {reason}", f"Logs: modelyard downloads log {task['id']}")


@downloads_app.callback()
def downloads(
    ctx: typer.Context,
    state: str | None = typer.Option(None, "--state", help="Only downloads in this state."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Every download, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    with client() as c:
        data = c.get("/api/downloads", state=state)
    if as_json:
        print_json(data)
        return
    if not data["downloads"]:
        console.print("[dim]No downloads.[/]")
        return
    console.print(_table(data["downloads"]))
    for task in data["downloads"]:
        if task.get("error"):
            console.print(f"[red]{task['id']}:[/] {task['error']}", highlight=False)


def _table(tasks: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("ID", no_wrap=True, min_width=16)  # ids are typed back: never cut them
    table.add_column("NAME", overflow="fold")
    table.add_column("STATE", no_wrap=True, min_width=11)
    table.add_column("PROGRESS", justify="right", no_wrap=True)
    table.add_column("SPEED · ETA", no_wrap=True)
    for t in tasks:
        style = STATE_STYLE.get(t["state"], "")
        size = f" of {human(t['total'])}" if t.get("total") else ""
        running = t["state"] == "downloading"
        table.add_row(
            t["id"],
            name_of(t),
            f"[{style}]{t['state']}[/]",
            f"{t['progress']:.1f}%{size}",
            f"{speed(t)} · {eta(t)}" if running else "",
        )
    return table


def _act(download_id: str, action: str) -> None:
    with client() as c:
        task = c.post(f"/api/downloads/{download_id}/{action}")
    style = STATE_STYLE.get(task["state"], "")
    console.print(f"{task['id']} [{style}]{task['state']}[/] {name_of(task)}", highlight=False)


@downloads_app.command("pause")
def pause(download_id: str = typer.Argument(..., help="The download's id.")) -> None:
    """Pause a download; its partial file stays."""
    _act(download_id, "pause")


@downloads_app.command("resume")
def resume(download_id: str = typer.Argument(..., help="The download's id.")) -> None:
    """Resume a paused download from its partial file."""
    _act(download_id, "resume")


@downloads_app.command("cancel")
def cancel(download_id: str = typer.Argument(..., help="The download's id.")) -> None:
    """Cancel a download and remove its partial file."""
    _act(download_id, "cancel")


@downloads_app.command("retry")
def retry(download_id: str = typer.Argument(..., help="The download's id.")) -> None:
    """Retry a failed or cancelled download."""
    _act(download_id, "retry")


@downloads_app.command("rm")
def remove(download_id: str = typer.Argument(..., help="The download's id.")) -> None:
    """Forget a download (a completed model file stays)."""
    with client() as c:
        c.delete(f"/api/downloads/{download_id}")
    console.print(f"Removed download {download_id}")


@downloads_app.command("log")
def show_log(
    download_id: str = typer.Argument(..., help="The download's id."),
    lines: int = typer.Option(200, "--lines", "-n", min=1, max=5000, help="How many lines."),
) -> None:
    """The download's log."""
    with client() as c:
        data = c.get(f"/api/downloads/{download_id}/log", lines=lines)
    for line in data["lines"]:
        console.print(line, highlight=False, markup=False)
