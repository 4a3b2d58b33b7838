"""URL downloads vs curl: Debian's nginx on loopback serving 1 GiB of random bytes.

Measured in one run, interleaved round by round (best wall time, median CPU of ``rounds`` each):

- ``curl -o`` (the baseline) and ``curl -o && openssl dgst -sha256`` (verify in a second pass);
- modelyard's ``fetch()`` with the expected sha256 (hashed in a second thread, written with
  O_DIRECT from a third where the file system takes it, size and sha256 checked, fsync,
  atomic rename);
- the whole product: a ``python -m modelyard serve`` process asked ``POST /api/downloads``
  with the sha256 (queue, events, store, log file included), timed by the server's own
  ``created_at``/``finished_at``;
- two parts that explain the CPU figure: the same download without hashing, written through
  the page cache as curl does, and sha256 alone over bytes already in memory;
- a design variant that hashes inline in the download thread, to show why the engine does not.

Output files are deleted and the page cache written back between runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import shutil
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from http.client import HTTPConnection
from pathlib import Path

import httpx
import psutil
from tests.support.app_server import ServerProcess
from tests.support.nginx import NGINX, running_nginx

from modelyard.downloads.http_engine import CHUNK_BYTES, FetchRequest, fetch
from modelyard.downloads.part_writer import WRITEBACK_BYTES

TITLE = "URL download engine vs curl (loopback nginx, 1 GiB, sha256 verified)"
FILE_BYTES = 1 << 30

# What nginx serves: the benchmark's files, with sendfile as a file server would.
_SERVE_FILES = """  sendfile on;
  tcp_nopush on;
  server {{ listen 127.0.0.1:{port}; root {work}/www; }}"""

LABELS = {
    "curl": "`curl -o` (baseline; no fsync)",
    "curl+openssl": "`curl -o && openssl dgst -sha256`",
    "fetch": "modelyard `fetch()`: sha256 verified in a 2nd thread, fsync",
    "server": "modelyard server: `POST /api/downloads` with sha256 → completed",
    "inline": "variant: sha256 inline in the download thread, page cache, fsync",
    "nohash": "part: the same download without sha256, page cache, fsync",
    "sha256": "part: sha256 alone, bytes already in memory",
    "disk": "floor: `dd oflag=direct` of as many zero bytes (the disk's own write speed)",
}


@dataclass
class Sample:
    wall_s: float
    cpu_s: float


def run(workdir: Path, *, size_bytes: int = FILE_BYTES, rounds: int = 5) -> str:
    """Measure every client ``rounds`` times, interleaved; a Markdown section of the results."""
    require_tools()
    workdir.mkdir(parents=True, exist_ok=True)
    sha256 = write_random(workdir / "www" / "big.bin", size_bytes)
    out = workdir / "out.bin"
    port = free_port()
    url = f"http://127.0.0.1:{port}/big.bin"
    server = ServerProcess(server_env(workdir, concurrency=2), free_port(), workdir / "serve.log")
    load_before = os.getloadavg()
    with serving_files(workdir, port):
        try:
            server.start()
            clients: dict[str, Callable[[], Sample]] = {
                "curl": lambda: measure(
                    lambda: run_cmd(["curl", "-sSf", "-o", str(out), url]), out
                ),
                "curl+openssl": lambda: measure(lambda: curl_then_openssl(url, out), out),
                "fetch": lambda: measure(lambda: verified_fetch(url, out, size_bytes, sha256), out),
                "server": lambda: server_download(server, url, sha256, workdir / "data"),
                "inline": lambda: measure(lambda: plain_download(port, out, inline_hash=True), out),
                "nohash": lambda: measure(
                    lambda: plain_download(port, out, inline_hash=False), out
                ),
                "sha256": lambda: hash_in_memory(size_bytes),
                "disk": lambda: measure(lambda: direct_write(out, size_bytes), out),
            }
            samples: dict[str, list[Sample]] = {name: [] for name in clients}
            for _ in range(rounds):
                for name, client in clients.items():
                    samples[name].append(client())
        finally:
            server.stop()
            out.unlink(missing_ok=True)
    return report(summarize(samples), size_bytes, rounds, (load_before, os.getloadavg()))


def summarize(samples: dict[str, list[Sample]]) -> dict[str, Sample]:
    """Per client, the best wall time and the median CPU of its rounds. (Taking the CPU of the
    best round instead would favour single-threaded curl, whose fastest round is also its
    cheapest, against clients whose fastest round is not.)"""
    return {
        name: Sample(min(s.wall_s for s in runs), statistics.median(s.cpu_s for s in runs))
        for name, runs in samples.items()
    }


def require_tools() -> None:
    missing = [tool for tool in ("curl", "openssl", NGINX) if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(f"the download benchmarks need {missing} (make bench installs them)")


def measure(client: Callable[[], None], out: Path) -> Sample:
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


def direct_write(out: Path, size: int) -> None:
    """What the disk itself takes to store ``size`` bytes durably (no page cache)."""
    block = 8 << 20
    run_cmd(
        ["dd", "if=/dev/zero", f"of={out}", f"bs={block}", f"count={size // block}", "oflag=direct"]
    )


def curl_then_openssl(url: str, out: Path) -> None:
    run_cmd(["curl", "-sSf", "-o", str(out), url])
    run_cmd(["openssl", "dgst", "-sha256", str(out)])


def verified_fetch(url: str, out: Path, size: int, sha256: str) -> None:
    req = FetchRequest(url=url, dest=out, expected_size=size, expected_sha256=sha256)
    fetch(req, cancel=threading.Event(), on_progress=lambda done, total: None, log=lambda _: None)


def server_download(server: ServerProcess, url: str, sha256: str, data_dir: Path) -> Sample:
    """One download through a running modelyard; wall time from the task's own timestamps."""
    assert server.proc is not None
    proc = psutil.Process(server.proc.pid)
    os.sync()
    name = f"big-{time.monotonic_ns()}.bin"
    with httpx.Client(base_url=server.url, timeout=30) as http:
        before = _process_cpu(proc)
        body = {"source": "url", "url": url, "filename": name, "sha256": sha256}
        task = http.post("/api/downloads", json=body).raise_for_status().json()
        while task["state"] not in {"completed", "failed"}:
            time.sleep(0.1)  # the wall time comes from the task itself, not from polling
            task = http.get(f"/api/downloads/{task['id']}").raise_for_status().json()
        cpu = _process_cpu(proc) - before
        if task["state"] != "completed":
            raise RuntimeError(f"the server's download failed: {task['error']}")
        http.delete(f"/api/downloads/{task['id']}").raise_for_status()
    (data_dir / "models" / name).unlink()
    wall = _seconds(task["finished_at"]) - _seconds(task["created_at"])
    return Sample(wall, cpu)


def _process_cpu(proc: psutil.Process) -> float:
    """User + system CPU of the server, of its live children (the download worker, which stays
    for the next download) and of those that have exited."""
    live = 0.0
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = child.cpu_times()
            live += times.user + times.system
    times = proc.cpu_times()
    return float(live + times.user + times.system + times.children_user + times.children_system)


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def plain_download(port: int, out: Path, *, inline_hash: bool) -> None:
    """A read-write loop through the page cache (http.client readinto, writeback, fsync),
    with sha256 in the same thread or none at all."""
    conn = HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/big.bin")
    resp = conn.getresponse()
    digest = hashlib.sha256()
    buf = bytearray(CHUNK_BYTES)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        written = flushed = 0
        while count := resp.readinto(buf):
            view = memoryview(buf)[:count]
            os.write(fd, view)
            if inline_hash:
                digest.update(view)
            written += count
            if written - flushed >= WRITEBACK_BYTES:
                os.posix_fadvise(fd, flushed, written - flushed, os.POSIX_FADV_DONTNEED)
                flushed = written
        os.fsync(fd)
    finally:
        os.close(fd)
        conn.close()


def hash_in_memory(size: int) -> Sample:
    """sha256 over ``size`` bytes from a 64 MiB buffer: the floor any verifying client pays."""
    block = os.urandom(64 << 20)
    digest = hashlib.sha256()
    before, started = time.process_time(), time.perf_counter()
    for _ in range(size // len(block)):
        digest.update(block)
    return Sample(time.perf_counter() - started, time.process_time() - before)


def report(
    results: dict[str, Sample],
    size: int,
    rounds: int,
    load: tuple[tuple[float, ...], tuple[float, ...]],
) -> str:
    gb = size / 1e9
    rows = [
        f"| {LABELS[name]} | {s.wall_s:.2f} | {gb / s.wall_s:.2f} | {s.cpu_s / gb:.2f} |"
        for name, s in results.items()
    ]
    curl, verified, ours, server = (results[k] for k in ("curl", "curl+openssl", "fetch", "server"))
    nohash, sha, disk = results["nohash"], results["sha256"], results["disk"]
    lines = [
        f"## {TITLE}",
        "",
        f"{size / 2**30:.2f} GiB of random bytes from nginx {nginx_version()} (`sendfile on`) on "
        f"127.0.0.1, written to the same disk. Best wall time of {rounds} interleaved rounds; "
        "CPU is the median over those rounds of the user+system time of the client (all its "
        "threads; curl and openssl; the server process and its download worker, live or "
        "exited). Load average before/after the run: "
        f"{_load(load[0])} / {_load(load[1])} (other work on this shared machine competes "
        "for its two cores).",
        "",
        "| client | wall s | GB/s | CPU s/GB |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        *goal_lines("fetch()", ours, curl, verified),
        *goal_lines("the server", server, curl, verified),
        f"- sha256 in a 2nd thread vs inline: **{results['inline'].wall_s / ours.wall_s:.2f}×** "
        "faster",
        "",
        "Where the CPU goes: verifying sha256 costs "
        f"**{sha.cpu_s / gb:.2f} CPU s/GB** on its own here (SHA-NI, one core), "
        f"{sha.cpu_s / curl.cpu_s:.2f}× curl's whole download ({curl.cpu_s / gb:.2f} s/GB). "
        "Through the page cache, as curl writes, the download without hashing costs "
        f"{nohash.cpu_s / gb:.2f} s/GB, so a verifying client writing that way would pay about "
        f"{(nohash.cpu_s + sha.cpu_s) / curl.cpu_s:.2f}× curl's CPU (the inline variant: "
        f"{results['inline'].cpu_s / curl.cpu_s:.2f}×). `fetch()` writes with O_DIRECT where the "
        "file system takes it: the copy into the page cache is gone, and it reaches "
        f"{ours.cpu_s / curl.cpu_s:.2f}×, with hashing and writing each in a thread of their own; "
        f"curl + openssl, which verifies too, {verified.cpu_s / curl.cpu_s:.2f}×. The server "
        "adds its event loop, the progress events and the store writes; its download worker "
        "process starts once (about 0.1 CPU s for Python and its imports) and then does one "
        "download after another, so that start is not counted per download. The wall-time goals depend on "
        "the hash thread having the second core to itself; when other work takes it, hashing "
        "and downloading share one core and the download slows towards curl + openssl. The "
        "server's download worker also runs at a lower priority (nice 10, so that the API stays "
        "fast): while other programs want the CPU it gives way, where curl and `fetch()` here "
        "do not.",
        "",
        "`fetch()` and the server also fsync before the atomic rename (plain curl does not); "
        "with O_DIRECT the bytes are on the disk already, so the fsync has little left to flush. "
        "So neither can finish before the disk has stored every byte: the floor row, "
        f"{disk.wall_s:.2f} s here ({gb / disk.wall_s:.2f} GB/s), bounds them, and `fetch()` "
        f"took {ours.wall_s / disk.wall_s:.2f}× that, the server "
        f"{server.wall_s / disk.wall_s:.2f}× (the disk's speed moves from round to round, so a "
        "client's best round can beat the floor's). curl (and openssl after it) leave the bytes "
        "in the page cache for the kernel to write later, which is why plain curl can beat the "
        "disk's own speed, and why the wall-time goals are within reach only where the disk writes "
        "faster than curl + openssl downloads and hashes. Nor can they finish before their hash "
        f"thread has hashed every byte: sha256 alone took {sha.wall_s:.2f} s in memory, the "
        "other floor, so plain curl's throughput stays out of reach in a round where curl "
        "downloads faster than one core hashes.",
        "",
        "The engine reads and writes 4 MiB buffers, four of them per download (16 MiB). In an "
        "interleaved experiment on this machine (2026-12-06, 5 rounds each, this nginx and "
        "file), eight 1 MiB buffers took a median 1.39 CPU s per GiB and four 4 MiB ones 1.27, "
        "at the same wall time: a quarter of the reads, hand-overs between the threads and "
        "O_DIRECT writes.",
        "",
    ]
    return "\n".join(lines)


def goal_lines(who: str, ours: Sample, curl: Sample, verified: Sample) -> list[str]:
    vs_verified = verified.wall_s / ours.wall_s
    vs_curl = curl.wall_s / ours.wall_s
    cpu = ours.cpu_s / curl.cpu_s
    return [
        f"- {who} vs curl + openssl: **{vs_verified:.2f}× faster** "
        f"(goal ≥ 1.3×: {verdict(vs_verified >= 1.3)})",
        f"- {who} throughput vs plain curl: **{vs_curl:.0%}** "
        f"(goal ≥ 60 %: {verdict(vs_curl >= 0.6)}; stretch 85 %: {verdict(vs_curl >= 0.85)})",
        f"- {who} CPU s/GB vs curl: **{cpu:.2f}×** (goal ≤ 1.5×: {verdict(cpu <= 1.5)}); "
        f"vs curl + openssl: **{ours.cpu_s / verified.cpu_s:.2f}×**",
    ]


def verdict(ok: bool) -> str:
    return "met" if ok else "not met"


def _load(values: tuple[float, ...]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def write_random(path: Path, size: int) -> str:
    """Real (not sparse) random bytes, written in 8 MiB blocks; their sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = 8 << 20
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        remaining = size
        while remaining:
            chunk = os.urandom(min(block, remaining))
            digest.update(chunk)
            fh.write(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


def server_env(workdir: Path, *, concurrency: int) -> dict[str, str]:
    """A modelyard of its own: no instances, no monitor, data (and models) under ``workdir``."""
    config = workdir / "modelyard.toml"
    config.write_text(f"instances = []\nmonitor = false\ndownload_concurrency = {concurrency}\n")
    return {"MODELYARD_CONFIG": str(config), "MODELYARD_DATA_DIR": str(workdir / "data")}


@contextmanager
def serving_files(work: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Debian's nginx serving ``work/www`` on 127.0.0.1:``port`` (tests/support/nginx.py)."""
    with running_nginx(work, _SERVE_FILES.format(work=work, port=port), port) as proc:
        yield proc


def nginx_version() -> str:
    done = subprocess.run([NGINX, "-v"], capture_output=True, text=True, check=False)
    return done.stderr.strip().rpartition("/")[2] or "?"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cmd(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
