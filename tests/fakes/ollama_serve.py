"""The Ollama stand-in as a program, for the container tests' Ollama image (no Ollama binary
exists here): ``python -m tests.fakes.ollama_serve serve`` listens where ``OLLAMA_HOST`` says,
as ``ollama serve`` does, with one model (``llama3.2``) in ``/api/tags``."""

from __future__ import annotations

import os
import sys

import uvicorn

from tests.fakes.ollama import create_ollama_app
from tests.fakes.ollama_state import OllamaState


def main(argv: list[str]) -> int:
    if argv != ["serve"]:
        print("usage: ollama_serve serve  (listens on OLLAMA_HOST)", file=sys.stderr)
        return 2
    host, _, port = os.environ.get("OLLAMA_HOST", "127.0.0.1:11434").rpartition(":")
    state = OllamaState(version=os.environ.get("OLLAMA_STAND_IN_VERSION", "0.12.3"))
    state.add_model("llama3.2")
    app = create_ollama_app(state)
    uvicorn.run(app, host=host.strip("[]") or "127.0.0.1", port=int(port), server_header=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
