"""Run a real modelyard (create_app on uvicorn) for a test, in a thread or a subprocess."""

from __future__ import annotations

import os
import pwd
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx

from modelyard.api.app import create_app
from modelyard.cli.client import server_trust
from modelyard.cli.serve import uvicorn_transport
from modelyard.config import Settings
from modelyard.instance_config import InstanceConfig
from modelyard.runtimes.processes import ProcessManager
from modelyard.services import Services
from tests.support.os_users import python_argv, python_env
from tests.support.servers import ServerThread, free_port


class RunningApp:
    """A modelyard served on 127.0.0.1 in this process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.thread = ServerThread(
            self.app, port=settings.port, ws_ping_interval=None, **uvicorn_transport(settings)
        )
        scheme = "https" if settings.tls else "http"
        self.url = f"{scheme}://127.0.0.1:{settings.port}"
        self.http = httpx.Client(base_url=self.url, timeout=30, verify=server_trust(settings))

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    def start(self) -> RunningApp:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.http.close()
        self.thread.stop()


def make_settings(
    tmp: Path, instances: list[InstanceConfig] | None = None, **values: Any
) -> Settings:
    """Settings for a test: its own data dir and port, no default instances unless given."""
    base: dict[str, Any] = {
        "data_dir": tmp / "data",
        "port": free_port(),
        "instances": instances if instances is not None else [],
        "connect_timeout_ms": 1000,
        # Generous: the fakes share this process (and its GIL) with the app under test, and CI
        # runs on two busy cores. Tests that need a timeout to fire set their own.
        "api_timeout_ms": 3000,
        "start_timeout_s": 60,
        "stop_grace_s": 5,
        "openai_api_key": "",
        "anthropic_api_key": "",
    }
    base.update(values)
    return Settings(**base)


def stop_managed(run_dir: Path) -> None:
    """Kill every process a test's modelyard left running (children survive on purpose)."""
    if not run_dir.exists():
        return
    manager = ProcessManager(run_dir, run_dir.parent / "logs")
    for record in manager.records():
        with suppress(Exception):
            manager.stop(record.key, grace_s=3)


@contextmanager
def running_app(settings: Settings) -> Iterator[RunningApp]:
    app = RunningApp(settings).start()
    try:
        yield app
    finally:
        app.stop()
        stop_managed(settings.run_dir)


class ServerProcess:
    """``python -m modelyard serve`` as a real child process (for restart and SIGKILL tests)."""

    def __init__(
        self,
        env: dict[str, str],
        port: int,
        log: Path,
        *,
        user: str | None = None,
        ca: Path | None = None,
    ) -> None:
        self.env = env
        self.port = port
        # ca: it serves HTTPS with a certificate this CA signed
        self.url = f"{'https' if ca else 'http'}://127.0.0.1:{port}"
        self.verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=ca) if ca is not None else True
        )
        self.log = log
        self.user = user  # run as this OS user (the test runs as root)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> ServerProcess:
        # A CI-sized budget: importing the app alone took 15 s on two busy cores.
        env = {**os.environ, **self.env, "MODELYARD_PORT": str(self.port)}
        argv = [sys.executable, "-m", "modelyard", "serve"]
        identity: dict[str, Any] = {}
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            groups = os.getgrouplist(self.user, entry.pw_gid)
            identity = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": groups}
            argv = python_argv("-m", "modelyard", "serve")
            env.update(python_env())
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                argv,
                env=env,
                stdout=out,
                stderr=out,
                **identity,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"modelyard exited: {self.log.read_text()[-2000:]}")
            with suppress(httpx.HTTPError):
                # 401: up, with API keys on
                answer = httpx.get(f"{self.url}/api/version", timeout=1, verify=self.verify)
                if answer.status_code in (200, 401):
                    return self
            time.sleep(0.1)
        raise TimeoutError(f"modelyard did not start: {self.log.read_text()[-2000:]}")

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
