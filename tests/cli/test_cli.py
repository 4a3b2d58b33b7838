"""The CLI of the foundation: serve (bad config), status, providers, doctor — no tracebacks."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from modelyard.cli import app
from modelyard.instance_config import InstanceConfig
from tests.support.app_server import RunningApp
from tests.support.servers import closed_port, free_port

runner = CliRunner()
POSTGRES_REFUSAL = (
    "cannot open the database"
    if importlib.util.find_spec("psycopg") is not None
    else "driver is not installed"
)


def run(url: str, *args: str) -> Any:
    return runner.invoke(app, list(args), env={"MODELYARD_URL": url}, catch_exceptions=False)


def test_status_and_providers_list(
    modelyard: Callable[..., RunningApp], ollama_server: Any
) -> None:
    app_ = modelyard(
        [
            InstanceConfig(provider="ollama", id="default", base_url=ollama_server.url),
            InstanceConfig(
                provider="lmstudio",
                id="off",
                base_url=f"http://127.0.0.1:{closed_port()}",
            ),
        ]
    )
    result = run(app_.url, "status", "--refresh")
    assert result.exit_code == 0, result.output
    assert "ollama/default" in result.output and "RUNNING" in result.output
    assert "connection_refused" in result.output and "LM Studio" in result.output
    listed = run(app_.url, "providers", "list")
    assert "lmstudio/off" in listed.output
    as_json = run(app_.url, "status", "--json")
    assert '"cache_ttl_ms"' in as_json.output


def test_clean_errors_without_tracebacks(modelyard: Callable[..., RunningApp]) -> None:
    app_ = modelyard([])
    missing = run(app_.url, "providers", "start", "llamacpp/ghost")
    assert missing.exit_code == 1
    assert "there is no llamacpp instance 'ghost'" in missing.output
    assert "Traceback" not in missing.output
    bad = run(app_.url, "providers", "stop", "nonsense")
    assert bad.exit_code == 1 and "PROVIDER/ID" in bad.output
    down = run(f"http://127.0.0.1:{free_port()}", "status")
    assert down.exit_code == 1
    assert "not running" in down.output and "modelyard serve" in down.output


def test_managed_start_and_stop_from_the_cli(
    modelyard: Callable[..., RunningApp], tiny_gguf: Path
) -> None:
    inst = InstanceConfig(
        provider="llamacpp",
        id="tiny",
        base_url=f"http://127.0.0.1:{free_port()}",
        managed=True,
        model=str(tiny_gguf),
        ctx_size=256,
    )
    app_ = modelyard([inst])
    started = run(app_.url, "providers", "start", "llamacpp/tiny")
    assert started.exit_code == 0 and ("STARTING" in started.output or "RUNNING" in started.output)
    stopped = run(app_.url, "providers", "stop", "llamacpp", "tiny")
    assert stopped.exit_code == 0 and "STOPPED" in stopped.output


def serve_once(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelyard", "serve"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_with_a_bad_config_says_why(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("port = 'eighty'\n")
    proc = serve_once({"MODELYARD_CONFIG": str(cfg), "MODELYARD_DATA_DIR": str(tmp_path)})
    assert proc.returncode == 2
    assert "invalid setting port" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("IP_ALLOWLIST", "notacidr", "'notacidr' is not an IP address or CIDR network"),
        ("LOG_LEVEL", "loud", "invalid setting log_level"),
        ("MONITOR", "maybe", "invalid setting monitor"),
        ("DATABASE_URL", "garbage", "invalid setting database_url: not a database URL"),
        # Without the postgres extra the driver is missing; with it, nothing answers on port 9.
        ("DATABASE_URL", "postgresql://u:pw@127.0.0.1:9/db", POSTGRES_REFUSAL),
        ("CONFIG", "/", "config file / cannot be read"),
        ("DATA_DIR", "/proc/modelyard", "cannot prepare modelyard's files"),
    ],
)
def test_serve_refuses_every_bad_setting_without_a_traceback(
    tmp_path: Path, setting: str, value: str, message: str
) -> None:
    env = {"MODELYARD_DATA_DIR": str(tmp_path), "MODELYARD_PORT": str(free_port())}
    proc = serve_once({**env, f"MODELYARD_{setting}": value})
    assert proc.returncode == 2, proc.stderr[-2000:]
    said = " ".join(proc.stderr.split())  # rich wraps long lines
    assert message in said and "hint:" in said
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "pw@" not in proc.stderr  # a database password is not repeated


def doctor(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelyard", "doctor"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_doctor(tmp_path: Path) -> None:
    env = {"MODELYARD_DATA_DIR": str(tmp_path), "MODELYARD_PORT": str(free_port())}
    proc = doctor(env)
    assert "llama.cpp runtime" in proc.stdout and "data directory" in proc.stdout
    # No ollama binary here, and no managed Ollama instance needs one: not a problem.
    said = " ".join(proc.stdout.split())
    assert "ollama binary: not found (only needed for managed Ollama" in said
    assert proc.returncode == 0, proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    cfg = tmp_path / "managed.toml"
    cfg.write_text(
        '[[instances]]\nprovider = "ollama"\nid = "mine"\nbase_url = "http://127.0.0.1:9"\n'
        "managed = true\n"
    )
    needed = doctor({**env, "MODELYARD_CONFIG": str(cfg)})
    assert needed.returncode == 1
    assert "ollama binary: not found (needed by ollama/mine)" in " ".join(needed.stdout.split())
    assert "ollama.com" in needed.stdout and "Traceback" not in needed.stdout + needed.stderr
