"""The pages a browser opens: the dashboard's shell and the API docs, both from local files.

The docs page is Swagger UI as the ``swagger-ui-bundle-v2`` package ships it, never a script
from a CDN: anything running on modelyard's origin could call its API as the user.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from modelyard.api.policy import RoutePolicy, RouteTable, policy

STATIC = Path(__file__).resolve().parent.parent / "static"
PUBLIC = RoutePolicy(public=True)

router = APIRouter(include_in_schema=False, dependencies=[policy(public=True)])


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/docs")
async def api_docs() -> FileResponse:
    return FileResponse(STATIC / "docs" / "index.html", headers={"Cache-Control": "no-cache"})


def install(app: FastAPI, table: RouteTable) -> None:
    """The pages, the dashboard's files and Swagger UI's, all public (they hold no data)."""
    app.include_router(router)
    table.add_router(router)
    for path, directory in (("/static", STATIC), ("/docs/assets", Path(str(swagger_ui_path)))):
        app.mount(path, StaticFiles(directory=directory), name=path.strip("/"))
        table.add(app.router.routes[-1], PUBLIC.over(table.default))
