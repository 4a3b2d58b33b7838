"""What an alert is: a rule about a subject, firing or resolved."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


class Rule(StrEnum):
    """The rules modelyard checks; their thresholds are settings (``alert_*``)."""

    INSTANCE_DOWN = "instance_down"  # down or degraded for alert_down_after_s
    INSTANCE_EXITED = "instance_exited"  # a managed process ended unasked (even if restarted)
    CRASH_LOOP = "crash_loop"
    DOWNLOAD_FAILED = "download_failed"
    MODEL_START_FAILED = "model_start_failed"
    DISK_LOW = "disk_low"  # the models directory's free space under alert_disk_free_bytes
    MEMORY_HIGH = "memory_high"  # RAM in use over alert_memory_percent


# What an alert says beyond its summary, for a webhook's receiver: a few scalar facts.
AlertDetails = dict[str, str | int | float | None]


class Alert(BaseModel):
    """One alert's state. ``id`` (rule and subject) is what deduplicates it."""

    id: str
    rule: Rule
    subject: str  # an instance key, a download id, a model, a directory
    status: AlertStatus
    severity: Severity
    summary: str
    details: AlertDetails
    started_at: str
    resolved_at: str | None = None
    notified: bool  # sent to the webhooks (False: within the cool-down of an earlier one)
