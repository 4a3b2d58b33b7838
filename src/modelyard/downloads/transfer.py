"""The URL engine's internals: one HTTP attempt against a locked part file.

Bytes go through the standard library's ``http.client``: its public ``HTTPResponse.readinto``
reads from the socket straight into a reused 4 MiB buffer. (urllib3's ``readinto`` is a
``read()`` plus a copy and reached only 0.5 GB/s where this reaches 2 GB/s on loopback; httpx
is slower still. docs/BENCHMARKS.md has the numbers.) ``part_writer`` hashes and writes the
buffers off this thread. A watcher thread shuts the socket down on cancel, so a read blocked
on a silent server returns at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import re
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from http.client import HTTPConnection, HTTPException, HTTPResponse, HTTPSConnection
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from modelyard.downloads.engine_types import (
    CHUNK_BYTES,
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
from modelyard.downloads.part_record import PartRecord, read_record, remove_record, write_record
from modelyard.downloads.part_writer import Digest, PartWriter, disk_errors

MIN_READ_BYTES = 64 << 10
# readinto() waits until its buffer is full, so reads start small and grow while they are
# quick, and shrink again when one takes about this long: progress keeps moving on a slow
# link without giving up whole-buffer reads on a fast one.
READ_PACE_S = 0.1
MAX_REDIRECTS = 10
_CONTENT_RANGE = re.compile(r"^bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)$")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


class Attempt:
    """One request against the locked part file ``fd``: resume, stream, verify, finish."""

    def __init__(
        self,
        req: FetchRequest,
        fd: int,
        watch: CancelWatch,
        on_progress: Progress,
        on_validator: OnValidator | None,
        on_stage: OnStage | None,
        log: Logger,
    ) -> None:
        self.req, self.fd, self.watch, self.log = req, fd, watch, log
        self.on_progress, self.on_validator, self.on_stage = on_progress, on_validator, on_stage
        self.offset = os.fstat(fd).st_size
        self.record = read_record(req.dest)
        if self.offset and not self.owns_part():
            log("the part file is not this download's: starting over from zero")
            truncate(fd, 0)
            self.offset = 0
        if req.expected_size is not None and self.offset > req.expected_size:
            truncate(fd, 0)
            self.offset = 0
        self.digest = hash_prefix(fd, self.offset, watch.cancel)

    def owns_part(self) -> bool:
        """Whether the part's bytes came from this URL, with the validator the task knows."""
        record, known = self.record, self.req.if_range
        if record is None or record.url != self.req.url:
            return False
        return known is None or record.validator == known

    def run(self, stall_timeout_s: float) -> FetchResult:
        """Ask for the bytes from the part's end on, append them, then finish."""
        if self.offset and self.offset == self.req.expected_size:
            self.log(f"the part file already holds all {self.offset} bytes")
            return self.finish(self.offset, resumed_from=self.offset)
        headers = {**self.req.headers, "Accept-Encoding": "identity"}
        if self.offset:
            assert self.record is not None  # owns_part() kept the bytes
            headers["Range"] = f"bytes={self.offset}-"
            if self.record.validator:
                headers["If-Range"] = self.record.validator
        if_range = " (If-Range)" if "If-Range" in headers else ""
        self.log(f"GET {loggable(self.req.url)} from byte {self.offset}{if_range}")
        try:
            resp = open_response(self.req.url, headers, stall_timeout_s, self.watch, self.log)
            try:
                if resp.status == 416:
                    return self.range_not_satisfiable(resp)
                start, total = self.accept(resp)
                size = self.stream(resp, start, total)
            finally:
                resp.close()
        except (HTTPException, OSError) as exc:
            raise translate(exc, self.watch.cancel) from exc
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
        encoding = (resp.getheader("Content-Encoding") or "identity").lower()
        if encoding != "identity":
            raise DownloadError(f"the server sent {encoding}-encoded content", code="bad_response")
        validator = validator_of(resp)
        if status == 200:
            start, total = 0, to_int(resp.getheader("Content-Length"))
        else:
            first, total = content_range(resp.getheader("Content-Range"))
            if first != self.offset:
                detail = f"asked for bytes from {self.offset}, the server sent them from {first}"
                raise DownloadError(detail, code="bad_response")
            self.check_same_file(validator)
            start = self.offset
        self.check_size(total)
        if self.offset and not start:
            self.log("the server ignored the range: starting over from zero")
            truncate(self.fd, 0)
            self.digest = hashlib.sha256()
        if not start:  # whose bytes follow, recorded before the first of them is written
            self.record = PartRecord(self.req.url, validator)
            with disk_errors():
                write_record(self.req.dest, self.record)
        if self.on_validator is not None:
            self.on_validator(validator, total)
        check_disk(self.req, start, total)
        return start, total

    def check_same_file(self, validator: str | None) -> None:
        """A 206 must come from the file the part holds: a server that answers the range
        with another validator than If-Range named has a new file, so start over."""
        recorded = self.record.validator if self.record is not None else None
        if recorded is None or validator is None or validator == recorded:
            return
        truncate(self.fd, 0)
        raise DownloadError(
            f"the server sent part of another version of the file ({validator}, not {recorded})",
            code="http_error",
            retryable=True,
            upstream_status=206,
            hint="The remote file changed; the next attempt starts over.",
        )

    def check_size(self, total: int | None) -> None:
        """Refuse a file of the wrong size, or a bigger one than ``max_bytes``, up front."""
        expected, limit = self.req.expected_size, self.req.max_bytes
        if total is not None and expected is not None and total != expected:
            detail = f"the server's file has {total} bytes, {expected} were expected"
            raise DownloadError(detail, code="size_mismatch")
        if total is not None and limit is not None and total > limit:
            detail = f"the file has {total} bytes, more than the {limit} allowed"
            raise DownloadError(detail, code="too_large")

    def range_not_satisfiable(self, resp: HTTPResponse) -> FetchResult:
        """416: the part is complete when the server's total equals it; else start over."""
        _, total = content_range(resp.getheader("Content-Range"))
        if self.offset and total == self.offset:
            self.log(f"the part file already holds all {self.offset} bytes")
            return self.finish(self.offset, resumed_from=self.offset)
        truncate(self.fd, 0)
        raise DownloadError(
            f"the server cannot serve bytes from {self.offset} (its file has {total} bytes)",
            code="http_error",
            retryable=True,
            upstream_status=416,
            hint="The remote file changed; the next attempt starts over.",
        )

    def stream(self, resp: HTTPResponse, start: int, total: int | None) -> int:
        """Append the body to the part file, hashing it on the way; the size reached."""
        done, size = start, MIN_READ_BYTES
        limit = self.req.max_bytes
        self.on_progress(done, total)
        with PartWriter(part_path(self.req.dest), self.fd, self.digest, start) as writer:
            while True:
                buf = writer.take()
                view, filled = memoryview(buf), 0
                try:
                    while filled < CHUNK_BYTES:  # whole buffers: O_DIRECT writes whole blocks
                        if self.watch.cancel.is_set():
                            raise cancelled()
                        began = time.monotonic()
                        count = resp.readinto(view[filled : filled + size])
                        size = next_read_size(size, count, time.monotonic() - began)
                        if not count:
                            break
                        filled += count
                        done += count
                        if limit is not None and done > limit:  # a server that sent no length
                            detail = f"more than {limit} bytes arrived"
                            raise DownloadError(detail, code="too_large")
                        self.on_progress(done, total)
                finally:  # what arrived is kept, even when the connection failed midway
                    view.release()
                    if filled:
                        writer.submit(buf, filled)
                    else:
                        writer.give_back(buf)
                if filled < CHUNK_BYTES:
                    return done

    def finish(self, size: int, *, resumed_from: int, restarted: bool = False) -> FetchResult:
        """Verify size and sha256, fsync, then move the part into place atomically."""
        if self.on_stage is not None:
            self.on_stage("verifying")
        req, part = self.req, part_path(self.req.dest)
        sha256 = self.digest.hexdigest()
        if req.expected_size is not None and size != req.expected_size:
            detail = f"got {size} bytes, {req.expected_size} were expected"
            raise DownloadError(detail, code="size_mismatch")
        if req.expected_sha256 is not None and sha256 != req.expected_sha256:
            detail = f"sha256 {sha256} does not match the expected {req.expected_sha256}"
            raise DownloadError(detail, code="checksum_mismatch")
        with disk_errors():
            os.fsync(self.fd)
            os.replace(part, req.dest)
            remove_record(req.dest)
            dir_fd = os.open(req.dest.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self.log(f"completed: {size} bytes, sha256 {sha256}")
        return FetchResult(req.dest, size, sha256, resumed_from, restarted)


def next_read_size(size: int, count: int, took_s: float) -> int:
    """Halve reads that block too long (a slow link), double quick full ones back up."""
    if took_s > READ_PACE_S and size > MIN_READ_BYTES:
        return size // 2
    if took_s < READ_PACE_S / 4 and count == size and size < CHUNK_BYTES:
        return size * 2
    return size


def open_response(
    url: str, headers: Mapping[str, str], timeout_s: float, watch: CancelWatch, log: Logger
) -> HTTPResponse:
    """GET ``url``, following http(s) redirects; credentials never leave the first origin."""
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            detail = f"refusing to follow a redirect to {parts.scheme or 'no scheme'!r}"
            raise DownloadError(detail, code="bad_response")
        if parts.scheme == "https":
            conn: HTTPConnection = HTTPSConnection(
                parts.hostname, parts.port, timeout=timeout_s, context=_tls_context()
            )
        else:
            conn = HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
        watch.attach(conn)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", target, headers=dict(headers))
        resp = conn.getresponse()
        location = resp.getheader("Location")
        if resp.status not in _REDIRECTS or not location:
            return resp
        resp.close()
        next_url = urljoin(url, location)
        if _origin(next_url) != _origin(url):
            headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS}
        log(f"redirected ({resp.status}) to {loggable(next_url)}")
        url = next_url
    raise DownloadError(f"more than {MAX_REDIRECTS} redirects", code="bad_response")


def existing_dest(
    req: FetchRequest, cancel: threading.Event, on_stage: OnStage | None
) -> FetchResult:
    """A final file that is already there: complete when it matches what is expected."""
    size = req.dest.stat().st_size
    unknown = req.expected_size is None and req.expected_sha256 is None
    if unknown or (req.expected_size is not None and size != req.expected_size):
        raise DownloadError(f"{req.dest.name} already exists", code="destination_exists")
    if on_stage is not None:
        on_stage("verifying")
    fd = os.open(req.dest, os.O_RDONLY)
    try:
        sha256 = hash_prefix(fd, size, cancel).hexdigest()
    finally:
        os.close(fd)
    if req.expected_sha256 is not None and sha256 != req.expected_sha256:
        raise DownloadError(
            f"{req.dest.name} already exists with other content", code="destination_exists"
        )
    return FetchResult(req.dest, size, sha256, resumed_from=size, restarted=False)


def check_disk(req: FetchRequest, start: int, total: int | None) -> None:
    """Refuse before writing when the rest of the file (plus a margin) does not fit."""
    size = total if total is not None else req.expected_size
    if req.force or size is None:
        return
    free = shutil.disk_usage(req.dest.parent).free
    needed = size - start + req.disk_margin
    if free < needed:
        raise DownloadError(
            f"{size - start} more bytes (plus a {req.disk_margin >> 20} MiB margin) do not fit"
            f" in the {free} bytes free under {req.dest.parent}",
            code="insufficient_disk_space",
        )


class CancelWatch:
    """Shuts the current connection down when ``cancel`` is set, unblocking any read."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel
        self._conn: HTTPConnection | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="cancel-watch", daemon=True)

    def __enter__(self) -> CancelWatch:
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
        try:
            conn.connect()
        except ssl.SSLError as exc:
            raise translate(exc, self.cancel) from exc
        except OSError as exc:  # refused, unreachable, DNS, or no answer to the SYN in time
            if self.cancel.is_set():
                raise cancelled() from exc
            detail = f"cannot connect to {conn.host}:{conn.port}: {exc}"
            raise DownloadError(detail, code="connection_error", retryable=True) from exc
        if self.cancel.is_set():
            raise cancelled()

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
def locked_part(part: Path) -> Iterator[int]:
    """Open (creating) and exclusively lock the part file; the lock goes with the fd."""
    fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            # Retryable: the other writer may be a worker of a server that just died.
            raise DownloadError(
                f"{part.name} is being written by another download",
                code="already_downloading",
                retryable=True,
            ) from exc
        yield fd
    finally:
        os.close(fd)


def translate(exc: BaseException, cancel: threading.Event) -> DownloadError:
    """Map a network failure (http.client, socket, ssl) into a DownloadError."""
    if cancel.is_set():
        return cancelled()
    if isinstance(exc, ssl.SSLError):  # before TimeoutError: both are OSErrors
        return DownloadError(f"TLS failed: {exc}", code="tls_error")
    if isinstance(exc, TimeoutError):
        return DownloadError("no data arrived in time", code="stalled", retryable=True)
    reason = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    return DownloadError(
        f"the connection failed: {reason}", code="connection_error", retryable=True
    )


def hash_prefix(fd: int, length: int, cancel: threading.Event) -> Digest:
    """sha256 of the first ``length`` bytes of ``fd`` (a resumed part is re-hashed once)."""
    digest = hashlib.sha256()
    view = memoryview(bytearray(CHUNK_BYTES))
    position = 0
    while position < length:
        if cancel.is_set():  # about a second per GB: a big part must stay cancellable
            raise cancelled()
        count = os.preadv(fd, [view[: min(CHUNK_BYTES, length - position)]], position)
        if not count:
            break
        digest.update(view[:count])
        position += count
    return digest


def truncate(fd: int, size: int) -> None:
    with disk_errors():
        os.ftruncate(fd, size)


def content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total) of a Content-Range header, None where absent or '*'."""
    match = _CONTENT_RANGE.match((value or "").strip())
    if match is None:
        return None, None
    first, total = match.groups()
    return to_int(first), to_int(total)


def validator_of(resp: HTTPResponse) -> str | None:
    """A strong ETag, else Last-Modified: what If-Range may carry (RFC 9110 §13.1.5)."""
    etag = resp.getheader("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return resp.getheader("Last-Modified")


def to_int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The system's CA certificates, loaded once (a context is safe to share across threads)."""
    return ssl.create_default_context()


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def loggable(url: str) -> str:
    """The URL without credentials or query (CDN URLs carry signatures there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
