"""Turn a download request into a validated plan, before anything is written anywhere.

Every check a user can fail happens here (SPEC §12): the source, the URL's scheme and host,
the file name, the Ollama name and instance, the checksum, the size limit and the free disk.
Bad input raises a 4xx ModelyardError with a stable code and leaves no trace. Planning a
Hugging Face file asks the Hub for its size and sha256 (blocking: run it in a thread).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field

from modelyard.config import Settings
from modelyard.downloads.engine_types import part_path
from modelyard.downloads.huggingface import parse_hf_uri, resolve_file
from modelyard.downloads.states import SourceKind
from modelyard.downloads.tasks import SourceDetails
from modelyard.downloads.transfer import MAX_REDIRECTS
from modelyard.errors import Conflict, InsufficientResources, InvalidInput, PayloadTooLarge
from modelyard.instance_config import ModelMode
from modelyard.providers.base import Provider
from modelyard.providers.registry import registry
from modelyard.runtimes.instances import InstanceRegistry
from modelyard.runtimes.resources import check_disk
from modelyard.validation import resolve_inside, validate_download_url, validate_filename

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
DEFAULT_PULL_INSTANCE = "default"
HEAD_TIMEOUT_S = 10.0  # the compatibility endpoint asks a file's size before answering


class DownloadRequest(BaseModel):
    """The body of ``POST /api/downloads`` (recreate and install send the same)."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(max_length=32, description="ollama, url or hf")
    model_name: str | None = Field(default=None, max_length=512)
    url: str | None = Field(default=None, description="http(s) URL, or hf://owner/repo/file")
    repo: str | None = Field(default=None, max_length=256)
    filename: str | None = Field(default=None, max_length=1024)
    revision: str | None = Field(default=None, max_length=256)
    sha256: str | None = Field(default=None, max_length=128)
    mode: str | None = Field(default=None, max_length=16)
    instance_id: str | None = Field(default=None, max_length=64)
    force: bool = Field(default=False, description="skip the free-disk check")


@dataclass(frozen=True)
class Plan:
    """A validated request: what to fetch, where it lands, and what identifies it."""

    source: SourceKind
    dedupe_key: str
    mode: str
    force: bool
    model_name: str | None = None
    url: str | None = None
    repo: str | None = None
    revision: str | None = None
    filename: str | None = None
    path: Path | None = None
    instance_id: str | None = None
    sha256: str | None = None
    total: int | None = None
    extra: SourceDetails = field(default_factory=lambda: SourceDetails())


def plan_download(
    request: DownloadRequest, settings: Settings, instances: InstanceRegistry
) -> Plan:
    """Validate ``request`` completely; raises InvalidInput, NotFound, Conflict, 413 or 507."""
    try:
        source = SourceKind(request.source.strip().lower())
    except ValueError as exc:
        raise InvalidInput(
            f"{request.source!r} is not a download source",
            code="unknown_source",
            hint="Use source 'ollama' (a model name), 'url' (an http(s) URL) or 'hf'.",
        ) from exc
    mode = _mode(request.mode)
    sha256 = _sha256(request.sha256)
    puller = registry.puller(source)
    if puller is not None:
        return _plan_pull(request, source, puller, mode, instances)
    if source is SourceKind.URL:
        return _plan_url(request, mode, sha256, settings)
    return _plan_hf(request, mode, sha256, settings)


def _plan_pull(
    request: DownloadRequest,
    source: SourceKind,
    puller: Provider,
    mode: str,
    instances: InstanceRegistry,
) -> Plan:
    """A model the runtime of kind ``source`` fetches itself, into one of its instances."""
    name = puller.check_name((request.model_name or "").strip())
    instance_id = request.instance_id or DEFAULT_PULL_INSTANCE
    instances.get(puller.kind, instance_id)  # 404 instance_not_found
    display = puller.catalog_name(name)
    return Plan(
        source=source,
        dedupe_key=f"{puller.kind}:{instance_id}:{display.lower()}",
        mode=mode,
        force=request.force,
        model_name=name,
        instance_id=instance_id,
    )


def _plan_url(request: DownloadRequest, mode: str, sha256: str | None, settings: Settings) -> Plan:
    if not request.url:
        raise InvalidInput("a url download needs a url", code="url_required", hint=_URL_HINT)
    if request.url.strip().lower().startswith("hf://"):
        raise InvalidInput(
            "hf:// sources are downloaded with source 'hf'",
            code="unknown_source",
            hint="Send source 'hf' with this url, or repo and filename.",
        )
    url = validate_download_url(request.url)
    filename = validate_filename(request.filename or _url_filename(url))
    dest = resolve_inside(settings.resolved_models_dir, filename)
    return Plan(
        source=SourceKind.URL,
        dedupe_key=f"url:{url}|{filename}",
        mode=mode,
        force=request.force,
        url=url,
        filename=filename,
        path=dest,
        sha256=sha256,
    )


def _plan_hf(request: DownloadRequest, mode: str, sha256: str | None, settings: Settings) -> Plan:
    if request.url:
        ref = parse_hf_uri(request.url)
    else:
        fields = {"repo": request.repo, "filename": request.filename, "revision": request.revision}
        ref = parse_hf_uri({k: v or "" for k, v in fields.items()})
    hub = resolve_file(
        settings.hf_endpoint, settings.hf_token or None, ref.repo, ref.filename, ref.revision
    )
    if sha256 and hub.sha256 and sha256 != hub.sha256:
        raise InvalidInput(
            f"the sha256 given differs from the Hub's ({hub.sha256})",
            code="checksum_conflict",
            hint="Leave sha256 out: the Hub's checksum is used.",
        )
    dest = resolve_inside(settings.resolved_models_dir, hub.relative_dest)
    _check_size(hub.size, dest, request.force, settings)
    return Plan(
        source=SourceKind.HF,
        dedupe_key=f"hf:{ref.repo}/{ref.filename}@{ref.revision}",
        mode=mode,
        force=request.force,
        url=ref.uri,
        repo=ref.repo,
        revision=ref.revision,
        filename=ref.filename,
        path=dest,
        sha256=hub.sha256 or sha256,
        total=hub.size,
        extra={"resolved_url": hub.url, "commit": hub.commit, "expected_size": hub.size},
    )


_URL_HINT = "Give an http:// or https:// URL of the file."


def _url_filename(url: str) -> str:
    name = unquote(urlsplit(url).path).rpartition("/")[2]  # "dir/" names no file
    if not name:
        raise InvalidInput(
            f"the URL {url!r} does not end in a file name",
            code="filename_required",
            hint="Give a filename for the download.",
        )
    return name


def _mode(value: str | None) -> str:
    try:
        return ModelMode((value or ModelMode.LLM.value).strip().lower()).value
    except ValueError as exc:
        raise InvalidInput(
            f"{value!r} is not a model mode",
            code="invalid_mode",
            hint="Use llm, embed or rerank.",
        ) from exc


def _sha256(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    if not _SHA256.match(value.strip()):
        raise InvalidInput(
            "sha256 is not 64 hex digits",
            code="invalid_sha256",
            hint="Give the sha256 as 64 hexadecimal characters, or leave it out.",
        )
    return value.strip().lower()


def check_destination(plan: Plan) -> None:
    """An existing file can be taken as the download only when a size or checksum proves it."""
    dest = plan.path
    if dest is not None and dest.exists() and plan.sha256 is None and plan.total is None:
        raise Conflict(
            f"{dest.name} already exists in the models directory",
            code="destination_exists",
            hint="Delete it, choose another filename, or give its sha256 to reuse it.",
        )


def _check_size(size: int | None, dest: Path, force: bool, settings: Settings) -> None:
    """Refuse a file above the size limit, or one the disk cannot hold (unless forced)."""
    if size is None:
        return
    if size > settings.download_max_bytes:
        raise PayloadTooLarge(
            f"the file has {size} bytes, more than download_max_bytes allows"
            f" ({settings.download_max_bytes})",
            code="download_too_large",
            hint="Raise download_max_bytes to fetch files this big.",
        )
    if force or dest.exists():
        return
    part = part_path(dest)
    have = part.stat().st_size if part.exists() else 0
    verdict = check_disk(dest.parent, max(0, size - have), settings.disk_margin_bytes)
    if not verdict.fits:
        raise InsufficientResources(
            f"{size - have} more bytes (plus a {settings.disk_margin_bytes >> 20} MiB margin) "
            f"do not fit in the {verdict.available} bytes free in the models directory",
            code="insufficient_disk_space",
            hint="Free space in the models directory, or pass force=true to try anyway.",
            required=size - have,
            available=verdict.available,
        )


async def content_length(url: str, settings: Settings) -> int | None:
    """The size the server gives for ``url`` (a HEAD request, redirects followed as a
    download follows them), or None when it gives none or cannot be asked."""
    timeout = httpx.Timeout(HEAD_TIMEOUT_S, connect=settings.connect_timeout_ms / 1000)
    try:
        async with httpx.AsyncClient(
            timeout=timeout, follow_redirects=True, max_redirects=MAX_REDIRECTS
        ) as client:
            resp = await client.head(url)
    except httpx.HTTPError:
        return None
    value = resp.headers.get("content-length", "")
    return int(value) if resp.status_code == 200 and value.isdigit() else None
