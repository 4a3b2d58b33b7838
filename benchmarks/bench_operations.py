"""Operations: an instance killed behind modelyard's back — how soon the ``instance_exited``
alert reaches a webhook receiver, the restart by policy, the resolved alert — with every
interval at its default, next to the monitor's round (what noticing the exit would take
without the exit watch) and a plain POST to the same receiver; and the logs of an instance
that writes 100 MB, next to the configured cap.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path

import httpx
from tests.support.app_server import make_settings, running_app
from tests.support.llama import LLAMA_SERVER
from tests.support.servers import free_port
from tests.support.tiny_gguf import write_tiny_gguf
from tests.support.webhook_receiver import Receiver

from modelyard.config import Settings, WebhookConfig
from modelyard.instance_config import InstanceConfig, RestartPolicy
from modelyard.providers.base import ProviderState
from modelyard.runtimes.health import MONITOR_INTERVALS

TITLE = "Operations: a killed instance → alert, restart, resolved; logs of a 100 MB writer"
KILLS = 5
MIB = 2**20
WRITE_MB = 100


def _wait(predicate: object, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("the benchmark waited too long")
        time.sleep(0.005)


def _kill_once(http: httpx.Client, status: str, hook: Receiver) -> tuple[float, float, float]:
    """Kill the running instance; seconds to the firing alert, the restart, the resolution."""
    seen = len(hook.received)
    pid = http.get(status).json()["pid"]
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    _wait(lambda: len(hook.received) >= seen + 1)
    alert = hook.received[seen].at - killed
    _wait(lambda: (s := http.get(status).json())["state"] == "RUNNING" and s["pid"] != pid)
    restart = time.monotonic() - killed
    _wait(lambda: len(hook.received) >= seen + 2)
    resolved = hook.received[seen + 1].at - killed
    firing, back = (json.loads(r.body) for r in hook.received[seen : seen + 2])
    assert (firing["status"], back["status"]) == ("firing", "resolved")
    time.sleep(2.0)  # running steadily before the next kill
    return alert, restart, resolved


def _alerts(workdir: Path) -> list[str]:
    model = write_tiny_gguf(workdir / "tiny.gguf")
    hook = Receiver()
    server = hook.serve().start()
    try:
        cfg = InstanceConfig(
            provider="llamacpp",
            id="tiny",
            base_url=f"http://127.0.0.1:{free_port()}",
            managed=True,
            model=str(model),
            ctx_size=256,
            restart=RestartPolicy.ON_FAILURE,
        )
        settings = make_settings(
            workdir / "alerts",
            [cfg],
            llama_server=LLAMA_SERVER,
            webhooks=[WebhookConfig(url=server.url + "/hook", secret="bench")],
            alert_cooldown_s=0,  # every kill notified (the default holds back repeats)
        )
        defaults = Settings()
        with running_app(settings) as app, httpx.Client(timeout=10) as http:
            status = f"{app.url}/api/providers/llamacpp/instances/tiny/status"
            http.post(f"{app.url}/api/providers/llamacpp/instances/tiny/start")
            _wait(lambda: http.get(status).json()["state"] == "RUNNING")
            posts: list[float] = []
            for _ in range(20):  # the receiver's own cost: a POST of a similar body
                started = time.perf_counter()
                http.post(server.url + "/baseline", content=json.dumps({"x": "y" * 400}))
                posts.append(time.perf_counter() - started)
            alert_s, restart_s, resolved_s = [], [], []
            for _ in range(KILLS):
                alert, restart, resolved = _kill_once(http, status, hook)
                alert_s.append(alert)
                restart_s.append(restart)
                resolved_s.append(resolved)
            http.post(f"{app.url}/api/providers/llamacpp/instances/tiny/stop")
    finally:
        server.stop()
    monitor = MONITOR_INTERVALS[ProviderState.RUNNING]
    post_ms = statistics.median(posts) * 1000
    med = statistics.median
    rows = [
        f"| {n + 1} | {min(defaults.restart_backoff_s * 2**n, defaults.restart_backoff_max_s):g}"
        f" s | {a * 1000:.1f} ms | {r:.2f} s | {v:.2f} s |"
        for n, (a, r, v) in enumerate(zip(alert_s, restart_s, resolved_s, strict=True))
    ]
    return [
        f'An instance (genuine llama-server, tiny GGUF) with `restart = "on-failure"` and '
        "every interval at its default but the alert cool-down (0 here, so that each kill is "
        f"notified), killed with SIGKILL {KILLS} times, 2 s after it ran again each time; a "
        "webhook receiver on 127.0.0.1 (signed generic JSON). The backoff doubles with each "
        f"exit within {defaults.crash_loop_window_s:g} s.",
        "",
        "| kill | backoff | `instance_exited` at the receiver | running again | resolved at "
        "the receiver |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"The firing alert reached the receiver {med(alert_s) * 1000:.1f} ms after the kill "
        f"(median; max {max(alert_s) * 1000:.1f} ms): {med(alert_s) / monitor:.4f}× the "
        f"monitor's RUNNING round ({monitor:g} s), which is how late the exit would be noticed "
        f"without the exit watch, and {med(alert_s) * 1000 / post_ms:.1f}× a plain POST to the "
        f"same receiver ({post_ms:.1f} ms). Running again is the backoff plus llama-server's "
        "start; the resolution follows the first status check that sees it RUNNING.",
    ]


WRITER = (
    "import sys, time\n"
    "rate = float(sys.argv[1])\n"
    "line = 'x' * 1023 + '\\n'\n"
    "started = time.monotonic()\n"
    "for mib in range({mb}):\n"
    "    sys.stdout.write(line * 1024); sys.stdout.flush()\n"
    "    if rate: time.sleep(max(0, started + (mib + 1) / rate - time.monotonic()))\n"
)


def _logs(workdir: Path) -> list[str]:
    script = workdir / "writer.py"
    script.write_text(WRITER.replace("{mb}", str(WRITE_MB)))
    defaults = Settings()
    cap = defaults.log_max_bytes * (defaults.log_keep + 1)
    rows = []
    for rate in (10.0, 0.0):
        cfg = InstanceConfig(
            provider="llamacpp",
            id="writer",
            base_url=f"http://127.0.0.1:{free_port()}",
            managed=True,
            command=[sys.executable, str(script), str(rate)],
        )
        settings = make_settings(workdir / f"logs-{rate:g}", [cfg])
        with running_app(settings) as app, httpx.Client(timeout=10) as http:
            http.post(f"{app.url}/api/providers/llamacpp/instances/writer/start")
            processes = app.services.processes
            logs = settings.logs_dir
            peak = 0
            started = time.monotonic()
            while processes.check("llamacpp/writer").exit_code is None:
                total = sum(p.stat().st_size for p in logs.glob("llamacpp%2Fwriter.log*"))
                peak = max(peak, total)
                time.sleep(0.05)
            took = time.monotonic() - started
            time.sleep(defaults.log_check_s * 2)  # one more sweep
            final = sum(p.stat().st_size for p in logs.glob("llamacpp%2Fwriter.log*"))
        speed = "unthrottled" if not rate else f"{rate:g} MB/s"
        rows.append(
            f"| {speed} ({WRITE_MB / took:.0f} MB/s seen) | {peak / MIB:.1f} MiB | "
            f"{peak / cap:.2f}× | {final / MIB:.1f} MiB | {final / cap:.2f}× |"
        )
    return [
        "",
        f"Logs: a managed process writes {WRITE_MB} MiB to its own log file with the defaults "
        f"(`log_max_bytes` {defaults.log_max_bytes // MIB} MiB, `log_keep` "
        f"{defaults.log_keep}, checked every {defaults.log_check_s:g} s): the cap is "
        f"{cap // MIB} MiB (the log and its copies). Sampled every 50 ms.",
        "",
        "| writer | peak on disk | vs cap | after the last sweep | vs cap |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "A copy keeps the newest `log_max_bytes` of what it copies, and after a rotation the "
        "next check comes in 0.25 s: what remains above the cap is what the process writes "
        "between two checks (copy-and-truncate is periodic: no pipe through modelyard). An "
        "unthrottled writer outruns the first check (its whole output lands before it).",
    ]


def run(workdir: Path) -> str:
    lines = [f"## {TITLE}", "", *_alerts(workdir), *_logs(workdir)]
    return "\n".join(lines) + "\n"
