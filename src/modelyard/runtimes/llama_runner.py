"""The embedded llama.cpp server: ``python -m modelyard.runtimes.llama_runner``, taking
llama-server's flags.

xllamacpp runs llama.cpp's own HTTP server in this process, so the routes and answers are
llama-server's: ``/health`` is 503 "Loading model" while the model loads, then 200. This module
gives it llama-server's command line, checks the model file and the port first (xllamacpp's
only error for both is a vague "Failed to init server"), prints the listening address and runs
until SIGTERM or SIGINT, then exits 0. Usage errors exit 2, a failed load exits 1, like
llama-server.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import xllamacpp

PROG = "python -m modelyard.runtimes.llama_runner"


def build_parser() -> argparse.ArgumentParser:
    """The subset of llama-server's flags modelyard uses."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve one GGUF model with llama.cpp's server (embedded, via xllamacpp).",
        allow_abbrev=False,
    )
    parser.add_argument("-m", "--model", required=True, help="GGUF file to serve")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on")
    parser.add_argument("-c", "--ctx-size", type=int, default=0, help="0: the model's")
    parser.add_argument("-np", "--parallel", type=int, default=1, help="number of slots")
    parser.add_argument("-t", "--threads", type=int, default=-1, help="-1: automatic")
    parser.add_argument("-a", "--alias", default="", help="model name(s), comma-separated")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("LLAMA_API_KEY", ""),
        help="API key(s), comma-separated (env LLAMA_API_KEY)",
    )
    parser.add_argument("--metrics", action="store_true", help="serve GET /metrics")
    parser.add_argument("--embedding", "--embeddings", action="store_true", help="embeddings only")
    parser.add_argument("--reranking", "--rerank", action="store_true", help="serve /rerank")
    return parser


def _port_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on host:port, or None when it can."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot resolve host {host!r}: {exc.strerror}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # The server sets SO_REUSEADDR too, so a port in TIME_WAIT is not reported as busy.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use"
            return f"cannot listen on {host}:{port}: {exc.strerror}"
    return None


def preflight(args: argparse.Namespace) -> str | None:
    """A one-line reason the server cannot start, or None."""
    model = Path(args.model)
    if not model.is_file():
        return f"model file not found: {args.model}"
    if not os.access(model, os.R_OK):
        return f"model file is not readable: {args.model}"
    if not 0 <= args.port < 65536:
        return f"port {args.port} is out of range"
    return _port_problem(args.host, args.port) if args.port else None


def server_params(args: argparse.Namespace) -> Any:
    """xllamacpp's CommonParams for the parsed flags (llama.cpp's own parameter struct)."""
    params = xllamacpp.CommonParams()
    params.model.path = str(Path(args.model).resolve())
    params.hostnames = [args.host]
    params.port = args.port
    params.n_ctx = args.ctx_size
    params.n_parallel = args.parallel
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.model_alias = {name for name in args.alias.split(",") if name}
    params.api_keys = [key for key in args.api_key.split(",") if key]
    params.endpoint_metrics = args.metrics
    params.endpoint_slots = True
    params.embedding = args.embedding or args.reranking
    if args.reranking:
        # What llama-server's --reranking does: embeddings with rank pooling.
        params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_RANK
    return params


SHUTDOWN_S = 5  # at most this long from SIGTERM to exit (whole seconds: alarm())


def _catch_signals() -> tuple[socket.socket, socket.socket]:
    """From now on SIGTERM and SIGINT write their number to a socket pair: read the first.

    llama.cpp's threads may receive the signal instead of the main thread, which would not
    interrupt a plain wait; Python's wakeup fd is written whichever thread gets it.
    """
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno())
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    return reader, writer


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGTERM or SIGINT; the process's exit code."""
    args = build_parser().parse_args(argv)
    problem = preflight(args)
    if problem:
        print(f"llama_runner: error: {problem}", file=sys.stderr, flush=True)
        return 2
    # The load below holds the GIL, so no Python handler could run before it ends: keep the
    # default actions, so a signal during the load ends the process at once (as llama-server).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        server = xllamacpp.Server(server_params(args))
    except RuntimeError as exc:
        print(f"llama_runner: error: llama.cpp could not load {args.model}: {exc}", file=sys.stderr)
        return 1
    # llama.cpp answers /health before this line runs: a signal until here ends the process
    # by its default action, after it a clean shutdown follows (the line below says which).
    reader, writer = _catch_signals()
    with reader, writer:
        print(f"llama_runner: listening on {server.listening_address}", flush=True)
        signum = reader.recv(1)[0]
    print(f"llama_runner: {signal.Signals(signum).name} received, shutting down", flush=True)
    # Stopping llama.cpp's loops takes ~0.2 s, but once in a while it never returns (seen in
    # the benchmarks). SIGALRM's default action ends the process whatever holds the GIL, so
    # a stop never waits for the process manager's SIGKILL.
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(SHUTDOWN_S)
    del server  # stops llama.cpp's loops and frees the model
    return 0


if __name__ == "__main__":
    sys.exit(main())
