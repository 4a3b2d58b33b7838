"""The server's log configuration: uvicorn's own, with secrets taken out of every line.

Browsers cannot send headers on a WebSocket, so the dashboard passes its API key as
``?access_token=…``; uvicorn logs each request's path with its query string. A filter on
uvicorn's handlers replaces such values with ``***`` before a line is written (SPEC §12:
secrets never appear in logs).
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

_SECRET_PARAM = re.compile(r"((?:access_token|api_key|key|token)=)[^&\s\"']+", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the values of secret-bearing query parameters replaced by ``***``."""
    return _SECRET_PARAM.sub(r"\1***", text)


class RedactSecrets(logging.Filter):
    """Redacts the message and its string arguments, keeping the record's shape (uvicorn's
    access formatter unpacks the arguments)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's default logging configuration with :class:`RedactSecrets` on its handlers."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": f"{__name__}.RedactSecrets"}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    return config
