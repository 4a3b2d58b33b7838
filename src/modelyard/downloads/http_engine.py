"""The URL download engine: one resumable, verified HTTP(S) fetch into ``<dest>.part``.

Synchronous by design: the download manager runs each fetch in a worker thread, cancels it
through a ``threading.Event`` and hears about progress through a callback. Bytes go through
urllib3 ``readinto`` into reused 1 MiB buffers (httpx is CPU-bound at a third of the speed);
sha256 runs in a helper thread fed through a small pool of buffers while the file is written,
never in a second pass (hashlib releases the GIL; docs/BENCHMARKS.md has the numbers).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import queue
import random
import re
import shutil
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from http.client import HTTPException
from pathlib import Path
from typing import Protocol
from urllib.parse import urljoin, urlsplit

from urllib3 import HTTPResponse
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError, SSLError
from urllib3.exceptions import HTTPError as Urllib3Error

from modelyard.errors import InvalidInput, UpstreamError
from modelyard.validation import validate_download_url

CHUNK_BYTES = 1 << 20
HASH_BUFFERS = 4  # bounds how far hashing may lag behind the network read
WRITEBACK_BYTES = 32 << 20
DISK_MARGIN_BYTES = 64 << 20
MAX_REDIRECTS = 10
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_RANGE = re.compile(r"^bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)$")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
_DISCARD_PART = frozenset({"checksum_mismatch", "size_mismatch"})
_logger = logging.getLogger(__name__)

_HINTS = {
    "connection_error": "The server could not be reached or dropped the connection.",
    "http_error": "Check the URL, and the token for gated or private files.",
    "stalled": "No data arrived for a while; the download resumes where it stopped.",
    "tls_error": "Check the server's TLS certificate (or the system's CA certificates).",
    "bad_response": "The server's answer cannot be used for a download; try another source.",
    "checksum_mismatch": "The bytes differ from the expected file; check the source.",
    "size_mismatch": "The server's file does not have the expected size; check the source.",
    "insufficient_disk_space": "Free space in the models directory, or pass force=true.",
    "write_error": "Check that the models directory is writable and the disk is healthy.",
    "cancelled": "Start the download again to resume it.",
    "already_downloading": "Another download is writing this file; wait for it or cancel it.",
    "destination_exists": "Delete or rename the existing file, or choose another file name.",
}
_STATUS = {
    "insufficient_disk_space": 507,
    "cancelled": 409,
    "already_downloading": 409,
    "destination_exists": 409,
}


class DownloadError(UpstreamError):
    """A fetch failed. ``retryable`` says whether another attempt can help.

    Codes: connection_error, http_error (``upstream_status`` holds the HTTP status), stalled,
    tls_error, bad_response, checksum_mismatch, size_mismatch, insufficient_disk_space,
    write_error, cancelled, already_downloading, destination_exists.
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


@dataclass
class FetchRequest:
    """What to fetch and where; ``if_range`` is the validator from an earlier response."""

    url: str
    dest: Path
    expected_size: int | None = None
    expected_sha256: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    if_range: str | None = None
    force: bool = False

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


class _Digest(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


def part_path(dest: Path) -> Path:
    """The stable name of ``dest``'s partial file: ``<dest>.part``."""
    return dest.with_name(dest.name + ".part")


def discard_part(dest: Path) -> None:
    """Delete ``dest``'s partial file, unless a running fetch holds it."""
    part = part_path(dest)
    if not part.exists():
        return
    with _locked_part(part):
        part.unlink(missing_ok=True)


def fetch(
    req: FetchRequest,
    *,
    cancel: threading.Event,
    on_progress: Progress,
    on_validator: OnValidator | None = None,
    log: Logger = _logger.info,
    stall_timeout_s: float = 30.0,
) -> FetchResult:
    """One attempt: resume ``req.dest``'s part file from the server, verify it, move it in place.

    Raises DownloadError (check ``retryable``). The part file stays for a later resume, except
    after a checksum or size mismatch; nothing appears under the final name unless verified.
    """
    validate_download_url(req.url)
    req.dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(req.dest)
    with _locked_part(part) as fd:
        if req.dest.exists():
            try:
                result = _existing_dest(req, cancel)
            finally:  # a part beside an existing final file can never be used
                part.unlink()
            log(f"{req.dest.name} is already complete ({result.size} bytes)")
            return result
        try:
            with _CancelWatch(cancel) as watch:
                attempt = _Attempt(req, fd, watch, on_progress, on_validator, log)
                return attempt.run(stall_timeout_s)
        except DownloadError as exc:
            log(f"failed: {exc.error_code}: {exc.detail}")
            # Wrong bytes are worth nothing, and an empty part is litter; both go.
            if exc.error_code in _DISCARD_PART or os.fstat(fd).st_size == 0:
                part.unlink(missing_ok=True)
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
            raise _cancelled()
        if on_attempt is not None:
            on_attempt(attempt)
        log(f"attempt {attempt} of {max_attempts}")
        try:
            return fetch(
                replace(req, if_range=validator),
                cancel=cancel,
                on_progress=on_progress,
                on_validator=remember,
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
            raise _cancelled()
        attempt += 1


class _Attempt:
    """One request against the locked part file ``fd``: resume, stream, verify, finish."""

    def __init__(
        self,
        req: FetchRequest,
        fd: int,
        watch: _CancelWatch,
        on_progress: Progress,
        on_validator: OnValidator | None,
        log: Logger,
    ) -> None:
        self.req, self.fd, self.watch, self.log = req, fd, watch, log
        self.on_progress, self.on_validator = on_progress, on_validator
        self.offset = os.fstat(fd).st_size
        if req.expected_size is not None and self.offset > req.expected_size:
            _truncate(fd, 0)
            self.offset = 0
        self.digest = _hash_prefix(fd, self.offset, watch.cancel)

    def run(self, stall_timeout_s: float) -> FetchResult:
        """Ask for the bytes from the part's end on, append them, then finish."""
        if self.offset and self.offset == self.req.expected_size:
            self.log(f"the part file already holds all {self.offset} bytes")
            return self.finish(self.offset, resumed_from=self.offset)
        headers = {**self.req.headers, "Accept-Encoding": "identity"}
        if self.offset:
            headers["Range"] = f"bytes={self.offset}-"
            if self.req.if_range:
                headers["If-Range"] = self.req.if_range
        if_range = " (If-Range)" if "If-Range" in headers else ""
        self.log(f"GET {_loggable(self.req.url)} from byte {self.offset}{if_range}")
        try:
            resp = _open(self.req.url, headers, stall_timeout_s, self.watch, self.log)
            try:
                if resp.status == 416:
                    return self.range_not_satisfiable(resp)
                start, total = self.accept(resp)
                size = self.stream(resp, start, total)
            finally:
                resp.close()
        except (Urllib3Error, HTTPException, OSError) as exc:
            raise _translate(exc, self.watch.cancel) from exc
        wanted = total if total is not None else self.req.expected_size
        if wanted is not None and size < wanted:
            raise DownloadError(
                f"the connection ended after {size} of {wanted} bytes",
                code="connection_error",
                retryable=True,
            )
        return self.finish(size, resumed_from=start, restarted=bool(self.offset and not start))

    def accept(self, resp: HTTPResponse) -> tuple[int, int | None]:
        """(first byte of the body, total size) of a usable answer, else a DownloadError."""
        status = resp.status
        if status not in {200, 206}:
            raise DownloadError(
                f"the server answered HTTP {status} {resp.reason}",
                code="http_error",
                retryable=status == 429 or status >= 500,
                upstream_status=status,
            )
        encoding = resp.headers.get("Content-Encoding", "identity").lower()
        if encoding != "identity":
            raise DownloadError(f"the server sent {encoding}-encoded content", code="bad_response")
        if status == 200:
            start, total = 0, _int(resp.headers.get("Content-Length"))
        else:
            first, total = _content_range(resp.headers.get("Content-Range"))
            if first != self.offset:
                detail = f"asked for bytes from {self.offset}, the server sent them from {first}"
                raise DownloadError(detail, code="bad_response")
            start = self.offset
        expected = self.req.expected_size
        if total is not None and expected is not None and total != expected:
            detail = f"the server's file has {total} bytes, {expected} were expected"
            raise DownloadError(detail, code="size_mismatch")
        if self.offset and not start:
            self.log("the server ignored the range: starting over from zero")
            _truncate(self.fd, 0)
            self.digest = hashlib.sha256()
        if self.on_validator is not None:
            self.on_validator(_validator(resp.headers), total)
        _check_disk(self.req, start, total)
        return start, total

    def range_not_satisfiable(self, resp: HTTPResponse) -> FetchResult:
        """416: the part is complete when the server's total equals it; else start over."""
        _, total = _content_range(resp.headers.get("Content-Range"))
        if self.offset and total == self.offset:
            self.log(f"the part file already holds all {self.offset} bytes")
            return self.finish(self.offset, resumed_from=self.offset)
        _truncate(self.fd, 0)
        raise DownloadError(
            f"the server cannot serve bytes from {self.offset} (its file has {total} bytes)",
            code="http_error",
            retryable=True,
            upstream_status=416,
            hint="The remote file changed; the next attempt starts over.",
        )

    def stream(self, resp: HTTPResponse, start: int, total: int | None) -> int:
        """Append the body to the part file, hashing it on the way; the size reached."""
        done = start
        self.on_progress(done, total)
        with _HashingWriter(self.fd, self.digest, start) as writer:
            while True:
                if self.watch.cancel.is_set():
                    raise _cancelled()
                buf = writer.take()
                count = resp.readinto(buf)
                if not count:
                    writer.give_back(buf)
                    return done
                writer.write(buf, count)
                done += count
                self.on_progress(done, total)

    def finish(self, size: int, *, resumed_from: int, restarted: bool = False) -> FetchResult:
        """Verify size and sha256, fsync, then move the part into place atomically."""
        req, part = self.req, part_path(self.req.dest)
        sha256 = self.digest.hexdigest()
        if req.expected_size is not None and size != req.expected_size:
            detail = f"got {size} bytes, {req.expected_size} were expected"
            raise DownloadError(detail, code="size_mismatch")
        if req.expected_sha256 is not None and sha256 != req.expected_sha256:
            detail = f"sha256 {sha256} does not match the expected {req.expected_sha256}"
            raise DownloadError(detail, code="checksum_mismatch")
        with _disk_errors():
            os.fsync(self.fd)
            os.replace(part, req.dest)
            dir_fd = os.open(req.dest.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self.log(f"completed: {size} bytes, sha256 {sha256}")
        return FetchResult(req.dest, size, sha256, resumed_from, restarted)


def _open(
    url: str, headers: Mapping[str, str], timeout_s: float, watch: _CancelWatch, log: Logger
) -> HTTPResponse:
    """GET ``url``, following http(s) redirects; credentials never leave the first origin."""
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            detail = f"refusing to follow a redirect to {parts.scheme or 'no scheme'!r}"
            raise DownloadError(detail, code="bad_response")
        conn_cls = HTTPSConnection if parts.scheme == "https" else HTTPConnection
        conn = conn_cls(parts.hostname, parts.port, timeout=timeout_s)
        watch.attach(conn)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", target, headers=headers, preload_content=False, decode_content=False)
        resp = conn.getresponse()
        location = resp.headers.get("Location")
        if resp.status not in _REDIRECTS or not location:
            return resp
        resp.close()
        next_url = urljoin(url, location)
        if _origin(next_url) != _origin(url):
            headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS}
        log(f"redirected ({resp.status}) to {_loggable(next_url)}")
        url = next_url
    raise DownloadError(f"more than {MAX_REDIRECTS} redirects", code="bad_response")


def _existing_dest(req: FetchRequest, cancel: threading.Event) -> FetchResult:
    """A final file that is already there: complete when it matches what is expected."""
    size = req.dest.stat().st_size
    unknown = req.expected_size is None and req.expected_sha256 is None
    if unknown or (req.expected_size is not None and size != req.expected_size):
        raise DownloadError(f"{req.dest.name} already exists", code="destination_exists")
    fd = os.open(req.dest, os.O_RDONLY)
    try:
        sha256 = _hash_prefix(fd, size, cancel).hexdigest()
    finally:
        os.close(fd)
    if req.expected_sha256 is not None and sha256 != req.expected_sha256:
        raise DownloadError(
            f"{req.dest.name} already exists with other content", code="destination_exists"
        )
    return FetchResult(req.dest, size, sha256, resumed_from=size, restarted=False)


def _check_disk(req: FetchRequest, start: int, total: int | None) -> None:
    """Refuse before writing when the rest of the file (plus a margin) does not fit."""
    size = total if total is not None else req.expected_size
    if req.force or size is None:
        return
    free = shutil.disk_usage(req.dest.parent).free
    needed = size - start + DISK_MARGIN_BYTES
    if free < needed:
        raise DownloadError(
            f"{size - start} more bytes (plus a {DISK_MARGIN_BYTES >> 20} MiB margin) do not fit"
            f" in the {free} bytes free under {req.dest.parent}",
            code="insufficient_disk_space",
        )


class _HashingWriter:
    """Writes buffers to the part file in the caller's thread and hashes them in another.

    A fixed pool of buffers bounds the lag; writeback is started every few MiB so that the
    final fsync does not have to flush the whole file at once.
    """

    def __init__(self, fd: int, digest: _Digest, position: int) -> None:
        self._fd = fd
        self._digest = digest
        self._free: queue.Queue[bytearray] = queue.Queue()
        self._full: queue.Queue[tuple[bytearray, int] | None] = queue.Queue()
        for _ in range(HASH_BUFFERS):
            self._free.put(bytearray(CHUNK_BYTES))
        with _disk_errors():
            os.lseek(fd, position, os.SEEK_SET)
        self._flushed = self._position = position
        self._thread = threading.Thread(target=self._hash_loop, name="sha256", daemon=True)

    def __enter__(self) -> _HashingWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._full.put(None)
        self._thread.join()

    def take(self) -> bytearray:
        return self._free.get()

    def give_back(self, buf: bytearray) -> None:
        self._free.put(buf)

    def write(self, buf: bytearray, count: int) -> None:
        view = memoryview(buf)[:count]
        with _disk_errors():
            while view:
                view = view[os.write(self._fd, view) :]
            self._position += count
            if self._position - self._flushed >= WRITEBACK_BYTES:
                self._start_writeback()
        self._full.put((buf, count))

    def _start_writeback(self) -> None:
        # POSIX_FADV_DONTNEED starts asynchronous writeback of dirty pages on Linux; pages
        # still dirty or under writeback stay cached.
        if hasattr(os, "posix_fadvise"):
            length = self._position - self._flushed
            os.posix_fadvise(self._fd, self._flushed, length, os.POSIX_FADV_DONTNEED)
        self._flushed = self._position

    def _hash_loop(self) -> None:
        while (item := self._full.get()) is not None:
            buf, count = item
            self._digest.update(memoryview(buf)[:count])
            self._free.put(buf)


class _CancelWatch:
    """Shuts the current connection down when ``cancel`` is set, unblocking any read."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel
        self._conn: HTTPConnection | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="cancel-watch", daemon=True)

    def __enter__(self) -> _CancelWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        if self._conn is not None:
            self._conn.close()

    def attach(self, conn: HTTPConnection) -> None:
        """Connect ``conn`` now, so that a cancel from here on can reach its socket."""
        if self._conn is not None:
            self._conn.close()
        self._conn = conn
        conn.connect()
        if self.cancel.is_set():
            raise _cancelled()

    def _watch(self) -> None:
        # Polls ``cancel`` (a plain Event has no callbacks); ``_done`` ends the wait at once.
        while not self._done.wait(0.1):
            if self.cancel.is_set():
                conn = self._conn
                sock = conn.sock if conn is not None else None
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                return


@contextlib.contextmanager
def _locked_part(part: Path) -> Iterator[int]:
    """Open (creating) and exclusively lock the part file; the lock goes with the fd."""
    fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise DownloadError(
                f"{part.name} is being written by another download", code="already_downloading"
            ) from exc
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def _disk_errors() -> Iterator[None]:
    """Local file-system failures, as DownloadErrors (a full disk is not retryable)."""
    try:
        yield
    except OSError as exc:
        code = "insufficient_disk_space" if exc.errno in {errno.ENOSPC, errno.EDQUOT} else None
        detail = f"writing the file failed: {exc.strerror}"
        raise DownloadError(detail, code=code or "write_error") from exc


def _translate(exc: BaseException, cancel: threading.Event) -> DownloadError:
    """Map a network failure (urllib3, http.client, socket) into a DownloadError."""
    if cancel.is_set():
        return _cancelled()
    if isinstance(exc, (NewConnectionError, ConnectTimeoutError)):
        return DownloadError(f"cannot connect: {exc}", code="connection_error", retryable=True)
    if isinstance(exc, (ReadTimeoutError, TimeoutError)):
        return DownloadError("no data arrived in time", code="stalled", retryable=True)
    if isinstance(exc, (SSLError, ssl.SSLError)):
        return DownloadError(f"TLS failed: {exc}", code="tls_error")
    reason = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    return DownloadError(
        f"the connection failed: {reason}", code="connection_error", retryable=True
    )


def _cancelled() -> DownloadError:
    return DownloadError("the download was cancelled", code="cancelled")


def _hash_prefix(fd: int, length: int, cancel: threading.Event) -> _Digest:
    """sha256 of the first ``length`` bytes of ``fd`` (a resumed part is re-hashed once)."""
    digest = hashlib.sha256()
    view = memoryview(bytearray(CHUNK_BYTES))
    position = 0
    while position < length:
        if cancel.is_set():  # about a second per GB: a big part must stay cancellable
            raise _cancelled()
        count = os.preadv(fd, [view[: min(CHUNK_BYTES, length - position)]], position)
        if not count:
            break
        digest.update(view[:count])
        position += count
    return digest


def _truncate(fd: int, size: int) -> None:
    with _disk_errors():
        os.ftruncate(fd, size)


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total) of a Content-Range header, None where absent or '*'."""
    match = _CONTENT_RANGE.match((value or "").strip())
    if match is None:
        return None, None
    first, total = match.groups()
    return _int(first), _int(total)


def _validator(headers: Mapping[str, str]) -> str | None:
    """A strong ETag, else Last-Modified: what If-Range may carry (RFC 9110 §13.1.5)."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified")


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def _loggable(url: str) -> str:
    """The URL without credentials or query (CDN URLs carry signatures there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
