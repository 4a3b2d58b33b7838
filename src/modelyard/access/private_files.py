"""modelyard's files are its user's alone, whatever the umask (SPEC §12).

The data directory holds chat history, provider keys and logs: it is made 0700, and so are
its ``run`` and ``logs`` directories. With a ``trusted_group`` the data directory is 0710 and
belongs to that group, so that members can reach the CLI's key file by its name (0640, the
group's) without listing or reading anything else. ``modelyard serve`` also sets its umask
to 077, so that every file it and its children create (the database with its WAL and SHM
files, logs, PID files) is 0600 from the start.
"""

from __future__ import annotations

import contextlib
import grp
import os
from pathlib import Path

from modelyard.errors import ConfigError

SERVE_UMASK = 0o077


def group_id(group: str) -> int | None:
    return grp.getgrnam(group).gr_gid if group else None


def make_private_dir(path: Path, group: str = "") -> None:
    """Create ``path`` if needed and make it 0700, or 0710 for ``group``."""
    path.mkdir(parents=True, exist_ok=True)
    gid = group_id(group)
    if gid is None:
        path.chmod(0o700)
        return
    try:
        os.chown(path, -1, gid)
    except PermissionError as exc:
        raise ConfigError(
            f"cannot give {path} to the group {group!r}: this user is not a member of it",
            hint="Add modelyard's user to trusted_group (usermod -aG), or change trusted_group.",
        ) from exc
    path.chmod(0o710)


def make_private_file(path: Path) -> None:
    """Create ``path`` if needed (empty) and make it 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def write_key_file(path: Path, key: str, group: str = "") -> None:
    """Write ``key`` to ``path`` atomically: 0600, or 0640 and the group's for ``group``."""
    gid = group_id(group)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(
        temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
    )
    try:
        if gid is not None:
            os.fchown(fd, -1, gid)
            os.fchmod(fd, 0o640)
        os.write(fd, key.encode() + b"\n")
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        temporary.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(temporary, path)


def remove_key_file(path: Path, key: str) -> None:
    """Remove the key file if it still holds ``key`` (another server may have replaced it)."""
    with contextlib.suppress(OSError):
        if read_key_file(path) == key:
            path.unlink()


def read_key_file(path: Path) -> str:
    """The key in ``path``, or "" when it is missing or cannot be read."""
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return ""
