"""Finding a model the user named in the catalog, so commands take ``NAME`` alone.

``modelyard start tiny.gguf`` and ``modelyard chat llama3.2`` look the name up in
``GET /api/models/list``: an Ollama name without a tag also matches its ``:latest``, as Ollama
itself reads it. When the name is on more than one instance, ``--provider`` and
``--instance`` choose; a preference (a loaded model, for ``stop``) settles a tie only when it
leaves exactly one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelyard.cli.app import fail
from modelyard.cli.client import Client
from modelyard.providers.ollama.names import ollama_display_name

Model = dict[str, Any]


def same_name(listed: str, wanted: str) -> bool:
    """``llama3.2`` names ``llama3.2:latest``; a tag or a file name must match exactly."""
    return listed in (wanted, ollama_display_name(wanted))


def matching(
    models: list[Model], name: str, provider: str | None = None, instance: str | None = None
) -> list[Model]:
    """The catalog rows ``name`` can mean, narrowed by provider and instance when given."""
    return [
        m
        for m in models
        if same_name(str(m.get("name", "")), name)
        and (provider is None or m.get("provider") == provider)
        and (instance is None or m.get("instance_id") == instance)
    ]


def resolve(
    c: Client,
    name: str,
    *,
    provider: str | None,
    instance: str | None,
    prefer: Callable[[Model], bool] | None = None,
) -> Model:
    """The one catalog row ``name`` means; a clean error when it is none or several."""
    found = matching(c.get("/api/models/list").get("models", []), name, provider, instance)
    if not found:
        fail(
            f"no model is named {name!r}" + (f" on {provider}" if provider else ""),
            "'modelyard ls' lists the models (--sync asks every instance first).",
        )
    if len(found) > 1 and prefer is not None:
        preferred = [m for m in found if prefer(m)]
        found = preferred if len(preferred) == 1 else found
    if len(found) > 1:
        places = ", ".join(f"{m['provider']}/{m['instance_id']}" for m in found)
        fail(
            f"{name!r} is on more than one instance: {places}",
            "Choose one with --provider (and --instance).",
        )
    return found[0]
