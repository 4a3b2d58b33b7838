"""The process manager, for real: llama.cpp servers (genuine binary and embedded) on a tiny GGUF."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from modelyard.errors import Conflict, ModelyardError, NotFound
from modelyard.providers.llamacpp import llama_server_argv
from modelyard.runtimes.process_records import ProcessRecord
from modelyard.runtimes.processes import LaunchSpec, ProcessManager
from tests.support.llama import LLAMA_SERVER
from tests.support.servers import free_port
from tests.support.waiting import wait_until

KEY = "llamacpp/tiny"


def _running(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def health(port: int) -> int | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code
    except httpx.TransportError:
        return None


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Kill whatever a test left running, then fail it: every test must clean up."""
    me = psutil.Process()
    before = {child.pid for child in me.children(recursive=True)}
    yield
    leaked = [p for p in me.children(recursive=True) if p.pid not in before and _running(p.pid)]
    for proc in leaked:
        proc.kill()
    psutil.wait_procs(leaked, timeout=10)
    assert not leaked, f"processes left running: {[p.pid for p in leaked]}"


@pytest.fixture(params=["llama-server", "embedded"])
def binary(request: pytest.FixtureRequest) -> str | None:
    """Both runtimes: the genuine llama-server binary and the embedded xllamacpp runner."""
    return LLAMA_SERVER if request.param == "llama-server" else None


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[ProcessManager]:
    pm = ProcessManager(tmp_path / "run", tmp_path / "logs")
    yield pm
    for record in pm.records():  # a failed test may leave servers: stop them by PID
        if pm.check(record.key).alive:
            pm.stop(record.key, grace_s=0)


def server_spec(model: Path, binary: str | None, key: str = KEY) -> LaunchSpec:
    port = free_port()
    argv = llama_server_argv(model=model, host="127.0.0.1", port=port, binary=binary)
    return LaunchSpec(key=key, argv=argv, port=port)


def start_healthy(pm: ProcessManager, spec: LaunchSpec) -> ProcessRecord:
    record = pm.start(spec)
    assert spec.port is not None
    wait_until(lambda: health(spec.port or 0) == 200, timeout=60)
    return record


def test_start_serves_logs_and_stop_cleans_up(
    manager: ProcessManager, tiny_gguf: Path, binary: str | None
) -> None:
    spec = server_spec(tiny_gguf, binary)
    record = start_healthy(manager, spec)

    on_disk = json.loads(manager.pid_path(KEY).read_text())
    assert on_disk["pid"] == record.pid and on_disk["cmdline"] == spec.argv
    assert on_disk["port"] == spec.port and on_disk["started_at"].endswith("Z")
    assert on_disk["create_time"] == pytest.approx(psutil.Process(record.pid).create_time())
    check = manager.check(KEY)
    assert check.alive and check.pid_exists and check.exit_code is None
    assert manager.records() == [record]
    log_text = "\n".join(manager.log_tail(KEY, lines=500))
    assert f"modelyard starts {KEY}" in log_text
    assert f"listening on http://127.0.0.1:{spec.port}" in log_text

    with pytest.raises(Conflict) as err:
        manager.start(spec)
    assert err.value.error_code == "already_running"

    assert manager.stop(KEY) is True
    assert not _running(record.pid)
    assert not manager.pid_path(KEY).exists()
    assert health(spec.port or 0) is None
    after = manager.check(KEY)
    assert after.record is None and not after.alive
    assert after.exit_code == 0  # both runtimes shut down cleanly on SIGTERM
    assert manager.stop(KEY) is False


def test_killed_server_reports_exit_code_and_restarts(
    manager: ProcessManager, tiny_gguf: Path, binary: str | None
) -> None:
    spec = server_spec(tiny_gguf, binary)
    first = start_healthy(manager, spec)
    os.kill(first.pid, signal.SIGKILL)

    wait_until(lambda: not manager.check(KEY).alive)
    wait_until(lambda: manager.check(KEY).exit_code is not None)
    check = manager.check(KEY)
    assert check.record == first and not check.pid_exists
    assert check.exit_code == -signal.SIGKILL
    assert manager.log_tail(KEY, lines=1)[0].endswith("ended with signal SIGKILL")

    second = start_healthy(manager, spec)  # a dead process does not block a new start
    assert second.pid != first.pid
    assert manager.check(KEY).exit_code is None
    log_text = "\n".join(manager.log_tail(KEY, lines=1000))
    assert log_text.count(f"modelyard starts {KEY}") == 2  # appended, one header per start
    assert manager.stop(KEY) is True


@pytest.fixture
def subreaper() -> Iterator[None]:
    """Make this process the reaper of orphans, standing in for init after modelyard exits."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_child_subreaper = 36
    assert libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0) == 0
    yield
    libc.prctl(pr_set_child_subreaper, 0, 0, 0, 0)


_FIRST_MODELYARD = """
import json, sys
from pathlib import Path
from modelyard.runtimes.processes import LaunchSpec, ProcessManager
spec = LaunchSpec(**json.loads(sys.argv[1]))
print(ProcessManager(Path(sys.argv[2]), Path(sys.argv[3])).start(spec).pid)
"""


def test_new_modelyard_adopts_running_server(
    tmp_path: Path, tiny_gguf: Path, binary: str | None, subreaper: None
) -> None:
    spec = server_spec(tiny_gguf, binary)
    run_dir, logs_dir = tmp_path / "run", tmp_path / "logs"
    payload = json.dumps({"key": spec.key, "argv": spec.argv, "port": spec.port})
    first = subprocess.run(
        [sys.executable, "-c", _FIRST_MODELYARD, payload, str(run_dir), str(logs_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    pid = int(first.stdout)  # that modelyard has exited; its server lives on
    try:
        wait_until(lambda: health(spec.port or 0) == 200, timeout=60)
        pm = ProcessManager(run_dir, logs_dir)
        adopted = pm.adopt()
        assert [record.pid for record in adopted] == [pid]
        check = pm.check(KEY)
        assert check.alive and check.exit_code is None  # not our child: no exit code to know
        with pytest.raises(Conflict) as err:
            pm.start(spec)
        assert err.value.error_code == "already_running"
        assert pm.stop(KEY) is True
        assert not pm.pid_path(KEY).exists()
        assert os.waitpid(pid, 0)[1] == 0  # it exited normally on SIGTERM
    finally:
        if _running(pid):
            os.kill(pid, signal.SIGKILL)
        if psutil.pid_exists(pid):
            os.waitpid(pid, 0)


@pytest.fixture
def sleeper() -> Iterator[psutil.Process]:
    """Another program, whose PID a stale PID file might name."""
    popen = subprocess.Popen(["sleep", "60"])
    proc = psutil.Process(popen.pid)
    wait_until(lambda: proc.cmdline() == ["sleep", "60"])  # empty for an instant during exec
    yield proc
    popen.kill()
    popen.wait()


def _write_record(pm: ProcessManager, key: str, record: ProcessRecord) -> None:
    pm.pid_path(key).write_text(record.to_json())


@pytest.mark.parametrize(
    ("time_shift", "cmdline", "ours"),
    [
        pytest.param(0.0, None, True, id="same-process"),
        pytest.param(0.0, ["/bin/sleep", "60"], True, id="argv0-as-full-path"),
        pytest.param(-500.0, None, False, id="other-create-time"),
        pytest.param(0.0, ["llama-server", "--port", "8081"], False, id="other-command"),
        pytest.param(0.0, ["sleep", "61"], False, id="other-arguments"),
    ],
)
def test_a_pid_is_ours_only_when_create_time_and_command_match(
    manager: ProcessManager,
    sleeper: psutil.Process,
    time_shift: float,
    cmdline: list[str] | None,
    ours: bool,
) -> None:
    record = ProcessRecord(
        key=KEY,
        pid=sleeper.pid,
        create_time=sleeper.create_time() + time_shift,
        cmdline=cmdline or sleeper.cmdline(),
        port=None,
        started_at="2026-01-01T00:00:00Z",
        log_path=str(manager.log_path(KEY)),
    )
    _write_record(manager, KEY, record)
    check = manager.check(KEY)
    assert (check.pid_exists, check.alive) == (ours, ours)
    assert manager.adopt() == ([record] if ours else [])
    if not ours:
        assert manager.stop(KEY) is False  # never signals a process that is not ours
        assert sleeper.is_running() and not manager.pid_path(KEY).exists()


def test_stale_pid_file_is_kept_until_forgotten(
    manager: ProcessManager, sleeper: psutil.Process
) -> None:
    stale = ProcessRecord(KEY, sleeper.pid, sleeper.create_time() - 99, ["x"], 8081, "t", "l")
    _write_record(manager, KEY, stale)
    assert manager.adopt() == [] and manager.records() == [stale]
    manager.forget(KEY)
    assert manager.records() == [] and sleeper.is_running()


def test_forget_refuses_a_running_process(manager: ProcessManager) -> None:
    record = manager.start(LaunchSpec(key="ollama/default", argv=["sleep", "60"]))
    with pytest.raises(Conflict) as err:
        manager.forget("ollama/default")
    assert err.value.error_code == "still_running"
    assert manager.stop("ollama/default", grace_s=5) is True
    assert not _running(record.pid)


@pytest.mark.parametrize(
    "program",
    [
        pytest.param("/nonexistent/llama-server", id="missing-path"),
        pytest.param("modelyard-no-such-program", id="not-on-path"),
    ],
)
def test_missing_binary(manager: ProcessManager, program: str) -> None:
    with pytest.raises(NotFound) as err:
        manager.start(LaunchSpec(key=KEY, argv=[program, "--port", "1"]))
    assert err.value.error_code == "binary_not_found"
    assert err.value.hint and "install" in err.value.hint.lower()
    assert manager.records() == []


def test_stop_escalates_to_sigkill(manager: ProcessManager) -> None:
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    record = manager.start(LaunchSpec(key=KEY, argv=[sys.executable, "-c", stubborn]))
    wait_until(lambda: "ready" in manager.log_tail(KEY))
    assert manager.stop(KEY, grace_s=0.3) is True
    assert not _running(record.pid)
    assert manager.check(KEY).exit_code == -signal.SIGKILL
    assert any("sending SIGKILL" in line for line in manager.log_tail(KEY))


def test_stop_ends_the_whole_process_group(manager: ProcessManager) -> None:
    parent = (
        "import subprocess, time; p = subprocess.Popen(['sleep', '60']); "
        "print(p.pid, flush=True); time.sleep(60)"
    )
    manager.start(LaunchSpec(key=KEY, argv=[sys.executable, "-u", "-c", parent]))
    wait_until(lambda: any(line.isdigit() for line in manager.log_tail(KEY)))
    grandchild = int(next(line for line in manager.log_tail(KEY) if line.isdigit()))
    assert _running(grandchild)
    assert manager.stop(KEY, grace_s=5) is True
    wait_until(lambda: not _running(grandchild), timeout=10)


def test_concurrent_starts_run_one_process(manager: ProcessManager) -> None:
    spec = LaunchSpec(key=KEY, argv=["sleep", "60"])
    outcomes: list[str] = []

    def start() -> None:
        try:
            manager.start(spec)
            outcomes.append("started")
        except ModelyardError as exc:
            outcomes.append(exc.error_code)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["already_running"] * 3 + ["started"]
    assert manager.stop(KEY, grace_s=5) is True


def test_environment_and_working_directory_reach_the_child(
    manager: ProcessManager, tmp_path: Path
) -> None:
    show = "import os;print(os.environ['OLLAMA_HOST'], os.getcwd(), flush=True)"
    spec = LaunchSpec(
        key="ollama/default",
        argv=[sys.executable, "-c", show],
        env={"OLLAMA_HOST": "127.0.0.1:11500"},
        cwd=tmp_path,
    )
    manager.start(spec)
    wait_until(lambda: manager.check("ollama/default").exit_code is not None)
    assert f"127.0.0.1:11500 {tmp_path}" in manager.log_tail("ollama/default")
    assert manager.check("ollama/default").exit_code == 0


def test_secrets_stay_out_of_the_log(manager: ProcessManager) -> None:
    argv = [sys.executable, "-c", "import time; time.sleep(60)", "--api-key", "sk-secret"]
    manager.start(LaunchSpec(key=KEY, argv=argv))
    shown = manager.records()[0].display_command()
    assert shown.endswith("--api-key '***'") and "sk-secret" not in shown
    assert manager.stop(KEY, grace_s=5) is True
    assert "sk-secret" not in manager.log_path(KEY).read_text()


@pytest.mark.parametrize("key", ["llamacpp/../../escape", ".hidden/x", "ollama/default"])
def test_keys_map_to_files_inside_the_directories(manager: ProcessManager, key: str) -> None:
    assert manager.pid_path(key).parent == manager.run_dir
    assert manager.log_path(key).parent == manager.logs_dir
    assert not manager.pid_path(key).name.startswith(".")


def test_log_tail(manager: ProcessManager) -> None:
    assert manager.log_tail(KEY) == []
    manager.log_path(KEY).write_text("".join(f"line {i}\n" for i in range(5000)))
    assert manager.log_tail(KEY, lines=3) == ["line 4997", "line 4998", "line 4999"]
    assert len(manager.log_tail(KEY, lines=2000)) == 2000
    assert manager.log_tail(KEY, lines=0) == []
