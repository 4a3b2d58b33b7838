"""Whose bytes a part file holds: the URL and validator recorded beside it (SPEC §5, §12).

A part file is resumed only by a fetch of the URL it came from, with the validator (strong
ETag, else Last-Modified) its bytes were sent with, in ``If-Range``: a new task for another
URL that happens to land on the same file name must start over, or it would splice the first
file's bytes in front of the second's. A part without a record (left by an older modelyard,
or put there by hand) belongs to nobody and starts over too. The record is written before the
first byte of a response and removed with the part.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from modelyard.downloads.engine_types import part_path

RECORD_SUFFIX = ".json"


@dataclass(frozen=True)
class PartRecord:
    url: str
    validator: str | None


def record_path(dest: Path) -> Path:
    """``<dest>.part.json``, beside ``dest``'s part file."""
    part = part_path(dest)
    return part.with_name(part.name + RECORD_SUFFIX)


def read_record(dest: Path) -> PartRecord | None:
    """The record of ``dest``'s part, or None when there is none or it is unreadable."""
    try:
        data = json.loads(record_path(dest).read_text())
        url, validator = data["url"], data["validator"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(url, str) or not isinstance(validator, str | None):
        return None
    return PartRecord(url, validator)


def write_record(dest: Path, record: PartRecord) -> None:
    """Replace the record atomically and durably, before the bytes it describes arrive."""
    path = record_path(dest)
    temporary = path.with_name(path.name + ".tmp")
    payload = json.dumps({"url": record.url, "validator": record.validator}).encode()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def remove_record(dest: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        record_path(dest).unlink()
