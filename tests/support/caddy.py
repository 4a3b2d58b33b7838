"""Debian's caddy on loopback, for a test: one ``caddy run`` on a Caddyfile of the test's, the
admin endpoint off, no automatic HTTPS (no ACME, no redirect listener on port 80), its data
and config directories in a directory of the test's rather than the user's home."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.proxy_process import running_proxy

CADDY = "/usr/bin/caddy"

# Every site of the test's Caddyfile names its certificate (``tls CERT KEY``), so nothing is
# ever fetched; redirects off so that caddy opens no listener but the test's.
_GLOBAL = """{
\tadmin off
\tauto_https disable_redirects
}
"""


@contextmanager
def running_caddy(work: Path, sites: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """caddy serving the Caddyfile ``sites``, once it accepts on ``port``."""
    work.mkdir(parents=True, exist_ok=True)
    conf = work / "Caddyfile"
    conf.write_text(_GLOBAL + sites)
    env = {**os.environ, "HOME": str(work), "XDG_DATA_HOME": str(work / "data")}
    env["XDG_CONFIG_HOME"] = str(work / "config")
    command = [CADDY, "run", "--config", str(conf), "--adapter", "caddyfile"]
    with running_proxy(command, port, work / "caddy.log", env) as proc:
        yield proc
