"""The models directory's GGUF files as one catalog scope (SPEC §11): the *local files*.

They are the models of the provider that runs GGUF files (``runs_gguf``: llama.cpp) under the
pseudo-instance ``local``, named by their POSIX path relative to the models directory. A file
is served by a managed instance of that provider whose ``model`` is the file
(``gguf/servers.py`` creates one when the model is started); while such a server runs and has
loaded it, the file's model is ``loaded``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from modelyard.gguf.files import MetadataCache, scan_models_dir
from modelyard.instance_config import InstanceConfig
from modelyard.models.types import (
    LoadedFigures,
    ModelEntry,
    ModelKey,
    ModelMeta,
    ModelStatus,
    RefetchRequest,
    Scope,
)
from modelyard.providers.base import Provider
from modelyard.providers.registry import registry
from modelyard.runtimes.instances import Instance
from modelyard.runtimes.process_records import ProcessRecord

LOCAL_INSTANCE = "local"


def runner() -> Provider:
    """The provider that runs the local files."""
    return registry.gguf_runner()


def local_scope() -> Scope:
    return Scope(runner().kind, LOCAL_INSTANCE)


def is_local(key: ModelKey | Scope) -> bool:
    return key.instance_id == LOCAL_INSTANCE and key.provider == runner().kind


def local_key(name: str) -> ModelKey:
    return ModelKey(runner().kind, LOCAL_INSTANCE, name)


def served_file(inst: InstanceConfig, models_dir: Path) -> str | None:
    """The local file (its name: the path in the models dir) a managed instance serves."""
    if not inst.managed or not inst.model or inst.provider != runner().kind:
        return None
    path = Path(inst.model)
    path = path if path.is_absolute() else models_dir / path
    try:
        return path.resolve().relative_to(models_dir.resolve()).as_posix()
    except ValueError:
        return None


def hf_source(name: str) -> tuple[str, RefetchRequest] | None:
    """``hf://owner/repo/path`` and its download request, for a file under
    ``hf/<owner>/<repo>/`` (SPEC §11), if it is one."""
    parts = name.split("/")
    if len(parts) < 4 or parts[0] != "hf":
        return None
    repo, filename = f"{parts[1]}/{parts[2]}", "/".join(parts[3:])
    return f"hf://{repo}/{filename}", RefetchRequest(source="hf", repo=repo, filename=filename)


@dataclass(frozen=True)
class ServerState:
    """What the server of a local file says about it."""

    status: ModelStatus  # loaded or starting
    loaded: LoadedFigures | None  # the server's figures, once loaded


def server_details(instance: Instance, record: ProcessRecord) -> LoadedFigures:
    """The ``loaded`` details of a local file served by ``instance`` (process ``record``)."""
    cfg = instance.config
    return LoadedFigures(
        instance_id=cfg.id,
        base_url=cfg.base_url,
        pid=record.pid,
        port=record.port,
        started_at=record.started_at,
        ctx_size=cfg.ctx_size or None,
    )


def list_local(
    models_dir: Path,
    cache: MetadataCache,
    servers: Mapping[str, ServerState],
    sources: Mapping[str, str],
) -> list[ModelEntry]:
    """The local files as catalog entries. ``servers``: file name → its server's state;
    ``sources``: file name → the source recorded when it was downloaded."""
    kind = runner().kind
    entries = []
    for model in scan_models_dir(models_dir, cache=cache):
        info = model.info
        server = servers.get(model.name)
        derived = hf_source(model.name)
        meta = ModelMeta(split_count=model.split_count)
        if info is not None:
            meta.update(
                ModelMeta(
                    architecture=info.architecture,
                    parameter_count=info.parameter_count,
                    has_chat_template=info.has_chat_template,
                    pooling_type=info.pooling_type,
                )
            )
        if model.error:
            meta.update(ModelMeta(error=model.error, error_code=model.error_code))
        entries.append(
            ModelEntry(
                provider=kind,
                instance_id=LOCAL_INSTANCE,
                name=model.name,
                size=model.size,
                family=info.architecture if info else None,
                parameter_size=info.parameter_size if info else None,
                quantization=model.quantization,
                format="gguf",
                modified_at=model.modified_at,
                mode=model.mode.value,
                source=derived[0] if derived else sources.get(model.name, "local"),
                status=server.status if server else ModelStatus.AVAILABLE,
                context_length=info.context_length if info else None,
                path=str(model.path),
                loaded=server.loaded if server else None,
                meta=meta,
                refetch=RefetchRequest(**derived[1], mode=model.mode.value) if derived else None,
            )
        )
    return entries
