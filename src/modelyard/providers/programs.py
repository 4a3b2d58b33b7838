"""Finding the program of a runtime modelyard runs itself (``llama-server``, ``ollama``)."""

from __future__ import annotations

import logging
import os
import shutil

log = logging.getLogger(__name__)


def find_program(configured: str, name: str, setting: str) -> str | None:
    """The configured program if it is executable, else ``name`` on PATH, as an absolute path.
    ``setting``: the environment variable that configures it, named in the warning."""
    if configured:
        found = shutil.which(os.path.expanduser(configured))
        if found:
            return os.path.abspath(found)
        log.warning(
            "%s=%r is not an executable program; looking for %s on PATH", setting, configured, name
        )
    found = shutil.which(name)
    return os.path.abspath(found) if found else None
