"""What a model page shows beyond the catalog row: the GGUF header, the memory estimate and
whether it fits now, the source a recreate fetches from, and (for a local file) its servers;
and what the running models use (``GET /api/system/resources``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from typing_extensions import TypedDict  # pydantic documents it (typing.TypedDict: 3.12+)

from modelyard.config import Settings
from modelyard.gguf.metadata import GGUFInfo
from modelyard.models.catalog import Catalog
from modelyard.models.memory import default_context, estimate_for, gguf_info
from modelyard.models.types import Model, RefetchRequest
from modelyard.runtimes.instances import Instance, InstanceView
from modelyard.runtimes.resources import (
    FitVerdict,
    MemoryEstimate,
    SystemResources,
    check_fits,
    system_resources,
)
from modelyard.validation import resolve_inside


@dataclass(slots=True)
class ModelDetails(Model):
    """``GET /api/models/details``: the model and what is known about running it."""

    gguf: GGUFInfo | None = None
    estimate: MemoryEstimate | None = None
    fit: FitVerdict | None = None
    source_request: RefetchRequest | None = None  # the download body recreate sends
    servers: list[InstanceView] | None = None  # a local file's llama.cpp instances

    def wire(self) -> dict[str, Any]:
        out = Model.wire(self)
        out.update(
            gguf=self.gguf.wire() if self.gguf is not None else None,
            estimate=self.estimate.wire() if self.estimate is not None else None,
            fit=self.fit.wire() if self.fit is not None else None,
            source_request=self.source_request,
        )
        if self.servers is not None:
            out["servers"] = [s.model_dump(mode="json") for s in self.servers]
        return out


async def describe(
    settings: Settings, catalog: Catalog, model: Model, instance: Instance | None
) -> ModelDetails:
    """The details of ``model``, served by ``instance`` (None: a local file, whose header is
    read)."""
    info = None
    servers = None
    if instance is None:
        path = resolve_inside(catalog.models_dir, model.name)
        info = await asyncio.to_thread(gguf_info, catalog.metadata, path)
        servers = [i.view() for i in catalog.servers_for(model.name)]
    ctx = default_context(info, settings.default_ctx_size)
    estimate = estimate_for(model, info=info, instance=instance, ctx_size=ctx)
    fit = None
    if estimate is not None:
        resources = await asyncio.to_thread(system_resources, catalog.models_dir)
        fit = check_fits(estimate, resources, settings.memory_margin_bytes)
    recorded = await asyncio.to_thread(catalog.source_of, model.key)
    fields = {name: getattr(model, name) for name in Model.__dataclass_fields__}
    return ModelDetails(
        **fields,
        gguf=info,
        estimate=estimate,
        fit=fit,
        source_request=recorded[1] if recorded else None,
        servers=servers,
    )


class RunningModel(TypedDict):
    """A model loaded or starting, and the memory it uses."""

    provider: str
    instance_id: str
    name: str
    status: str
    size: int | None
    pid: int | None
    memory: int | None  # a GGUF server's resident memory; what Ollama reports for its models
    vram: int | None


class ResourcesReport(SystemResources):
    """``GET /api/system/resources``: this machine, and what the running models use."""

    models_dir: str
    models: list[RunningModel]
    models_memory: int


def running_models(catalog: Catalog) -> ResourcesReport:
    running: list[RunningModel] = []
    for model in catalog.active():
        loaded = model.loaded or {}
        running.append(
            RunningModel(
                provider=model.provider,
                instance_id=model.instance_id,
                name=model.name,
                status=model.status.value,
                size=model.size,
                pid=loaded.get("pid"),
                memory=loaded.get("memory", loaded.get("size")),
                vram=loaded.get("size_vram"),
            )
        )
    return ResourcesReport(
        **system_resources(catalog.models_dir),
        models_dir=str(catalog.models_dir),
        models=running,
        models_memory=sum(m["memory"] or 0 for m in running),
    )
