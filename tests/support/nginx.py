"""Debian's nginx on loopback, for a test: one process (no daemon, no master), its files in a
directory of the test's, running the ``http`` block's contents it is given."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NGINX = "/usr/sbin/nginx"

_MAIN = """daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {work}/tmp;
  proxy_temp_path {work}/tmp;
  fastcgi_temp_path {work}/tmp;
  uwsgi_temp_path {work}/tmp;
  scgi_temp_path {work}/tmp;
{http}
}}
"""


@contextmanager
def running_nginx(work: Path, http: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """nginx with ``http`` in its ``http`` block, once it accepts on ``port``."""
    (work / "tmp").mkdir(parents=True, exist_ok=True)
    conf = work / "nginx.conf"
    conf.write_text(_MAIN.format(work=work, http=http))
    log = work / "nginx-error.log"
    proc = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(work), "-e", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30  # a CI-sized budget on two busy cores
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"nginx did not start: {log.read_text() if log.exists() else '?'}"
                    ) from None
                time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)
