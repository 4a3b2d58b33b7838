"""Hugging Face Hub metadata: parse ``hf://`` sources, resolve one file, list GGUF choices.

Metadata comes from ``huggingface_hub`` (PROTOCOLS.md §6); the bytes come through the URL
engine. The endpoint and token are always passed in by the caller (from Settings, which read
HF_ENDPOINT and HF_TOKEN); the library is never allowed to pick up a token on its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TypeVar

import httpx2
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from modelyard.errors import Forbidden, InvalidInput, ModelyardError, NotFound, UpstreamError
from modelyard.validation import validate_base_url, validate_relative_path

DEFAULT_REVISION = "main"
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
_REVISION = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._/-]{0,254}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
_QUANT = re.compile(
    r"(?<![A-Za-z0-9])"
    r"(I?Q[1-8](?:_[0-9K](?:_[0-9])*)?(?:_(?:XXS|XS|XL|NL|S|M|L))?|BF16|F16|F32|FP16|FP32|TQ[12]_0|MXFP4)"
    r"(?![A-Za-z0-9])",
    re.IGNORECASE,
)
T = TypeVar("T")


@dataclass(frozen=True)
class HFRef:
    """One file in one Hub repo at one revision."""

    repo: str
    filename: str
    revision: str = DEFAULT_REVISION

    @property
    def uri(self) -> str:
        suffix = "" if self.revision == DEFAULT_REVISION else f"@{self.revision}"
        return f"hf://{self.repo}/{self.filename}{suffix}"


@dataclass(frozen=True)
class HFFile:
    """A resolved file: where to GET it (pinned to ``commit``), its size and sha256."""

    repo: str
    filename: str
    revision: str
    commit: str | None
    url: str
    size: int | None
    sha256: str | None  # None for small files kept in git rather than LFS
    relative_dest: str  # inside the models directory: hf/<owner>/<repo>/<path>


@dataclass(frozen=True)
class GGUFPart:
    filename: str
    size: int | None
    sha256: str | None


@dataclass(frozen=True)
class GGUFChoice:
    """One downloadable GGUF: a single file or a set of split parts."""

    filename: str  # the file to give llama.cpp: the first part of a split set
    size: int | None  # split parts summed
    sha256: str | None  # of a single file; each part carries its own
    quantization: str | None
    is_projector: bool  # mmproj: a vision projector, not model weights
    parts: tuple[GGUFPart, ...]


def parse_hf_uri(value: str | Mapping[str, object]) -> HFRef:
    """``hf://owner/repo/path/file.gguf[@revision]`` or ``{repo, filename[, revision]}``.

    The last '@' starts the revision, which defaults to 'main'.
    """
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("hf://"):
            raise _invalid("hf_invalid_uri", f"{value!r} is not an hf:// URI")
        path, at, revision = text[len("hf://") :].rpartition("@")
        if not at:
            path, revision = revision, DEFAULT_REVISION
        owner, _, rest = path.partition("/")
        name, _, filename = rest.partition("/")
        return _checked(f"{owner}/{name}", filename, revision)
    fields = (value.get("repo"), value.get("filename"), value.get("revision") or DEFAULT_REVISION)
    if not all(isinstance(item, str) for item in fields):
        raise _invalid("hf_invalid_uri", "repo, filename and revision must be strings")
    repo_id, name_in_repo, rev = (str(item).strip() for item in fields)
    return _checked(repo_id, name_in_repo, rev)


def auth_headers(token: str | None) -> dict[str, str]:
    """The header that carries an HF token to the Hub (the engine drops it off-origin)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def resolve_file(
    endpoint: str,
    token: str | None,
    repo: str,
    filename: str,
    revision: str = DEFAULT_REVISION,
    *,
    timeout_s: float = 10.0,
) -> HFFile:
    """Size, sha256 and commit of one file (a HEAD on its resolve URL), and a pinned URL."""
    ref = _checked(repo, filename, revision)
    endpoint = validate_base_url(endpoint)
    url = hf_hub_url(ref.repo, ref.filename, revision=ref.revision, endpoint=endpoint)
    meta = _hub_call(
        ref, lambda: get_hf_file_metadata(url, token=token or False, timeout=timeout_s)
    )
    etag = (meta.etag or "").lower()
    commit = meta.commit_hash
    if commit:  # the bytes must be the ones described even if the branch moves meanwhile
        url = hf_hub_url(ref.repo, ref.filename, revision=commit, endpoint=endpoint)
    return HFFile(
        repo=ref.repo,
        filename=ref.filename,
        revision=ref.revision,
        commit=commit,
        url=url,
        size=meta.size,
        sha256=etag if _SHA256.match(etag) else None,
        relative_dest=str(PurePosixPath("hf", ref.repo, ref.filename)),
    )


def list_gguf_files(
    endpoint: str,
    token: str | None,
    repo: str,
    revision: str = DEFAULT_REVISION,
    *,
    timeout_s: float = 30.0,
) -> list[GGUFChoice]:
    """The GGUF files of a repo: split parts grouped and summed, projectors marked.

    Sorted with model weights first, smallest first.
    """
    ref = HFRef(_checked_repo(repo), "", _checked_revision(revision))
    api = HfApi(endpoint=validate_base_url(endpoint), token=token or False)
    info = _hub_call(
        ref,
        lambda: api.model_info(
            ref.repo, revision=ref.revision, files_metadata=True, timeout=timeout_s
        ),
    )
    parts = [
        GGUFPart(s.rfilename, s.size, s.lfs.sha256 if s.lfs else None)
        for s in info.siblings or []
        if s.rfilename.lower().endswith(".gguf")
    ]
    choices = [_choice(group) for group in _group_splits(parts)]
    return sorted(choices, key=lambda c: (c.is_projector, c.size or 0, c.filename))


def quantization_of(filename: str) -> str | None:
    """The quantization named in a GGUF file name (Q4_K_M, Q8_0, IQ4_XS, BF16, ...)."""
    found = _QUANT.findall(PurePosixPath(filename).name)
    return found[-1].upper() if found else None


def _checked(repo: str, filename: str, revision: str) -> HFRef:
    repo = _checked_repo(repo)
    if not filename:
        raise _invalid(
            "hf_missing_filename",
            f"no file named in {repo!r}",
            "Name a file (list the repo's GGUF files to pick a quantization).",
        )
    try:
        validate_relative_path(filename)
    except InvalidInput as exc:
        raise _invalid("hf_invalid_filename", f"{filename!r} is not a file path") from exc
    return HFRef(repo, filename, _checked_revision(revision))


def _checked_repo(repo: str) -> str:
    owner, _, name = repo.partition("/")
    if not all(
        _NAME.match(part) and ".." not in part and "--" not in part for part in (owner, name)
    ):
        raise _invalid(
            "hf_invalid_repo",
            f"{repo!r} is not a Hub repo id",
            "Use owner/name, e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF.",
        )
    return repo


def _checked_revision(revision: str) -> str:
    if not _REVISION.match(revision) or ".." in revision or revision.endswith("/"):
        raise _invalid("hf_invalid_revision", f"{revision!r} is not a revision")
    return revision


def _invalid(code: str, detail: str, hint: str | None = None) -> InvalidInput:
    hint = hint or "Use hf://owner/repo/path/file.gguf, optionally followed by @revision."
    return InvalidInput(detail, code=code, hint=hint)


def _hub_call(ref: HFRef, call: Callable[[], T]) -> T:
    """Run a huggingface_hub call, mapping its errors into modelyard's (the one place)."""
    try:
        return call()
    except HfHubHTTPError as exc:
        raise _hub_error(ref, exc) from exc
    except (httpx2.HTTPError, OSError) as exc:
        raise UpstreamError(
            f"the Hugging Face Hub cannot be reached: {exc}",
            code="hf_unreachable",
            hint="Check the network, or HF_ENDPOINT if a mirror is configured.",
        ) from exc


def _hub_error(ref: HFRef, exc: HfHubHTTPError) -> ModelyardError:
    if isinstance(exc, GatedRepoError):
        return Forbidden(
            f"{ref.repo} is gated",
            code="hf_gated",
            hint="Accept the model's terms on its Hub page, then set HF_TOKEN for that account.",
        )
    if isinstance(exc, RepositoryNotFoundError):
        return NotFound(
            f"no repo {ref.repo} on the Hub (or it is private)",
            code="hf_repo_not_found",
            hint="Check the repo id; private repos need HF_TOKEN.",
        )
    if isinstance(exc, RevisionNotFoundError):
        return NotFound(
            f"{ref.repo} has no revision {ref.revision!r}", code="hf_revision_not_found"
        )
    if isinstance(exc, RemoteEntryNotFoundError):
        return NotFound(
            f"{ref.repo}@{ref.revision} has no file {ref.filename!r}",
            code="hf_file_not_found",
            hint="List the repo's GGUF files to see what exists.",
        )
    status = exc.response.status_code if exc.response is not None else None
    if status in {401, 403}:
        return Forbidden(
            f"the Hub refused the token ({status})",
            code="hf_unauthorized",
            hint="Check HF_TOKEN: it must be valid and allowed to read this repo.",
        )
    return UpstreamError(f"the Hub answered {status}", code="hf_error", hint="Try again later.")


def _group_splits(parts: Iterable[GGUFPart]) -> list[list[GGUFPart]]:
    """Single files alone; ``-0000i-of-0000n.gguf`` parts together, in order."""
    groups: dict[str, list[GGUFPart]] = {}
    for part in parts:
        match = _SPLIT.match(part.filename)
        key = f"{match['stem']}/{match['count']}" if match else part.filename
        groups.setdefault(key, []).append(part)
    return [sorted(group, key=lambda p: p.filename) for group in groups.values()]


def _choice(group: list[GGUFPart]) -> GGUFChoice:
    first = group[0]
    sizes = [p.size for p in group]
    return GGUFChoice(
        filename=first.filename,
        size=None if None in sizes else sum(s or 0 for s in sizes),
        sha256=first.sha256 if len(group) == 1 else None,
        quantization=quantization_of(first.filename),
        is_projector="mmproj" in PurePosixPath(first.filename).name.lower(),
        parts=tuple(group),
    )
