"""The part writer: every byte lands in order and is hashed, straight to the disk (O_DIRECT)
or through the page cache, from aligned and unaligned positions, with the partial last
buffers that ends of bodies and cut connections leave."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from modelyard.downloads.engine_types import CHUNK_BYTES, DownloadError
from modelyard.downloads.part_writer import ALIGN, BUFFERS, PartWriter, open_direct
from tests.downloads.support import random_bytes

SIZES = [1, ALIGN - 1, ALIGN, ALIGN + 1, CHUNK_BYTES - 1, CHUNK_BYTES, 3 * CHUNK_BYTES + 77]


def _append(part: Path, data: bytes, position: int) -> tuple[str, bool]:
    """Write ``data`` after the first ``position`` bytes already in ``part``, in whole buffers
    and a partial last one, as the engine does; (sha256 of the whole file, direct?)."""
    digest = hashlib.sha256(part.read_bytes()[:position] if position else b"")
    fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        with PartWriter(part, fd, digest, position) as writer:
            for start in range(0, len(data), CHUNK_BYTES):
                chunk = data[start : start + CHUNK_BYTES]
                buf = writer.take()
                buf[: len(chunk)] = chunk
                writer.submit(buf, len(chunk))
            direct = writer.direct
        os.fsync(fd)
    finally:
        os.close(fd)
    return digest.hexdigest(), direct


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("position", [0, 2 * ALIGN, 5])
def test_bytes_land_in_order_and_are_hashed_on_a_real_disk(
    tmp_path: Path, size: int, position: int
) -> None:
    part = tmp_path / "model.gguf.part"
    head, body = random_bytes(position, seed=2), random_bytes(size, seed=3)
    part.write_bytes(head)
    sha256, direct = _append(part, body, position)
    assert part.read_bytes() == head + body
    assert sha256 == hashlib.sha256(head + body).hexdigest()
    # O_DIRECT needs the part to end on a block boundary; an unaligned resume goes buffered.
    assert direct == (position % ALIGN == 0 and open_direct(part) is not None)


def test_the_test_disk_really_takes_o_direct(tmp_path: Path) -> None:
    """Else the direct path above would silently not be exercised."""
    probe = tmp_path / "probe"
    probe.touch()
    fd = open_direct(probe)
    assert fd is not None, "this file system refuses O_DIRECT; the direct path is untested"
    os.close(fd)


def test_o_direct_refused_at_open_or_at_write_falls_back_to_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some file systems refuse O_DIRECT when the file is opened, others only when it is
    written (injected here: this machine's disk and even its tmpfs take it)."""
    body = random_bytes(2 * CHUNK_BYTES + 9, seed=4)
    real_open, real_pwrite = os.open, os.pwrite
    direct_fds: set[int] = set()

    def refusing_open(path: object, flags: int, *args: int) -> int:
        if flags & os.O_DIRECT and refuse == "open":
            raise OSError(errno.EINVAL, "Invalid argument")
        fd = real_open(path, flags, *args)  # type: ignore[arg-type]
        if flags & os.O_DIRECT:
            direct_fds.add(fd)
        return fd

    def refusing_pwrite(fd: int, data: object, offset: int) -> int:
        if fd in direct_fds:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refusing_open)
    monkeypatch.setattr(os, "pwrite", refusing_pwrite)
    for refuse in ("open", "write"):
        part = tmp_path / f"refused-at-{refuse}.part"
        part.write_bytes(b"")
        sha256, direct = _append(part, body, 0)
        assert direct == (refuse == "write")
        assert part.read_bytes() == body and sha256 == hashlib.sha256(body).hexdigest()


def test_a_failed_direct_write_surfaces_as_a_download_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills up under O_DIRECT (injected: a real one would need a real full
    disk that takes O_DIRECT) fails the download with a clear code, without hanging."""
    part = tmp_path / "model.gguf.part"
    part.write_bytes(b"")
    real_pwrite = os.pwrite

    def full_disk(fd: int, data: object, offset: int) -> int:
        if offset >= CHUNK_BYTES:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "pwrite", full_disk)
    with pytest.raises(DownloadError) as failed:
        _append(part, random_bytes((BUFFERS + 2) * CHUNK_BYTES, seed=5), 0)  # more than the pool
    assert failed.value.error_code == "insufficient_disk_space"
