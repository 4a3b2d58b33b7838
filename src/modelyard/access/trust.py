"""Local trust (SPEC §12): which requests without a key may act as modelyard's own user.

``local_trust = "user"`` (the default) accepts a keyless request only from a loopback peer
whose socket belongs to the OS user running modelyard, to root, or to a member of
``trusted_group``; ``"any"`` accepts any loopback peer, as Ollama does; ``"none"`` accepts
none. A request that came through a proxy is never local, whatever the mode: its peer is the
proxy, not the person.
"""

from __future__ import annotations

import functools
import grp
import os
import pwd
import threading
import time
from collections.abc import Mapping
from typing import Literal

from modelyard.access.keys import SCOPES, Principal
from modelyard.access.peers import loopback_address, socket_owner

LocalTrustMode = Literal["user", "any", "none"]
# Headers a reverse proxy adds; a request carrying one is not from a local user's program.
PROXY_HEADERS = frozenset({"forwarded", "x-forwarded-for", "x-real-ip"})
_MEMBERSHIP_TTL_S = 30.0


class LocalTrust:
    """Tells the local principal of a keyless request, or None when a key is needed."""

    def __init__(self, mode: LocalTrustMode, trusted_group: str = "") -> None:
        self.mode = mode
        self.trusted_group = trusted_group
        self.own_uid = os.geteuid()
        self._verdicts: dict[int, tuple[float, bool]] = {}  # uid → (checked at, trusted)
        self._lock = threading.Lock()

    def principal(
        self,
        client: tuple[str, int] | None,
        server: tuple[str, int] | None,
        headers: Mapping[str, str],
    ) -> Principal | None:
        if self.mode == "none" or client is None or server is None:
            return None
        if loopback_address(client[0]) is None or PROXY_HEADERS.intersection(headers):
            return None
        uid = socket_owner(client, server)
        if self.mode == "any":
            return local_principal(uid)
        if uid is None or not self.trusts(uid):
            return None
        return local_principal(uid)

    def trusts(self, uid: int) -> bool:
        """modelyard's own user, root, or a member of the trusted group (checked every 30 s)."""
        if uid in (self.own_uid, 0):
            return True
        if not self.trusted_group:
            return False
        now = time.monotonic()
        with self._lock:
            cached = self._verdicts.get(uid)
        if cached is not None and now - cached[0] < _MEMBERSHIP_TTL_S:
            return cached[1]
        verdict = in_group(uid, self.trusted_group)
        with self._lock:
            self._verdicts[uid] = (now, verdict)
        return verdict


def in_group(uid: int, group: str) -> bool:
    """Whether ``uid`` belongs to ``group``, as its primary or a supplementary group."""
    try:
        gid = grp.getgrnam(group).gr_gid
        user = pwd.getpwuid(uid)
    except KeyError:  # no such group, or a uid without a passwd entry
        return False
    return gid in os.getgrouplist(user.pw_name, user.pw_gid)


def local_principal(uid: int | None) -> Principal:
    """The principal of a trusted local user: every scope, named after the user."""
    if uid is None:
        return Principal("local", SCOPES, subject="local")
    return Principal(f"local:{_user_name(uid)}", SCOPES, subject=f"uid:{uid}")


@functools.lru_cache(maxsize=256)
def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
