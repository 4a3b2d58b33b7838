"""The ``modelyard`` command. Every command but ``serve`` and ``doctor`` talks to a running
server over HTTP, so the server stays the only writer."""

from __future__ import annotations

import sys

from modelyard.cli import (  # noqa: F401  (registers commands)
    certs,
    chat,
    containers,
    downloads,
    keys,
    models,
    providers,
    serve,
)
from modelyard.cli.app import app


def main() -> None:
    app(prog_name="modelyard")


if __name__ == "__main__":
    main()
    sys.exit(0)
