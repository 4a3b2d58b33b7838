"""``modelyard serve`` and ``modelyard doctor``."""

from __future__ import annotations

import logging
import os
import platform
import shutil
import socket
import sys
from typing import Any

import typer

from modelyard.access.private_files import SERVE_UMASK
from modelyard.cli.app import app, console, fail
from modelyard.config import Settings, load_settings
from modelyard.errors import ConfigError, ModelyardError

log = logging.getLogger("modelyard")


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        fail(exc.detail, exc.hint, code=2)


@app.command()
def serve(
    host: str = typer.Option(None, help="Address to bind (default 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default 8050)."),
) -> None:
    """Start the server: API, dashboard, monitor and downloads."""
    import uvicorn
    from sqlalchemy.exc import SQLAlchemyError

    from modelyard.api.app import create_app
    from modelyard.cli.logs import uvicorn_log_config

    settings = _settings(host=host, port=port)
    if settings.tls_certfile is not None and settings.tls_keyfile is not None:
        from modelyard.tls import check_pair

        try:
            check_pair(settings.tls_certfile, settings.tls_keyfile)
        except ConfigError as exc:
            fail(exc.detail, exc.hint, code=2)
    # Everything serve and its children write is private: chats, keys, logs (SPEC §12).
    os.umask(SERVE_UMASK)
    if os.geteuid() == 0:
        log.warning(
            "modelyard is running as root: every program it starts runs as root too. "
            "Run it as a user of its own (docs/CONFIGURATION.md has a systemd unit)."
        )
    try:
        app_ = create_app(settings)
    except ModelyardError as exc:
        fail(exc.detail, exc.hint, code=2)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        fail(
            f"cannot prepare modelyard's files: {exc.strerror or exc}{where}",
            "Set MODELYARD_DATA_DIR (and MODELYARD_MODELS_DIR) to directories you can write.",
            code=2,
        )
    except SQLAlchemyError as exc:
        fail(
            f"cannot open the database: {exc.__class__.__name__}: {str(exc).splitlines()[0]}",
            "Check MODELYARD_DATABASE_URL: the server, its credentials and the database name.",
            code=2,
        )
    scheme = "https" if settings.tls else "http"
    public = f" · public at {settings.public_url}" if settings.public_url else ""
    console.print(
        f"modelyard on [bold]{scheme}://{settings.host}:{settings.port}[/]{public}"
        f" · data in {settings.data_dir}",
        highlight=False,
    )
    uvicorn.run(
        app_,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=uvicorn_log_config(),
        ws_ping_interval=20,
        **uvicorn_transport(settings),
    )


def uvicorn_transport(settings: Settings) -> dict[str, Any]:
    """uvicorn's TLS and proxy options for the settings (``serve`` and the tests' servers)."""
    return {
        "ssl_certfile": str(settings.tls_certfile) if settings.tls_certfile else None,
        "ssl_keyfile": str(settings.tls_keyfile) if settings.tls_keyfile else None,
        # Only the listed proxies may say who the client is (and whether it used HTTPS):
        # from anyone else, X-Forwarded-For must not rewrite the address the IP allow-list
        # and the audit see. Local trust ignores a proxied request either way.
        "proxy_headers": bool(settings.forwarded_allow_ips),
        "forwarded_allow_ips": list(settings.forwarded_allow_ips) or None,
    }


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@app.command()
def doctor() -> None:
    """Check this machine for what modelyard needs, and say what to fix."""
    from modelyard.providers.registry import registry

    settings = _settings()
    problems = 0

    def report(ok: bool, what: str, fix: str = "") -> None:
        nonlocal problems
        mark = "[green]✓[/]" if ok else "[red]✗[/]"
        console.print(f"{mark} {what}", highlight=False)
        if not ok:
            problems += 1
            if fix:
                console.print(f"    [dim]fix:[/] {fix}", highlight=False)

    report(
        sys.version_info >= (3, 11),
        f"Python {platform.python_version()}",
        "Use Python 3.11 or newer.",
    )
    data = settings.data_dir
    try:
        data.mkdir(parents=True, exist_ok=True)
        writable = os.access(data, os.W_OK)
    except OSError:
        writable = False
    report(
        writable,
        f"data directory {data} is writable",
        "Set MODELYARD_DATA_DIR to a writable directory.",
    )
    models = settings.resolved_models_dir
    if models.exists() or writable:
        target = models if models.exists() else data
        free = shutil.disk_usage(target).free
        report(
            free > 5 * 2**30,
            f"{free / 2**30:.1f} GiB free for models in {models}",
            "Free some disk space or set MODELYARD_MODELS_DIR to a larger disk.",
        )
    for provider in registry:  # the runtimes modelyard can run itself
        needed = [
            i.key
            for i in settings.effective_instances()
            if i.managed and i.provider == provider.kind
        ]
        check = provider.runtime_check(settings, needed)
        if check is None:
            continue
        if check.required:
            report(check.ok, check.what, check.fix)
        else:
            console.print(f"[dim]•[/] {check.what}", highlight=False)
    free_port = _port_free(settings.host, settings.port)
    console.print(
        f"{'[green]✓[/]' if free_port else '[yellow]•[/]'} port {settings.port} "
        f"{'is free' if free_port else 'is in use (modelyard may already be running)'}",
        highlight=False,
    )
    if settings.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        report(False, f"binding to {settings.host} without an API key", "Set MODELYARD_API_KEY.")
    if problems:
        fail(f"{problems} problem(s) found", code=1)
    console.print("[green]Everything modelyard needs is here.[/]")
