"""The URL download engine: one resumable, verified HTTP(S) fetch into ``<dest>.part``.

Synchronous by design: the download manager runs each fetch in a worker process of its own
(``worker``), which cancels it through a ``threading.Event`` and relays its callbacks. The
request and streaming internals live in ``transfer``; this module holds the calls the rest
of modelyard uses: ``fetch`` (one attempt), ``fetch_with_retries`` (attempts with full-jitter
backoff), ``part_path`` and ``discard_part``.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from modelyard.downloads.engine_types import (
    CHUNK_BYTES,
    DISK_MARGIN_BYTES,
    DownloadError,
    FetchRequest,
    FetchResult,
    Logger,
    OnStage,
    OnValidator,
    Progress,
    cancelled,
    part_path,
)
from modelyard.downloads.part_record import remove_record
from modelyard.downloads.part_writer import disk_errors
from modelyard.downloads.transfer import (
    Attempt,
    CancelWatch,
    existing_dest,
    locked_part,
)
from modelyard.validation import validate_download_url

__all__ = [
    "CHUNK_BYTES",
    "DISK_MARGIN_BYTES",
    "DownloadError",
    "FetchRequest",
    "FetchResult",
    "Progress",
    "backoff_delay",
    "discard_part",
    "fetch",
    "fetch_with_retries",
    "part_path",
]

# Wrong bytes are worth nothing; a part that filled the disk must not keep it full.
_DISCARD_PART = frozenset(
    {"checksum_mismatch", "size_mismatch", "too_large", "insufficient_disk_space"}
)
_logger = logging.getLogger(__name__)


def discard_part(dest: Path) -> None:
    """Delete ``dest``'s partial file, unless a running fetch holds it."""
    part = part_path(dest)
    if not part.exists():
        remove_record(dest)
        return
    with locked_part(part):
        part.unlink(missing_ok=True)
        remove_record(dest)


def fetch(
    req: FetchRequest,
    *,
    cancel: threading.Event,
    on_progress: Progress,
    on_validator: OnValidator | None = None,
    on_stage: OnStage | None = None,
    log: Logger = _logger.info,
    stall_timeout_s: float = 30.0,
) -> FetchResult:
    """One attempt: resume ``req.dest``'s part file from the server, verify it, move it in place.

    Raises DownloadError (check ``retryable``). The part file stays for a later resume, except
    after a checksum or size mismatch; nothing appears under the final name unless verified.
    """
    validate_download_url(req.url)
    with disk_errors():
        req.dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(req.dest)
    with locked_part(part) as fd:
        if req.dest.exists():
            try:
                result = existing_dest(req, cancel, on_stage)
            finally:  # a part beside an existing final file can never be used
                part.unlink()
                remove_record(req.dest)
            log(f"{req.dest.name} is already complete ({result.size} bytes)")
            return result
        try:
            with CancelWatch(cancel) as watch:
                attempt = Attempt(req, fd, watch, on_progress, on_validator, on_stage, log)
                return attempt.run(stall_timeout_s)
        except DownloadError as exc:
            log(f"failed: {exc.error_code}: {exc.detail}")
            # An empty part is litter.
            if exc.error_code in _DISCARD_PART or os.fstat(fd).st_size == 0:
                part.unlink(missing_ok=True)
                remove_record(req.dest)
            raise


def backoff_delay(
    attempt: int, base_s: float, cap_s: float, rng: Callable[[], float] = random.random
) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**(attempt-1))]."""
    return rng() * min(cap_s, base_s * 2.0 ** (attempt - 1))


def fetch_with_retries(
    req: FetchRequest,
    *,
    max_attempts: int,
    cancel: threading.Event,
    on_progress: Progress,
    on_attempt: Callable[[int], None] | None = None,
    on_validator: OnValidator | None = None,
    on_stage: OnStage | None = None,
    log: Logger = _logger.info,
    stall_timeout_s: float = 30.0,
    backoff_base_s: float = 1.0,
    backoff_cap_s: float = 60.0,
    sleep: Callable[[float], None] | None = None,
    rng: Callable[[], float] = random.random,
) -> FetchResult:
    """``fetch`` until it succeeds, fails for good, is cancelled or runs out of attempts.

    Retryable failures wait a full-jitter exponential backoff (cancellable unless ``sleep``
    is given); each attempt resumes with the newest validator seen.
    """
    validator = req.if_range

    def remember(value: str | None, total: int | None) -> None:
        nonlocal validator
        validator = value
        if on_validator is not None:
            on_validator(value, total)

    attempt = 1
    while True:
        if cancel.is_set():
            raise cancelled()
        if on_attempt is not None:
            on_attempt(attempt)
        log(f"attempt {attempt} of {max_attempts}")
        try:
            return fetch(
                replace(req, if_range=validator),
                cancel=cancel,
                on_progress=on_progress,
                on_validator=remember,
                on_stage=on_stage,
                log=log,
                stall_timeout_s=stall_timeout_s,
            )
        except DownloadError as exc:
            if not exc.retryable or attempt >= max_attempts:
                raise
        delay = backoff_delay(attempt, backoff_base_s, backoff_cap_s, rng)
        log(f"retrying in {delay:.1f} s")
        if sleep is not None:
            sleep(delay)
        elif cancel.wait(delay):
            raise cancelled()
        attempt += 1
