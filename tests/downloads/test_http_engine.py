"""The URL engine against a real Range-capable HTTP server, fault by fault."""

from __future__ import annotations

import fcntl
import hashlib
import random
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route

from modelyard.downloads.http_engine import (
    DownloadError,
    FetchRequest,
    FetchResult,
    backoff_delay,
    discard_part,
    fetch,
    fetch_with_retries,
    part_path,
)
from modelyard.downloads.part_record import PartRecord, write_record
from modelyard.errors import InvalidInput
from tests.fakes.fileserver import FileServer
from tests.support.servers import ServerThread, black_hole, closed_port

MiB = 1 << 20
HANG_GUARD_S = 30  # only to stop a broken test from hanging; never a speed assertion


@dataclass
class Payload:
    name: str
    data: bytes
    url: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class Watcher:
    """Collects what a fetch reports: progress, validators, attempts and log lines."""

    progress: list[tuple[int, int | None]] = field(default_factory=list)
    validators: list[tuple[str | None, int | None]] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def on_progress(self, downloaded: int, total: int | None) -> None:
        with self.changed:
            self.progress.append((downloaded, total))
            self.changed.notify_all()

    def wait_for_bytes(self, count: int) -> bool:
        """Block until the fetch reports ``count`` bytes on disk (False on the hang guard)."""

        def reached() -> bool:
            return bool(self.progress) and self.progress[-1][0] >= count

        with self.changed:
            return self.changed.wait_for(reached, timeout=HANG_GUARD_S)

    def on_validator(self, validator: str | None, total: int | None) -> None:
        self.validators.append((validator, total))

    def fetch(self, req: FetchRequest, **kwargs: object) -> FetchResult:
        return fetch(
            req,
            cancel=self.cancel,
            on_progress=self.on_progress,
            on_validator=self.on_validator,
            log=self.log.append,
            **kwargs,  # type: ignore[arg-type]
        )

    def fetch_with_retries(self, req: FetchRequest, **kwargs: object) -> FetchResult:
        options: dict[str, object] = {"max_attempts": 5, "sleep": lambda _: None}
        return fetch_with_retries(
            req,
            cancel=self.cancel,
            on_progress=self.on_progress,
            on_attempt=self.attempts.append,
            on_validator=self.on_validator,
            log=self.log.append,
            **(options | kwargs),  # type: ignore[arg-type]
        )


def random_bytes(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def payload(file_server: FileServer) -> Payload:
    """A 5 MiB (and a bit) file on the server: several reads and buffers, cuts land mid-way."""
    data = random_bytes(5 * MiB + 1234)
    file_server.add_file("model.gguf", data)
    return Payload("model.gguf", data, file_server.url_for("model.gguf"))


@pytest.fixture
def watcher() -> Watcher:
    return Watcher()


def request(payload: Payload, dest: Path, **kwargs: object) -> FetchRequest:
    return FetchRequest(url=payload.url, dest=dest, **kwargs)  # type: ignore[arg-type]


def earlier_part(payload: Payload, dest: Path, data: bytes, validator: str | None = None) -> None:
    """A part file as an earlier fetch of ``payload``'s URL left it: bytes and their record."""
    part_path(dest).write_bytes(data)
    write_record(dest, PartRecord(payload.url, validator))


def gets(server: FileServer) -> list[str | None]:
    """The Range header of every GET the server saw."""
    return [r.header("Range") for r in server.requests if r.method == "GET"]


def test_downloads_verifies_and_moves_into_place(
    payload: Payload, file_server: FileServer, watcher: Watcher, tmp_path: Path
) -> None:
    dest = tmp_path / "models" / "model.gguf"
    result = watcher.fetch(request(payload, dest, expected_sha256=payload.sha256.upper()))

    assert dest.read_bytes() == payload.data
    assert (result.size, result.sha256, result.resumed_from, result.restarted) == (
        len(payload.data),
        payload.sha256,
        0,
        False,
    )
    assert not part_path(dest).exists()
    assert watcher.progress[-1] == (len(payload.data), len(payload.data))
    downloaded = [done for done, _ in watcher.progress]
    assert downloaded == sorted(downloaded)
    etag = file_server.requests[0].header("If-Range")
    assert etag is None and watcher.validators[0][0] is not None
    assert watcher.validators[0][1] == len(payload.data)
    assert any("completed" in line for line in watcher.log)


def test_connection_cut_three_times_resumes_to_the_right_file(
    payload: Payload, file_server: FileServer, watcher: Watcher, tmp_path: Path
) -> None:
    file_server.cut(after_bytes=1_500_000, times=3)
    dest = tmp_path / "model.gguf"

    result = watcher.fetch_with_retries(request(payload, dest, expected_sha256=payload.sha256))

    assert dest.read_bytes() == payload.data and result.sha256 == payload.sha256
    assert watcher.attempts == [1, 2, 3, 4]
    assert gets(file_server) == [None, "bytes=1500000-", "bytes=3000000-", "bytes=4500000-"]
    validator = watcher.validators[0][0]
    resumed = [r for r in file_server.requests if r.header("Range")]
    assert validator and all(r.header("If-Range") == validator for r in resumed)
    assert result.resumed_from == 4_500_000
    assert sum("connection_error" in line for line in watcher.log) == 3


@pytest.mark.parametrize(
    ("fault", "if_range"),
    [
        pytest.param("ignore_range", None, id="server-ignores-range"),
        pytest.param(None, '"an-old-etag"', id="file-changed-since"),
    ],
)
def test_a_200_answer_to_a_range_restarts_from_zero(
    payload: Payload,
    file_server: FileServer,
    watcher: Watcher,
    tmp_path: Path,
    fault: str | None,
    if_range: str | None,
) -> None:
    if fault == "ignore_range":
        file_server.ignore_range()
    dest = tmp_path / "model.gguf"
    earlier_part(payload, dest, random_bytes(2 * MiB, seed=99), if_range)  # stale bytes

    result = watcher.fetch(
        request(payload, dest, expected_sha256=payload.sha256, if_range=if_range)
    )

    assert result.restarted and result.resumed_from == 0
    assert dest.read_bytes() == payload.data
    assert file_server.requests[0].header("Range") == f"bytes={2 * MiB}-"
    assert file_server.requests[0].status == 200


def test_a_stall_is_retried_and_completes(
    payload: Payload, file_server: FileServer, watcher: Watcher, tmp_path: Path
) -> None:
    file_server.stall(after_bytes=1_500_000, seconds=HANG_GUARD_S)
    dest = tmp_path / "model.gguf"

    result = watcher.fetch_with_retries(
        request(payload, dest, expected_sha256=payload.sha256), stall_timeout_s=1.0
    )

    assert result.sha256 == payload.sha256 and watcher.attempts == [1, 2]
    assert any("stalled" in line for line in watcher.log)
    assert gets(file_server)[1] is not None  # the retry resumed instead of starting over


def test_404_fails_at_once_and_leaves_nothing(
    file_server: FileServer, watcher: Watcher, tmp_path: Path
) -> None:
    dest = tmp_path / "missing.gguf"
    req = FetchRequest(url=file_server.url_for("missing.gguf"), dest=dest)

    with pytest.raises(DownloadError) as caught:
        watcher.fetch_with_retries(req)

    assert caught.value.error_code == "http_error" and caught.value.upstream_status == 404
    assert not caught.value.retryable
    assert watcher.attempts == [1] and len(file_server.requests) == 1
    assert not dest.exists() and not part_path(dest).exists()


def test_server_errors_are_retried_with_backoff(
    payload: Payload, file_server: FileServer, watcher: Watcher, tmp_path: Path
) -> None:
    file_server.fail(503, times=2)
    delays: list[float] = []

    result = watcher.fetch_with_retries(
        request(payload, tmp_path / "model.gguf"),
        sleep=delays.append,
        rng=lambda: 0.5,
        backoff_base_s=2.0,
        backoff_cap_s=3.0,
    )

    assert result.sha256 == payload.sha256 and watcher.attempts == [1, 2, 3]
    assert delays == [1.0, 1.5]  # half of min(cap, base * 2**(n-1)): full jitter at 0.5


def test_retries_stop_after_max_attempts(
    payload: Payload, file_server: FileServer, watcher: Watcher, tmp_path: Path
) -> None:
    file_server.fail(500, times=None)

    with pytest.raises(DownloadError) as caught:
        watcher.fetch_with_retries(request(payload, tmp_path / "model.gguf"), max_attempts=3)

    assert caught.value.retryable and caught.value.upstream_status == 500
    assert watcher.attempts == [1, 2, 3] and len(file_server.requests) == 3


def test_backoff_delay_is_capped_full_jitter() -> None:
    assert backoff_delay(1, 1.0, 60.0, rng=lambda: 1.0) == 1.0
    assert backoff_delay(4, 1.0, 60.0, rng=lambda: 1.0) == 8.0
    assert backoff_delay(20, 1.0, 60.0, rng=lambda: 1.0) == 60.0
    assert backoff_delay(3, 1.0, 60.0, rng=lambda: 0.0) == 0.0


def test_checksum_mismatch_fails_and_leaves_nothing(
    payload: Payload, file_server: FileServer, watcher: Watcher, tmp_path: Path
) -> None:
    file_server.corrupt()
    dest = tmp_path / "model.gguf"

    with pytest.raises(DownloadError) as caught:
        watcher.fetch_with_retries(request(payload, dest, expected_sha256=payload.sha256))

    assert caught.value.error_code == "checksum_mismatch" and not caught.value.retryable
    assert watcher.attempts == [1]
    assert not dest.exists() and not part_path(dest).exists()


def test_a_size_mismatch_is_refused_and_drops_the_part(
    payload: Payload, file_server: FileServer, watcher: Watcher, tmp_path: Path
) -> None:
    dest = tmp_path / "model.gguf"
    earlier_part(payload, dest, payload.data[:MiB])

    with pytest.raises(DownloadError) as caught:
        watcher.fetch(request(payload, dest, expected_size=len(payload.data) + 1))

    assert caught.value.error_code == "size_mismatch" and not caught.value.retryable
    assert not dest.exists() and not part_path(dest).exists()


def test_an_existing_complete_file_completes_without_a_request(
    payload: Payload, file_server: FileServer, watcher: Watcher, tmp_path: Path
) -> None:
    dest = tmp_path / "model.gguf"
    dest.write_bytes(payload.data)
    req = request(payload, dest, expected_size=len(payload.data), expected_sha256=payload.sha256)

    result = watcher.fetch(req)

    assert result.sha256 == payload.sha256 and result.size == len(payload.data)
    assert file_server.requests == []
    assert not part_path(dest).exists()


def test_an_existing_different_file_is_not_overwritten(
    payload: Payload, file_server: FileServer, watcher: Watcher, tmp_path: Path
) -> None:
    dest = tmp_path / "model.gguf"
    other = random_bytes(len(payload.data), seed=7)
    dest.write_bytes(other)

    with pytest.raises(DownloadError) as caught:
        watcher.fetch(request(payload, dest, expected_sha256=payload.sha256))

    assert caught.value.error_code == "destination_exists"
    assert dest.read_bytes() == other and file_server.requests == []


def test_a_resumed_part_is_rehashed(
    payload: Payload, file_server: FileServer, watcher: Watcher, tmp_path: Path
) -> None:
    dest = tmp_path / "model.gguf"
    earlier_part(payload, dest, payload.data[: 2 * MiB])

    result = watcher.fetch(request(payload, dest, expected_sha256=payload.sha256))

    assert result.resumed_from == 2 * MiB and result.sha256 == payload.sha256
    assert gets(file_server) == [f"bytes={2 * MiB}-"]
    assert file_server.requests[0].sent == len(payload.data) - 2 * MiB
    assert watcher.progress[0] == (2 * MiB, len(payload.data))


def test_a_corrupt_resumed_part_is_caught_by_the_rehash(
    payload: Payload, file_server: FileServer, watcher: Watcher, tmp_path: Path
) -> None:
    dest = tmp_path / "model.gguf"
    damaged = bytearray(payload.data[: 2 * MiB])
    damaged[1000] ^= 0xFF
    earlier_part(payload, dest, bytes(damaged))

    with pytest.raises(DownloadError) as caught:
        watcher.fetch(request(payload, dest, expected_sha256=payload.sha256))

    assert caught.value.error_code == "checksum_mismatch"
    assert not dest.exists() and not part_path(dest).exists()


def test_a_complete_part_answered_416_is_verified_and_finished(
    payload: Payload, file_server: FileServer, watcher: Watcher, tmp_path: Path
) -> None:
    dest = tmp_path / "model.gguf"
    earlier_part(payload, dest, payload.data)

    result = watcher.fetch(request(payload, dest))  # size unknown: the server must say

    assert file_server.requests[0].status == 416
    assert result.sha256 == payload.sha256 and dest.read_bytes() == payload.data


def test_a_part_longer_than_the_remote_file_starts_over(
    payload: Payload, file_server: FileServer, watcher: Watcher, tmp_path: Path
) -> None:
    dest = tmp_path / "model.gguf"
    earlier_part(payload, dest, payload.data + b"extra bytes")

    result = watcher.fetch_with_retries(request(payload, dest))

    assert [r.status for r in file_server.requests] == [416, 200]
    assert result.sha256 == payload.sha256


def run_in_thread(req: FetchRequest, watcher: Watcher) -> tuple[threading.Thread, list[str]]:
    """Start ``fetch`` in a worker thread (as the manager does); collects its error codes."""
    codes: list[str] = []

    def run() -> None:
        try:
            watcher.fetch(req, stall_timeout_s=HANG_GUARD_S * 2)
        except DownloadError as exc:
            codes.append(exc.error_code)

    worker = threading.Thread(target=run)
    worker.start()
    return worker, codes


def test_cancel_midway_stops_and_keeps_the_part(
    payload: Payload, file_server: FileServer, watcher: Watcher, tmp_path: Path
) -> None:
    file_server.stall(after_bytes=2 * MiB + 100, seconds=HANG_GUARD_S * 2)
    dest = tmp_path / "model.gguf"
    worker, codes = run_in_thread(request(payload, dest), watcher)
    # After 2 MiB + 100 bytes the server sends nothing: only cancel can end the fetch. The
    # read that is waiting then holds bytes not yet reported; the part keeps them too.
    assert watcher.wait_for_bytes(MiB), "the first MiB never arrived"

    watcher.cancel.set()
    worker.join(HANG_GUARD_S)

    assert not worker.is_alive(), "cancel did not interrupt the stalled read"
    assert codes == ["cancelled"]
    assert part_path(dest).stat().st_size >= 2 * MiB and not dest.exists()


def test_cancel_while_waiting_for_an_answer(watcher: Watcher, tmp_path: Path) -> None:
    with black_hole() as port:
        req = FetchRequest(url=f"http://127.0.0.1:{port}/x.gguf", dest=tmp_path / "x.gguf")
        worker, codes = run_in_thread(req, watcher)
        while worker.is_alive() and not any(line.startswith("GET") for line in watcher.log):
            time.sleep(0.01)
        time.sleep(0.2)  # let it block on the answer that never comes
        watcher.cancel.set()
        worker.join(HANG_GUARD_S)

    assert not worker.is_alive(), "cancel did not interrupt the wait for the headers"
    assert codes == ["cancelled"]
    assert not part_path(tmp_path / "x.gguf").exists()


def test_cancel_during_backoff_stops_retrying(
    payload: Payload, file_server: FileServer, watcher: Watcher, tmp_path: Path
) -> None:
    file_server.fail(503, times=None)

    def log(line: str) -> None:
        if line.startswith("retrying"):
            watcher.cancel.set()

    with pytest.raises(DownloadError) as caught:
        fetch_with_retries(
            request(payload, tmp_path / "model.gguf"),
            max_attempts=5,
            cancel=watcher.cancel,
            on_progress=watcher.on_progress,
            log=log,
            backoff_base_s=HANG_GUARD_S * 2,
            rng=lambda: 1.0,
        )

    assert caught.value.error_code == "cancelled" and len(file_server.requests) == 1


def test_a_locked_part_is_refused(payload: Payload, watcher: Watcher, tmp_path: Path) -> None:
    dest = tmp_path / "model.gguf"
    with part_path(dest).open("wb") as other_writer:
        fcntl.flock(other_writer, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DownloadError) as caught:
            watcher.fetch(request(payload, dest))
        with pytest.raises(DownloadError):
            discard_part(dest)
    assert caught.value.error_code == "already_downloading"
    discard_part(dest)
    assert not part_path(dest).exists()


def test_redirects_are_followed_but_never_to_other_schemes(
    payload: Payload, watcher: Watcher, tmp_path: Path
) -> None:
    async def to_file(request: Request) -> RedirectResponse:
        return RedirectResponse(payload.url, status_code=302)

    async def to_ftp(request: Request) -> RedirectResponse:
        return RedirectResponse("ftp://127.0.0.1/model.gguf", status_code=302)

    app = Starlette(routes=[Route("/file", to_file), Route("/ftp", to_ftp)])
    with ServerThread(app) as redirector:
        good = FetchRequest(url=f"{redirector.url}/file", dest=tmp_path / "a.gguf")
        assert watcher.fetch(good).sha256 == payload.sha256
        bad = FetchRequest(url=f"{redirector.url}/ftp", dest=tmp_path / "b.gguf")
        with pytest.raises(DownloadError) as caught:
            watcher.fetch(bad)
    assert caught.value.error_code == "bad_response" and "ftp" in caught.value.detail


def test_an_untrusted_certificate_fails_without_retry(watcher: Watcher, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    openssl = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt"]
    openssl += ["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
    openssl += ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(openssl, check=True, capture_output=True)
    app = Starlette(routes=[])
    with ServerThread(app, ssl_certfile=str(cert), ssl_keyfile=str(key)) as tls:
        req = FetchRequest(url=f"https://127.0.0.1:{tls.port}/x.gguf", dest=tmp_path / "x.gguf")
        with pytest.raises(DownloadError) as caught:
            watcher.fetch_with_retries(req)
    assert caught.value.error_code == "tls_error" and not caught.value.retryable
    assert watcher.attempts == [1]


def test_unreachable_server_is_a_retryable_connection_error(
    watcher: Watcher, tmp_path: Path
) -> None:
    req = FetchRequest(url=f"http://127.0.0.1:{closed_port()}/x.gguf", dest=tmp_path / "x.gguf")
    with pytest.raises(DownloadError) as caught:
        watcher.fetch(req)
    assert caught.value.error_code == "connection_error" and caught.value.retryable


def test_bad_requests_are_refused_up_front(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as caught:
        FetchRequest(url="http://127.0.0.1/x", dest=tmp_path / "x", expected_sha256="abc")
    assert caught.value.error_code == "invalid_sha256"
    req = FetchRequest(url="file:///etc/passwd", dest=tmp_path / "x")
    with pytest.raises(InvalidInput) as caught:
        fetch(req, cancel=threading.Event(), on_progress=lambda done, total: None)
    assert caught.value.error_code == "unsupported_scheme"


def test_insufficient_disk_space_is_refused_before_writing(
    payload: Payload, file_server: FileServer, watcher: Watcher, small_disk: Path
) -> None:
    dest = small_disk / "model.gguf"

    with pytest.raises(DownloadError) as caught:
        watcher.fetch(request(payload, dest))

    assert caught.value.error_code == "insufficient_disk_space" and not caught.value.retryable
    assert caught.value.http_status == 507
    assert not part_path(dest).exists() and not dest.exists()
    assert len(file_server.requests) == 1


def test_force_skips_the_disk_check_and_a_full_disk_still_fails_clearly(
    file_server: FileServer, watcher: Watcher, small_disk: Path
) -> None:
    small = random_bytes(256 * 1024)  # fits the disk, not the safety margin
    file_server.add_file("small.gguf", small)
    file_server.add_file("big.gguf", random_bytes(2 * MiB))

    url = file_server.url_for("small.gguf")
    result = watcher.fetch(FetchRequest(url=url, dest=small_disk / "small.gguf", force=True))
    assert result.size == len(small)

    url = file_server.url_for("big.gguf")
    with pytest.raises(DownloadError) as caught:
        watcher.fetch(FetchRequest(url=url, dest=small_disk / "big.gguf", force=True))
    assert caught.value.error_code == "insufficient_disk_space"  # ENOSPC while writing
    assert not (small_disk / "big.gguf").exists()
    assert not part_path(small_disk / "big.gguf").exists()  # the disk is free again
