"""URL download engine vs curl: Debian's nginx on loopback serving 1 GiB of random bytes.

Measured in one run, interleaved round by round, best of ``rounds`` each: ``curl -o`` (the
baseline), ``curl -o && openssl dgst -sha256`` (download, then verify in a second pass) and
modelyard's ``fetch()`` with sha256 verification (hash in a second thread while writing, then
fsync). A design variant hashes inline in the one download thread, to show why the engine
uses the second thread. Output files are deleted and the page cache flushed between runs.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from urllib3.connection import HTTPConnection

from modelyard.downloads.http_engine import CHUNK_BYTES, WRITEBACK_BYTES, FetchRequest, fetch

TITLE = "URL download engine vs curl (loopback nginx, 1 GiB)"
FILE_BYTES = 1 << 30
NGINX = "/usr/sbin/nginx"

_NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path {work}/tmp;
  proxy_temp_path {work}/tmp;
  fastcgi_temp_path {work}/tmp;
  uwsgi_temp_path {work}/tmp;
  scgi_temp_path {work}/tmp;
  server {{ listen 127.0.0.1:{port}; root {work}/www; }}
}}
"""


@dataclass
class Sample:
    wall_s: float
    cpu_s: float


def run(workdir: Path, *, size_bytes: int = FILE_BYTES, rounds: int = 3) -> str:
    """Measure every client ``rounds`` times, interleaved; a Markdown section of the best."""
    missing = [tool for tool in ("curl", "openssl", NGINX) if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(f"the download benchmark needs {missing} (make bench installs them)")
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / "www" / "big.bin"
    _write_random(source, size_bytes)
    out = workdir / "out.bin"
    port = _free_port()
    nginx = _start_nginx(workdir, port)
    url = f"http://127.0.0.1:{port}/big.bin"
    clients: dict[str, Callable[[], None]] = {
        "curl": lambda: _run(["curl", "-sSf", "-o", str(out), url]),
        "curl+openssl": lambda: _curl_then_openssl(url, out),
        "fetch": lambda: _fetch(url, out, size_bytes),
        "inline": lambda: _inline_hash_download(port, out),
    }
    samples: dict[str, list[Sample]] = {name: [] for name in clients}
    try:
        for _ in range(rounds):
            for name, client in clients.items():
                samples[name].append(_measure(client, out))
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        out.unlink(missing_ok=True)
        source.unlink(missing_ok=True)
    best = {name: min(runs, key=lambda s: s.wall_s) for name, runs in samples.items()}
    return _report(best, size_bytes, rounds)


def _measure(client: Callable[[], None], out: Path) -> Sample:
    """Wall time and CPU seconds (this process's threads plus finished children) of a run."""
    out.unlink(missing_ok=True)
    os.sync()  # dirty pages of the previous run must not slow this one down
    before = _cpu()
    started = time.perf_counter()
    client()
    wall = time.perf_counter() - started
    return Sample(wall, _cpu() - before)


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _curl_then_openssl(url: str, out: Path) -> None:
    _run(["curl", "-sSf", "-o", str(out), url])
    _run(["openssl", "dgst", "-sha256", str(out)])


def _fetch(url: str, out: Path, size: int) -> None:
    req = FetchRequest(url=url, dest=out, expected_size=size)
    fetch(req, cancel=threading.Event(), on_progress=lambda done, total: None, log=lambda _: None)


def _inline_hash_download(port: int, out: Path) -> None:
    """The engine's loop with sha256 in the download thread itself (the rejected design)."""
    conn = HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/big.bin", preload_content=False, decode_content=False)
    resp = conn.getresponse()
    digest = hashlib.sha256()
    buf = bytearray(CHUNK_BYTES)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        written = flushed = 0
        while count := resp.readinto(buf):
            view = memoryview(buf)[:count]
            os.write(fd, view)
            digest.update(view)
            written += count
            if written - flushed >= WRITEBACK_BYTES:
                os.posix_fadvise(fd, flushed, written - flushed, os.POSIX_FADV_DONTNEED)
                flushed = written
        os.fsync(fd)
    finally:
        os.close(fd)
        conn.close()
    digest.hexdigest()


def _report(best: dict[str, Sample], size: int, rounds: int) -> str:
    gb = size / 1e9
    labels = {
        "curl": "`curl -o` (baseline; no fsync)",
        "curl+openssl": "`curl -o && openssl dgst -sha256`",
        "fetch": "modelyard `fetch()`: sha256 in a 2nd thread, fsync",
        "inline": "variant: sha256 inline in the download thread, fsync",
    }
    rows = [
        f"| {labels[name]} | {s.wall_s:.2f} | {gb / s.wall_s:.2f} | {s.cpu_s / gb:.2f} |"
        for name, s in best.items()
    ]
    curl, verified, ours, inline = (best[k] for k in ("curl", "curl+openssl", "fetch", "inline"))
    vs_verified = verified.wall_s / ours.wall_s
    vs_curl = curl.wall_s / ours.wall_s
    cpu_vs_curl = ours.cpu_s / curl.cpu_s
    cpu_vs_verified = ours.cpu_s / verified.cpu_s
    lines = [
        f"## {TITLE}",
        "",
        f"{size / 2**30:.2f} GiB of random bytes from nginx {_nginx_version()} (`sendfile on`) on "
        f"127.0.0.1, written to the same disk. Best wall time of {rounds} interleaved rounds; "
        "CPU is user+system of the client (all threads, or curl and openssl).",
        "",
        "| client | wall s | GB/s | CPU s/GB |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        f"- fetch() vs curl + openssl: **{vs_verified:.2f}× faster** "
        f"(goal ≥ 1.3×: {_verdict(vs_verified >= 1.3)})",
        f"- fetch() throughput vs plain curl: **{vs_curl:.0%}** "
        f"(goal ≥ 60 %: {_verdict(vs_curl >= 0.6)}; stretch 85 %: {_verdict(vs_curl >= 0.85)})",
        f"- fetch() CPU s/GB vs curl: **{cpu_vs_curl:.2f}×** (goal ≤ 1.5×: "
        f"{_verdict(cpu_vs_curl <= 1.5)}); vs curl + openssl: **{cpu_vs_verified:.2f}×**",
        f"- sha256 in a 2nd thread vs inline: **{inline.wall_s / ours.wall_s:.2f}×** faster",
        "",
        "fetch() also fsyncs before its atomic rename (plain curl does not); writeback is "
        "started every 32 MiB so the final fsync has little left to flush.",
        "",
    ]
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "met" if ok else "not met"


def _write_random(path: Path, size: int) -> None:
    """Real (not sparse) random bytes, written in 8 MiB blocks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = 8 << 20
    with path.open("wb") as fh:
        remaining = size
        while remaining:
            chunk = os.urandom(min(block, remaining))
            fh.write(chunk)
            remaining -= len(chunk)


def _start_nginx(work: Path, port: int) -> subprocess.Popen[bytes]:
    (work / "tmp").mkdir(exist_ok=True)
    conf = work / "nginx.conf"
    conf.write_text(_NGINX_CONF.format(work=work, port=port))
    log = work / "nginx-error.log"
    cmd = [NGINX, "-c", str(conf), "-p", str(work), "-e", str(log)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"nginx did not start: {log.read_text() if log.exists() else '?'}")


def _nginx_version() -> str:
    done = subprocess.run([NGINX, "-v"], capture_output=True, text=True, check=False)
    return done.stderr.strip().rpartition("/")[2] or "?"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
