"""Run every benchmarks/bench_*.py and write docs/BENCHMARKS.md.

Each module exposes ``TITLE`` and ``run(workdir: Path) -> str`` (a Markdown section headed
``## TITLE``). Every figure is reported as a ratio against a baseline measured in the same run.
Usage: ``make bench`` rewrites the whole file; ``python -m benchmarks NAME ...`` runs only some
and replaces just their sections in it (so each area can record its own figures).
"""

from __future__ import annotations

import importlib
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "BENCHMARKS.md"

HEADER = """# Benchmarks

Produced by `make bench` (`python -m benchmarks`). Each figure is measured against a baseline
taken **in the same run on the same machine**, and reported as a ratio, because absolute
numbers on a shared 2-core machine move from run to run. Unit tests never assert wall times;
these figures are where speed is judged. Before each benchmark the page cache is written back
and the run waits (up to a minute) for the machine to go quiet, so that one benchmark's
leftovers (gigabytes being written back after the download benchmarks) do not land in the
next one's figures.
"""
QUIET_CPU_PERCENT = 25.0
QUIET_WAIT_S = 60.0


def _settle() -> str:
    """Write dirty pages back, then wait until the CPUs are mostly idle; what it took."""
    started = time.monotonic()
    os.sync()
    busy = psutil.cpu_percent(interval=1.0)
    while busy > QUIET_CPU_PERCENT and time.monotonic() - started < QUIET_WAIT_S:
        busy = psutil.cpu_percent(interval=1.0)
    return f"settled in {time.monotonic() - started:.1f} s (CPU {busy:.0f} % busy)"


def _machine() -> str:
    return (
        f"Machine: {platform.platform()}, Python {platform.python_version()}, "
        f"{psutil.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.1f} GiB RAM. "
        f"Run at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."
    )


def _sections(text: str, titles: list[str]) -> tuple[str, dict[str, str]]:
    """Split a BENCHMARKS.md into what precedes the first section and each benchmark's
    section, keyed by title; a section runs to the next heading that is another title."""
    starts = sorted(
        (text.index(f"\n## {title}\n") + 1, title) for title in titles if f"\n## {title}\n" in text
    )
    if not starts:
        return text, {}
    ends = [start for start, _ in starts[1:]] + [len(text)]
    sections = {title: text[start:end] for (start, title), end in zip(starts, ends, strict=True)}
    return text[: starts[0][0]], sections


def _replace_sections(fresh: dict[str, str], titles: list[str]) -> None:
    """Put the sections of a partial run into the existing file, in the full run's order,
    each marked with when it was measured (the header's date is the last full run's)."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    head, sections = _sections(DOC.read_text() if DOC.exists() else HEADER + "\n", titles)
    for title, text in fresh.items():
        heading, _, body = text.partition("\n")
        sections[title] = f"{heading}\n\n_Run alone (`python -m benchmarks`) at {when}._\n{body}"
    ordered = [sections[t].rstrip("\n") + "\n" for t in titles if t in sections]
    DOC.write_text(head + "\n".join(ordered))


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    every = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    names = [n for n in every if any(a in n for a in argv)] if argv else every
    titles = [importlib.import_module(f"benchmarks.{name}").TITLE for name in every]
    sections: dict[str, str] = {}
    failed = 0
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"== {module.TITLE} ({_settle()})", flush=True)
        work = Path(tempfile.mkdtemp(prefix=f"modelyard-{name}-"))
        try:
            sections[module.TITLE] = module.run(work)
        except Exception:
            failed += 1
            sections[module.TITLE] = (
                f"## {module.TITLE}\n\nFailed in this run:\n\n```\n{traceback.format_exc()}```\n"
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(sections[module.TITLE], flush=True)
    if argv:
        _replace_sections(sections, titles)
    else:
        DOC.write_text(HEADER + "\n" + _machine() + "\n\n" + "\n".join(sections.values()))
    print(f"wrote {DOC}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
