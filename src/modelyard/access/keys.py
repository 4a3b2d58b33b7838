"""modelyard's own API keys: stored as SHA-256 hashes, with scopes (admin, read, inference),
and the gateway's rules for each: a model allow-list (fnmatch patterns), an expiry, limits.

The keys are held in memory (loaded once, changed with the store), so a request is judged
without a store read; when a key was last used is written in batches, off the request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy import update

from modelyard.clock import as_utc, iso, utcnow
from modelyard.errors import InvalidInput, NotFound
from modelyard.store.db import Database
from modelyard.store.tables import ApiKeyRow

log = logging.getLogger("modelyard.access.keys")
SCOPES = ("admin", "read", "inference")
LIMIT_NAMES = ("requests_per_minute", "tokens_per_minute", "concurrent_requests")
LAST_USED_WRITE_S = 5.0  # last-use times are written this long after the first new one
MAX_PATTERNS = 100


@dataclass(frozen=True)
class KeyLimits:
    """Per-key limits; None is unlimited."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent_requests: int | None = None

    @property
    def any(self) -> bool:
        return any(getattr(self, n) is not None for n in LIMIT_NAMES)

    def wire(self) -> dict[str, int | None]:
        return {n: getattr(self, n) for n in LIMIT_NAMES}


@dataclass(frozen=True)
class KeyRules:
    """What a stored key may do at the gateway."""

    id: str
    prefix: str
    models: tuple[str, ...] | None = None  # fnmatch patterns; None: every model
    expires_at: datetime | None = None
    limits: KeyLimits = field(default_factory=KeyLimits)

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def allows_model(self, names: Iterable[str]) -> bool:
        """Whether any of a model's names (plain, qualified, aliases) matches a pattern."""
        if self.models is None:
            return True
        return any(fnmatchcase(n, p) for n in names for p in self.models)


@dataclass(frozen=True)
class Principal:
    """Who is calling. ``subject`` identifies them for limits (a key, a local user);
    ``rules`` are a stored key's gateway rules (None for the built-in keys and local trust)."""

    name: str
    scopes: tuple[str, ...]
    subject: str = ""
    rules: KeyRules | None = None

    def allows(self, scope: str) -> bool:
        s = self.scopes
        return "admin" in s or scope in s or (scope == "read" and "inference" in s)


def hash_key(key: str) -> str:
    """Keys are random 256-bit tokens, so one SHA-256 suffices (no password stretching)."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


KEY_PREFIX = "my_"  # every key modelyard makes starts so
SHOWN_CHARS = 8  # a key is shown by its first characters, never whole


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def shown_prefix(token: str) -> str | None:
    """How a token of modelyard's form is shown (its first ``SHOWN_CHARS``), whether or not
    it is a valid key; None for any other token."""
    return token[:SHOWN_CHARS] if token.startswith(KEY_PREFIX) else None


@dataclass(frozen=True)
class KeyRequest:
    """A key to create, as the API and the CLI give it."""

    name: str
    scopes: tuple[str, ...]
    models: tuple[str, ...] | None = None
    expires_at: datetime | None = None
    limits: KeyLimits = field(default_factory=KeyLimits)

    def check(self, now: datetime) -> None:
        """``InvalidInput`` (``invalid_api_key_request``) saying what is wrong."""
        bad = [s for s in self.scopes if s not in SCOPES]
        problems = []
        if not self.name.strip():
            problems.append("the name is empty")
        if not self.scopes or bad:
            problems.append(f"scopes must be some of {', '.join(SCOPES)} (got {list(self.scopes)})")
        if self.models is not None and (
            len(self.models) > MAX_PATTERNS or any(not p.strip() for p in self.models)
        ):
            problems.append(f"models must be up to {MAX_PATTERNS} non-empty name patterns")
        if self.expires_at is not None:
            if self.expires_at.tzinfo is None:
                problems.append("expires_at needs a time zone (e.g. 2027-01-01T00:00:00Z)")
            elif self.expires_at <= now:
                problems.append("expires_at is in the past")
        for name in LIMIT_NAMES:
            value = getattr(self.limits, name)
            if value is not None and value < 1:
                problems.append(f"limits.{name} must be at least 1, or null for no limit")
        if problems:
            raise InvalidInput(
                "invalid key request: " + "; ".join(problems),
                code="invalid_api_key_request",
                hint="Give a name, scopes, optional model patterns, a future expiry and "
                "positive limits.",
            )


@dataclass(frozen=True)
class KeyInfo:
    """A stored key as it is shown (never its secret or hash)."""

    rules: KeyRules
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None = None

    def wire(self) -> dict[str, Any]:
        models = self.rules.models
        return {
            "id": self.rules.id,
            "name": self.name,
            "prefix": self.rules.prefix,
            "scopes": list(self.scopes),
            "models": list(models) if models is not None else None,
            "expires_at": iso(self.rules.expires_at),
            "limits": self.rules.limits.wire(),
            "created_at": iso(self.created_at),
            "last_used_at": iso(self.last_used_at),
        }


def _rules(row: ApiKeyRow) -> KeyRules:
    limits = row.limits or {}
    return KeyRules(
        id=row.id,
        prefix=row.prefix,
        models=tuple(row.models) if row.models is not None else None,
        expires_at=as_utc(row.expires_at) if row.expires_at is not None else None,
        limits=KeyLimits(**{n: limits.get(n) for n in LIMIT_NAMES}),
    )


class ApiKeys:
    """Create, list, revoke and look up keys. ``config_key`` (MODELYARD_API_KEY) is admin, and
    so is ``cli_key``, the key ``serve`` makes at each start for the CLI (SPEC §12)."""

    def __init__(self, db: Database, config_key: str = "") -> None:
        self.db = db
        self.config_key = config_key
        self.cli_key = new_secret()
        self._by_hash: dict[str, Principal] | None = None
        self._used: dict[str, datetime] = {}
        self._writer: asyncio.Task[None] | None = None

    def builtin(self, token: str) -> Principal | None:
        """The configured key's or the CLI key's principal (in memory, no store access).

        Compared as bytes: a header may hold any octets, and compare_digest refuses str that
        is not ASCII."""
        given = token.encode("utf-8", "surrogateescape")
        for secret, name in ((self.config_key, "config-key"), (self.cli_key, "cli")):
            if secret and hmac.compare_digest(given, secret.encode()):
                return Principal(name, SCOPES, subject=name)
        return None

    def _loaded(self) -> dict[str, Principal]:
        if self._by_hash is None:
            with self.db.session() as s:
                rows = list(s.query(ApiKeyRow))
                self._by_hash = {r.key_hash: self._principal(r) for r in rows}
        return self._by_hash

    @staticmethod
    def _principal(row: ApiKeyRow) -> Principal:
        return Principal(row.name, tuple(row.scopes), subject=f"key:{row.id}", rules=_rules(row))

    def load(self) -> None:
        """Read the keys into memory (at startup, so the first request does not)."""
        self._loaded()

    def stored(self, token: str) -> Principal | None:
        """The principal of a stored key, from memory; its use is written later."""
        principal = self._loaded().get(hash_key(token))
        if principal is not None and principal.rules is not None:
            self._used[principal.rules.id] = utcnow()
            self._wake_writer()
        return principal

    def _wake_writer(self) -> None:
        if self._writer is not None and not self._writer.done():
            return
        with contextlib.suppress(RuntimeError):  # no running loop: written at the next flush
            self._writer = asyncio.get_running_loop().create_task(self._write_soon())

    async def _write_soon(self) -> None:
        await asyncio.sleep(LAST_USED_WRITE_S)
        await self.flush()

    async def flush(self) -> None:
        """Write the last-use times noted so far."""
        used, self._used = self._used, {}
        if used:
            try:
                await asyncio.to_thread(self._write_used, used)
            except Exception:  # a lost last-use time must never break a request
                log.exception("could not write the last use of %d keys", len(used))

    def _write_used(self, used: dict[str, datetime]) -> None:
        with self.db.session() as s:
            for key_id, at in used.items():
                s.execute(update(ApiKeyRow).where(ApiKeyRow.id == key_id).values(last_used_at=at))

    async def close(self) -> None:
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        await self.flush()

    def create(self, request: KeyRequest) -> tuple[str, KeyInfo]:
        """A new key: the secret is returned once, only its hash is kept."""
        request.check(utcnow())
        secret = new_secret()
        row = ApiKeyRow(
            id=uuid.uuid4().hex,
            name=request.name.strip()[:128],
            prefix=secret[:SHOWN_CHARS],
            key_hash=hash_key(secret),
            scopes=list(request.scopes),
            models=list(request.models) if request.models is not None else None,
            expires_at=request.expires_at,
            limits=request.limits.wire(),
            created_at=utcnow(),
        )
        with self.db.session() as s:
            s.add(row)
        self._loaded()[row.key_hash] = self._principal(row)
        return secret, self.public(row)

    def list(self) -> list[KeyInfo]:
        with self.db.session() as s:
            rows = list(s.query(ApiKeyRow).order_by(ApiKeyRow.created_at))
            return [self.public(r, self._used.get(r.id)) for r in rows]

    def delete(self, key_id: str) -> KeyInfo:
        """Revoke a key: refused from the next request on. Returns what it was."""
        with self.db.session() as s:
            row = s.get(ApiKeyRow, key_id)
            if row is None:
                raise NotFound(f"there is no API key {key_id!r}", code="api_key_not_found")
            info = self.public(row)
            s.delete(row)
            self._loaded().pop(row.key_hash, None)
        self._used.pop(key_id, None)
        return info

    @staticmethod
    def public(row: ApiKeyRow, used: datetime | None = None) -> KeyInfo:
        rules = _rules(row)
        return KeyInfo(
            rules=rules,
            name=row.name,
            scopes=tuple(row.scopes),
            created_at=row.created_at,
            last_used_at=used or row.last_used_at,
        )
