"""Real OS users for the local-trust tests (TESTING-NOTES.md, "Another OS user").

CI runs as root, so the tests create what they need: a user to run modelyard, a member of
its trusted group, a user outside it. Created once per session and removed at its end
(users that already existed are left as they were).

Their processes run the system's Python (``/usr/bin/python3``, the same 3.11) on this
checkout's ``src`` and its virtual environment's packages: the interpreter the tests run on
may live where other users cannot reach it (pyenv under ``/root``).
"""

from __future__ import annotations

import grp
import os
import pwd
import site
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

GROUP = "myd-trusted"
OWNER, MEMBER, OTHER = "myd-owner", "myd-member", "myd-other"
SYSTEM_PYTHON = "/usr/bin/python3"
# This checkout's sources and its virtual environment's packages, for SYSTEM_PYTHON.
PYTHONPATH = os.pathsep.join(
    [str(Path(__file__).resolve().parents[2] / "src"), *site.getsitepackages()]
)


def python_argv(*args: str) -> list[str]:
    """A command line running Python with modelyard importable, for any user."""
    return [SYSTEM_PYTHON, "-s", *args]


def python_env() -> dict[str, str]:
    return {"PYTHONPATH": PYTHONPATH}


@dataclass(frozen=True)
class OsUsers:
    owner: str = OWNER
    member: str = MEMBER
    other: str = OTHER
    group: str = GROUP

    def run(
        self, user: str, argv: list[str], env: dict[str, str], timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """``argv`` as ``user`` (with the groups /etc/group gives it), output captured."""
        entry = pwd.getpwnam(user)
        return subprocess.run(
            argv,
            user=entry.pw_uid,
            group=entry.pw_gid,
            extra_groups=os.getgrouplist(user, entry.pw_gid),
            env={"PATH": os.environ["PATH"], "HOME": "/tmp", **python_env(), **env},
            cwd="/",
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def python(
        self, user: str, code: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run(user, python_argv("-c", code), env or {})


def _exists(kind: str, name: str) -> bool:
    try:
        (grp.getgrnam if kind == "group" else pwd.getpwnam)(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="session")
def os_users() -> Iterator[OsUsers]:
    if os.geteuid() != 0:
        pytest.fail("the local-trust tests create OS users: run them as root (CI does)")
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.fail(f"the local-trust tests run other users' programs on {SYSTEM_PYTHON}")
    # Made once per machine and left in place: another test run on this machine (a second
    # checkout, CI) may be using them right now. They have no password and no home.
    if not _exists("group", GROUP):
        subprocess.run(["groupadd", GROUP], check=False)
    # modelyard's user belongs to its trusted group: it gives its data directory to it.
    for name, groups in ((OWNER, [GROUP]), (MEMBER, [GROUP]), (OTHER, [])):
        if not _exists("user", name):
            extra = ["-G", ",".join(groups)] if groups else []
            subprocess.run(["useradd", "-M", "-s", "/bin/sh", *extra, name], check=False)
        elif groups and name not in grp.getgrnam(GROUP).gr_mem:
            subprocess.run(["usermod", "-aG", GROUP, name], check=False)
    missing = [n for n in (OWNER, MEMBER, OTHER) if not _exists("user", n)]
    if missing:
        pytest.fail(f"could not create the test users {missing}")
    yield OsUsers()


def owned_dir(base: Path, user: str) -> Path:
    """``base`` made for ``user``: theirs, and reachable by everyone (the path above too)."""
    base.mkdir(parents=True, exist_ok=True)
    entry = pwd.getpwnam(user)
    os.chown(base, entry.pw_uid, entry.pw_gid)
    base.chmod(0o755)
    return base
