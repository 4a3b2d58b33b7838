"""The pages a browser opens: the dashboard and the API docs, both from local files.

The dashboard's files are held in memory (``api/assets.py``). ``/`` and unversioned
``/static/…`` paths are revalidated on every use (ETag, ``no-cache``); ``/static/<version>/…``
never changes, so it is cached for a year. A version other than the current one is a tab
opened before an upgrade asking for a module it has not loaded yet: it gets 404
``stale_dashboard``, and the dashboard reloads itself.

The docs page is Swagger UI as the ``swagger-ui-bundle-v2`` package ships it, never a script
from a CDN: anything running on modelyard's origin could call its API as the user.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import Route
from swagger_ui_bundle import swagger_ui_path

from modelyard.api.assets import RECHECK_S, Asset, Assets
from modelyard.api.headers import CSP, content_security_policy
from modelyard.api.policy import RoutePolicy, RouteTable, policy
from modelyard.errors import NotFound

STATIC = Path(__file__).resolve().parent.parent / "static"
PUBLIC = RoutePolicy(public=True)
REVALIDATE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"

router = APIRouter(include_in_schema=False, dependencies=[policy(public=True)])


def _assets(request: Request) -> Assets:
    assets: Assets = request.app.state.assets
    return assets


def _serve(
    asset: Asset, request: Request, cache_control: str, extra: dict[str, str] | None = None
) -> Response:
    headers = {"ETag": asset.etag, "Cache-Control": cache_control, "Vary": "Accept-Encoding"}
    headers.update(extra or {})
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    body = asset.body
    if asset.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
        body = asset.gzipped
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=asset.media_type, headers=headers)


async def index(request: Request) -> Response:
    assets = _assets(request)
    assets.refresh(max_age_s=RECHECK_S)  # a file edited on disk shows on a later visit
    # Its own policy, in its 304 too (a revalidation updates the headers the browser keeps).
    policy = content_security_policy(*assets.index_scripts)
    return _serve(assets.index, request, REVALIDATE, {CSP: policy})


async def static_file(request: Request) -> Response:
    assets = _assets(request)
    path: str = request.path_params["path"]
    version, _, rest = path.partition("/")
    if version == assets.version:
        asset, cache_control = assets.files.get(rest), IMMUTABLE
    elif assets.is_version(version):
        raise NotFound(
            f"{path} belongs to another version of the dashboard",
            code="stale_dashboard",
            hint="modelyard was upgraded since this page was loaded: reload the page.",
        )
    else:
        asset, cache_control = assets.files.get(path), REVALIDATE
    if asset is None:
        raise NotFound(f"no dashboard file {path}", hint="Check the path.")
    return _serve(asset, request, cache_control)


@router.get("/docs")
async def api_docs() -> FileResponse:
    return FileResponse(STATIC / "docs" / "index.html", headers={"Cache-Control": "no-cache"})


def install(app: FastAPI, table: RouteTable) -> None:
    """The pages, the dashboard's files and Swagger UI's, all public (they hold no data).
    Installed before the API's routers: a page load asks for some thirty files at once, and
    each is found sooner. The dashboard's two routes are plain Starlette routes: they take no
    parameters worth validating, and FastAPI's dependency solving was half the cost of
    serving a file from memory (0.7 ms, 30 times per cold load)."""
    app.state.assets = Assets(STATIC)
    for path, endpoint in (("/", index), ("/static/{path:path}", static_file)):
        app.router.routes.append(Route(path, endpoint, methods=["GET", "HEAD"]))
        table.add(app.router.routes[-1], PUBLIC.over(table.default))
    app.include_router(router)
    table.add_router(router)
    app.mount("/docs/assets", StaticFiles(directory=Path(str(swagger_ui_path))), name="docs-assets")
    table.add(app.router.routes[-1], PUBLIC.over(table.default))
