"""A real Range-capable HTTP file server for download tests, with fault knobs and a request log.

Serves the files under ``root`` like nginx does: ETag and Last-Modified, ``Range`` → 206 with
Content-Range, ``If-Range`` honoured, 416 past the end, HEAD. Faults are set from the test
and apply to the next ``times`` matching requests (``times=None``: to all of them): cut the
connection, ignore Range, stall, answer an error status, corrupt a byte, or throttle.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO, Literal
from urllib.parse import quote, unquote, urlsplit

import pytest

FaultKind = Literal["cut", "ignore_range", "stall", "status", "corrupt", "throttle"]
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CHUNK = 64 * 1024


@dataclass
class Fault:
    """Misbehaviour for requests of ``path`` (None: any path)."""

    kind: FaultKind
    path: str | None = None
    times: int | None = 1
    after_bytes: int = 0  # cut / stall: body bytes sent first
    seconds: float = 0.0  # stall: how long nothing is sent
    status: int = 500  # status: the answer
    offset: int | None = None  # corrupt: file offset of the flipped byte (None: the middle)
    rate: int = 0  # throttle: body bytes per second


@dataclass
class RequestRecord:
    """One request as the server saw it, and what it answered."""

    method: str
    path: str
    headers: dict[str, str]
    status: int = 0
    sent: int = 0

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


@dataclass
class _Plan:
    """What one response does: which bytes, and which faults shape the body."""

    faults: list[Fault] = field(default_factory=list)

    def get(self, kind: FaultKind) -> Fault | None:
        return next((f for f in self.faults if f.kind == kind), None)


class FileServer:
    """Serve ``root`` on 127.0.0.1:<free port>; ``host_alias`` names it in URLs (a 'CDN')."""

    def __init__(self, root: Path, *, host_alias: str = "127.0.0.1") -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.host_alias = host_alias
        self.requests: list[RequestRecord] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        serve = self._httpd.serve_forever
        self._thread = threading.Thread(target=serve, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host_alias}:{self.port}"

    def url_for(self, name: str) -> str:
        return f"{self.url}/{quote(name)}"

    def add_file(self, name: str, data: bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def start(self) -> FileServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Fault knobs -----------------------------------------------------------------------

    def cut(self, after_bytes: int, *, path: str | None = None, times: int | None = 1) -> None:
        """Close the connection after ``after_bytes`` body bytes."""
        self._add(Fault("cut", path, times, after_bytes=after_bytes))

    def ignore_range(self, *, path: str | None = None, times: int | None = None) -> None:
        """Answer 200 with the whole file even when a Range was asked for."""
        self._add(Fault("ignore_range", path, times))

    def stall(
        self, after_bytes: int, seconds: float, *, path: str | None = None, times: int | None = 1
    ) -> None:
        """Send ``after_bytes`` body bytes, then nothing for ``seconds``, then the rest."""
        self._add(Fault("stall", path, times, after_bytes=after_bytes, seconds=seconds))

    def fail(self, status: int, *, path: str | None = None, times: int | None = 1) -> None:
        """Answer ``status`` (with a short text body) instead of the file."""
        self._add(Fault("status", path, times, status=status))

    def corrupt(
        self, *, path: str | None = None, times: int | None = None, offset: int | None = None
    ) -> None:
        """Serve the file with one byte flipped (at ``offset``, else in the middle)."""
        self._add(Fault("corrupt", path, times, offset=offset))

    def throttle(
        self, bytes_per_s: int, *, path: str | None = None, times: int | None = None
    ) -> None:
        """Send bodies at about ``bytes_per_s`` (a slow link, so a test can act mid-way)."""
        self._add(Fault("throttle", path, times, rate=bytes_per_s))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _take_faults(self, path: str) -> _Plan:
        """The faults that shape this response; each use counts against its ``times``.

        A status fault answers alone, so the other faults stay for the next request.
        """
        with self._lock:
            matching = [f for f in self._faults if f.path in (None, path)]
            status = [f for f in matching if f.kind == "status"]
            plan = _Plan(status[:1] or matching)
            for fault in plan.faults:
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
        return plan

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)


def _make_handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_FileHandler):
        owner = server

    return Handler


class _FileHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: FileServer

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError):  # clients that hang up are expected here
            super().handle()

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is ``FileServer.requests``."""

    def _serve(self, *, head: bool) -> None:
        name = unquote(urlsplit(self.path).path).lstrip("/")
        record = RequestRecord(self.command, name, dict(self.headers.items()))
        self.owner._record(record)
        plan = self.owner._take_faults(name)
        status_fault = plan.get("status")
        if status_fault is not None:
            self._send_text(record, status_fault.status, "injected failure\n")
            return
        path = (self.owner.root / name).resolve()
        if not path.is_file() or not path.is_relative_to(self.owner.root.resolve()):
            self._send_text(record, 404, "not found\n")
            return
        size = path.stat().st_size
        etag = f'"{path.stat().st_mtime_ns:x}-{size:x}"'
        modified = formatdate(path.stat().st_mtime, usegmt=True)
        first, last, status = 0, size - 1, 200
        asked = self.headers.get("Range")
        fresh = self.headers.get("If-Range") in (None, etag, modified)
        if asked and fresh and plan.get("ignore_range") is None:
            parsed = _parse_range(asked, size)
            if parsed == "unsatisfiable":
                self._send_text(record, 416, "", {"Content-Range": f"bytes */{size}"})
                return
            if parsed is not None:
                (first, last), status = parsed, 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(last - first + 1))
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", modified)
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.end_headers()
        record.status = status
        if not head:
            with path.open("rb") as fh, contextlib.suppress(OSError):
                self._send_body(record, fh, first, last - first + 1, size, plan)

    def _send_body(
        self, record: RequestRecord, fh: BinaryIO, first: int, count: int, size: int, plan: _Plan
    ) -> None:
        cut, stall, corrupt = plan.get("cut"), plan.get("stall"), plan.get("corrupt")
        throttle = plan.get("throttle")
        if cut is None and stall is None and corrupt is None and throttle is None:
            record.sent = self.connection.sendfile(fh, first, count)
            return
        flip_at = None
        if corrupt is not None:
            flip_at = corrupt.offset if corrupt.offset is not None else size // 2
        limit = count if cut is None else min(count, cut.after_bytes)
        fh.seek(first)
        for chunk_start, chunk in _chunks(fh, first, limit):
            if flip_at is not None and chunk_start <= flip_at < chunk_start + len(chunk):
                at = flip_at - chunk_start
                chunk = chunk[:at] + bytes([chunk[at] ^ 0xFF]) + chunk[at + 1 :]
            sent_before = record.sent
            if stall is not None and sent_before <= stall.after_bytes < sent_before + len(chunk):
                head = stall.after_bytes - sent_before
                self.wfile.write(chunk[:head])
                record.sent += head
                self.owner._stopping.wait(stall.seconds)
                chunk = chunk[head:]
            self.wfile.write(chunk)
            record.sent += len(chunk)
            if throttle is not None and self.owner._stopping.wait(len(chunk) / throttle.rate):
                return
        if cut is not None and limit < count:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send_text(
        self, record: RequestRecord, status: int, text: str, headers: dict[str, str] | None = None
    ) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        record.status = status


def _chunks(fh: BinaryIO, first: int, limit: int) -> Iterator[tuple[int, bytes]]:
    """(file offset, bytes) pieces of the next ``limit`` bytes of ``fh``."""
    position = first
    while position < first + limit:
        chunk = fh.read(min(_CHUNK, first + limit - position))
        if not chunk:
            return
        yield position, chunk
        position += len(chunk)


def _parse_range(value: str, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """One ``bytes=`` range as (first, last), 'unsatisfiable', or None to ignore it."""
    match = _RANGE.match(value.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    start, end = match.groups()
    if start == "":
        length = int(end)
        return (max(0, size - length), size - 1) if length else "unsatisfiable"
    first = int(start)
    if first >= size:
        return "unsatisfiable"
    last = min(int(end), size - 1) if end else size - 1
    return None if last < first else (first, last)


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[FileServer]:
    """A started FileServer over ``tmp_path / 'www'``, stopped after the test."""
    server = FileServer(tmp_path / "www").start()
    try:
        yield server
    finally:
        server.stop()
