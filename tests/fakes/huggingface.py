"""A Hugging Face Hub stand-in, reached through HF_ENDPOINT (PROTOCOLS.md §6).

Serves model info (``siblings``, with sizes and ``lfs.sha256`` when ``blobs=true``), the
paginated tree listing (``Link: rel="next"``), and ``HEAD``/``GET`` on resolve URLs: LFS files
answer 302 to a CDN on another host name (``localhost`` instead of ``127.0.0.1``, a real
Range-capable FileServer) with X-Repo-Commit, X-Linked-Etag and X-Linked-Size; small git files
answer 200. Errors carry ``X-Error-Code``/``X-Error-Message`` with 401/403/404 as the Hub does.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.fileserver import FileServer
from tests.support.servers import ServerThread

_LFS_SUFFIXES = (".gguf", ".bin", ".safetensors")
_INVALID_TOKEN = "Invalid credentials in Authorization header"


@dataclass
class HubFile:
    path: str
    data: bytes

    @property
    def lfs(self) -> bool:
        return self.path.endswith(_LFS_SUFFIXES)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def git_oid(self) -> str:
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, HubFile]
    revisions: dict[str, str]  # branch or tag -> 40-hex commit
    gated: bool = False
    private: bool = False
    granted: set[str] = field(default_factory=set)  # tokens that may read it

    def commit_for(self, revision: str) -> str | None:
        if revision in self.revisions:
            return self.revisions[revision]
        return revision if revision in self.revisions.values() else None


@dataclass
class HubRequest:
    method: str
    path: str
    authorization: str | None


class FakeHub:
    """The Hub on 127.0.0.1 and its CDN on localhost, both on free ports."""

    def __init__(self, workdir: Path, *, page_size: int = 2) -> None:
        self.tokens: set[str] = set()  # every valid token, granted or not
        self.repos: dict[str, HubRepo] = {}
        self.requests: list[HubRequest] = []
        self.page_size = page_size
        self.cdn = FileServer(workdir / "cdn", host_alias="localhost")
        self._lock = threading.Lock()
        self._server = ServerThread(_app(self))

    @property
    def endpoint(self) -> str:
        return self._server.url

    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, bytes],
        *,
        gated: bool = False,
        private: bool = False,
        granted: set[str] | None = None,
        branches: tuple[str, ...] = ("main",),
    ) -> HubRepo:
        """A repo whose LFS files are on the CDN; every branch points at one new commit."""
        commit = secrets.token_hex(20)
        repo = HubRepo(
            repo_id,
            {path: HubFile(path, data) for path, data in files.items()},
            {branch: commit for branch in branches},
            gated=gated,
            private=private,
            granted=set(granted or ()),
        )
        for hub_file in repo.files.values():
            if hub_file.lfs:
                self.cdn.add_file(hub_file.sha256, hub_file.data)
        self.repos[repo_id] = repo
        return repo

    def start(self) -> FakeHub:
        self.cdn.start()
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        self.cdn.stop()

    def _record(self, request: Request) -> None:
        with self._lock:
            auth = request.headers.get("authorization")
            self.requests.append(HubRequest(request.method, request.url.path, auth))


def _app(hub: FakeHub) -> Starlette:
    async def model_info(request: Request) -> Response:
        repo, commit, failure = _lookup(hub, request, for_download=False)
        if failure is not None or repo is None or commit is None:
            return failure or _error(404, "RepoNotFound", "Repository not found")
        blobs = request.query_params.get("blobs", "").lower() == "true"
        siblings = [_sibling(f, blobs) for f in sorted(repo.files.values(), key=_by_path)]
        owner, _, _ = repo.repo_id.partition("/")
        gated: Any = "manual" if repo.gated else False
        body: dict[str, Any] = {"_id": commit[:24], "id": repo.repo_id, "modelId": repo.repo_id}
        body |= {"author": owner, "sha": commit, "private": repo.private, "gated": gated}
        body |= {"disabled": False, "tags": ["gguf"], "library_name": "gguf"}
        return JSONResponse(body | {"siblings": siblings})

    async def tree(request: Request) -> Response:
        repo, commit, failure = _lookup(hub, request, for_download=False)
        if failure is not None or repo is None or commit is None:
            return failure or _error(404, "RepoNotFound", "Repository not found")
        prefix = request.path_params.get("path", "").strip("/")
        recursive = request.query_params.get("recursive", "").lower() == "true"
        items = _tree_items(repo, prefix, recursive)
        cursor = int(request.query_params.get("cursor", "0"))
        page = items[cursor : cursor + hub.page_size]
        headers = {}
        if cursor + hub.page_size < len(items):
            next_url = request.url.include_query_params(cursor=cursor + hub.page_size)
            headers["Link"] = f'<{next_url}>; rel="next"'
        return JSONResponse(page, headers=headers)

    async def resolve(request: Request) -> Response:
        repo, commit, failure = _lookup(hub, request, for_download=True)
        if failure is not None or repo is None or commit is None:
            return failure or _error(404, "RepoNotFound", "Repository not found")
        hub_file = repo.files.get(request.path_params["path"])
        if hub_file is None:
            return _error(404, "EntryNotFound", "Entry not found", commit)
        headers = {"X-Repo-Commit": commit, "Accept-Ranges": "bytes"}
        if not hub_file.lfs:
            headers["ETag"] = f'"{hub_file.git_oid}"'
            return Response(hub_file.data, headers=headers, media_type="text/plain")
        headers |= {"ETag": f'"{hub_file.sha256}"', "X-Linked-Etag": f'"{hub_file.sha256}"'}
        headers |= {"X-Linked-Size": str(len(hub_file.data))}
        # A signed CDN URL, like the Hub's: the signature lives in the query.
        headers["Location"] = f"{hub.cdn.url_for(hub_file.sha256)}?X-Amz-Signature=fake"
        return Response(b"", status_code=302, headers=headers)

    models = "/api/models/{owner}/{name}"
    return Starlette(
        routes=[
            Route(models, model_info),
            Route(models + "/revision/{rev}", model_info),
            Route(models + "/tree/{rev}", tree),
            Route(models + "/tree/{rev}/{path:path}", tree),
            Route("/{owner}/{name}/resolve/{rev}/{path:path}", resolve, methods=["GET", "HEAD"]),
        ]
    )


def _lookup(
    hub: FakeHub, request: Request, *, for_download: bool
) -> tuple[HubRepo | None, str | None, Response | None]:
    """(repo, commit, None), or an error response as the Hub would give it."""
    hub._record(request)
    auth = request.headers.get("authorization", "")
    token = auth.removeprefix("Bearer ").strip() or None
    if token is not None and token not in hub.tokens:
        return None, None, _error(401, None, _INVALID_TOKEN)
    repo_id = f"{request.path_params['owner']}/{request.path_params['name']}"
    repo = hub.repos.get(repo_id)
    if repo is None or (repo.private and token not in repo.granted):
        # The Hub answers 401 for missing and private repos alike when unauthenticated.
        return None, None, _error(401 if token is None else 404, "RepoNotFound", "Not found")
    if for_download and repo.gated and token not in repo.granted:
        status = 401 if token is None else 403
        return None, None, _error(status, "GatedRepo", f"Access to {repo_id} is restricted")
    commit = repo.commit_for(request.path_params.get("rev", "main"))
    if commit is None:
        return None, None, _error(404, "RevisionNotFound", "Invalid rev id")
    return repo, commit, None


def _error(status: int, code: str | None, message: str, commit: str | None = None) -> Response:
    headers = {"X-Error-Message": message}
    if code is not None:
        headers["X-Error-Code"] = code
    if commit is not None:
        headers["X-Repo-Commit"] = commit
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _sibling(hub_file: HubFile, blobs: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"rfilename": hub_file.path}
    if blobs:
        entry |= {"size": len(hub_file.data), "blobId": hub_file.git_oid}
        if hub_file.lfs:
            lfs = {"sha256": hub_file.sha256, "size": len(hub_file.data), "pointerSize": 135}
            entry["lfs"] = lfs
    return entry


def _tree_items(repo: HubRepo, prefix: str, recursive: bool) -> list[dict[str, Any]]:
    """Files and directories under ``prefix``, as /api/models/.../tree lists them."""
    items: dict[str, dict[str, Any]] = {}
    for hub_file in sorted(repo.files.values(), key=_by_path):
        if prefix and not hub_file.path.startswith(prefix + "/"):
            continue
        rest = hub_file.path[len(prefix) + 1 :] if prefix else hub_file.path
        parts = rest.split("/")
        depth = len(parts) if recursive else 1
        for level in range(1, min(depth, len(parts) - 1) + 1):
            directory = "/".join(([prefix] if prefix else []) + parts[:level])
            items.setdefault(directory, {"type": "directory", "oid": "0" * 40, "path": directory})
        if recursive or len(parts) == 1:
            entry = {"type": "file", "oid": hub_file.git_oid, "size": len(hub_file.data)}
            entry["path"] = hub_file.path
            if hub_file.lfs:
                lfs = {"oid": hub_file.sha256, "size": len(hub_file.data), "pointerSize": 135}
                entry["lfs"] = lfs
            items[hub_file.path] = entry
    return list(items.values())


def _by_path(hub_file: HubFile) -> str:
    return hub_file.path


@pytest.fixture
def fake_hub(tmp_path: Path) -> Iterator[FakeHub]:
    """A started FakeHub (and its CDN), stopped after the test."""
    hub = FakeHub(tmp_path / "hub").start()
    try:
        yield hub
    finally:
        hub.stop()
