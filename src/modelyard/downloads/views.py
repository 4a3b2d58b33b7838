"""What the download manager answers: a download's public view and its log's tail.

``DownloadView`` is the native wire shape (``GET /api/downloads/{id}``, SPEC §8) and the payload
of the ``download.state`` and ``download.progress`` events; a task makes a fresh one for each
answer or event, so a view never changes after it is made.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from modelyard.clock import as_utc
from modelyard.downloads.states import DownloadState, SourceKind
from modelyard.instance_config import ModelMode

UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]  # RFC 3339 with 'Z' on the wire


class DownloadView(BaseModel):
    """A download task as the API shows it."""

    model_config = ConfigDict(frozen=True)

    id: str
    source: SourceKind
    model_name: str | None = Field(description="the Ollama model (source ollama)")
    url: str | None = Field(description="the URL, or hf://owner/repo/file[@revision]")
    repo: str | None = Field(description="the Hugging Face repo (source hf)")
    revision: str | None
    filename: str | None
    path: str | None = Field(description="where the file lands (not for Ollama pulls)")
    instance_id: str | None = Field(description="the Ollama instance that pulls")
    sha256: str | None = Field(description="expected, then verified")
    mode: ModelMode
    state: DownloadState
    downloaded: int = Field(description="bytes so far (over the layers seen, for a pull)")
    total: int | None = Field(description="bytes in all, when known")
    total_final: bool = Field(
        description="false while the total may still grow (a pull's total sums the layers "
        "seen so far until the runtime's own record of the model settles it)"
    )
    speed_bps: float | None
    eta_s: float | None
    error: str | None
    error_code: str | None
    attempts: int
    current_layer: int
    total_layers: int
    current_status: str | None = Field(description="Ollama's last status line")
    force: bool = Field(description="the free-disk check was skipped")
    verified: bool = Field(
        description="false for a file taken as it was found, by its size alone (seed 004's "
        "endpoint): neither fetched nor checked against a checksum"
    )
    progress: float = Field(ge=0, le=100, description="100 only when completed")
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None


class DownloadLog(BaseModel):
    """The tail of a task's log file, oldest line first."""

    path: str
    lines: list[str]
