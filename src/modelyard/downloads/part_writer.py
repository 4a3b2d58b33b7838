"""Appending a download's bytes to its part file while hashing them.

The reading thread fills 4 MiB buffers and hands each one over; sha256 runs in a helper
thread (hashlib releases the GIL), never in a second pass. Where the file system takes
``O_DIRECT`` (ext4, xfs, btrfs; not tmpfs) and the part ends on a block boundary, a third
thread writes the buffers straight to the disk: copying them into the page cache cost this
machine 0.6-0.9 CPU s per GB, more than reading them from the socket, and the pages of a
multi-GB model would only push other files out of the cache. Elsewhere the reading thread
writes through the page cache and starts its writeback every few MiB, so that the final
fsync does not flush the whole file at once. Either way, a buffer returns to the pool only
once it is hashed and written, which bounds how far both may lag behind the network.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from modelyard.downloads.engine_types import CHUNK_BYTES, DownloadError

BUFFERS = 4  # 16 MiB per download; more buffers measured no faster, and cost CPU
ALIGN = 4096  # O_DIRECT wants offsets, lengths and addresses on the device's block size
WRITEBACK_BYTES = 32 << 20

Item = tuple[mmap.mmap, int] | None


class Digest(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


@contextlib.contextmanager
def disk_errors() -> Iterator[None]:
    """Local file-system failures, as DownloadErrors (a full disk is not retryable)."""
    try:
        yield
    except OSError as exc:
        code = "insufficient_disk_space" if exc.errno in {errno.ENOSPC, errno.EDQUOT} else None
        detail = f"writing the file failed: {exc.strerror}"
        raise DownloadError(detail, code=code or "write_error") from exc


def open_direct(path: Path) -> int | None:
    """A second, ``O_DIRECT`` descriptor of the part file, or None where that is refused."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return None
    try:
        return os.open(path, os.O_WRONLY | os.O_CLOEXEC | flag)
    except OSError:  # EINVAL: tmpfs and some FUSE file systems
        return None


class PartWriter:
    """``take()`` a buffer, fill it, ``submit()`` it: its bytes are appended to the part file
    (``fd``, from ``position`` on) and fed to ``digest``, in that order of buffers."""

    def __init__(self, path: Path, fd: int, digest: Digest, position: int) -> None:
        self._fd, self._digest = fd, digest
        self._direct = open_direct(path) if position % ALIGN == 0 else None
        self._free: queue.Queue[mmap.mmap] = queue.Queue()
        for _ in range(BUFFERS):
            self._free.put(mmap.mmap(-1, CHUNK_BYTES))  # page-aligned, as O_DIRECT needs
        self._hash_queue: queue.Queue[Item] = queue.Queue()
        self._write_queue: queue.Queue[Item] = queue.Queue()
        self._holders: dict[int, int] = {}  # id(buffer) -> threads still using it
        self._lock = threading.Lock()
        self._error: OSError | None = None
        self._direct_ok = True
        self._position = self._flushed = position
        with disk_errors():
            os.lseek(fd, position, os.SEEK_SET)
        self._threads = [threading.Thread(target=self._hash_loop, name="sha256", daemon=True)]
        if self._direct is not None:
            writer = threading.Thread(target=self._write_loop, name="part-writer", daemon=True)
            self._threads.append(writer)

    @property
    def direct(self) -> bool:
        return self._direct is not None

    def __enter__(self) -> PartWriter:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._hash_queue.put(None)
        self._write_queue.put(None)
        for thread in self._threads:
            thread.join()
        if self._direct is not None:
            os.close(self._direct)
        if exc_type is None:
            self._raise_error()

    def take(self) -> mmap.mmap:
        """A free buffer (waits while all are being hashed or written)."""
        buf = self._free.get()
        self._raise_error()
        return buf

    def give_back(self, buf: mmap.mmap) -> None:
        self._free.put(buf)

    def submit(self, buf: mmap.mmap, count: int) -> None:
        """Append the first ``count`` bytes of ``buf``; it returns to the pool when done."""
        if self._direct is None:
            self._write_buffered(memoryview(buf)[:count])
            self._hand_over(buf, count, self._hash_queue)
        else:
            self._hand_over(buf, count, self._hash_queue, self._write_queue)

    def _hand_over(self, buf: mmap.mmap, count: int, *queues: queue.Queue[Item]) -> None:
        with self._lock:
            self._holders[id(buf)] = len(queues)
        for target in queues:
            target.put((buf, count))

    def _release(self, buf: mmap.mmap) -> None:
        with self._lock:
            self._holders[id(buf)] -= 1
            done = not self._holders[id(buf)]
        if done:
            self._free.put(buf)

    def _raise_error(self) -> None:
        if self._error is not None:
            with disk_errors():
                raise self._error

    def _write_buffered(self, view: memoryview) -> None:
        with disk_errors():
            self._position += len(view)
            while view:
                view = view[os.write(self._fd, view) :]
            if self._position - self._flushed >= WRITEBACK_BYTES and hasattr(os, "posix_fadvise"):
                # POSIX_FADV_DONTNEED starts asynchronous writeback of dirty pages on Linux;
                # pages still dirty or under writeback stay cached.
                length = self._position - self._flushed
                os.posix_fadvise(self._fd, self._flushed, length, os.POSIX_FADV_DONTNEED)
                self._flushed = self._position

    def _hash_loop(self) -> None:
        while (item := self._hash_queue.get()) is not None:
            buf, count = item
            self._digest.update(memoryview(buf)[:count])
            self._release(buf)

    def _write_loop(self) -> None:
        while (item := self._write_queue.get()) is not None:
            buf, count = item
            try:
                if self._error is None:
                    self._write_direct(memoryview(buf)[:count])
            except OSError as exc:
                self._error = exc  # raised in the reading thread; keep draining the queue
            finally:
                self._release(buf)

    def _write_direct(self, view: memoryview) -> None:
        """Whole blocks straight to the disk; a last partial block (the end of the body, or of
        what arrived before a failure) through the page cache."""
        assert self._direct is not None
        aligned = len(view) - len(view) % ALIGN
        done = 0
        while done < aligned and self._direct_ok:
            try:
                done += os.pwrite(self._direct, view[done:aligned], self._position + done)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self._direct_ok = False  # refused after all: the page cache from here on
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], self._position + done)
        self._position += len(view)
