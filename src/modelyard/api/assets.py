"""The dashboard's files, held in memory and served under versioned URLs.

Every file of ``static/`` is read once (again when one changes on disk), with its gzip form
made then, so serving one costs no disk access and no compression. The version is a hash of
all of them: ``/static/<version>/…`` may be cached for a year (``immutable``), and an upgrade
changes every URL, so a browser can never mix old modules with new ones. ``index.html`` is
revalidated on every visit; it names the version, preloads the modules of the app shell and
lists each page's modules (its import graph, read from the ``import … from`` lines), which
the shell preloads all at once instead of the browser finding them one import at a time.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import mimetypes
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

GZIP_MIN_BYTES = 1024  # below this, gzip's header and a round of inflate cost more than they save
_COMPRESSIBLE = {".js", ".css", ".html", ".svg", ".json"}
_MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
# Static imports and re-exports (`import {a} from "./x.js"`, `export * from "./y.js"`, over
# several lines too) and bare ones (`import "./z.js"`); dynamic `import()` is not followed.
_IMPORT = re.compile(
    r"""(?:^|[;\n])\s*(?:import|export)\b[^;"'`()]*?\bfrom\s*["']([^"']+)["']"""
    r"""|(?:^|[;\n])\s*import\s*["']([^"']+)["']"""
)
SHELL = "js/app.js"
INDEX = "index.html"
PAGES = "pages"
VERSION_LENGTH = 12


@dataclass(frozen=True)
class Asset:
    """One file as served: its bytes, their gzip form (None when it would not pay), an ETag."""

    body: bytes
    gzipped: bytes | None
    media_type: str
    etag: str


def _asset(name: str, body: bytes) -> Asset:
    suffix = posixpath.splitext(name)[1]
    media_type = _MEDIA_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "text/plain"
    if media_type.startswith("text/") and "charset" not in media_type:
        media_type += "; charset=utf-8"
    packed = None
    if suffix in _COMPRESSIBLE and len(body) >= GZIP_MIN_BYTES:
        packed = gzip.compress(body, compresslevel=9, mtime=0)
    digest = hashlib.sha256(body).hexdigest()[:20]
    return Asset(body, packed, media_type, f'"{digest}"')


def module_imports(name: str, source: str) -> list[str]:
    """The modules that module ``name`` (a path under static/) imports statically."""
    base = posixpath.dirname(name)
    found = []
    for match in _IMPORT.finditer(source):
        target = match.group(1) or match.group(2)
        if target.startswith("."):
            found.append(posixpath.normpath(posixpath.join(base, target)))
    return found


def closure(graph: dict[str, list[str]], start: str) -> list[str]:
    """``start`` and every module it imports, directly or not, in first-seen order."""
    seen: dict[str, None] = {}
    stack = [start]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen[name] = None
        stack.extend(reversed(graph.get(name, [])))
    return list(seen)


class Assets:
    """The files of ``root``, their version, and the index page that names it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._stamp: tuple[tuple[str, int, int], ...] = ()
        self.version = ""
        self.files: dict[str, Asset] = {}
        self.index = _asset(INDEX, b"")
        self.page_modules: dict[str, list[str]] = {}
        self.shell_modules: list[str] = []
        self.refresh()

    def _scan(self) -> tuple[tuple[str, int, int], ...]:
        return tuple(
            sorted(
                (p.relative_to(self.root).as_posix(), st.st_size, st.st_mtime_ns)
                for p in self.root.rglob("*")
                if p.is_file() and (st := p.stat())
            )
        )

    def refresh(self) -> None:
        """Read the files again if any changed (a stat of each: cheap enough per page visit)."""
        stamp = self._scan()
        if stamp == self._stamp:
            return
        raw = {name: (self.root / name).read_bytes() for name, _, _ in stamp}
        files = {name: _asset(name, body) for name, body in raw.items() if name != INDEX}
        version = hashlib.sha256(
            "".join(f"{name}:{asset.etag}" for name, asset in sorted(files.items())).encode()
        ).hexdigest()[:VERSION_LENGTH]
        graph = {
            name: module_imports(name, body.decode())
            for name, body in raw.items()
            if name.endswith(".js")
        }
        shell = closure(graph, SHELL)
        pages = {
            entry.parent.name: [
                m for m in closure(graph, entry.relative_to(self.root).as_posix()) if m not in shell
            ]
            for entry in sorted((self.root / PAGES).glob("*/index.js"))
        }
        self.files, self.version, self.shell_modules, self.page_modules = (
            files,
            version,
            shell,
            pages,
        )
        self.index = _asset(INDEX, self._render_index(raw[INDEX].decode()))
        self._stamp = stamp

    def _render_index(self, html: str) -> bytes:
        prefix = f"/static/{self.version}/"
        preloads = "".join(
            f'\n  <link rel="modulepreload" href="{prefix}{name}">'
            for name in self.shell_modules[1:]  # [0] is app.js, loaded by its own tag
        )
        # A data block, not a script: it runs nothing, so a strict CSP allows it.
        pages = json.dumps(self.page_modules, separators=(",", ":")).replace("</", "<\\/")
        data = f'\n  <script type="application/json" id="page-modules">{pages}</script>'
        html = html.replace('"/static/', f'"{prefix}')
        return html.replace("\n</head>", f"{preloads}{data}\n</head>", 1).encode()

    def is_version(self, segment: str) -> bool:
        """Whether a URL segment has the form of a version (this one or another)."""
        return len(segment) == VERSION_LENGTH and all(c in "0123456789abcdef" for c in segment)
