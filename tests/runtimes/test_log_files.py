"""Log rotation and retention for real: a child that keeps writing its own file while it is
copied and truncated, rotated copies and download logs that age out, the keeper in the app."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from modelyard.instance_config import InstanceConfig
from modelyard.runtimes.log_files import LogLimits, rotated, sweep
from modelyard.runtimes.processes import LaunchSpec, ProcessManager
from tests.support.app_server import RunningApp
from tests.support.servers import free_port
from tests.support.waiting import wait_until

MIB = 2**20
# 24 MiB in 1 MiB bursts of 1 KiB lines, each line numbered, then "done".
WRITER = [
    sys.executable,
    "-c",
    "import sys, time\n"
    "for burst in range(24):\n"
    "    lines = (f'{burst:02d}-{i:04d} ' + 'x' * 1012 + '\\n' for i in range(1024))\n"
    "    sys.stdout.write(''.join(lines))\n"
    "    sys.stdout.flush(); time.sleep(0.05)\n"
    "print('done', flush=True)\n",
]


def test_a_child_writing_its_own_file_stays_within_the_cap(tmp_path: Path) -> None:
    manager = ProcessManager(tmp_path / "run", tmp_path / "logs")
    limits = LogLimits(max_bytes=2 * MIB, keep=2, max_age_s=3600)
    stop = threading.Event()
    largest = [0]

    def keep_sweeping() -> None:
        while not stop.is_set():
            sweep(manager.logs_dir, limits, expire_current=False)
            files = list(manager.logs_dir.iterdir())
            largest[0] = max(largest[0], sum(f.stat().st_size for f in files))
            time.sleep(0.01)

    sweeper = threading.Thread(target=keep_sweeping)
    sweeper.start()
    try:
        manager.start(LaunchSpec("llamacpp/chatty", WRITER))
        wait_until(lambda: manager.check("llamacpp/chatty").exit_code is not None, "the writer")
    finally:
        stop.set()
        sweeper.join()
        manager.close()
    log = manager.log_path("llamacpp/chatty")
    names = sorted(p.name for p in manager.logs_dir.iterdir())
    assert names == [log.name, rotated(log, 1).name, rotated(log, 2).name]
    # 24 MiB written; on disk at most the log and two copies, each a little over the limit
    # (what the child wrote between two sweeps).
    assert largest[0] < 3 * (limits.max_bytes + 2 * MIB)
    for copy in (rotated(log, 1), rotated(log, 2)):
        assert copy.stat().st_size <= limits.max_bytes  # a copy keeps the newest bytes only
    text = log.read_bytes()
    assert not text.startswith(b"\0")  # O_APPEND: the child wrote on at the new end, no hole
    assert text.rstrip().endswith(b"ended with exit code 0")
    assert b"done\n" in text or b"done\n" in rotated(log, 1).read_bytes()
    assert rotated(log, 1).read_bytes().splitlines()[0][:2].isdigit()  # whole lines


def test_old_copies_and_download_logs_age_out(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    downloads = logs / "downloads"
    downloads.mkdir(parents=True)
    instance = logs / "llamacpp%2Fquiet.log"
    instance.write_text("quiet but running\n")
    old_copy, young_copy = rotated(instance, 2), rotated(instance, 1)
    old_copy.write_text("old\n")
    young_copy.write_text("young\n")
    beyond_keep = rotated(instance, 3)
    beyond_keep.write_text("kept before the count was lowered\n")
    finished, running = downloads / "a.log", downloads / "b.log"
    finished.write_text("done\n")
    running.write_text("fetching\n")
    week_ago = time.time() - 7 * 86400
    for path in (instance, old_copy, finished):
        os.utime(path, (week_ago, week_ago))

    limits = LogLimits(max_bytes=MIB, keep=2, max_age_s=86400)
    sweep(logs, limits, expire_current=False)
    sweep(downloads, limits, expire_current=True)
    assert sorted(p.name for p in logs.iterdir() if p.is_file()) == [
        instance.name,
        young_copy.name,
    ]
    assert [p.name for p in downloads.iterdir()] == ["b.log"]


def test_the_app_rotates_a_managed_instances_log(modelyard: Callable[..., RunningApp]) -> None:
    cfg = InstanceConfig(
        provider="llamacpp",
        id="chatty",
        base_url=f"http://127.0.0.1:{free_port()}",
        managed=True,
        command=WRITER,
    )
    app = modelyard([cfg], log_max_bytes=4 * MIB, log_keep=1, log_check_s=0.05)
    app.http.post("/api/providers/llamacpp/instances/chatty/start")
    processes = app.services.processes
    log = processes.log_path("llamacpp/chatty")
    wait_until(lambda: rotated(log, 1).exists(), "a rotation")
    wait_until(lambda: processes.check("llamacpp/chatty").exit_code is not None, "the writer")
    assert not rotated(log, 2).exists()
    assert log.stat().st_size + rotated(log, 1).stat().st_size < 24 * MIB
