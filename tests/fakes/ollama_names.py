"""Ollama model names and keep-alive durations, parsed the way the Go server parses them.

``normalise`` turns ``[scheme://][host/][namespace/]model[:tag]`` into the display form used
by ``/api/tags`` and ``/api/ps`` (``llama3.2:latest``, ``ns/model:tag``, ``host/ns/model:tag``)
or returns None for an invalid name (PROTOCOLS §1.2). ``keep_alive_seconds`` reads a
``keep_alive`` value (number of seconds, or a Go duration string).
"""

from __future__ import annotations

import re

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
FOREVER_SECONDS = 292 * 365 * 24 * 3600  # Go's max Duration, used for a negative keep_alive

_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,349}")
_NAMESPACE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]{0,79}")
_MODEL_OR_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,79}")
_GO_DURATION = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse(raw: str) -> tuple[str, str, str, str] | None:
    """(host, namespace, model, tag) with defaults filled in, or None when invalid."""
    name = raw
    for scheme in ("http://", "https://"):
        if name.startswith(scheme):
            name = name[len(scheme) :]
    tag = DEFAULT_TAG
    colon = name.rfind(":")
    # A ':' is the tag separator only after the last '/'; before it, it is a host port.
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1 :]
    parts = name.split("/")
    if len(parts) > 3:
        return None
    model = parts[-1]
    namespace = parts[-2] if len(parts) >= 2 else DEFAULT_NAMESPACE
    host = parts[-3] if len(parts) == 3 else DEFAULT_HOST
    checks = [(_HOST, host), (_NAMESPACE, namespace), (_MODEL_OR_TAG, model), (_MODEL_OR_TAG, tag)]
    if not all(pattern.fullmatch(value) for pattern, value in checks):
        return None
    return host, namespace, model, tag


def display(host: str, namespace: str, model: str, tag: str) -> str:
    """Ollama's DisplayShortest: drop the default host and namespace, always keep the tag."""
    if host.lower() == DEFAULT_HOST:
        if namespace.lower() == DEFAULT_NAMESPACE:
            return f"{model}:{tag}"
        return f"{namespace}/{model}:{tag}"
    return f"{host}/{namespace}/{model}:{tag}"


def normalise(raw: str) -> str | None:
    """The display form of a name, or None when the name is invalid."""
    parts = parse(raw)
    return display(*parts) if parts else None


def namespace_of(display_name: str) -> str:
    """The namespace of a display name (``library`` for the short form)."""
    parts = parse(display_name)
    return parts[1] if parts else DEFAULT_NAMESPACE


class BadDuration(ValueError):
    """A keep_alive value Go's time.ParseDuration would reject."""


def keep_alive_seconds(value: object) -> float | None:
    """Seconds to keep a model loaded; None when not given; negative means forever."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadDuration("Unsupported type: 'bool'")
    if isinstance(value, int | float):
        return FOREVER_SECONDS if value < 0 else float(value)
    text = str(value)
    body = text.lstrip("+-")
    if body == "0":
        return 0.0
    if not body or _GO_DURATION.sub("", body):
        unit_missing = body.replace(".", "").isdigit()
        reason = "missing unit in duration" if unit_missing else "invalid duration"
        raise BadDuration(f'time: {reason} "{text}"')
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _GO_DURATION.findall(body))
    return FOREVER_SECONDS if text.startswith("-") else seconds
