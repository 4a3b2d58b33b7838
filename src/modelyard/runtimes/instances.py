"""The instances modelyard knows: configured ones (file or defaults) and ones added via the API.

Configured instances are read-only here (they live in the config file); API-created ones and
the ones created when a GGUF model is started are kept in the store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypedDict, cast
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator
from sqlalchemy import bindparam, delete, insert

from modelyard.config import Settings
from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.instance_config import (
    STORED,
    ContainerConfig,
    InstanceConfig,
    ModelMode,
    RestartPolicy,
)
from modelyard.providers.registry import registry
from modelyard.runtimes.launch import redact_argv
from modelyard.store.db import Database
from modelyard.store.tables import InstanceRow
from modelyard.validation import is_local_host, validate_base_url

log = logging.getLogger("modelyard.instances")


class InstanceOrigin(StrEnum):
    """Where an instance comes from."""

    CONFIG = "config"  # the config file, or the defaults: read-only here
    API = "api"  # POST /api/providers/{provider}/instances
    MODEL = "model"  # created to serve a local file, removed when it stops


# Only the config file sets these (SPEC §12): a command runs as modelyard's user, a variable's
# value goes wherever the instance's base_url points, a container brings its image, mounts and
# devices. API-created instances run their provider's own runtime and carry a literal key.
CONFIG_FILE_ONLY = ("command", "api_key_env", "container")
# The smallest memory limit the API takes for a managed process (0: none); below it a server
# is killed while it loads, which reads as a crash rather than as the limit it is.
MEMORY_LIMIT_MIN = 64 * 2**20


class InstanceChanges(BaseModel):
    """What may be changed of an instance (``PATCH``; its id and provider stay)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = Field(default=None, min_length=1, max_length=2048)
    managed: bool | None = None
    api_key: str | None = Field(default=None, max_length=4096)
    model: str | None = Field(default=None, max_length=4096)
    mode: ModelMode | None = None
    ctx_size: int | None = Field(default=None, ge=0, le=1_048_576)
    restart: RestartPolicy | None = None
    memory_limit_bytes: int | None = Field(default=None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _refuse_config_file_only(cls, data: Any) -> Any:
        given = [name for name in CONFIG_FILE_ONLY if isinstance(data, dict) and name in data]
        if given:
            raise InvalidInput(
                f"{' and '.join(given)} can be set only in the config file, not through the API",
                code="config_file_only",
                hint="Put the instance in the config file ([[instances]] in the file "
                "MODELYARD_CONFIG names, see docs/CONFIGURATION.md) and restart modelyard; "
                "through the API give a literal api_key.",
            )
        return data


class InstanceFields(InstanceChanges):
    """A new instance (``POST``): at least its id and base URL."""

    id: str = Field(min_length=1, max_length=64)
    base_url: str = Field(min_length=1, max_length=2048)
    managed: bool = False


class InstanceView(BaseModel):
    """An instance as the API shows it (``GET /api/providers``): never the key itself, and its
    command with any secret in it masked."""

    provider: str
    id: str
    label: str
    base_url: str
    managed: bool
    model: str | None
    mode: ModelMode
    command: list[str]
    ctx_size: int
    restart: RestartPolicy | None  # None: the top-level default
    memory_limit_bytes: int
    api_key_env: str | None
    has_api_key: bool
    origin: InstanceOrigin
    deletable: bool
    capabilities: dict[str, bool]
    image: str | None = None  # the configured container image (a container instance)


@dataclass(frozen=True)
class Instance:
    config: InstanceConfig
    origin: InstanceOrigin

    @property
    def key(self) -> str:
        return self.config.key

    def view(self) -> InstanceView:
        c = self.config
        provider = registry.get(c.provider)
        return InstanceView(
            provider=c.provider,
            id=c.id,
            label=provider.label,
            base_url=c.base_url,
            managed=c.managed,
            model=c.model or None,
            mode=c.mode,
            command=redact_argv(c.command),
            ctx_size=c.ctx_size,
            restart=c.restart,
            memory_limit_bytes=c.memory_limit_bytes,
            api_key_env=c.api_key_env or None,
            has_api_key=c.has_api_key(),
            origin=self.origin,
            deletable=self.origin is not InstanceOrigin.CONFIG,
            capabilities=provider.capabilities.wire(),
            image=c.container.image if c.container is not None else None,
        )


class InstanceColumns(TypedDict):
    """Values of an ``instances`` row (``origin`` and ``created_at`` are the store's)."""

    provider: str
    id: str
    base_url: str
    managed: bool
    api_key_env: str
    api_key: str
    model: str
    mode: str
    command: list[str]
    ctx_size: int
    container: dict[str, JsonValue] | None  # a JSON column: the container settings
    restart: str | None
    memory_limit_bytes: int


class InstanceValues(TypedDict, total=False):
    """An instance's fields as ``InstanceConfig`` is given them; None resets one to its
    default (``provider`` is given apart: it is the registry's spelling of the kind)."""

    id: str
    base_url: str | None
    managed: bool | None
    api_key_env: str
    api_key: str | None
    model: str | None
    mode: ModelMode | None
    command: list[str]
    ctx_size: int | None
    container: ContainerConfig | None
    restart: RestartPolicy | None
    memory_limit_bytes: int | None


def _row_to_config(row: InstanceRow) -> InstanceConfig:
    columns = InstanceColumns(
        provider=row.provider,
        id=row.id,
        base_url=row.base_url,
        managed=row.managed,
        api_key_env=row.api_key_env,
        api_key=row.api_key,
        model=row.model,
        mode=row.mode,
        command=list(row.command or []),
        ctx_size=row.ctx_size,
        container=row.container or None,
        restart=row.restart or None,
        memory_limit_bytes=row.memory_limit_bytes,
    )
    if row.origin == InstanceOrigin.API and (row.command or row.api_key_env):
        # Given through the API before only the config file could: never run or sent.
        log.warning("instance %s/%s: dropping its command and api_key_env", row.provider, row.id)
        columns["command"], columns["api_key_env"] = [], ""
    return InstanceConfig.model_validate(columns, context=STORED)


# Built once: building a statement per call costs more than SQLite takes to run it.
_INSERT = insert(InstanceRow)
_DELETE = delete(InstanceRow).where(
    InstanceRow.provider == bindparam("row_provider"), InstanceRow.id == bindparam("row_id")
)


def _row_values(cfg: InstanceConfig) -> InstanceColumns:
    return InstanceColumns(
        provider=cfg.provider,
        id=cfg.id,
        base_url=cfg.base_url,
        managed=cfg.managed,
        api_key_env=cfg.api_key_env,
        api_key=cfg.api_key,
        model=cfg.model,
        mode=cfg.mode.value,
        command=cfg.command,
        ctx_size=cfg.ctx_size,
        container=cfg.container.model_dump(mode="json") if cfg.container else None,
        restart=cfg.restart.value if cfg.restart else None,
        memory_limit_bytes=cfg.memory_limit_bytes,
    )


def _values(
    fields: BaseModel, *, exclude_none: bool = False, exclude_unset: bool = False
) -> InstanceValues:
    """``fields``' values but its provider, nested models kept as objects: every other field
    of an instance model is one of ``InstanceValues``, with the same type."""
    names = fields.model_dump(
        exclude={"provider"}, exclude_none=exclude_none, exclude_unset=exclude_unset
    )
    return cast(InstanceValues, {name: getattr(fields, name) for name in names})


class InstanceRegistry:
    """Lookup, creation and removal of instances. Thread-safe."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self._lock = threading.Lock()
        self._items: dict[str, Instance] = {}
        for cfg in settings.effective_instances():
            self._items[cfg.key] = Instance(cfg, InstanceOrigin.CONFIG)
        with db.session() as s:
            for row in s.query(InstanceRow).all():
                if registry.find(row.provider) is None:
                    log.warning(
                        "instance %s/%s: no provider %r", row.provider, row.id, row.provider
                    )
                    continue  # its provider is no longer registered: kept, but not shown
                cfg = _row_to_config(row)
                self._items.setdefault(cfg.key, Instance(cfg, InstanceOrigin(row.origin)))

    def list(self) -> list[Instance]:
        with self._lock:
            return list(self._items.values())

    def get(self, provider: str, instance_id: str) -> Instance:
        kind = registry.get(provider).kind
        with self._lock:
            found = self._items.get(f"{kind}/{instance_id}")
        if found is None:
            raise NotFound(
                f"there is no {kind} instance {instance_id!r}",
                code="instance_not_found",
                hint="GET /api/providers lists the instances.",
            )
        return found

    def find(self, key: str) -> Instance | None:
        with self._lock:
            return self._items.get(key)

    def create(
        self,
        provider: str,
        fields: InstanceFields,
        *,
        origin: InstanceOrigin = InstanceOrigin.API,
        command: Sequence[str] = (),
        container: ContainerConfig | None = None,
    ) -> Instance:
        """Validate and add an instance; 409 ``instance_exists`` for a duplicate id.
        ``command`` (the runtime's own command line) and ``container`` are never from a
        request: modelyard makes them, for a server of a local file, from its settings."""
        values = _values(fields, exclude_none=True)
        values["command"] = [*command]
        if container is not None:
            values["container"] = container
        cfg = self._validated(registry.get(provider).kind, values)
        with self._lock:
            if cfg.key in self._items:
                raise Conflict(
                    f"instance {cfg.key} already exists",
                    code="instance_exists",
                    hint="Pick another id, or delete the existing instance first.",
                )
            with self.db.engine.begin() as conn:  # one INSERT; the ORM's unit of work is slower
                conn.execute(_INSERT, {**_row_values(cfg), "origin": origin.value})
            instance = Instance(cfg, origin)
            self._items[cfg.key] = instance
        return instance

    def update(self, provider: str, instance_id: str, changes: InstanceChanges) -> Instance:
        """Change an API-created instance's fields (not its id); configured ones answer 409.
        A field sent as null is reset to its default."""
        current = self.deletable(provider, instance_id)
        given = _values(changes, exclude_unset=True)
        url = given.get("base_url")
        moved = url is not None and validate_base_url(url) != current.config.base_url
        if moved and "api_key" not in given:
            given["api_key"] = None  # a key goes to the server it was given for, no other
        merged = _values(current.config)
        merged.update(given)
        merged["id"] = current.config.id
        cfg = self._validated(current.config.provider, merged)
        with self._lock:
            with self.db.session() as s:
                row = s.get(InstanceRow, (cfg.provider, cfg.id))
                if row is not None:
                    for name, value in _row_values(cfg).items():
                        setattr(row, name, value)
            instance = Instance(cfg, current.origin)
            self._items[cfg.key] = instance
        return instance

    def _validated(self, kind: str, values: InstanceValues) -> InstanceConfig:
        given = {name: value for name, value in values.items() if value is not None}
        try:
            cfg = InstanceConfig.model_validate({**given, "provider": kind})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise InvalidInput(
                f"invalid instance field {where}: {first['msg']}",
                code="invalid_instance",
                hint="Give an id (letters, digits, '.', '_', '-') and an http(s) base_url.",
            ) from exc
        return self._check_managed(cfg)

    def _check_managed(self, cfg: InstanceConfig) -> InstanceConfig:
        if not cfg.managed:
            if cfg.restart is not None or cfg.memory_limit_bytes:
                raise InvalidInput(
                    f"{cfg.key} is not managed: modelyard neither restarts nor limits it",
                    code="managed_only",
                    hint="Set managed to true, or leave restart and memory_limit_bytes out.",
                )
            return cfg
        if 0 < cfg.memory_limit_bytes < MEMORY_LIMIT_MIN:
            raise InvalidInput(
                f"a memory limit of {cfg.memory_limit_bytes} bytes is below "
                f"{MEMORY_LIMIT_MIN // 2**20} MiB: no model server starts within it",
                code="memory_limit_too_small",
                hint=f"Give at least {MEMORY_LIMIT_MIN} bytes, or 0 for no limit.",
            )
        capabilities = registry.get(cfg.provider).capabilities
        if not capabilities.manageable:
            manageable = [p.kind for p in registry if p.capabilities.manageable]
            raise InvalidInput(
                f"{cfg.provider} instances cannot be managed by modelyard",
                code="not_manageable",
                hint=f"Only {' and '.join(manageable)} instances can be started and stopped.",
            )
        host = urlsplit(cfg.base_url).hostname or ""
        if not is_local_host(host):
            raise InvalidInput(
                f"a managed instance must listen on this machine, not {host!r}",
                code="not_local",
                hint="Use a loopback base_url such as http://127.0.0.1:8081.",
            )
        if capabilities.runs_gguf:  # a managed server serves one GGUF file
            if not cfg.model:
                raise InvalidInput(
                    f"a managed {cfg.provider} instance needs a GGUF model path",
                    code="model_required",
                    hint="Set model to a .gguf file (absolute, or relative to the models dir).",
                )
            path = Path(cfg.model)
            if not path.is_absolute():
                path = self.settings.resolved_models_dir / path
            if not path.is_file():
                raise InvalidInput(
                    f"model file {cfg.model!r} does not exist",
                    code="model_file_not_found",
                    hint="Give the path of an existing .gguf file.",
                )
            cfg = cfg.model_copy(update={"model": str(path)})
        return cfg

    def deletable(self, provider: str, instance_id: str) -> Instance:
        """The instance, if it may be deleted; configured ones answer 409."""
        instance = self.get(provider, instance_id)
        if instance.origin is InstanceOrigin.CONFIG:
            raise Conflict(
                f"instance {instance.key} comes from the configuration",
                code="instance_from_config",
                hint="Remove it from the config file (MODELYARD_CONFIG) and restart modelyard.",
            )
        return instance

    def delete(self, provider: str, instance_id: str) -> Instance:
        """Remove an API-created instance; configured ones answer 409."""
        instance = self.deletable(provider, instance_id)
        with self._lock:
            self._items.pop(instance.key, None)
            with self.db.engine.begin() as conn:
                key = {"row_provider": instance.config.provider, "row_id": instance.config.id}
                conn.execute(_DELETE, key)
        return instance
