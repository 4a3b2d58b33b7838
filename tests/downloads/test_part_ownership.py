"""A partial file belongs to one download (issue 19, hole 3): the splice attack, and the rules
that stop it — URL and validator recorded beside the part, If-Range, reserved names."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from modelyard.downloads.http_engine import part_path
from modelyard.downloads.part_record import record_path
from tests.downloads.support import MiB, add_payload, create, wait_state
from tests.fakes.fileserver import FileServer
from tests.support.app_server import RunningApp

ONE_ATTEMPT = {"download_max_attempts": 1}


def gets(server: FileServer, name: str) -> list[tuple[str | None, str | None]]:
    """(Range, If-Range) of every GET of ``name``."""
    return [
        (r.header("Range"), r.header("If-Range"))
        for r in server.requests
        if r.method == "GET" and r.path.endswith(name)
    ]


def test_a_download_of_another_url_never_resumes_a_failed_ones_part(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard(**ONE_ATTEMPT)
    first = add_payload(file_server, "a.gguf", 3 * MiB, seed=1)
    second = add_payload(file_server, "b.gguf", 3 * MiB, seed=2)
    file_server.cut(after_bytes=1_277_952, path="a.gguf")
    failed = create(app.http, source="url", url=first.url, filename="x.gguf")
    assert wait_state(app.http, failed["id"], {"failed", "completed"})["state"] == "failed"
    dest = app.settings.resolved_models_dir / "x.gguf"
    assert part_path(dest).stat().st_size == 1_277_952  # the attacker's bytes wait there

    task = create(app.http, source="url", url=second.url, filename="x.gguf")
    done = wait_state(app.http, task["id"], {"failed", "completed"})

    assert done["state"] == "completed"
    assert dest.read_bytes() == second.data  # not a's first 1,277,952 bytes, then b's
    assert gets(file_server, "b.gguf") == [(None, None)]  # from zero, no Range at all
    assert not part_path(dest).exists() and not record_path(dest).exists()


def test_a_resume_names_the_validator_its_bytes_came_with(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard(**ONE_ATTEMPT)
    payload = add_payload(file_server, "m.gguf", 3 * MiB)
    file_server.cut(after_bytes=MiB, path="m.gguf")
    task = create(app.http, source="url", url=payload.url)
    assert wait_state(app.http, task["id"], {"failed", "completed"})["state"] == "failed"
    dest = app.settings.resolved_models_dir / "m.gguf"
    record = json.loads(record_path(dest).read_text())
    assert record["url"] == payload.url and record["validator"]

    app.http.post(f"/api/downloads/{task['id']}/retry")
    done = wait_state(app.http, task["id"], {"failed", "completed"})

    assert done["state"] == "completed" and dest.read_bytes() == payload.data
    assert gets(file_server, "m.gguf")[-1] == (f"bytes={MiB}-", record["validator"])


def test_a_part_without_a_record_starts_over(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard()
    payload = add_payload(file_server, "m.gguf", 2 * MiB)
    dest = app.settings.resolved_models_dir / "m.gguf"
    part_path(dest).write_bytes(b"planted by someone else" * 1000)

    task = create(app.http, source="url", url=payload.url)
    done = wait_state(app.http, task["id"], {"failed", "completed"})

    assert done["state"] == "completed" and dest.read_bytes() == payload.data
    assert gets(file_server, "m.gguf") == [(None, None)]


def test_a_part_that_changed_version_on_the_server_starts_over(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard(**ONE_ATTEMPT)
    payload = add_payload(file_server, "m.gguf", 3 * MiB, seed=1)
    file_server.cut(after_bytes=MiB, path="m.gguf")
    task = create(app.http, source="url", url=payload.url)
    assert wait_state(app.http, task["id"], {"failed", "completed"})["state"] == "failed"
    newer = add_payload(file_server, "m.gguf", 3 * MiB, seed=3)  # new ETag and bytes

    app.http.post(f"/api/downloads/{task['id']}/retry")
    done = wait_state(app.http, task["id"], {"failed", "completed"})

    assert done["state"] == "completed"
    assert (app.settings.resolved_models_dir / "m.gguf").read_bytes() == newer.data
    range_, if_range = gets(file_server, "m.gguf")[-1]
    assert range_ == f"bytes={MiB}-" and if_range  # asked to resume the old version…
    assert file_server.requests[-1].status == 200  # …and was sent the new one whole


@pytest.mark.parametrize(
    "name", ["x.gguf.part", "X.GGUF.PART", "x.gguf.part.json", "x.gguf.part.json.tmp"]
)
def test_reserved_names_are_refused_as_file_names(
    modelyard: Callable[..., RunningApp], file_server: FileServer, name: str
) -> None:
    app = modelyard()
    payload = add_payload(file_server, "m.gguf", 1024)
    for body in (
        {"source": "url", "url": payload.url, "filename": name},
        {"source": "url", "url": file_server.url_for(name)},
    ):
        resp = app.http.post("/api/downloads", json=body)
        assert resp.status_code == 400 and resp.json()["code"] == "invalid_filename"
    compat = app.http.post("/api/models/download", json={"url": payload.url, "filename": name})
    assert compat.status_code == 400 and compat.json()["code"] == "invalid_filename"
    assert list(app.settings.resolved_models_dir.iterdir()) == []
