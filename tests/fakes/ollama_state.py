"""The scripting object behind the Ollama stand-in (see tests/fakes/ollama.py).

Everything a test may change lives on ``OllamaState``; the server reads it on every request,
so changes made "behind the client's back" (a model added or removed, a model loaded) are
seen at once. Methods take any spelling of a model name (``llama3.2``, ``llama3.2:latest``,
``LLaMA3.2``) and store the display form (``llama3.2:latest``).

Knobs:

* ``tz``: the server's local zone (default: this machine's). Ollama writes ``modified_at``
  (tags, show) and ``expires_at`` (ps) as wall-clock times in that zone with its offset
  (``-07:00``, ``+05:30``, ``Z``); a ``ZoneInfo`` zone changes offset across DST as Ollama's
  does. ``times_with_zone=False``: those times carry no zone at all (UTC wall clock).
* ``version``: the ``/api/version`` string. From 0.30 on, ``/api/tags`` also carries
  ``capabilities`` and ``details.context_length``/``embedding_length`` (as real servers do).
* ``add_model`` / ``remove_model`` / ``model`` / ``model_names``: the local model table.
* ``load`` / ``unload`` / ``loaded_names``: ``/api/ps``; entries expire with their keep-alive
  (``default_keep_alive`` seconds, 300, when a request gives none). Generate, chat and embed
  load the model they use, as Ollama does.
* ``models_dir``: like ``OLLAMA_MODELS``: when set, each local model's manifest is written
  to ``manifests/<host>/<namespace>/<model>/<tag>`` (its sha256 is the ``/api/tags`` digest),
  and removed with the model.
* ``add_registry_model(name, layer_sizes)``: a model ``/api/pull`` can fetch. ``pull_tick``
  (seconds between progress lines, 0.06 like Ollama) and ``pull_chunk_bytes`` (bytes per tick)
  set the pace; ``pull_failure`` fails a pull mid-stream after some bytes. Interrupted pulls
  keep their partial bytes and resume (``partials``), as Ollama's ``-partial`` files do.
* ``reply`` (a ReplyScript): what ``/api/chat`` and ``/api/generate`` stream;
  ``forward_chat_url``: base URL of a real llama.cpp server to produce real tokens instead
  (``options.num_predict``, else ``forward_max_tokens``, caps the reply).
* ``log``: every request received (see common.RequestLog).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from tests.fakes.common import ReplyScript, RequestLog, go_json, go_time, utc_now
from tests.fakes.ollama_names import FOREVER_SECONDS, normalise, parse

CONFIG_MEDIA = "application/vnd.docker.container.image.v1+json"
NEW_FIELDS_VERSION = (0, 30, 0)


def fake_hex(*parts: object) -> str:
    """A stable 64-hex digest derived from the given parts."""
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


@dataclass(frozen=True)
class Layer:
    """One blob of a manifest: ``digest`` is ``sha256:<64 hex>``."""

    digest: str
    size: int


@dataclass
class ModelDetails:
    """The ``details`` object of tags, ps and show."""

    format: str = "gguf"
    family: str = "llama"
    families: list[str] | None = None
    parameter_size: str = "3.2B"
    quantization_level: str = "Q4_K_M"
    context_length: int = 131072
    embedding_length: int = 3072

    def wire(self, new_fields: bool) -> dict[str, Any]:
        """The JSON object, in Go field order."""
        out: dict[str, Any] = {
            "parent_model": "",
            "format": self.format,
            "family": self.family,
            "families": self.families,
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }
        if new_fields:
            out["context_length"] = self.context_length
            out["embedding_length"] = self.embedding_length
        return out


@dataclass
class OllamaModel:
    """A model in the local table. ``digest`` is the manifest sha256: 64 hex, no prefix."""

    name: str
    layers: list[Layer]
    config: Layer
    details: ModelDetails
    capabilities: list[str]
    modified_at: datetime
    digest: str

    @property
    def size(self) -> int:
        """Bytes on disk: every layer plus the config blob."""
        return sum(layer.size for layer in self.layers) + self.config.size

    @property
    def mtime_extra_ns(self) -> int:
        """The nanoseconds a file mtime has beyond Python's microseconds (stable per model)."""
        return int(self.digest[:4], 16)

    def blob_digests(self) -> set[str]:
        """Digests of every blob this model needs."""
        return {layer.digest for layer in self.layers} | {self.config.digest}


@dataclass
class RegistryModel:
    """A model the fake registry serves to ``/api/pull``."""

    name: str
    layers: list[Layer]
    config: Layer
    details: ModelDetails
    capabilities: list[str]


@dataclass
class LoadedModel:
    """An entry of ``/api/ps``."""

    name: str
    expires_at: datetime
    size: int
    size_vram: int
    context_length: int


@dataclass
class PullFailure:
    """Fail the next pull mid-stream once it has downloaded ``after_bytes`` bytes."""

    after_bytes: int
    message: str = "max retries exceeded: unexpected EOF"
    repeat: bool = False


MANIFEST_MEDIA = "application/vnd.docker.distribution.manifest.v2+json"
LAYER_MEDIA = "application/vnd.ollama.image.model"


def manifest_bytes(layers: list[Layer], config: Layer) -> bytes:
    """The manifest file Ollama writes for these blobs (Go's JSON of its Manifest struct)."""

    def blob(layer: Layer, media: str) -> dict[str, Any]:
        return {"mediaType": media, "digest": layer.digest, "size": layer.size}

    return go_json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA,
            "config": blob(config, CONFIG_MEDIA),
            "layers": [blob(layer, LAYER_MEDIA) for layer in layers],
        }
    )


def manifest_digest(layers: list[Layer], config: Layer) -> str:
    """The sha256 of the manifest file: what ``/api/tags`` calls the model's digest."""
    return hashlib.sha256(manifest_bytes(layers, config)).hexdigest()


def _default_layers(name: str, size: int) -> tuple[list[Layer], Layer]:
    """Split a total size into weights, template and config blobs like a typical model."""
    config_size = 561 if size > 1122 else max(size // 2, 1)
    rest = size - config_size
    sizes = [rest - 1429, 1429] if rest > 100_000 else [rest]
    layers = [Layer("sha256:" + fake_hex(name, i, s), s) for i, s in enumerate(sizes)]
    return layers, Layer("sha256:" + fake_hex(name, "config", config_size), config_size)


def _local_zone() -> tzinfo:
    zone = datetime.now().astimezone().tzinfo
    assert zone is not None  # astimezone() always attaches a zone
    return zone


def _version_tuple(version: str) -> tuple[int, ...]:
    numbers = version.split("-", 1)[0].split(".")
    return tuple(int(n) if n.isdigit() else 0 for n in numbers)


class OllamaState:
    """Mutable, thread-safe state of one Ollama stand-in."""

    def __init__(
        self,
        *,
        version: str = "0.12.3",
        pull_tick: float = 0.06,
        pull_chunk_bytes: int = 64 * 1024 * 1024,
        tz: tzinfo | None = None,
        times_with_zone: bool = True,
        models_dir: Path | None = None,
    ) -> None:
        self.version = version
        self.pull_tick = pull_tick
        self.pull_chunk_bytes = pull_chunk_bytes
        self.pull_failure: PullFailure | None = None
        self.reply = ReplyScript()
        self.forward_chat_url: str | None = None
        self.forward_max_tokens = 64
        self.default_keep_alive = 300.0
        self.tz: tzinfo = tz if tz is not None else _local_zone()
        self.times_with_zone = times_with_zone
        self.models_dir = models_dir
        self.log = RequestLog()
        self.lock = threading.RLock()
        self.partials: dict[str, int] = {}
        self._models: dict[str, OllamaModel] = {}
        self._loaded: dict[str, LoadedModel] = {}
        self._registry: dict[str, RegistryModel] = {}

    # ----- the local model table -------------------------------------------------------

    def now(self) -> datetime:
        """The current time in the server's zone."""
        return datetime.now(self.tz)

    def time_text(self, moment: datetime, extra_ns: int = 0) -> str:
        """A time as this server writes it: Go's RFC3339Nano in its zone, or with no zone."""
        if not self.times_with_zone:
            return go_time(moment.astimezone(UTC), extra_ns, with_zone=False)
        return go_time(moment.astimezone(self.tz), extra_ns)

    @property
    def new_fields(self) -> bool:
        """Whether this version sends the v0.30+ fields of ``/api/tags``."""
        return _version_tuple(self.version) >= NEW_FIELDS_VERSION

    def add_model(
        self,
        name: str,
        *,
        size: int = 2_019_393_189,
        family: str = "llama",
        parameter_size: str = "3.2B",
        quantization_level: str = "Q4_K_M",
        format: str = "gguf",
        capabilities: list[str] | None = None,
        context_length: int = 131072,
        embedding_length: int = 3072,
        modified_at: datetime | None = None,
    ) -> OllamaModel:
        """Put a model in the local table (replacing one of the same name) and return it."""
        display = self._display(name)
        layers, config = _default_layers(display, size)
        details = ModelDetails(
            format, family, [family], parameter_size, quantization_level,
            context_length, embedding_length,
        )  # fmt: skip
        model = OllamaModel(
            name=display,
            layers=layers,
            config=config,
            details=details,
            capabilities=capabilities if capabilities is not None else ["completion"],
            modified_at=(modified_at or self.now()).astimezone(self.tz),
            digest=manifest_digest(layers, config),
        )
        self.install(model)
        return model

    def install(self, model: OllamaModel) -> None:
        """Store a fully built model (used by pull and copy too)."""
        with self.lock:
            self._models[model.name.lower()] = model
            path = self.manifest_path(model.name)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(manifest_bytes(model.layers, model.config))

    def remove_model(self, name: str) -> bool:
        """Delete a model from the table; False when it was not there."""
        with self.lock:
            path = self.manifest_path(self._display(name))
            if path is not None:
                path.unlink(missing_ok=True)
            return self._models.pop(self._display(name).lower(), None) is not None

    def manifest_path(self, name: str) -> Path | None:
        """Where Ollama keeps this model's manifest under ``models_dir`` (None without one):
        ``manifests/<host>/<namespace>/<model>/<tag>``."""
        parts = parse(name)
        if self.models_dir is None or parts is None:
            return None
        return self.models_dir.joinpath("manifests", *parts)

    def model(self, name: str) -> OllamaModel | None:
        """The model with that name (any spelling), or None."""
        display = normalise(name)
        if display is None:
            return None
        with self.lock:
            return self._models.get(display.lower())

    def models(self) -> list[OllamaModel]:
        """Every local model, newest ``modified_at`` first (the order of ``/api/tags``)."""
        with self.lock:
            models = list(self._models.values())
        return sorted(models, key=lambda m: m.modified_at, reverse=True)

    def model_names(self) -> list[str]:
        """Display names of the local models, in ``/api/tags`` order."""
        return [m.name for m in self.models()]

    def blobs(self) -> dict[str, int]:
        """Blobs on disk (digest → size): those of every local model."""
        with self.lock:
            models = list(self._models.values())
        return {b.digest: b.size for m in models for b in [*m.layers, m.config]}

    def copy_model(self, source: OllamaModel, destination: str) -> OllamaModel:
        """Copy a model under a new name (same blobs and digest, new mtime)."""
        model = replace(source, name=self._display(destination), modified_at=self.now())
        self.install(model)
        return model

    # ----- loaded models (/api/ps) -------------------------------------------------------

    def load(
        self,
        name: str,
        keep_alive: float | None = None,
        *,
        size_vram: int | None = None,
        context_length: int = 4096,
    ) -> LoadedModel:
        """Mark a local model loaded for ``keep_alive`` seconds (negative: forever)."""
        model = self.model(name)
        if model is None:
            raise KeyError(f"model {name!r} is not in the local table")
        seconds = self.default_keep_alive if keep_alive is None else keep_alive
        seconds = FOREVER_SECONDS if seconds < 0 else seconds
        with self.lock:
            previous = self._loaded.get(model.name.lower())
            entry = LoadedModel(
                name=model.name,
                # Go adds durations to instants: across a DST change the offset moves too.
                expires_at=(utc_now() + timedelta(seconds=seconds)).astimezone(self.tz),
                size=model.size,
                size_vram=model.size if size_vram is None else size_vram,
                context_length=previous.context_length if previous else context_length,
            )
            self._loaded[model.name.lower()] = entry
        return entry

    def unload(self, name: str) -> bool:
        """Remove a model from ``/api/ps``; False when it was not loaded."""
        display = normalise(name) or name
        with self.lock:
            return self._loaded.pop(display.lower(), None) is not None

    def loaded(self) -> list[LoadedModel]:
        """Loaded models, longest time remaining first; expired entries are dropped."""
        now = self.now()
        with self.lock:
            for key in [k for k, v in self._loaded.items() if v.expires_at <= now]:
                del self._loaded[key]
            entries = list(self._loaded.values())
        return sorted(entries, key=lambda e: e.expires_at, reverse=True)

    def loaded_names(self) -> list[str]:
        """Display names of the loaded models."""
        return [e.name for e in self.loaded()]

    def is_loaded(self, name: str) -> bool:
        """Whether the model is currently in ``/api/ps``."""
        display = (normalise(name) or name).lower()
        return any(e.name.lower() == display for e in self.loaded())

    # ----- the registry (/api/pull) ------------------------------------------------------

    def add_registry_model(
        self,
        name: str,
        layer_sizes: list[int],
        *,
        config_size: int = 487,
        layer_digests: list[str] | None = None,
        family: str = "llama",
        parameter_size: str = "3.2B",
        quantization_level: str = "Q4_K_M",
        capabilities: list[str] | None = None,
    ) -> RegistryModel:
        """Make a model pullable. ``layer_digests`` (``sha256:<hex>``) lets models share blobs."""
        display = self._display(name)
        digests = layer_digests or [
            "sha256:" + fake_hex(display, i, s) for i, s in enumerate(layer_sizes)
        ]
        entry = RegistryModel(
            name=display,
            layers=[Layer(d, s) for d, s in zip(digests, layer_sizes, strict=True)],
            config=Layer("sha256:" + fake_hex(display, "config", config_size), config_size),
            details=ModelDetails(
                family=family,
                families=[family],
                parameter_size=parameter_size,
                quantization_level=quantization_level,
            ),
            capabilities=capabilities if capabilities is not None else ["completion"],
        )
        with self.lock:
            self._registry[display.lower()] = entry
        return entry

    def registry_model(self, name: str) -> RegistryModel | None:
        """The pullable model with that name, or None."""
        display = normalise(name)
        with self.lock:
            return self._registry.get(display.lower()) if display else None

    def take_pull_failure(self) -> PullFailure | None:
        """The scripted pull failure, consumed unless it repeats."""
        with self.lock:
            failure = self.pull_failure
            if failure is not None and not failure.repeat:
                self.pull_failure = None
            return failure

    @staticmethod
    def _display(name: str) -> str:
        display = normalise(name)
        if display is None:
            raise ValueError(f"{name!r} is not a valid Ollama model name")
        return display


def model_from_registry(entry: RegistryModel, modified_at: datetime) -> OllamaModel:
    """The local model a completed pull of ``entry`` leaves behind."""
    return OllamaModel(
        name=entry.name,
        layers=list(entry.layers),
        config=entry.config,
        details=replace(entry.details, families=list(entry.details.families or [])),
        capabilities=list(entry.capabilities),
        modified_at=modified_at,
        digest=manifest_digest(entry.layers, entry.config),
    )


@dataclass
class Outcome:
    """How a generation ended: filled in while it streams."""

    done_reason: str = "stop"
    eval_count: int = 0
