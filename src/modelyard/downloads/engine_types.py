"""What the URL engine is asked and what it answers: requests, results, errors, callbacks.

Kept apart from the engine itself so that ``http_engine`` (the public calls) and
``transfer`` (the request and streaming internals) can share them without a cycle.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from modelyard.errors import InvalidInput, UpstreamError

# 4 MiB reads and writes: a quarter of the reads, hand-overs and O_DIRECT writes of 1 MiB
# ones, for less CPU per GB at the same speed (docs/BENCHMARKS.md has the experiment).
CHUNK_BYTES = 4 << 20
DISK_MARGIN_BYTES = 64 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

_HINTS = {
    "connection_error": "The server could not be reached or dropped the connection.",
    "http_error": "Check the URL, and the token for gated or private files.",
    "stalled": "No data arrived for a while; the download resumes where it stopped.",
    "tls_error": "Check the server's TLS certificate (or the system's CA certificates).",
    "bad_response": "The server's answer cannot be used for a download; try another source.",
    "checksum_mismatch": "The bytes differ from the expected file; check the source.",
    "size_mismatch": "The server's file does not have the expected size; check the source.",
    "insufficient_disk_space": "Free space in the models directory, or pass force=true.",
    "too_large": "The file is larger than download_max_bytes allows; raise it to fetch it.",
    "write_error": "Check that the models directory is writable and the disk is healthy.",
    "cancelled": "Start the download again to resume it.",
    "already_downloading": "Another download is writing this file; wait for it or cancel it.",
    "destination_exists": "Delete or rename the existing file, or choose another file name.",
}
_STATUS = {
    "insufficient_disk_space": 507,
    "too_large": 413,
    "cancelled": 409,
    "already_downloading": 409,
    "destination_exists": 409,
}


class DownloadError(UpstreamError):
    """A fetch failed. ``retryable`` says whether another attempt can help.

    Codes: connection_error, http_error (``upstream_status`` holds the HTTP status), stalled,
    tls_error, bad_response, checksum_mismatch, size_mismatch, insufficient_disk_space,
    too_large, write_error, cancelled, already_downloading, destination_exists.
    """

    code = "download_failed"
    title = "Download failed"

    def __init__(
        self,
        detail: str,
        *,
        code: str,
        retryable: bool = False,
        hint: str | None = None,
        upstream_status: int | None = None,
    ) -> None:
        extra = {} if upstream_status is None else {"upstream_status": upstream_status}
        super().__init__(
            detail, code=code, hint=hint or _HINTS.get(code), status=_STATUS.get(code), **extra
        )
        self.retryable = retryable
        self.upstream_status = upstream_status


def cancelled() -> DownloadError:
    """The error a cancelled fetch ends with."""
    return DownloadError("the download was cancelled", code="cancelled")


@dataclass
class FetchRequest:
    """What to fetch and where; ``if_range`` is the validator from an earlier response.

    ``disk_margin`` is the free space to keep beyond the file; ``max_bytes`` refuses bigger
    files before a byte is written.
    """

    url: str
    dest: Path
    expected_size: int | None = None
    expected_sha256: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    if_range: str | None = None
    force: bool = False
    disk_margin: int = DISK_MARGIN_BYTES
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.expected_sha256 is not None:
            self.expected_sha256 = self.expected_sha256.strip().lower()
            if not _SHA256.match(self.expected_sha256):
                raise InvalidInput(
                    "expected_sha256 is not 64 hex digits",
                    code="invalid_sha256",
                    hint="Give the sha256 as 64 hexadecimal characters.",
                )
        if self.expected_size is not None and self.expected_size < 0:
            raise InvalidInput("expected_size must not be negative", code="invalid_size")


@dataclass(frozen=True)
class FetchResult:
    """A verified file in place; ``restarted``: the server ignored the range asked for."""

    path: Path
    size: int
    sha256: str
    resumed_from: int
    restarted: bool


class Progress(Protocol):
    """Told the bytes on disk so far (resumed ones included) and the total when known."""

    def __call__(self, downloaded: int, total: int | None) -> None: ...


OnValidator = Callable[[str | None, int | None], None]
Logger = Callable[[str], None]
# Told "verifying" when the bytes are all there and the checks and fsync begin.
OnStage = Callable[[str], None]


def part_path(dest: Path) -> Path:
    """The stable name of ``dest``'s partial file: ``<dest>.part``."""
    return dest.with_name(dest.name + ".part")
