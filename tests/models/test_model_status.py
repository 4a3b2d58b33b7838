"""A model's status changes only along the transition table: ``set_state`` refuses the others
with 409 ``invalid_model_transition`` and leaves the row as it was; ``removed`` exists only in
events; a local file still downloading cannot be started."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from modelyard.errors import Conflict
from modelyard.models.store import CatalogStore, Listing
from modelyard.models.types import ModelEntry, ModelKey, ModelStatus, Scope
from modelyard.store.db import Database
from tests.support.app_server import RunningApp
from tests.support.catalog import wait_quiet

S = ModelStatus
ALLOWED = {
    S.AVAILABLE: {S.STARTING, S.LOADED, S.DOWNLOADING, S.FAILED},
    S.STARTING: {S.LOADED, S.AVAILABLE, S.DOWNLOADING},
    S.LOADED: {S.AVAILABLE, S.STARTING, S.DOWNLOADING},
    S.DOWNLOADING: {S.AVAILABLE, S.FAILED},
    S.FAILED: {S.DOWNLOADING, S.AVAILABLE},
    S.REMOVED: set(),
}
KEY = ModelKey("llamacpp", "local", "tiny.gguf")


def test_the_transition_table() -> None:
    for current in S:
        for new in S:
            expected = new is current or new in ALLOWED[current]
            assert current.can_become(new) is expected, (current, new)
    assert not any(status.can_become(S.REMOVED) for status in S if status is not S.REMOVED)


@pytest.fixture
def store(tmp_path: Path) -> CatalogStore:
    db = Database(f"sqlite:///{tmp_path / 'catalog.db'}")
    db.migrate()
    store = CatalogStore(db)
    entry = ModelEntry(*KEY, size=10, format="gguf")
    store.apply([Listing(Scope(KEY.provider, KEY.instance_id), [entry])], live_scopes=None, keep={})
    return store


def test_set_state_follows_the_table(store: CatalogStore) -> None:
    model, event = store.set_state(KEY, S.STARTING, None)
    assert model is not None and model.status is S.STARTING
    assert event is not None and event.wire()["status"] == "starting"
    loaded = {"pid": 1, "base_url": "http://127.0.0.1:1"}
    model, event = store.set_state(KEY, S.LOADED, loaded)
    assert model is not None and (model.status, model.loaded) == (S.LOADED, loaded)
    assert event is not None and event.wire()["loaded"] is True
    model, event = store.set_state(KEY, S.LOADED, loaded)
    assert event is None  # nothing changed, nothing to announce
    model, _ = store.set_state(KEY, S.DOWNLOADING, None)
    assert model is not None and model.status is S.DOWNLOADING


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        ([S.DOWNLOADING], S.LOADED),
        ([S.DOWNLOADING], S.STARTING),
        ([S.DOWNLOADING, S.FAILED], S.LOADED),
        ([S.STARTING, S.LOADED], S.FAILED),
        ([], S.REMOVED),
    ],
    ids=["downloading-loaded", "downloading-starting", "failed-loaded", "loaded-failed", "removed"],
)
def test_set_state_refuses_what_the_table_does_not_allow(
    store: CatalogStore, path: list[ModelStatus], refused: ModelStatus
) -> None:
    for status in path:
        store.set_state(KEY, status, None)
    before = store.get(KEY)
    with pytest.raises(Conflict) as err:
        store.set_state(KEY, refused, None)
    assert err.value.error_code == "invalid_model_transition"
    assert store.get(KEY) == before


def test_a_local_file_being_downloaded_cannot_be_started(
    modelyard: Callable[..., RunningApp], tiny_gguf: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny.gguf").write_bytes(tiny_gguf.read_bytes())
    app = modelyard(models_dir=models)
    assert app.http.post("/api/models/sync").json()["errors"] == []
    wait_quiet(app)
    catalog = app.services.catalog
    # As a download of the same file would: the catalog follows it (so a background sync
    # keeps the row downloading) and the row says so.
    catalog._downloads[KEY] = S.DOWNLOADING
    catalog.store.set_state(KEY, S.DOWNLOADING, None)

    resp = app.http.post("/api/models/start", json={"provider": "llamacpp", "name": "tiny.gguf"})
    assert resp.status_code == 409 and resp.json()["code"] == "invalid_model_transition"
    assert app.services.instances.list() == []  # no server was launched for it
