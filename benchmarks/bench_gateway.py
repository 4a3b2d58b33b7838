"""The gateway against calling the backend directly, and against LiteLLM's proxy, in one run.

Processes, each its own: a genuine llama-server running the tiny generated model (64 slots),
the paced stand-in (``tests/support/paced_upstream.py``: a token every 50 ms per stream, the
way a ~20 tokens/s model streams), the gateway (``benchmarks/gateway_server.py``: modelyard's
app itself — its guards, the gateway's routes and its scheduler — on uvicorn), LiteLLM's proxy
(``gateway_peers``), and the load generator (``benchmarks/gateway_load.py``: raw HTTP/1.1 on
uvloop). Every figure is measured the same way through the three paths:

- time to first token with 64 streams always in flight (each client sends its next request
  when its answer ends, the starts spread out; 8 s measured after 2 s, three passes
  interleaved), against the paced stand-in (whose own latency is steady, so what the path
  adds shows) and against llama.cpp (the real thing, noisier); and, for the worst case,
  rounds of 64 requests sent at the same instant (each waits for the ones before it);
- 256 concurrent streams against the paced stand-in, each asking for 100 tokens (5 s) and
  asking again when its answer ends, measured for 15 s once every stream is going: tokens/s
  received, the mean TTFT, the path's CPU (its process and children) and CPU-ms per 1,000
  relayed chunks, and the stand-in's and load generator's CPU (neither may be the
  bottleneck). Twice: with the streams' starts spread over one answer's length, so that
  requests arrive as from many independent clients (the goal's figure, like the TTFT
  passes'); and with all 256 started at the same instant, so that they all ask again
  together every 5 s and a path's per-request work comes in bursts of 256 (the worst case,
  kept so that nothing is hidden: each request of a burst waits for those before it);
- a client that hangs up, streaming (after its first token) and not (while its answer is
  generated): how long until the stand-in sees its request closed (``CLOCK_MONOTONIC``, one
  clock for every process on the machine);
- loading on demand (the engine only, in this process: its scheduler over genuine
  llama-server processes, behind ``tests/support/gateway_app.py``): 50 simultaneous requests
  for a GGUF nobody loaded, and the first heartbeat of a load that takes 6 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from tests.gateway.fake_backend import FakeBackend
from tests.gateway.llama_backend import LlamaServers
from tests.support.gateway_app import GatewayApp, llama_target, openai_target
from tests.support.llama import llama_server
from tests.support.servers import ServerThread
from tests.support.tiny_gguf import write_tiny_gguf

from benchmarks.gateway_peers import (
    MASTER_KEY,
    gateway,
    litellm_proxy,
    litellm_version,
    paced_upstream,
)
from modelyard.gateway.scheduler import Scheduler
from modelyard.gateway.scheduling import ModelPolicy, SchedulerSettings

TITLE = "Gateway: added latency, 256 streams, hang-ups — vs direct and vs LiteLLM's proxy"
INTERVAL_S = 0.05  # the paced stand-in's pace: 20 tokens/s per stream
TTFT_STREAMS = 64
THROUGHPUT_STREAMS = 256
ANSWER_TOKENS = 100  # per request of the 256 streams: 5 s at the stand-in's pace
ANSWER_S = ANSWER_TOKENS * INTERVAL_S
# How the 256 streams' first requests start: spread over one answer's length, so that
# requests arrive as from independent clients (the goal's figure); or at the same instant,
# so that every answer ends and is asked again together, a burst every 5 s (the worst case).
THROUGHPUT_STARTS = {"spread": ANSWER_S, "at once": 0.0}
HANGUPS = 15
PATHS = ("direct", "modelyard", "LiteLLM")


@dataclass
class Via:
    """How to reach a backend through one path."""

    name: str
    urls: dict[str, str]  # model → base URL
    key: str = ""
    pid: int | None = None


def _load(path: Via, model: str, mode: str, **options: float) -> dict[str, Any]:
    argv = [sys.executable, "-m", "benchmarks.gateway_load", path.urls[model], model, "--mode"]
    argv.append(mode)
    for name, value in options.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    if path.key:
        argv += ["--key", path.key]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600)
    return dict(json.loads(out.stdout))


def _cpu(pid: int) -> float:
    proc = psutil.Process(pid)
    total = sum(proc.cpu_times()[:2])
    for child in proc.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            continue
    return float(total)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def measure_ttft(
    paths: list[Via], model: str, mode: str, passes: int, **options: float
) -> dict[str, list[float]]:
    """TTFT samples per path, in ``passes`` interleaved passes (drift lands on all alike)."""
    samples: dict[str, list[float]] = {p.name: [] for p in paths}
    for _ in range(passes):
        for path in paths:
            result = _load(path, model, mode, streams=TTFT_STREAMS, **options)
            samples[path.name].extend(result["ttft_ms"])
    return samples


def measure_throughput(paths: list[Via], paced_pid: int) -> dict[str, dict[str, dict[str, float]]]:
    """Per way of starting (``THROUGHPUT_STARTS``), per path: tokens/s, TTFT and CPU."""
    return {
        starts: {path.name: _throughput(path, paced_pid, spread) for path in paths}
        for starts, spread in THROUGHPUT_STARTS.items()
    }


def _throughput(path: Via, paced_pid: int, spread: float) -> dict[str, float]:
    warmup, duration = spread + 4.0, 3 * ANSWER_S  # every stream going; whole answer cycles
    argv = [sys.executable, "-m", "benchmarks.gateway_load", path.urls["paced"], "paced"]
    argv += ["--mode", "throughput", "--streams", str(THROUGHPUT_STREAMS)]
    argv += ["--max-tokens", str(ANSWER_TOKENS), "--spread", str(spread)]
    argv += ["--warmup", str(warmup), "--duration", str(duration)]
    if path.key:
        argv += ["--key", path.key]
    load = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    time.sleep(warmup)
    watched = {"path": path.pid, "stand-in": paced_pid, "load": load.pid}
    before = {k: _cpu(pid) for k, pid in watched.items() if pid}
    started = time.monotonic()
    time.sleep(duration)
    spent = {k: _cpu(pid) - before[k] for k, pid in watched.items() if pid}
    wall = time.monotonic() - started
    stdout, _ = load.communicate(timeout=300)
    result = json.loads(stdout)
    ttfts = result["ttft_ms"]
    row = {
        "tokens_s": result["tokens"] / result["seconds"],
        "events": result["events"],
        "errors": result["errors"],
        "ttft_mean_ms": sum(ttfts) / len(ttfts) if ttfts else float("nan"),
    }
    for key, seconds in spent.items():
        row[f"{key}_cores"] = seconds / wall
    if "path" in spent and result["events"]:
        row["cpu_ms_per_1000"] = spent["path"] * 1000 / (result["events"] / 1000)
    return row


def _hang_up(path: Via, paced: str, user: str, stream: bool) -> float | None:
    """Open a request, hang up; seconds until the stand-in saw its request close."""
    body = json.dumps(
        {"model": "paced", "messages": [], "max_tokens": 200, "stream": stream, "user": user}
    ).encode()
    host, port = path.urls["paced"].removeprefix("http://").split(":")
    started_before = httpx.get(paced + "/stats").json()["started"]
    sock = socket.create_connection((host, int(port)))
    auth = f"Authorization: Bearer {path.key}\r\n".encode() if path.key else b""
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (auth, len(body), body)
    )
    if stream:
        received = b""
        while b'"content":"' not in received:
            received += sock.recv(65536)
    else:
        deadline = time.monotonic() + 30
        while httpx.get(paced + "/stats").json()["started"] == started_before:
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        time.sleep(0.1)  # generating
    left = time.monotonic()
    sock.close()
    deadline = left + 5
    while time.monotonic() < deadline:
        closed = [
            c for c in httpx.get(paced + "/stats").json()["closed_early"] if c["user"] == user
        ]
        if closed:
            return float(closed[0]["closed_at"]) - left
        time.sleep(0.01)
    return None  # not closed within 5 s: the backend kept generating


def measure_hangups(paths: list[Via], paced: str) -> dict[str, dict[str, list[float | None]]]:
    out: dict[str, dict[str, list[float | None]]] = {}
    for path in paths:
        out[path.name] = {
            mode: [
                _hang_up(path, paced, f"{path.name}-{mode}-{i}", mode == "streaming")
                for i in range(HANGUPS)
            ]
            for mode in ("streaming", "whole")
        }
    return out


async def _first_lines(url: str, model: str, clients: int) -> list[tuple[int, float, float]]:
    """``clients`` simultaneous streamed requests: (status, seconds to the first heartbeat or
    token, seconds to the end) each."""
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "stream": True}

    async def one(http: httpx.AsyncClient) -> tuple[int, float, float]:
        started = time.monotonic()
        first = float("nan")
        async with http.stream("POST", url + "/v1/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line and first != first:  # the first thing that is not blank
                    first = time.monotonic() - started
        return response.status_code, first, time.monotonic() - started

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=100)) as http:
        return list(await asyncio.gather(*(one(http) for _ in range(clients))))


def measure_loading(workdir: Path, paced: str) -> dict[str, Any]:
    """50 simultaneous requests for an unloaded GGUF (genuine llama-server processes), and
    one request for a model whose load takes 6 s (a slow stand-in): loads, errors, and how
    soon the first heartbeat came."""
    model = write_tiny_gguf(workdir / "unloaded.gguf", seed=3)
    servers = LlamaServers({"gguf": model}, {"gguf": 1})
    policy = ModelPolicy(max_concurrency=4, max_queue=64)
    scheduler = Scheduler(servers, SchedulerSettings(memory_budget_bytes=1), lambda _: policy)
    target = {"gguf": llama_target("gguf", servers.url("gguf"))}
    try:
        with ServerThread(GatewayApp(target, scheduler, heartbeat_s=0.25)) as server:
            gguf = asyncio.run(_first_lines(server.url, "gguf", 50))
    finally:
        for proc in servers.every_process:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
    slow = FakeBackend({"slow": 1}, load_s=6.0, steps=24)
    scheduler = Scheduler(slow, SchedulerSettings(memory_budget_bytes=1))
    target = {"slow": openai_target("slow", paced)}
    with ServerThread(GatewayApp(target, scheduler)) as server:
        waited = asyncio.run(_first_lines(server.url, "slow", 1))
    return {
        "starts": servers.starts["gguf"],
        "errors": sum(status != 200 for status, _, _ in gguf),
        "first_s": sorted(first for _, first, _ in gguf),
        "slow_first_s": waited[0][1],
        "slow_total_s": waited[0][2],
    }


def run(workdir: Path) -> str:
    model = write_tiny_gguf(workdir / "tiny.gguf")
    with ExitStack() as stack:
        llama = stack.enter_context(
            llama_server(model, "-np", str(TTFT_STREAMS), ctx_size=TTFT_STREAMS * 128)
        )
        paced, paced_pid = stack.enter_context(paced_upstream(workdir, INTERVAL_S))
        ours, ours_pid = stack.enter_context(
            gateway(workdir, {"tiny": f"{llama}@llama", "paced": paced})
        )
        theirs, theirs_pid = stack.enter_context(
            litellm_proxy(workdir, {"tiny": llama, "paced": paced})
        )
        paths = [
            Via("direct", {"tiny": llama, "paced": paced}),
            Via("modelyard", {"tiny": ours, "paced": ours}, pid=ours_pid),
            Via("LiteLLM", {"tiny": theirs, "paced": theirs}, key=MASTER_KEY, pid=theirs_pid),
        ]
        load_before = psutil.getloadavg()
        steady = {"warmup": 2, "duration": 8}
        ttft = {
            "paced stand-in": measure_ttft(
                paths, "paced", "steady", 3, max_tokens=20, spread=1.0, **steady
            ),
            "llama.cpp": measure_ttft(
                paths, "tiny", "steady", 3, max_tokens=16, spread=0.3, **steady
            ),
            "paced stand-in, 64 at the same instant": measure_ttft(
                paths, "paced", "ttft", 1, max_tokens=2
            ),
        }
        throughput = measure_throughput(paths, paced_pid)
        hangups = measure_hangups(paths, paced)
        loading = measure_loading(workdir, paced)
        load_after = psutil.getloadavg()
    return report(ttft, throughput, hangups, loading, (load_before, load_after))


def _ms(value: float) -> str:
    return "—" if value != value else f"{value:.1f}"  # NaN: no sample in the window


def report(
    ttft: dict[str, dict[str, list[float]]],
    throughput: dict[str, dict[str, dict[str, float]]],
    hangups: dict[str, dict[str, list[float | None]]],
    loading: dict[str, Any],
    load: tuple[tuple[float, ...], tuple[float, ...]],
) -> str:
    lines = [
        f"## {TITLE}",
        "",
        f"Three paths to the same backends in one run: **direct**, **modelyard** (its app: "
        f"the guards, the gateway's routes, the scheduler), and **LiteLLM**'s proxy "
        f"({litellm_version()}, one worker). The load "
        f"generator and the paced stand-in run in processes of their own. Load average "
        f"before/after: {' '.join(f'{v:.2f}' for v in load[0])} / "
        f"{' '.join(f'{v:.2f}' for v in load[1])}.",
        "",
        f"### Time to first token, {TTFT_STREAMS} concurrent streams (the goals: steady, paced)",
        "",
        "| backend | path | samples | p50 ms | p99 ms | added p50 ms | added p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    goals: list[str] = []
    for backend, samples in ttft.items():
        base50, base99 = _pct(samples["direct"], 0.5), _pct(samples["direct"], 0.99)
        for name in PATHS:
            p50, p99 = _pct(samples[name], 0.5), _pct(samples[name], 0.99)
            added = ("", "") if name == "direct" else (_ms(p50 - base50), _ms(p99 - base99))
            lines.append(
                f"| {backend} | {name} | {len(samples[name])} | {_ms(p50)} | {_ms(p99)} | "
                f"{added[0]} | {added[1]} |"
            )
        if backend == "paced stand-in":
            ours50 = _pct(samples["modelyard"], 0.5) - base50
            ours99 = _pct(samples["modelyard"], 0.99) - base99
            goals.append(
                f"- added TTFT at {TTFT_STREAMS} streams: p50 **{_ms(ours50)} ms** "
                f"(goal ≤ 2 ms: {_verdict(ours50 <= 2)}), p99 **{_ms(ours99)} ms** "
                f"(goal ≤ 10 ms: {_verdict(ours99 <= 10)})"
            )
    lines += [
        "",
        f"### {THROUGHPUT_STREAMS} concurrent streams at ~20 tokens/s each (paced stand-in)",
        "",
        f"Each stream asks for {ANSWER_TOKENS} tokens ({ANSWER_S:g} s) and asks again when its "
        f"answer ends; {3 * ANSWER_S:g} s measured once every stream is going. **spread**: "
        f"the streams' first requests spread over one answer's length, so requests arrive as "
        f"from independent clients (the goal's figure). **at once**: all {THROUGHPUT_STREAMS} "
        f"started at the same instant, so all re-ask together every {ANSWER_S:g} s and the "
        f"path's per-request work comes in one burst (its cost shows in the mean TTFT).",
        "",
        "| starts | path | tokens/s | × direct | mean TTFT ms | errors | path CPU (cores) | "
        "CPU-ms per 1,000 chunks | stand-in CPU | load generator CPU |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for starts, rows in throughput.items():
        direct_rate = rows["direct"]["tokens_s"]
        for name in PATHS:
            row = rows[name]
            cores = row.get("path_cores")
            per = row.get("cpu_ms_per_1000")
            lines.append(
                f"| {starts} | {name} | {row['tokens_s']:.0f} | "
                f"{row['tokens_s'] / direct_rate:.3f} | {_ms(row['ttft_mean_ms'])} | "
                f"{row['errors']:.0f} | {'' if cores is None else f'{cores:.2f}'} | "
                f"{'—' if per is None else f'{per:.0f}'} | {row['stand-in_cores']:.2f} | "
                f"{row['load_cores']:.2f} |"
            )
    spread, burst = throughput["spread"], throughput["at once"]
    ours = spread["modelyard"]
    ratio = ours["tokens_s"] / spread["direct"]["tokens_s"]
    burst_ratio = burst["modelyard"]["tokens_s"] / burst["direct"]["tokens_s"]
    goals.append(
        f"- {THROUGHPUT_STREAMS} streams (starts spread): **{ratio:.3f}×** direct tokens/s "
        f"(goal ≥ 0.98×: {_verdict(ratio >= 0.98)}; all started at once: "
        f"{burst_ratio:.3f}×), gateway CPU **{ours['path_cores']:.2f} cores** "
        f"(goal ≤ 1: {_verdict(ours['path_cores'] <= 1)}), "
        f"**{ours['cpu_ms_per_1000']:.0f} CPU-ms per 1,000 chunks** "
        f"(LiteLLM: {_ms(spread['LiteLLM'].get('cpu_ms_per_1000', float('nan')))})"
    )
    lines += [
        "",
        f"### A client hangs up: until the backend sees its request closed ({HANGUPS} each)",
        "",
        "| path | answer | p50 ms | max ms | not closed within 5 s |",
        "|---|---|---:|---:|---:|",
    ]
    for name in PATHS:
        for mode, values in hangups[name].items():
            closed = [1000 * v for v in values if v is not None]
            missing = sum(v is None for v in values)
            median = _ms(_pct(closed, 0.5)) if closed else "—"
            slowest = _ms(max(closed)) if closed else "—"
            lines.append(f"| {name} | {mode} | {median} | {slowest} | {missing} |")
    for mode, values in hangups["modelyard"].items():
        seen = [1000 * v for v in values if v is not None]
        ok = len(seen) == len(values) and max(seen) <= 100
        worst = f"{max(seen):.1f} ms" if seen else "never"
        goals.append(
            f"- upstream closed after a hang-up ({mode}): worst **{worst}** (goal ≤ 100 ms: {_verdict(ok)})"
        )
    firsts = loading["first_s"]
    lines += [
        "",
        "### Loading on demand (modelyard only)",
        "",
        f"- 50 simultaneous streamed requests for an unloaded GGUF (a genuine llama-server "
        f"started on demand): **{loading['starts']} load**, **{loading['errors']} errors**; "
        f"first heartbeat or token after {_ms(1000 * firsts[0])}–{_ms(1000 * firsts[-1])} ms",
        f"- a model whose load takes 6 s (a slow stand-in): first heartbeat after "
        f"**{_ms(1000 * loading['slow_first_s'])} ms**, answer complete after "
        f"{loading['slow_total_s']:.1f} s",
    ]
    goals.append(
        f"- 50 simultaneous requests for an unloaded GGUF: {loading['starts']} load, "
        f"{loading['errors']} errors (goal: exactly one, zero: "
        f"{_verdict(loading['starts'] == 1 and loading['errors'] == 0)}); first heartbeat of "
        f"a 6 s load after {_ms(1000 * loading['slow_first_s'])} ms "
        f"(goal ≤ 1 s: {_verdict(loading['slow_first_s'] <= 1.0)})"
    )
    return "\n".join([*lines, "", *goals, ""])


def _verdict(ok: bool) -> str:
    return "met" if ok else "not met"
