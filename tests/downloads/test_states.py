"""A download's states (downloads/states.py): the transition table says which state may follow
which, and the repository, where every state change happens, refuses any other change."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from modelyard.downloads.states import (
    ACTIVE,
    FINISHED,
    RUNNING,
    TRANSITIONS,
    DownloadState,
    check_transition,
)
from modelyard.errors import IllegalTransition
from modelyard.store.tables import DownloadRow
from tests.downloads.support import MiB, Recorder, add_payload, create, wait_state
from tests.fakes.fileserver import FileServer
from tests.support.app_server import RunningApp

S = DownloadState
# Every change the manager makes (SPEC §5), and nothing else.
LEGAL = {
    (S.QUEUED, S.DOWNLOADING),  # its turn came
    (S.QUEUED, S.PAUSED),
    (S.QUEUED, S.CANCELLED),
    (S.DOWNLOADING, S.VERIFYING),  # every byte is there
    (S.DOWNLOADING, S.COMPLETED),  # an Ollama pull that reports no verifying stage
    (S.DOWNLOADING, S.PAUSED),
    (S.DOWNLOADING, S.FAILED),
    (S.DOWNLOADING, S.CANCELLED),
    (S.DOWNLOADING, S.QUEUED),  # modelyard restarted while it ran
    (S.VERIFYING, S.COMPLETED),
    (S.VERIFYING, S.PAUSED),
    (S.VERIFYING, S.FAILED),
    (S.VERIFYING, S.CANCELLED),
    (S.VERIFYING, S.QUEUED),
    (S.PAUSED, S.QUEUED),  # resume
    (S.PAUSED, S.CANCELLED),
    (S.FAILED, S.QUEUED),  # retry
    (S.CANCELLED, S.QUEUED),  # retry
}


def test_the_table_allows_exactly_the_changes_the_manager_makes() -> None:
    assert set(TRANSITIONS) == set(S)
    table = {(a, b) for a, followers in TRANSITIONS.items() for b in followers}
    assert table == LEGAL
    for current, new in itertools.product(S, S):
        if (current, new) in LEGAL:
            check_transition("t", current, new)
        else:
            with pytest.raises(IllegalTransition) as refused:
                check_transition("t", current, new)
            assert refused.value.error_code == "illegal_transition"
            assert refused.value.http_status == 500  # a bug, never the user's input


def test_the_state_groups_follow_the_table() -> None:
    assert not TRANSITIONS[S.COMPLETED]  # completed is for good
    assert RUNNING < ACTIVE and not ACTIVE & FINISHED and set(S) == ACTIVE | FINISHED
    # Every unfinished task can be cancelled; every finished but completed one retried.
    assert all(S.CANCELLED in TRANSITIONS[s] for s in ACTIVE)
    assert all(S.QUEUED in TRANSITIONS[s] for s in FINISHED - {S.COMPLETED})


def test_the_repository_refuses_an_illegal_change_and_saves_and_announces_nothing(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard()
    payload = add_payload(file_server, "model.gguf", MiB)
    done = create(app.http, source="url", url=payload.url)
    wait_state(app.http, done["id"], {"completed"})
    recorder = Recorder().attach(app.services.bus)
    repository = app.services.downloads.repository
    task = repository.get(done["id"])

    for state in (S.QUEUED, S.DOWNLOADING, S.PAUSED):
        with pytest.raises(IllegalTransition):
            repository.set_state(task, state)
    with pytest.raises(IllegalTransition):
        repository.fail(task, "http_error", "too late")

    assert app.http.get(f"/api/downloads/{done['id']}").json()["state"] == "completed"
    log = app.http.get(f"/api/downloads/{done['id']}/log").json()["lines"]
    assert not any("too late" in line for line in log)
    repository.close()  # the queued store writes are done; nothing was queued
    with app.services.db.session() as s:
        row = s.get(DownloadRow, done["id"])
        assert row is not None and row.state == "completed"
    assert recorder.events == []
