"""A reverse proxy's process on loopback, for a test: started, awaited until it accepts on its
port, stopped."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def running_proxy(
    command: list[str], port: int, log: Path, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` running, once it accepts on 127.0.0.1:``port``; ``log`` is what a failed
    start shows."""
    name = Path(command[0]).name
    with log.open("ab") as output:
        proc = subprocess.Popen(command, stdout=output, stderr=output, env=env)
    try:
        deadline = time.monotonic() + 30  # a CI-sized budget on two busy cores
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{name} did not start: {log.read_text() if log.exists() else '?'}"
                    ) from None
                time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)
