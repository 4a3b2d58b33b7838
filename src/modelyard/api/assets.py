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

import base64
import gzip
import hashlib
import json
import mimetypes
import os
import posixpath
import re
import time
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
# The scripts of index.html: boot.js (loaded async) starts the page's requests and preloads
# while the rest of app.js's graph arrives.
SHELL = ("js/boot.js", "js/app.js")
# A classic script index.html names with ``data-inline``: its text is put into the page (it must
# run before any module has arrived) and its hash into the page's Content-Security-Policy.
_INLINE = re.compile(r'<script data-inline src="/static/([^"]+)"></script>')
INDEX = "index.html"
PAGES = "pages"
VERSION_LENGTH = 12
RECHECK_S = 1.0  # how stale the served files may be after an edit on disk


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


def _inline_scripts(html: str, files: dict[str, bytes]) -> tuple[str, tuple[str, ...]]:
    """``html`` with each ``data-inline`` script's text in place of its tag, and the CSP
    sources that allow exactly those texts."""
    sources: list[str] = []

    def inline(match: re.Match[str]) -> str:
        text = files[match.group(1)].decode()
        if "</script" in text.lower():
            raise ValueError(f"{match.group(1)} cannot be inlined: it contains </script")
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        sources.append(f"'sha256-{digest}'")
        return f"<script>{text}</script>"

    return _INLINE.sub(inline, html), tuple(sources)


class Assets:
    """The files of ``root``, their version, and the index page that names it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._stamp: tuple[tuple[str, int, int], ...] = ()
        self._checked = 0.0
        self.version = ""
        self.files: dict[str, Asset] = {}
        self.index = _asset(INDEX, b"")
        self.index_scripts: tuple[str, ...] = ()  # CSP sources of the index's inline scripts
        self.page_modules: dict[str, list[str]] = {}  # page -> its modules beyond the shell's
        self.refresh()

    def _scan(self) -> tuple[tuple[str, int, int], ...]:
        found = []
        for folder, _, names in os.walk(self.root):
            for name in names:
                path = os.path.join(folder, name)
                st = os.stat(path)
                relative = os.path.relpath(path, self.root).replace(os.sep, "/")
                found.append((relative, st.st_size, st.st_mtime_ns))
        return tuple(sorted(found))

    def refresh(self, max_age_s: float = 0.0) -> None:
        """Read the files again if any changed; with ``max_age_s``, look at most that often
        (a stat of every file: cheap, but not free on every page visit)."""
        now = time.monotonic()
        if now - self._checked < max_age_s:
            return
        self._checked = now
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
        shell = list(dict.fromkeys(m for entry in SHELL for m in closure(graph, entry)))
        pages = {
            entry.parent.name: [
                m for m in closure(graph, entry.relative_to(self.root).as_posix()) if m not in shell
            ]
            for entry in sorted((self.root / PAGES).glob("*/index.js"))
        }
        self.files, self.version, self.page_modules = files, version, pages
        html, self.index_scripts = _inline_scripts(raw[INDEX].decode(), raw)
        self.index = _asset(INDEX, self._render_index(html, graph))
        self._stamp = stamp

    def _render_index(self, html: str, graph: dict[str, list[str]]) -> bytes:
        # A data block, not a script: it runs nothing, so a strict CSP allows it. It comes
        # before the scripts: boot.js may run before the parser reaches anything after it.
        pages = json.dumps(self.page_modules, separators=(",", ":")).replace("</", "<\\/")
        html = html.replace(
            '  <script type="module"',
            f'  <script type="application/json" id="page-modules">{pages}</script>\n'
            '  <script type="module"',
            1,
        )
        # Each script's modules preloaded right after its tag, in the order they are needed.
        emitted = set(SHELL)
        for entry in SHELL:
            links = []
            for name in closure(graph, entry):
                if name not in emitted:
                    emitted.add(name)
                    links.append(f'\n  <link rel="modulepreload" href="/static/{name}">')
            tag_end = html.index("</script>", html.index(f'src="/static/{entry}"')) + 9
            html = html[:tag_end] + "".join(links) + html[tag_end:]
        return html.replace('"/static/', f'"/static/{self.version}/').encode()

    def is_version(self, segment: str) -> bool:
        """Whether a URL segment has the form of a version (this one or another)."""
        return len(segment) == VERSION_LENGTH and all(c in "0123456789abcdef" for c in segment)
