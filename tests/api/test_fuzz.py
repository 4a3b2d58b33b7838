"""The fuzz run (issue 19): schemathesis against /openapi.json, every phase, stateful
included, for a fixed budget — no 500, and no other 5xx that is not a designed answer its
operation declares. modelyard and the fuzzer share a network namespace of their own that has
only loopback, so no URL or host the fuzzer invents is ever contacted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUDGET_S = int(os.environ.get("MODELYARD_FUZZ_S", "240"))


def test_the_fuzzer_finds_no_server_error() -> None:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.fail("the fuzz run needs root and unshare(1) for its own network namespace")
    done = subprocess.run(
        ["unshare", "-n", sys.executable, "-m", "tests.fuzz.run", str(BUDGET_S)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BUDGET_S + 600,  # startup, shrinking and the final report on busy cores
        check=False,
    )
    report = done.stdout[-12000:] + done.stderr[-4000:]
    assert done.returncode == 0, report
    assert "server errors:\n0\n" in done.stdout, report
