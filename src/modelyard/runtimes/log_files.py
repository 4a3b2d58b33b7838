"""Log files of managed processes and downloads: reading their tail."""

from __future__ import annotations

import os
from pathlib import Path

_TAIL_BLOCK = 16 * 1024


def read_tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of ``path`` (FileNotFoundError when it does not exist)."""
    with open(path, "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        start, data = end, b""
        # Read backwards in blocks until there is one more newline than lines wanted, so a
        # partial first line is never returned.
        while start > 0 and data.count(b"\n") <= lines:
            start = max(0, start - _TAIL_BLOCK * max(1, lines // 64))
            fh.seek(start)
            data = fh.read(end - start)
    return data.decode("utf-8", errors="replace").splitlines()[-lines:]
