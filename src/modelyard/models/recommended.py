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

from pydantic import BaseModel, ConfigDict, Field, field_validator

from modelyard.downloads.specs import DownloadRequest
from modelyard.errors import NotFound
from modelyard.gguf.local import runner
from modelyard.instance_config import ModelMode
from modelyard.models.types import ModelKey
from modelyard.providers.registry import registry


class RecommendedModel(BaseModel):
    """One entry of the curated list."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    name: str
    provider: str
    size: int = Field(gt=0)
    mode: ModelMode
    description: str = Field(max_length=200)
    tags: list[str]
    download: DownloadRequest  # shown with the fields the list gives, as it gives them

    @field_validator("provider")
    @classmethod
    def _known(cls, value: str) -> str:
        return registry.get(value).kind

    def installed_in(self, present: set[tuple[str, str]], files: set[str]) -> bool:
        """Whether the catalog (``(provider, name)`` pairs and local file names) has it."""
        name = registry.get(self.provider).catalog_name(self.name)
        return (self.provider, name) in present or (
            self.provider == runner().kind and PurePosixPath(self.name).name in files
        )


@functools.cache
def recommended() -> tuple[RecommendedModel, ...]:
    """The shipped list, validated once."""
    text = resources.files("modelyard").joinpath("data/recommended.json").read_text("utf-8")
    return tuple(RecommendedModel.model_validate(item) for item in json.loads(text))


class AvailableModel(RecommendedModel):
    """A recommended model as ``GET /api/models/available`` shows it."""

    installed: bool


def with_installed(catalog_names: Iterable[ModelKey]) -> list[AvailableModel]:
    """The list, each with ``installed``."""
    names = list(catalog_names)
    present = {(key.provider, key.name) for key in names}
    kind = runner().kind
    files = {PurePosixPath(key.name).name for key in names if key.provider == kind}
    return [
        AvailableModel(**dict(item), installed=item.installed_in(present, files))
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
