"""The curated list of recommended models (SPEC §4), shipped as ``data/recommended.json``.

Each entry names a model, its provider, approximate size, mode, one line of description,
tags and the ``POST /api/downloads`` body that installs it. ``installed`` is true when the
catalog has it: an Ollama model under any instance, or a GGUF file of the same file name
anywhere in the models directory.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from importlib import resources
from pathlib import PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modelyard.config import ModelMode, ProviderKind
from modelyard.errors import NotFound
from modelyard.validation import ollama_display_name


class RecommendedModel(BaseModel):
    """One entry of the curated list."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    name: str
    provider: ProviderKind
    size: int = Field(gt=0)
    mode: ModelMode
    description: str = Field(max_length=200)
    tags: list[str]
    download: dict[str, Any]

    def installed_in(self, present: set[tuple[str, str]], files: set[str]) -> bool:
        """Whether the catalog (``(provider, name)`` pairs and GGUF file names) has it."""
        if self.provider is ProviderKind.OLLAMA:
            return (self.provider.value, ollama_display_name(self.name)) in present
        return (self.provider.value, self.name) in present or PurePosixPath(self.name).name in files


@functools.cache
def recommended() -> tuple[RecommendedModel, ...]:
    """The shipped list, validated once."""
    text = resources.files("modelyard").joinpath("data/recommended.json").read_text("utf-8")
    return tuple(RecommendedModel.model_validate(item) for item in json.loads(text))


def with_installed(catalog_names: Iterable[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """The list as ``GET /api/models/available`` shows it, each with ``installed``."""
    names = list(catalog_names)
    present = {(provider, name) for provider, _, name in names}
    files = {
        PurePosixPath(name).name
        for provider, _, name in names
        if provider == ProviderKind.LLAMACPP.value
    }
    return [
        {**item.model_dump(mode="json"), "installed": item.installed_in(present, files)}
        for item in recommended()
    ]


def find(item_id: str) -> RecommendedModel:
    """One entry by id, or 404 ``recommended_not_found``."""
    for item in recommended():
        if item.id == item_id:
            return item
    raise NotFound(
        f"there is no recommended model {item_id!r}",
        code="recommended_not_found",
        hint="GET /api/models/available lists the recommended models and their ids.",
    )
