"""What a pull ended with, from Ollama's own record of the model (issue 18): the progress
stream leaves out layers that finished between two ticks of its 60 ms ticker, so the figures
summed from it can fall short. ``/api/tags`` has the model's size (every blob, the config
included); the manifest file has its blobs, and can be read when this machine's Ollama keeps
it (``OLLAMA_MODELS``, else ``~/.ollama/models``). A manifest is used only when its sha256 is
the digest ``/api/tags`` gives, so a file of another Ollama (or an older pull) is never taken
for this one's.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import ollama

from modelyard.providers.ollama.names import name_parts, ollama_display_name
from modelyard.validation import is_local_host

_MAX_MANIFEST_BYTES = 1 << 20


@dataclass(frozen=True)
class PulledModel:
    """The model as the runtime records it: bytes on disk, and its blobs when known."""

    size: int
    blobs: int | None


async def pulled_model(
    client: ollama.AsyncClient, base_url: str, name: str
) -> tuple[PulledModel | None, str]:
    """The record of ``name`` after its pull, or None and why it could not be had."""
    try:
        tags = await client.list()
    except (ollama.ResponseError, httpx.HTTPError, ConnectionError) as exc:
        return None, f"/api/tags could not be read: {exc}"
    wanted = ollama_display_name(name).lower()
    for entry in tags.models:
        if ollama_display_name(entry.model or "").lower() == wanted and entry.size is not None:
            blobs = manifest_blobs(base_url, name, entry.digest or "")
            return PulledModel(size=int(entry.size), blobs=blobs), ""
    return None, f"/api/tags does not list {name}"


def models_dir() -> Path:
    """Where this machine's Ollama keeps its models (its own ``OLLAMA_MODELS`` rule)."""
    configured = os.environ.get("OLLAMA_MODELS")
    return Path(configured) if configured else Path.home() / ".ollama" / "models"


def manifest_blobs(base_url: str, name: str, digest: str) -> int | None:
    """The blobs (layers and config) of ``name``'s manifest, when an Ollama on this machine
    keeps the very manifest whose sha256 is ``digest``; else None."""
    host = urlsplit(base_url).hostname or ""
    parts = name_parts(name)
    if not digest or parts is None or not is_local_host(host):
        return None
    path = models_dir().joinpath("manifests", *parts)
    try:
        with path.open("rb") as file:
            data = file.read(_MAX_MANIFEST_BYTES + 1)
    except OSError:
        return None
    if len(data) > _MAX_MANIFEST_BYTES or hashlib.sha256(data).hexdigest() != digest:
        return None
    try:
        manifest = json.loads(data)
    except ValueError:
        return None
    layers = manifest.get("layers") if isinstance(manifest, dict) else None
    if not isinstance(layers, list):
        return None
    return len(layers) + (1 if isinstance(manifest.get("config"), dict) else 0)
