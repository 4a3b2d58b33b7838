"""``modelyard keys ...`` and ``modelyard usage``: the gateway's keys (model lists, expiry,
limits) and what they used, over ``/api/keys`` and ``/api/usage``."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.table import Table

from modelyard.cli.app import app, client, console, print_json

keys_app = typer.Typer(
    help="API keys: create (the secret is shown once), list, revoke.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
JSON = typer.Option(False, "--json", help="Print JSON.")


def _limit(value: int | None) -> str:
    return "–" if value is None else str(value)


@keys_app.command("create")
def create(
    name: str = typer.Argument(..., help="What the key is for (shown in logs and usage)."),
    scope: list[str] = typer.Option(
        ["inference"], "--scope", help="admin, read or inference (repeat for several)."
    ),
    model: list[str] = typer.Option(
        [], "--model", help="A model name or pattern the key may use (repeat; default: all)."
    ),
    expires: str = typer.Option(
        "", "--expires", help="When the key stops working (RFC 3339, e.g. 2027-01-01T00:00Z)."
    ),
    rpm: int | None = typer.Option(None, "--rpm", help="Requests per minute."),
    tpm: int | None = typer.Option(None, "--tpm", help="Tokens per minute."),
    concurrent: int | None = typer.Option(None, "--concurrent", help="Requests at once."),
    as_json: bool = JSON,
) -> None:
    """Create a key. Its secret is printed once: modelyard keeps only its hash."""
    body: dict[str, Any] = {
        "name": name,
        "scopes": scope,
        "models": model or None,
        "limits": {
            "requests_per_minute": rpm,
            "tokens_per_minute": tpm,
            "concurrent_requests": concurrent,
        },
    }
    if expires:
        body["expires_at"] = expires
    with client() as c:
        created = c.post("/api/keys", body)
    if as_json:
        print_json(created)
        return
    console.print(f"Created key [bold]{created['name']}[/] ({created['prefix']}…).")
    console.print("Its secret, shown only now:", style="bold")
    sys.stdout.write(created["key"] + "\n")


@keys_app.command("list")
def list_keys(as_json: bool = JSON) -> None:
    """Every key by prefix, with its scopes, models, limits, expiry and last use."""
    with client() as c:
        data = c.get("/api/keys")
    if as_json:
        print_json(data)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("ID", "PREFIX", "NAME", "SCOPES", "MODELS", "RPM", "TPM", "CONC", "EXPIRES",
                "LAST USED"):  # fmt: skip
        table.add_column(col)
    for key in data["keys"]:
        limits = key["limits"]
        table.add_row(
            key["id"],
            key["prefix"] + "…",
            key["name"],
            ",".join(key["scopes"]),
            ",".join(key["models"]) if key["models"] is not None else "all",
            _limit(limits["requests_per_minute"]),
            _limit(limits["tokens_per_minute"]),
            _limit(limits["concurrent_requests"]),
            key["expires_at"] or "never",
            key["last_used_at"] or "never",
        )
    console.print(table)


@keys_app.command("revoke")
def revoke(key_id: str = typer.Argument(..., help="The key's id (from 'keys list').")) -> None:
    """Revoke a key: it is refused from the next request on."""
    with client() as c:
        c.delete(f"/api/keys/{key_id}")
    console.print(f"Revoked key {key_id}.")


@app.command()
def usage(
    since: str = typer.Option("", "--since", help="First day (YYYY-MM-DD)."),
    until: str = typer.Option("", "--until", help="Last day (YYYY-MM-DD)."),
    key: str = typer.Option("", "--key", help="A key's id or prefix; '(local)' for keyless."),
    model: str = typer.Option("", "--model", help="Part of a model's qualified name."),
    group: list[str] = typer.Option(
        [], "--by", help="day, key or model (repeat; default all three)."
    ),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV."),
    as_json: bool = JSON,
) -> None:
    """What the gateway answered, per day, key and model: requests, errors, tokens, TTFT."""
    params: dict[str, Any] = {
        "since": since or None,
        "until": until or None,
        "key": key or None,
        "model": model or None,
        "group": group or None,
    }
    with client() as c:
        if as_csv:
            sys.stdout.write(c.text("/api/usage", **params, format="csv"))
            return
        data = c.get("/api/usage", **params)
    if as_json:
        print_json(data)
        return
    rows = data["usage"]
    shown = [g for g in ("day", "key", "model") if not group or g in group]
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in [g.upper() for g in shown] + ["REQUESTS", "ERRORS", "PROMPT", "COMPLETION",
                                             "TTFT AVG"]:  # fmt: skip
        table.add_column(col, justify="left" if col.lower() in shown else "right")
    for row in [*rows, None]:
        if row is None:  # the totals, last
            row = data["totals"]
            cells = ["total"] + [""] * (len(shown) - 1) if shown else []
        else:
            cells = [str(row["key_prefix"] if g == "key" else row[g]) for g in shown]
        ttft = row["ttft_ms_avg"]
        table.add_row(
            *cells,
            str(row["requests"]),
            str(row["errors"]),
            str(row["prompt_tokens"]),
            str(row["completion_tokens"]),
            f"{ttft:.0f} ms" if ttft is not None else "–",
        )
    console.print(table)
