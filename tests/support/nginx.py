"""Debian's nginx on loopback, for a test: one process (no daemon, no master), its files in a
directory of the test's, running the ``http`` block's contents it is given."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.proxy_process import running_proxy

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
    with running_proxy(
        [NGINX, "-c", str(conf), "-p", str(work), "-e", str(log)], port, log
    ) as proc:
        yield proc
