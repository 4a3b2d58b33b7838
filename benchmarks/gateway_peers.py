"""The processes the gateway benchmark runs side by side: the paced stand-in, the gateway, and
the peer to beat — LiteLLM's proxy, installed from PyPI into a virtual environment of its own
under the cache directory (not a dependency of modelyard), started with a master key, the
local model-cost map and telemetry off, on 127.0.0.1.

Every process's output goes to a log file in the benchmark's work directory, and every one
is stopped when its ``with`` block ends. LiteLLM is given an HTTP(S) proxy that does not
exist (with loopback exempt), so whatever it might try to fetch from the Internet fails on
this machine instead of leaving it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelyard-bench"
LITELLM_SPEC = "litellm[proxy]==1.108.7"
LITELLM_VENV = CACHE / "litellm"
MASTER_KEY = "sk-modelyard-bench"
STARTUP_S = 180.0


@contextmanager
def process(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[int]:
    """Run ``argv`` (output to ``log``) for the ``with`` block; yield its pid."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=environment)
        try:
            yield proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(15)


def wait_http(
    url: str, timeout: float, proc_log: Path, headers: dict[str, str] | None = None
) -> None:
    """Until ``url`` answers at all (any status); the log's tail when it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2, headers=headers)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout:g} s:\n{proc_log.read_text()[-3000:]}")


@contextmanager
def paced_upstream(work: Path, interval: float) -> Iterator[tuple[str, int]]:
    """The paced stand-in in its own process: (URL, pid)."""
    port = free_port()
    argv = [sys.executable, "-m", "tests.support.paced_upstream", "--port", str(port)]
    log = work / "paced.log"
    with process([*argv, "--interval", str(interval)], log) as pid:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/stats", 30, log)
        yield url, pid


@contextmanager
def gateway(work: Path, models: dict[str, str]) -> Iterator[tuple[str, int]]:
    """modelyard in its own process for ``models`` (name → ``URL`` or ``URL@llama``), once
    its catalog lists them."""
    port = free_port()
    specs = [f"{name}={where}" for name, where in models.items()]
    log = work / "gateway.log"
    data = work / "modelyard"
    argv = [sys.executable, "-m", "benchmarks.gateway_server", str(port), str(data), *specs]
    with process(argv, log) as pid:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/v1/models", STARTUP_S, log)
        deadline = time.monotonic() + STARTUP_S
        while not set(models) <= _listed(url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"modelyard did not list {set(models)}:\n{log.read_text()}")
            time.sleep(0.2)
        yield url, pid


def _listed(url: str) -> set[str]:
    answer = httpx.get(url + "/v1/models", timeout=5)
    return {m["id"] for m in answer.json().get("data", [])} if answer.status_code == 200 else set()


def litellm_binary() -> Path:
    """LiteLLM's proxy in its own virtual environment, installed once (a few minutes)."""
    binary = LITELLM_VENV / "bin" / "litellm"
    stamp = LITELLM_VENV / f".installed-{LITELLM_SPEC}"
    if not stamp.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        if not (LITELLM_VENV / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        pip = [str(LITELLM_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, LITELLM_SPEC], check=True)
        stamp.touch()
    return binary


def litellm_version() -> str:
    python = LITELLM_VENV / "bin" / "python"
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True).stdout.strip()


@contextmanager
def litellm_proxy(work: Path, models: dict[str, str]) -> Iterator[tuple[str, int]]:
    """LiteLLM's proxy in front of ``models`` (name → an OpenAI-compatible base URL)."""
    binary = litellm_binary()
    entries = "".join(
        f"  - model_name: {name}\n"
        f"    litellm_params:\n"
        f"      model: openai/{name}\n"
        f"      api_base: {url}/v1\n"
        f"      api_key: none\n"
        for name, url in models.items()
    )
    config = work / "litellm.yaml"
    config.write_text(
        "model_list:\n" + entries + "litellm_settings:\n  telemetry: false\n"
        f"general_settings:\n  master_key: {MASTER_KEY}\n"
    )
    env = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    port = free_port()
    argv = [str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    log = work / "litellm.log"
    with process([*argv, "--num_workers", "1"], log, env) as pid:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/health/liveliness", STARTUP_S, log)
        yield url, pid
