"""A download's states and which may follow which; the kinds of source it comes from (SPEC §5).

``queued → downloading → verifying → completed``, or ``paused``, ``failed``, ``cancelled``.
``TRANSITIONS`` is the whole set of legal changes; the repository, the one place where a
task's state changes, checks every change against it, so a change it does not list is a bug
that raises instead of showing a state that is not.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from modelyard.errors import IllegalTransition


class DownloadState(StrEnum):
    QUEUED = "queued"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    COMPLETED = "completed"
    PAUSED = "paused"
    FAILED = "failed"
    CANCELLED = "cancelled"


class SourceKind(StrEnum):
    """Where a download's bytes come from: modelyard fetches a URL or a Hub file itself; a
    runtime that pulls (``registry.puller``) is a source under its own kind's name."""

    OLLAMA = "ollama"  # the Ollama registry, through an instance's /api/pull
    URL = "url"  # an http(s) URL
    HF = "hf"  # a Hugging Face Hub file


_S = DownloadState
RUNNING = frozenset({_S.DOWNLOADING, _S.VERIFYING})
ACTIVE = frozenset({_S.QUEUED, *RUNNING, _S.PAUSED})
FINISHED = frozenset({_S.COMPLETED, _S.FAILED, _S.CANCELLED})

TRANSITIONS: Mapping[DownloadState, frozenset[DownloadState]] = MappingProxyType(
    {
        _S.QUEUED: frozenset({_S.DOWNLOADING, _S.PAUSED, _S.CANCELLED}),
        # A running task goes back to the queue when modelyard restarts (it resumes from its
        # part file); an Ollama pull may complete without a verifying stage of its own.
        _S.DOWNLOADING: frozenset(
            {_S.VERIFYING, _S.COMPLETED, _S.PAUSED, _S.FAILED, _S.CANCELLED, _S.QUEUED}
        ),
        _S.VERIFYING: frozenset({_S.COMPLETED, _S.PAUSED, _S.FAILED, _S.CANCELLED, _S.QUEUED}),
        _S.PAUSED: frozenset({_S.QUEUED, _S.CANCELLED}),  # resume, cancel
        _S.FAILED: frozenset({_S.QUEUED}),  # retry
        _S.CANCELLED: frozenset({_S.QUEUED}),  # retry
        _S.COMPLETED: frozenset(),
    }
)


def check_transition(task_id: str, current: DownloadState, new: DownloadState) -> None:
    """Raise IllegalTransition unless ``TRANSITIONS`` lets ``new`` follow ``current``."""
    if new not in TRANSITIONS[current]:
        raise IllegalTransition(f"download {task_id} cannot go from {current} to {new}")
