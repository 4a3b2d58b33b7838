"""Chat streaming overhead: the same llama.cpp server answering the same kind of prompt, called
directly (``/v1/chat/completions``, streamed) and through modelyard
(``POST /api/conversations/{id}/messages``, a real ``modelyard serve`` process), interleaved in
one run. Both are timed by the same client: time to first token from sending the request, and
decoding speed as (tokens - 1) / (last token - first token).

Two conversations: a short one, where the tiny generated model decodes at thousands of tokens
per second (far faster than any real model, so per-token overhead shows as it never would in
use), and a long one (a 2,500-token system prompt), where it decodes at a few hundred tokens
per second, like a small real model on a CPU. llama-server runs one thread (``-t 1``), leaving
the second core of a 2-core machine to the client and modelyard.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from tests.support.app_server import ServerProcess
from tests.support.chat import llama_server
from tests.support.servers import free_port
from tests.support.tiny_gguf import write_tiny_gguf

TITLE = "Chat: streaming through modelyard vs calling llama.cpp directly"
TRIALS = 60
WARMUP = 5
MAX_TOKENS = 128
PAUSE_S = 0.1
SCENARIOS = {
    "short conversation": "You are a tiny test model.",
    "long conversation": "You are a careful assistant. " * 110,
}


def _question(i: int) -> str:
    # A different prompt each call (no prompt-cache hits beyond the shared system prompt),
    # the same length every time.
    return f"Question {i:05d}: please write a long answer about anything at all."


def _events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.startswith("data: ") and line != "data: [DONE]":
            yield json.loads(line[6:])


def _timed(http: httpx.Client, url: str, body: dict[str, Any], direct: bool) -> dict[str, float]:
    """Send one request; return TTFT (ms), decoding tokens/s and the token count, client-side."""
    stamps: list[float] = []
    started = time.perf_counter()
    with http.stream("POST", url, json=body) as resp:
        resp.raise_for_status()
        for event in _events(resp.iter_lines()):
            if direct:
                text = "".join(
                    (c.get("delta") or {}).get("content") or "" for c in event["choices"]
                )
            else:
                text = event.get("text", "") if event["type"] == "token" else ""
            if text:
                stamps.append(time.perf_counter())
    n = len(stamps)
    return {
        "ttft_ms": (stamps[0] - started) * 1000,
        "tps": (n - 1) / (stamps[-1] - stamps[0]),
        "tokens": n,
    }


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _modelyard(workdir: Path, llama_url: str) -> ServerProcess:
    config = workdir / "modelyard.toml"
    config.write_text(
        f'[[instances]]\nprovider = "llamacpp"\nid = "tiny"\nbase_url = "{llama_url}"\n'
    )
    env = {
        "MODELYARD_CONFIG": str(config),
        "MODELYARD_DATA_DIR": str(workdir / "data"),
        "MODELYARD_LOG_LEVEL": "warning",
    }
    return ServerProcess(env, free_port(), workdir / "modelyard.log").start()


def _measure(
    http: httpx.Client, llama_url: str, server: ServerProcess, system: str
) -> dict[str, list[Any]]:
    results: dict[str, list[Any]] = {"direct": [], "modelyard": []}
    # One fresh conversation per call, created before timing starts.
    conversations = [
        http.post(
            f"{server.url}/api/conversations",
            json={"provider": "llamacpp", "model": "tiny", "system": system},
        ).json()["id"]
        for _ in range(WARMUP + TRIALS)
    ]
    for i, conversation in enumerate(conversations):
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": _question(2 * i)},
        ]
        direct_body: dict[str, Any] = {
            "model": "tiny",
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": MAX_TOKENS,
        }
        body: dict[str, Any] = {
            "content": _question(2 * i + 1),
            "options": {"max_tokens": MAX_TOKENS},
        }
        calls: list[tuple[str, str, dict[str, Any]]] = [
            ("direct", f"{llama_url}/v1/chat/completions", direct_body),
            ("modelyard", f"{server.url}/api/conversations/{conversation}/messages", body),
        ]
        if i % 2:
            calls.reverse()  # neither path always goes first
        for name, url, payload in calls:
            # The same idle time before every call: a llama-server idle for longer answers
            # later (its threads have gone to sleep), whoever calls it.
            time.sleep(PAUSE_S)
            sample = _timed(http, url, payload, direct=name == "direct")
            if i >= WARMUP:
                results[name].append(sample)
    return results


def _summary(results: dict[str, list[Any]]) -> dict[str, float]:
    direct, via = results["direct"], results["modelyard"]
    assert all(r["tokens"] == MAX_TOKENS for r in direct + via), "an answer was cut short"
    out: dict[str, float] = {}
    for q in (0.5, 0.9):
        out[f"d{q}"] = _pct([r["ttft_ms"] for r in direct], q)
        out[f"m{q}"] = _pct([r["ttft_ms"] for r in via], q)
    out["tps_d"] = statistics.median(r["tps"] for r in direct)
    out["tps_m"] = statistics.median(r["tps"] for r in via)
    return out


def _rows(name: str, s: dict[str, float]) -> list[str]:
    return [
        f"| {name} | time to first token, p{int(q * 100)} | {s[f'd{q}']:.1f} ms "
        f"| {s[f'm{q}']:.1f} ms | {s[f'm{q}'] - s[f'd{q}']:+.1f} ms |"
        for q in (0.5, 0.9)
    ] + [
        f"| {name} | decoding speed, median | {s['tps_d']:.0f} tok/s | {s['tps_m']:.0f} tok/s "
        f"| ×{s['tps_m'] / s['tps_d']:.3f} |"
    ]


def _verdict(short: dict[str, float], long: dict[str, float]) -> str:
    added = short["m0.5"] - short["d0.5"]
    ratio = long["tps_m"] / long["tps_d"]
    relay = short["tps_m"] / short["tps_d"]
    return (
        f"Added time to first token, p50, on the short conversation (where prompt processing "
        f"is quick and steady, so it does not drown the difference): **{added:.1f} ms** "
        f"(target < 10 ms: {'met' if added < 10 else 'NOT met'}).\n\n"
        f"Decoding speed through modelyard at a real model's pace (long conversation, "
        f"{long['tps_d']:.0f} tok/s direct): **×{ratio:.3f}** "
        f"(target within 5 %: {'met' if ratio >= 0.95 else 'NOT met'}).\n\n"
        f"At the tiny model's short-conversation pace ({short['tps_d']:.0f} tok/s) the relay "
        f"itself is the limit: ×{relay:.3f}, about {short['tps_m']:.0f} tok/s, the CPU that "
        "reading each chunk through the SDK's HTTP stack and sending it on costs, on a core "
        "shared with the client.\n"
    )


def run(workdir: Path) -> str:
    model = write_tiny_gguf(workdir / "tiny.gguf", context_length=8192)
    summaries: dict[str, dict[str, float]] = {}
    with llama_server(model, workdir / "llama.log", "-t", "1") as llama_url:
        server = _modelyard(workdir, llama_url)
        try:
            with httpx.Client(timeout=60) as http:
                for name, system in SCENARIOS.items():
                    summaries[name] = _summary(_measure(http, llama_url, server, system))
        finally:
            server.stop()
    rows = [
        "| conversation | measure | direct | through modelyard | difference |",
        "|---|---|---|---|---|",
    ]
    for name, summary in summaries.items():
        rows += _rows(name, summary)
    return (
        f"## {TITLE}\n\n"
        f"{TRIALS} answers of {MAX_TOKENS} tokens each way per conversation after {WARMUP} "
        f"warm-up rounds, interleaved, each after {PAUSE_S * 1000:.0f} ms of idle time, one slot "
        "(`-np 1`) and one thread (`-t 1`), a fresh question per call. modelyard adds its HTTP "
        "hop, reading and storing the conversation, the `openai` SDK's request, and relaying "
        "each token as an event.\n\n"
        + "\n".join(rows)
        + "\n\n"
        + _verdict(summaries["short conversation"], summaries["long conversation"])
    )
