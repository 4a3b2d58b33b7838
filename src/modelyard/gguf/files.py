"""GGUF models in the models directory: the ``llamacpp`` provider's models (SPEC §11).

A model is named by its POSIX path relative to the models directory. Split models
(``name-00001-of-00003.gguf`` …) are one model named by their first part. Projector files
(``mmproj-…``), hidden files and directories and unfinished downloads are not models. Header
metadata is cached by (path, size, mtime) of every part, so re-scanning unchanged files only
costs a ``stat`` each; a file that cannot be read is listed with an ``error``.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelyard.clock import iso
from modelyard.errors import InvalidInput, ModelyardError
from modelyard.gguf.metadata import GGUFInfo, parse_quantization, read_gguf, split_part, split_paths
from modelyard.instance_config import ModelMode

# (size, mtime in ns) of every part present, in part order.
Stamp = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class LocalModel:
    """One GGUF model on disk. ``size`` and ``mtime`` cover every part present."""

    name: str
    path: Path
    size: int
    mtime: float
    split_count: int
    info: GGUFInfo | None
    error: str | None = None
    error_code: str | None = None

    @property
    def quantization(self) -> str | None:
        """From the header when it could be read, else from the file name."""
        if self.info is not None and self.info.quantization:
            return self.info.quantization
        return parse_quantization(self.path.name)

    @property
    def mode(self) -> ModelMode:
        return self.info.mode if self.info is not None else ModelMode.LLM

    @property
    def modified_at(self) -> datetime:
        return datetime.fromtimestamp(self.mtime, UTC)

    def wire(self) -> dict[str, Any]:
        """A JSON-ready dict for the API and the catalog."""
        return {
            "name": self.name,
            "path": str(self.path),
            "size": self.size,
            "modified_at": iso(self.modified_at),
            "split_count": self.split_count,
            "quantization": self.quantization,
            "mode": self.mode.value,
            "info": self.info.wire() if self.info is not None else None,
            "error": self.error,
            "error_code": self.error_code,
        }


@dataclass(frozen=True)
class _Entry:
    stamp: Stamp
    info: GGUFInfo | None
    error: ModelyardError | None


class MetadataCache:
    """Header metadata by path and stamp; thread-safe, least recently used entries dropped."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: OrderedDict[Path, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries
        self.hits = 0
        self.misses = 0

    def lookup(self, path: Path, stamp: Stamp) -> tuple[GGUFInfo | None, ModelyardError | None]:
        """The metadata of ``path`` (or why it cannot be read), reading the header on a miss."""
        with self._lock:
            entry = self._entries.get(path)
            if entry is not None and entry.stamp == stamp:
                self._entries.move_to_end(path)
                self.hits += 1
                return entry.info, entry.error
            self.misses += 1
        # Read outside the lock so one slow disk does not stall other scans.
        try:
            entry = _Entry(stamp, read_gguf(path), None)
        except ModelyardError as exc:
            entry = _Entry(stamp, None, exc)
        with self._lock:
            self._entries[path] = entry
            self._entries.move_to_end(path)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return entry.info, entry.error


_DEFAULT_CACHE = MetadataCache()


def scan_models_dir(models_dir: Path, *, cache: MetadataCache | None = None) -> list[LocalModel]:
    """Every GGUF model under ``models_dir`` (recursively), sorted by name.

    A missing directory has no models. Symlinked files are listed; symlinked directories
    are not followed (they could loop).
    """
    cache = _DEFAULT_CACHE if cache is None else cache
    root = models_dir.resolve()
    if not root.is_dir():
        return []
    singles: list[Path] = []
    splits: dict[tuple[Path, str, int], set[int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in filenames:
            if not is_model_file(filename):
                continue
            parsed = split_part(filename)
            if parsed is None:
                singles.append(Path(dirpath, filename))
            else:
                prefix, number, count = parsed
                splits.setdefault((Path(dirpath), prefix, count), set()).add(number)
    models = [m for m in (_single(root, path, cache) for path in singles) if m is not None]
    for (directory, prefix, count), numbers in splits.items():
        model = _split(root, split_paths(directory / prefix, count), numbers, cache)
        if model is not None:
            models.append(model)
    return sorted(models, key=lambda model: model.name)


def is_model_file(filename: str) -> bool:
    """Whether the models directory's file ``filename`` is a model the catalog lists."""
    lower = filename.lower()
    # Downloads in progress end in .part, so they never end in .gguf.
    return lower.endswith(".gguf") and not lower.startswith(".") and "mmproj" not in lower


def check_model_file(path: Path) -> None:
    """Refuse to start, stop or delete anything but a model: a partial download, its record,
    a projector, a note or a directory beside the models is not one (issue 19)."""
    if not is_model_file(path.name):
        raise InvalidInput(
            f"{path.name!r} is not a model file",
            code="not_a_model",
            hint="Only the models listed under the local files (.gguf files) can be started, "
            "stopped or deleted here; remove other files yourself.",
        )


def _single(root: Path, path: Path, cache: MetadataCache) -> LocalModel | None:
    try:
        stat = path.stat()
    except OSError:  # removed since the directory was listed, or a dangling symlink
        return None
    stamp: Stamp = ((stat.st_size, stat.st_mtime_ns),)
    info, error = cache.lookup(path, stamp)
    return _model(root, path, stat.st_size, stat.st_mtime, 1, info, error)


def _split(
    root: Path, parts: list[Path], numbers: set[int], cache: MetadataCache
) -> LocalModel | None:
    """One split model; a missing first part is reported without reading the others."""
    stats = []
    for number, part in enumerate(parts, start=1):
        if number in numbers:
            try:
                stats.append(part.stat())
            except OSError:
                numbers.discard(number)
    if not stats:
        return None
    size = sum(s.st_size for s in stats)
    mtime = max(s.st_mtime for s in stats)
    first = parts[0]
    if 1 not in numbers:
        missing = InvalidInput(
            f"{first.name} (part 1 of {len(parts)}) is missing",
            code="incomplete_split",
            hint="Download the missing parts into the same directory.",
        )
        return _model(root, first, size, mtime, len(parts), None, missing)
    stamp: Stamp = tuple((s.st_size, s.st_mtime_ns) for s in stats)
    info, error = cache.lookup(first, stamp)
    return _model(root, first, size, mtime, len(parts), info, error)


def _model(
    root: Path,
    path: Path,
    size: int,
    mtime: float,
    split_count: int,
    info: GGUFInfo | None,
    error: ModelyardError | None,
) -> LocalModel:
    return LocalModel(
        name=path.relative_to(root).as_posix(),
        path=path,
        size=size,
        mtime=mtime,
        split_count=split_count,
        info=info,
        error=None if error is None else error.detail,
        error_code=None if error is None else error.error_code,
    )
