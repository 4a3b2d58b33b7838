"""Command lines for the managed runtimes: llama.cpp's server and ``ollama serve``.

A GGUF model runs under the genuine ``llama-server`` when one is configured or on PATH, else
under the embedded runtime (``python -m modelyard.runtimes.llama_runner``, llama.cpp's own
server from the xllamacpp wheel), which takes the same flags. Host and port are always passed
explicitly: llama-server's default port has differed between builds (PROTOCOLS.md §3.1).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path
from urllib.parse import urlsplit

from modelyard.config import ModelMode
from modelyard.errors import InvalidInput, NotFound
from modelyard.runtimes.processes import LaunchSpec
from modelyard.validation import validate_base_url

log = logging.getLogger(__name__)

LLAMA_SERVER = "llama-server"
OLLAMA = "ollama"
EMBEDDED_RUNNER = "modelyard.runtimes.llama_runner"
_MODE_FLAGS = {
    ModelMode.LLM: [],
    ModelMode.EMBED: ["--embedding"],
    ModelMode.RERANK: ["--reranking"],
}


def _find(configured: str, name: str, setting: str) -> str | None:
    """The configured program if it is executable, else ``name`` on PATH, as an absolute path."""
    if configured:
        found = shutil.which(os.path.expanduser(configured))
        if found:
            return os.path.abspath(found)
        log.warning(
            "%s=%r is not an executable program; looking for %s on PATH", setting, configured, name
        )
    found = shutil.which(name)
    return os.path.abspath(found) if found else None


def find_llama_server(configured: str = "") -> str | None:
    """The ``llama-server`` to run: configured, else on PATH, else None (the embedded runtime)."""
    return _find(configured, LLAMA_SERVER, "MODELYARD_LLAMA_SERVER")


def find_ollama(configured: str = "") -> str | None:
    """The ``ollama`` program: configured, else on PATH, else None."""
    return _find(configured, OLLAMA, "MODELYARD_OLLAMA_BINARY")


def llama_server_argv(
    *,
    model: Path,
    host: str,
    port: int,
    ctx_size: int = 0,
    alias: str | None = None,
    mode: ModelMode = ModelMode.LLM,
    api_key: str | None = None,
    threads: int | None = None,
    parallel: int = 1,
    binary: str | None,
) -> list[str]:
    """The command line serving ``model``; ``binary`` None selects the embedded runtime."""
    if not 0 < port < 65536:
        raise InvalidInput(f"port {port} is out of range", code="invalid_port", hint="Use 1-65535.")
    if parallel < 1 or ctx_size < 0 or (threads is not None and threads < 1):
        raise InvalidInput(
            "parallel and threads must be at least 1 and ctx_size at least 0",
            code="invalid_runtime_option",
            hint="Use parallel >= 1, threads >= 1 (or unset) and ctx_size >= 0 (0: the model's).",
        )
    head = [binary] if binary else [sys.executable, "-m", EMBEDDED_RUNNER]
    argv = [*head, "-m", os.path.abspath(model), "--host", host, "--port", str(port)]
    argv += ["-np", str(parallel), "--metrics", *_MODE_FLAGS[mode]]
    if ctx_size > 0:
        argv += ["-c", str(ctx_size)]
    if alias:
        argv += ["-a", alias]
    if threads is not None:
        argv += ["-t", str(threads)]
    if api_key:
        argv += ["--api-key", api_key]
    return argv


def ollama_serve_spec(key: str, base_url: str, configured: str = "") -> LaunchSpec:
    """``ollama serve`` listening where ``base_url`` points (through ``OLLAMA_HOST``)."""
    binary = find_ollama(configured)
    if binary is None:
        raise NotFound(
            "Ollama is not installed: no 'ollama' program was found",
            code="binary_not_found",
            hint="Install Ollama from https://ollama.com/download or set MODELYARD_OLLAMA_BINARY "
            "to the path of the ollama program.",
        )
    parts = urlsplit(validate_base_url(base_url))
    if parts.scheme != "http":
        raise InvalidInput(
            f"a managed Ollama cannot serve {parts.scheme}://",
            code="unsupported_scheme",
            hint="Use an http:// base URL: 'ollama serve' speaks plain HTTP.",
        )
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80  # what the URL means, and what Ollama itself assumes for http://
    bound = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return LaunchSpec(key=key, argv=[binary, "serve"], env={"OLLAMA_HOST": bound}, port=port)


def runtime_name(binary: str | None) -> str:
    """How the runtime is shown to users."""
    return f"llama-server ({binary})" if binary else "embedded (xllamacpp)"
