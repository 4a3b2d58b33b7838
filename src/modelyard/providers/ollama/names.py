"""Ollama model names (PROTOCOLS.md §1.2): ``[host/][namespace/]model[:tag]``, listed with a
tag always (``llama3.2`` is ``llama3.2:latest``)."""

from __future__ import annotations

import re

from modelyard.errors import InvalidInput

_PART = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
_NS = r"[A-Za-z0-9_][A-Za-z0-9_-]*"
_HOST = r"[A-Za-z0-9_][A-Za-z0-9_.-]*(?::[0-9]+)?"
_NAME = re.compile(
    rf"^(?:(?:https?://)?(?P<host>{_HOST})/)??(?:(?P<ns>{_NS})/)?(?P<model>{_PART})(?::(?P<tag>{_PART}))?$"
)


def validate_ollama_name(value: str) -> str:
    """An Ollama model name as the server accepts it, e.g. ``llama3.2``, ``qwen2.5:0.5b``."""
    match = _NAME.match(value or "")
    ok = (
        match is not None
        and len(match["model"]) <= 80
        and len(match["tag"] or "") <= 80
        and len(match["ns"] or "") <= 80
        and len(match["host"] or "") <= 350
        and ".." not in value
    )
    if not ok:
        raise InvalidInput(
            f"{value!r} is not a valid Ollama model name",
            code="invalid_model_name",
            hint="Use a name like 'llama3.2', 'qwen2.5:0.5b' or 'namespace/model:tag'.",
        )
    return value


def ollama_display_name(value: str) -> str:
    """The name as /api/tags shows it: the tag is always present."""
    last = value.rsplit("/", 1)[-1]
    return value if ":" in last else f"{value}:latest"


def name_parts(value: str) -> tuple[str, str, str, str] | None:
    """``(host, namespace, model, tag)`` with Ollama's defaults filled in
    (``registry.ollama.ai``, ``library``, ``latest``); None for a name that is not valid."""
    match = _NAME.match(value or "")
    if match is None or ".." in value:
        return None
    host = match["host"] or "registry.ollama.ai"
    return host, match["ns"] or "library", match["model"], match["tag"] or "latest"
