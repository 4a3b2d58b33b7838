"""Memory of models (SPEC §4): the estimate checked before a start.

A GGUF model's estimate comes from its header (weights = the file, KV cache from layers,
heads and the context). A model of a runtime that manages its own memory (``owns_memory``:
Ollama, LM Studio) on this machine is estimated from its parameter count and quantization. A
model served by another machine is not ours to judge.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from modelyard.errors import InvalidInput
from modelyard.gguf.files import MetadataCache
from modelyard.gguf.metadata import GGUFInfo, split_part, split_paths
from modelyard.models.types import Model
from modelyard.providers.registry import registry
from modelyard.runtimes.instances import Instance
from modelyard.runtimes.resources import MemoryEstimate, estimate_memory
from modelyard.validation import is_local_host

_PARAMS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMBT])\s*$", re.IGNORECASE)
_SCALE = {"K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}


def parameter_count(text: str | None) -> int | None:
    """``"7.6B"`` → 7_600_000_000; None for anything else."""
    match = _PARAMS.match(text or "")
    return int(float(match[1]) * _SCALE[match[2].upper()]) if match else None


def gguf_info(cache: MetadataCache, path: Path) -> GGUFInfo:
    """A GGUF file's header metadata, from the cache the catalog's scans fill."""
    parsed = split_part(path.name)
    parts = split_paths(path.parent / parsed[0], parsed[2]) if parsed else [path]
    stats = [os.stat(p) for p in parts if p.exists()]
    info, error = cache.lookup(path, tuple((st.st_size, st.st_mtime_ns) for st in stats))
    if info is None:
        raise error or InvalidInput(f"{path.name} cannot be read", code="invalid_gguf")
    return info


def default_context(info: GGUFInfo | None, configured: int) -> int:
    """The context a server gets unless asked for another: the setting, at most the model's."""
    trained = info.context_length if info is not None else None
    return min(configured, trained) if trained else configured


def estimate_for(
    model: Model,
    *,
    info: GGUFInfo | None,
    instance: Instance | None,
    ctx_size: int,
) -> MemoryEstimate | None:
    """The memory ``model`` needs with ``ctx_size`` tokens of context, where we can tell."""
    size = model.size or 0
    if info is not None:
        return estimate_memory(info, file_size=size, ctx_size=ctx_size)
    if instance is None or not registry.get(instance.config.provider).capabilities.owns_memory:
        return None
    if not is_local_host(urlsplit(instance.config.base_url).hostname or ""):
        return None
    count = parameter_count(model.parameter_size)
    if not count and not size:
        return None
    return estimate_memory(
        None,
        file_size=size,
        ctx_size=ctx_size,
        parameter_count=count,
        quantization=model.quantization,
    )
