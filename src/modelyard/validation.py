"""Validation of names, file names and URLs that come from users (SPEC §12)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from modelyard.errors import InvalidInput

_MAX_URL = 4096
_MAX_FILENAME = 255
_MAX_MODEL_NAME = 512
# Names modelyard gives its own files beside a download: the part file, its record and the
# record's temporary (downloads/engine_types.part_path, downloads/part_record.py).
_RESERVED_NAME = re.compile(r"\.part(\.json(\.tmp)?)?$", re.IGNORECASE)
_RESERVED_HINT = "Names ending in .part or .part.json are modelyard's partial downloads."


def is_reserved_name(name: str) -> bool:
    """Whether ``name`` is one modelyard uses for its own files beside a download."""
    return _RESERVED_NAME.search(name) is not None


def is_local_host(host: str) -> bool:
    """``localhost`` (or a name under it) or a loopback address."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_base_url(value: str, *, where: str = "base_url") -> str:
    """An instance's base URL: http(s), a host, no query or fragment. Trailing '/' dropped."""
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InvalidInput(
            f"{where} {value!r} is not an http(s) URL with a host",
            code="invalid_url",
            hint="Use a URL like http://127.0.0.1:11434.",
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise InvalidInput(f"{where} {value!r} has an invalid port", code="invalid_url") from exc
    if parts.query or parts.fragment:
        raise InvalidInput(
            f"{where} {value!r} must not carry a query or fragment", code="invalid_url"
        )
    return value.rstrip("/")


def validate_public_url(value: str) -> str:
    """The URL people reach modelyard at: a base URL at the root of its host (the dashboard
    and the gateway live at fixed paths), with no credentials in it."""
    url = validate_base_url(value, where="public_url")
    parts = urlsplit(url)
    if parts.path or parts.username or parts.password:
        raise InvalidInput(
            f"public_url {value!r} must be a scheme, a host and a port only",
            code="invalid_url",
            hint="Use a URL like https://models.example.lan (modelyard is served at the root).",
        )
    return url


_KEY_CHARACTERS = re.compile(r"[!-~]*")  # visible ASCII: what an HTTP header carries as is


def validate_api_key(value: str, *, where: str = "api_key") -> str:
    """A key modelyard sends to a server: visible ASCII only. Anything else cannot go in a
    header (httpx refuses it while sending), so it is refused where it is given instead."""
    if _KEY_CHARACTERS.fullmatch(value) is None:
        raise InvalidInput(
            f"{where} holds characters an HTTP header cannot carry",
            code="invalid_api_key",
            hint="An API key is visible ASCII characters only (no spaces, accents or "
            "control characters); copy it again from where it was issued.",
        )
    return value


def validate_download_url(value: str) -> str:
    """A URL to download from: http or https with a host, bounded length."""
    if len(value) > _MAX_URL:
        raise InvalidInput("the URL is too long", code="invalid_url", hint="Shorten the URL.")
    parts = urlsplit(value.strip())
    if parts.scheme not in {"http", "https"}:
        raise InvalidInput(
            f"only http and https URLs can be downloaded, not {parts.scheme or 'no scheme'!r}",
            code="unsupported_scheme",
            hint="Give an http:// or https:// URL.",
        )
    if not parts.hostname:
        raise InvalidInput(
            f"the URL {value!r} has no host",
            code="invalid_url",
            hint="Give a full URL with a host.",
        )
    try:
        parts.port  # noqa: B018
    except ValueError as exc:
        raise InvalidInput(f"the URL {value!r} has an invalid port", code="invalid_url") from exc
    return value.strip()


def validate_filename(value: str) -> str:
    """A plain file name: no directories, no '..', no NUL, no leading dot, bounded length."""
    if (
        not value
        or len(value) > _MAX_FILENAME
        or "/" in value
        or "\\" in value
        or "\x00" in value
        or value.startswith(".")
        or any(ord(ch) < 32 for ch in value)
    ):
        raise InvalidInput(
            f"{value!r} is not an acceptable file name",
            code="invalid_filename",
            hint="Use a plain name like model-q4_k_m.gguf: no '/', no '..', no leading dot.",
        )
    if is_reserved_name(value):
        raise InvalidInput(
            f"{value!r} is a name modelyard keeps for its own files",
            code="invalid_filename",
            hint=_RESERVED_HINT,
        )
    return value


def validate_relative_path(value: str) -> PurePosixPath:
    """A path relative to the models directory (e.g. 'hf/owner/repo/x.gguf'), never escaping it."""
    if not value or "\x00" in value or "\\" in value or len(value) > 1024:
        raise InvalidInput(f"{value!r} is not an acceptable path", code="invalid_path")
    path = PurePosixPath(value)
    if path.is_absolute() or any(
        part in {"", ".", ".."} or part.startswith(".") for part in path.parts
    ):
        raise InvalidInput(
            f"{value!r} is not an acceptable path",
            code="invalid_path",
            hint="Use a path inside the models directory, without '..' or hidden parts.",
        )
    if is_reserved_name(path.name):
        raise InvalidInput(
            f"{value!r} names one of modelyard's own files",
            code="invalid_path",
            hint=_RESERVED_HINT,
        )
    return path


def resolve_inside(root: Path, relative: str) -> Path:
    """``root / relative`` after checking it stays inside ``root``."""
    rel = validate_relative_path(relative)
    full = (root / rel).resolve()
    if not full.is_relative_to(root.resolve()):
        raise InvalidInput(f"{relative!r} leaves the models directory", code="invalid_path")
    return full


def validate_model_name(name: str) -> str:
    """A model name as the API takes it: not empty, not huge, no control characters."""
    if not name or len(name) > _MAX_MODEL_NAME or any(ord(ch) < 32 for ch in name):
        raise InvalidInput(
            f"{name[:80]!r} is not a valid model name",
            code="invalid_model_name",
            hint="Use the name exactly as GET /api/models/list shows it.",
        )
    return name
