"""The benchmark driver: a partial run replaces only its own sections of BENCHMARKS.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import __main__ as driver

TITLES = ["Alpha figures", "Beta figures", "Gamma figures"]


def test_a_partial_run_replaces_its_sections_and_keeps_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text(
        "# Benchmarks\n\nMachine: x.\n\n"
        "## Alpha figures\n\n| a | 1 |\n\n### detail\n\nalpha text\n\n"
        "## Gamma figures\n\ngamma text\n"
    )
    monkeypatch.setattr(driver, "DOC", doc)

    driver._replace_sections(
        {
            "Beta figures": "## Beta figures\n\nbeta text\n",
            "Alpha figures": "## Alpha figures\n\nnew alpha\n",
        },
        TITLES,
    )

    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nMachine: x.\n\n## Alpha figures\n\n_Run alone")
    assert "new alpha" in text and "alpha text" not in text and "### detail" not in text
    assert text.index("## Alpha") < text.index("## Beta") < text.index("## Gamma")
    assert text.endswith("## Gamma figures\n\ngamma text\n")  # untouched, no run note
    assert text.count("_Run alone") == 2
