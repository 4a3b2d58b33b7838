"""What a managed process is given, and how its command line is shown (SPEC §12).

A child gets the environment a runtime needs — ``PATH``, ``HOME``, the locale, the library
path, proxies, its own ``OLLAMA_*``/``LLAMA_*`` settings — and what its launch gives it (the
instance's key as ``LLAMA_API_KEY``, ``OLLAMA_HOST``), never modelyard's own secrets: its key,
cloud keys, a Hugging Face token. Secrets go through the environment, which only the process's
own user can read, not through argv, which ``ps`` shows everyone; where a configured command
carries one anyway, every command line modelyard shows or writes has it masked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_KEPT_NAMES = frozenset(
    {
        *("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR"),
        *("LD_LIBRARY_PATH", "PYTHONPATH", "VIRTUAL_ENV", "SSL_CERT_FILE", "SSL_CERT_DIR"),
        *("XDG_RUNTIME_DIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME"),
        # Ollama pulls through the machine's proxy (its documented way).
        *("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"),
    }
)
# Runtimes' own settings, and the GPU and thread settings they read.
_KEPT_PREFIXES = ("LC_", "OLLAMA_", "LLAMA_", "GGML_", "CUDA_", "HIP_", "ROCR_", "HSA_", "OMP_")
# The key of a server modelyard runs is the instance's to give (its launch sets it), never
# one left in modelyard's own environment.
_NOT_INHERITED = frozenset({"LLAMA_API_KEY"})

# A flag whose value is a secret: --api-key, --hf-token, --password, -hft (llama.cpp's).
_SECRET_FLAG = re.compile(r"-{1,2}(?:[\w-]*(?:key|token|secret|passw(?:or)?d)[\w-]*|hft)", re.I)
# NAME=value where NAME says it holds a secret (``env HF_TOKEN=… ollama serve``).
_SECRET_ASSIGNMENT = re.compile(r"([A-Za-z_]\w*(?:KEY|TOKEN|SECRET|PASSWORD)\w*=).+", re.I)
# A URL with a password in it.
_URL_PASSWORD = re.compile(r"(\w+://[^/:@\s]+:)[^/@\s]+@")


def child_environment(parent: Mapping[str, str], given: Mapping[str, str] | None) -> dict[str, str]:
    """The environment of a child: what runtimes need of ``parent``, then ``given``."""
    kept = {
        name: value
        for name, value in parent.items()
        if (name in _KEPT_NAMES or name.startswith(_KEPT_PREFIXES)) and name not in _NOT_INHERITED
    }
    return {**kept, **(given or {})}


def redact_argv(argv: list[str]) -> list[str]:
    """``argv`` with secrets replaced by ``***``: secret flags' values (``--api-key X``,
    ``--api-key=X``), ``NAME_TOKEN=X`` assignments and passwords in URLs."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        name, eq, _ = arg.partition("=")
        secret_flag = _SECRET_FLAG.fullmatch(name) is not None
        if hide_next:
            out.append("***")
        elif eq and secret_flag:
            out.append(f"{name}=***")
        else:
            out.append(_URL_PASSWORD.sub(r"\1***@", _SECRET_ASSIGNMENT.sub(r"\1***", arg)))
        hide_next = not hide_next and not eq and secret_flag
    return out
