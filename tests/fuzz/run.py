"""The fuzz run: modelyard and schemathesis together in a network namespace of their own.

Started by ``tests/api/test_fuzz.py`` as ``unshare -n python -m tests.fuzz.run BUDGET_S``: only
loopback exists in here (brought up first), so no URL or host the fuzzer invents ever leaves
the machine. Exits with schemathesis's status; its report goes to stdout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.servers import free_port

ST = Path(sys.executable).with_name("st")
ROOT = Path(__file__).resolve().parents[2]


def main(budget_s: int) -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    work = Path(tempfile.mkdtemp(prefix="modelyard-fuzz-"))
    port = free_port()
    env = {
        **os.environ,
        "MODELYARD_DATA_DIR": str(work / "data"),
        "MODELYARD_PORT": str(port),
        "MODELYARD_CONFIG": "",
        "MODELYARD_MONITOR": "off",
        "MODELYARD_CONNECT_TIMEOUT_MS": "200",
        "MODELYARD_API_TIMEOUT_MS": "500",
    }
    log = (work / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "modelyard", "serve"], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(url, server)
        started = time.monotonic()
        done = subprocess.run(
            [
                str(ST),
                "run",
                f"{url}/openapi.json",
                "--checks",
                "designed_server_errors",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--max-time",
                str(budget_s),
                "--workers",
                "2",
                "--suppress-health-check",
                "all",
                "--generation-database",
                "none",
                "--no-color",
            ],
            env={**env, "SCHEMATHESIS_HOOKS": "tests.fuzz.hooks", "PYTHONPATH": str(ROOT)},
            cwd=work,  # its crash cache goes with the run's other files
            check=False,
        )
        print(f"fuzz run: {time.monotonic() - started:.0f} s", flush=True)
        return done.returncode
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
        text = (work / "serve.log").read_text(errors="replace")
        tracebacks = text.count("Traceback (most recent call last)")
        print("server errors:", tracebacks, sep="\n", flush=True)
        if tracebacks:  # the server's own account of each, for whoever fixes it
            start = text.index("Traceback (most recent call last)")
            print(text[max(0, start - 300) : start + 6000], flush=True)
        shutil.rmtree(work, ignore_errors=True)


def _wait_for(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120  # a CI-sized budget for importing the app
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("modelyard exited before it answered")
        try:
            if httpx.get(f"{url}/api/version", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("modelyard did not answer in 120 s")


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
