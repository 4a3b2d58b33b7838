"""Whether the hypervisor pauses this whole virtual machine, measured from inside it.

One process per CPU spins reading the monotonic clock and keeps every gap of more than
``GAP_S`` between two readings: time in which that process did not run at all. Spinning
alone, a VM that owns its CPUs shows no gaps. A VM whose host caps its CPU time (a CFS
quota per 100 ms period, which counts the host's own work for the VM's disk as well) shows
gaps on all its CPUs at once, periodically, once the cap is spent. The second measurement
adds ``WRITERS`` ``dd oflag=direct`` writers, the disk load of four downloads without any
modelyard code, so the report can tell a host's pauses from a slow server.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

GAP_S = 0.004
WRITERS = 4

_SPIN = f"""
import json, sys, time
GAP_S = {GAP_S!r}
clock = time.monotonic
end = clock() + float(sys.argv[1])
gaps, last = [], clock()
while last < end:
    now = clock()
    if now - last > GAP_S:
        gaps.append([last, now - last])
    last = now
print(json.dumps(gaps))
"""


@dataclass
class Pauses:
    seconds: float
    gaps: list[tuple[float, float]]  # (start, length) in s, of the first spinner

    @property
    def ms_per_s(self) -> float:
        return sum(length for _, length in self.gaps) * 1000 / self.seconds

    def describe(self) -> str:
        if not self.gaps:
            return "no pause"
        lengths = [length * 1000 for _, length in self.gaps]
        starts = [start for start, _ in self.gaps]
        between = [(b - a) * 1000 for a, b in itertools.pairwise(starts)]
        every = f", one every {statistics.median(between):.0f} ms" if between else ""
        return (
            f"{len(lengths)} pause{'s' if len(lengths) > 1 else ''} of "
            f"{statistics.median(lengths):.0f} ms (median){every}: "
            f"{self.ms_per_s:.0f} ms per second"
        )


def host_caps_busy_disk(alone: Pauses, writing: Pauses) -> bool:
    """Whether the VM is paused far more while its disk is written than while it only computes."""
    return writing.ms_per_s >= 50 and writing.ms_per_s > 10 * max(alone.ms_per_s, 1.0)


def measure(seconds: float, *, write_into: Path | None = None) -> Pauses:
    """Spin on every CPU for ``seconds``; with ``write_into``, while the writers write there."""
    writers = []
    if write_into is not None:
        write_into.mkdir(parents=True, exist_ok=True)
        writers = [
            subprocess.Popen(
                [
                    "dd",
                    "if=/dev/zero",
                    f"of={write_into / f'pause{i}.bin'}",
                    "bs=1M",
                    "count=100000",
                    "oflag=direct",
                    "status=none",
                ],
                stderr=subprocess.DEVNULL,
            )
            for i in range(WRITERS)
        ]
    try:
        spinners = [
            subprocess.Popen(
                [sys.executable, "-c", _SPIN, str(seconds)], stdout=subprocess.PIPE, text=True
            )
            for _ in range(len(os.sched_getaffinity(0)))
        ]
        results = [json.loads(s.communicate(timeout=seconds + 30)[0]) for s in spinners]
    finally:
        for w in writers:
            w.kill()
            w.wait()
        if write_into is not None:
            for i in range(WRITERS):
                (write_into / f"pause{i}.bin").unlink(missing_ok=True)
    return Pauses(seconds, [(start, length) for start, length in results[0]])
