"""The vocabulary of the catalog: a model's key and scope, its status and the legal changes of
status, a model as a provider lists it, and a model as the API shows it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from typing_extensions import TypedDict  # pydantic documents these (typing.TypedDict: 3.12+)

from modelyard.events import CatalogCounts, ModelStateChange
from modelyard.instance_config import ModelMode


class Scope(NamedTuple):
    """What one listing covers: an instance, or the models directory's GGUF files."""

    provider: str
    instance_id: str


class ModelKey(NamedTuple):
    """A model's identity in the catalog (SPEC §2)."""

    provider: str
    instance_id: str
    name: str

    @property
    def scope(self) -> Scope:
        return Scope(self.provider, self.instance_id)


class ModelStatus(StrEnum):
    """A model's status. ``removed`` appears only in ``model.state`` events: the row is gone."""

    AVAILABLE = "available"
    LOADED = "loaded"
    STARTING = "starting"
    DOWNLOADING = "downloading"
    FAILED = "failed"
    REMOVED = "removed"

    def can_become(self, status: ModelStatus) -> bool:
        """Whether ``Catalog.set_state`` may change this status to ``status``."""
        return status is self or status in _TRANSITIONS[self]


# What an operation may record (a sync records whatever the runtime reports). A model being
# downloaded, or whose download failed, is started only once its file is complete: a sync
# makes it ``available`` first. ``failed`` is a failed download, never a failed start.
_TRANSITIONS: dict[ModelStatus, frozenset[ModelStatus]] = {
    ModelStatus.AVAILABLE: frozenset(
        {ModelStatus.STARTING, ModelStatus.LOADED, ModelStatus.DOWNLOADING, ModelStatus.FAILED}
    ),
    ModelStatus.STARTING: frozenset(
        {ModelStatus.LOADED, ModelStatus.AVAILABLE, ModelStatus.DOWNLOADING}
    ),
    ModelStatus.LOADED: frozenset(
        {ModelStatus.AVAILABLE, ModelStatus.STARTING, ModelStatus.DOWNLOADING}
    ),
    ModelStatus.DOWNLOADING: frozenset({ModelStatus.AVAILABLE, ModelStatus.FAILED}),
    ModelStatus.FAILED: frozenset({ModelStatus.DOWNLOADING, ModelStatus.AVAILABLE}),
    ModelStatus.REMOVED: frozenset(),
}
ACTIVE = frozenset({ModelStatus.LOADED, ModelStatus.STARTING})
# The statuses a catalog row can have, in the order ``sort=status`` ranks them.
ROW_STATUSES = (
    ModelStatus.LOADED,
    ModelStatus.STARTING,
    ModelStatus.DOWNLOADING,
    ModelStatus.AVAILABLE,
    ModelStatus.FAILED,
)


class LoadedFigures(TypedDict, total=False):
    """What a loaded model's runtime reports of it (the ``loaded`` JSON column): a GGUF
    server's process and the memory measured of it, Ollama's residency, LM Studio's loaded
    instances, the base URL of a llama.cpp server. Each runtime fills the keys it knows."""

    instance_id: str
    base_url: str
    pid: int
    port: int | None
    started_at: str  # RFC 3339
    ctx_size: int | None
    memory: int | None  # resident bytes of a GGUF server's process, measured when shown
    size: int
    size_vram: int
    expires_at: str | None
    context_length: int | None
    instances: list[str | None]


class ModelMeta(TypedDict, total=False):
    """What else is known of a model (the ``meta`` JSON column): a GGUF file's header figures
    or why it could not be read, a failed download's error, and what a runtime's listing adds."""

    split_count: int
    architecture: str | None
    parameter_count: int
    has_chat_template: bool
    pooling_type: str | None
    error: str | None
    error_code: str | None
    families: list[str]
    type: str
    publisher: str | None
    display_name: str | None
    owned_by: str | None
    router_state: str


class RefetchRequest(TypedDict, total=False):
    """The ``POST /api/downloads`` body that fetches a model again, as it is recorded (the
    ``model_sources`` JSON column): the request a completed download was given (without its
    defaults and ``force``), or what a listing knows (a Hugging Face file, a pull by the
    runtime whose kind is the source). A TypedDict, not the API's request model: the recorded
    JSON keeps the keys it was given, in their order."""

    source: str
    repo: str
    filename: str
    mode: str
    model_name: str
    instance_id: str
    url: str
    revision: str
    sha256: str


@dataclass
class ModelEntry:
    """One model as a provider lists it: the catalog columns of SPEC §4. ``refetch`` is the
    ``POST /api/downloads`` body that fetches it again, when its listing knows it (an Ollama
    model, a Hugging Face file); it is recorded when the model first appears."""

    provider: str
    instance_id: str
    name: str
    size: int | None = None
    family: str | None = None
    parameter_size: str | None = None
    quantization: str | None = None
    format: str | None = None
    digest: str | None = None
    modified_at: datetime | None = None
    mode: str = ModelMode.LLM.value
    source: str = "local"
    status: ModelStatus = ModelStatus.AVAILABLE
    context_length: int | None = None
    path: str | None = None
    loaded: LoadedFigures | None = None  # the runtime's own figures (a JSON column)
    meta: ModelMeta = field(default_factory=ModelMeta)  # a JSON column
    refetch: RefetchRequest | None = field(default=None, compare=False)

    @property
    def key(self) -> ModelKey:
        return ModelKey(self.provider, self.instance_id, self.name)

    def state(self) -> ModelState:
        """The ``model.state`` event of this model once it is a row."""
        return ModelState(self.provider, self.instance_id, self.name, self.status, self.loaded)


# The columns of a catalog row besides its key, in the order the API shows them.
COLUMNS = tuple(f for f in ModelEntry.__dataclass_fields__ if f != "refetch")
FIELDS = tuple(f for f in COLUMNS if f not in ("provider", "instance_id"))


@dataclass(slots=True)
class Model:
    """A catalog model as the API shows it (``GET /api/models/list``, search, start, …).
    ``loaded`` holds the runtime's figures while it is loaded; ``meta`` what else is known."""

    provider: str
    instance_id: str
    name: str
    size: int | None
    family: str | None
    parameter_size: str | None
    quantization: str | None
    format: str | None
    digest: str | None
    modified_at: str | None  # RFC 3339
    mode: str
    source: str
    status: ModelStatus
    context_length: int | None
    path: str | None
    loaded: LoadedFigures | None
    meta: ModelMeta
    synced_at: str | None  # RFC 3339

    @property
    def key(self) -> ModelKey:
        return ModelKey(self.provider, self.instance_id, self.name)

    def wire(self) -> dict[str, Any]:
        """The JSON object (built by hand: the list endpoint encodes a thousand at a time)."""
        return {
            "provider": self.provider,
            "instance_id": self.instance_id,
            "name": self.name,
            "size": self.size,
            "family": self.family,
            "parameter_size": self.parameter_size,
            "quantization": self.quantization,
            "format": self.format,
            "digest": self.digest,
            "modified_at": self.modified_at,
            "mode": self.mode,
            "source": self.source,
            "status": self.status.value,
            "context_length": self.context_length,
            "path": self.path,
            "loaded": self.loaded,
            "meta": self.meta,
            "synced_at": self.synced_at,
        }


@dataclass(frozen=True)
class ModelState:
    """The data of a ``model.state`` event."""

    provider: str
    instance_id: str
    name: str
    status: ModelStatus
    details: LoadedFigures | None

    def wire(self) -> ModelStateChange:
        return {
            "provider": self.provider,
            "instance_id": self.instance_id,
            "name": self.name,
            "status": self.status.value,
            "loaded": self.status is ModelStatus.LOADED,
            "details": self.details,
        }


@dataclass(frozen=True)
class SyncError:
    """Why one scope could not be listed (its rows were kept, none of them loaded), or why
    one of its models (``name``: a file that cannot be read) is listed with an error."""

    provider: str
    instance_id: str
    code: str
    detail: str
    hint: str | None = None
    name: str | None = None

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"provider": self.provider, "instance_id": self.instance_id}
        if self.name is not None:
            out["name"] = self.name
        out.update(code=self.code, detail=self.detail)
        return out if self.hint is None else {**out, "hint": self.hint}


@dataclass(frozen=True)
class SyncResult:
    """What a sync changed (``POST /api/models/sync``), and the scopes it could not list."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    errors: tuple[SyncError, ...] = ()

    def counts(self) -> CatalogCounts:
        """The data of a ``catalog.changed`` event."""
        return {
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
        }

    def wire(self) -> dict[str, Any]:
        return {**self.counts(), "errors": [e.wire() for e in self.errors]}


@dataclass(frozen=True)
class ModelPage:
    """One page of a search, and how many models matched in all."""

    models: list[Model]
    total: int
    page: int
    page_size: int

    def wire(self) -> dict[str, Any]:
        return {
            "models": [m.wire() for m in self.models],
            "total": self.total,
            "page": self.page,
            "page_size": self.page_size,
        }


class ModelRef(NamedTuple):
    """A model as a request names it: the instance may be left to the catalog to find."""

    provider: str
    name: str
    instance_id: str | None = None


@dataclass(frozen=True)
class DeletedModel:
    """The answer to a delete (SPEC §8's compatibility shape)."""

    provider: str
    instance_id: str
    name: str

    def wire(self) -> dict[str, Any]:
        return {
            "success": True,
            "provider": self.provider,
            "instance_id": self.instance_id,
            "name": self.name,
            "message": f"deleted {self.name}",
        }


@dataclass(frozen=True)
class BatchItem:
    """One item of a batch: done, or why not."""

    provider: str
    name: str
    instance_id: str | None
    ok: bool = True
    code: str | None = None
    error: str | None = None
    hint: str | None = None

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "provider": self.provider,
            "name": self.name,
            "instance_id": self.instance_id,
            "ok": self.ok,
        }
        if not self.ok:
            out.update(code=self.code, error=self.error, hint=self.hint)
        return out


@dataclass(frozen=True)
class BatchResult:
    batch_id: str
    action: str
    results: list[BatchItem]

    def wire(self) -> dict[str, Any]:
        failed = sum(1 for r in self.results if not r.ok)
        return {
            "batch_id": self.batch_id,
            "action": self.action,
            "results": [r.wire() for r in self.results],
            "ok": len(self.results) - failed,
            "failed": failed,
        }
