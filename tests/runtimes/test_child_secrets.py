"""Secrets and the processes modelyard runs (SPEC §12; issue 19, hole 8): a managed server's key
goes through its environment, never its argv (which ``ps`` shows every user); a child keeps
what runtimes need of modelyard's environment and none of modelyard's own secrets; a command
with a secret in it is shown and logged masked. Read from the real child's ``/proc``."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from modelyard.instance_config import InstanceConfig
from tests.runtimes.test_managed import RUNTIMES, managed, wait_state
from tests.support.app_server import RunningApp
from tests.support.servers import free_port

# modelyard's own secrets, and settings a runtime reads, in modelyard's environment.
SECRETS = {
    "OPENAI_API_KEY": "sk-openai-parent",
    "ANTHROPIC_API_KEY": "sk-ant-parent",
    "HF_TOKEN": "hf_parent",
    "MODELYARD_API_KEY": "my-parent",
    "LLAMA_API_KEY": "parent-llama-key",  # the instance's key replaces it, or none is given
}
KEPT = {"OLLAMA_DEBUG": "1", "LLAMA_TEST_SETTING": "kept", "LANG": "C.UTF-8", "TZ": "UTC"}


def _proc(pid: int) -> tuple[list[str], dict[str, str]]:
    """The real child's argv and environment, as the kernel has them."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    pairs = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return argv, dict(pair.split("=", 1) for pair in pairs if "=" in pair)


@pytest.fixture
def parent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**SECRETS, **KEPT}.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("binary", RUNTIMES)
def test_a_managed_servers_key_goes_through_its_environment(
    modelyard: Callable[..., RunningApp],
    tiny_gguf: Path,
    binary: str,
    parent_env: None,
) -> None:
    port = free_port()
    keyed = managed(tiny_gguf, port).model_copy(update={"api_key": "sk-child-key"})
    app = modelyard([keyed], llama_server=binary, monitor=False)
    assert app.http.post("/api/providers/llamacpp/instances/tiny/start").status_code == 200
    pid = wait_state(app, "RUNNING")["pid"]  # modelyard's probe sends the key: it works

    argv, env = _proc(pid)
    assert not any("sk-child-key" in arg for arg in argv) and "--api-key" not in argv
    assert env["LLAMA_API_KEY"] == "sk-child-key"
    assert not (set(SECRETS) - {"LLAMA_API_KEY"}) & set(env)
    assert not any(name.startswith("MODELYARD_") for name in env)
    assert {name: env.get(name) for name in KEPT} == KEPT
    assert env["PATH"] == os.environ["PATH"] and "HOME" in env
    # The server enforces the key it was given.
    assert httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).status_code == 401
    auth = {"Authorization": "Bearer sk-child-key"}
    assert httpx.get(f"http://127.0.0.1:{port}/v1/models", headers=auth, timeout=10).is_success


def test_a_configured_command_is_masked_wherever_it_is_shown(
    modelyard: Callable[..., RunningApp],
    tmp_path: Path,
    parent_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MY_SERVER_KEY", "sk-named")
    secrets = ["--api-key", "sk-flag", "--hf-token=hf_inline", "HF_TOKEN=hf_assigned"]
    command = [sys.executable, "-c", "import time; time.sleep(60)", *secrets]
    command.append("https://user:pa55word@mirror.example/models")
    inst = InstanceConfig(
        provider="llamacpp",
        id="wrapped",
        base_url=f"http://127.0.0.1:{free_port()}",
        managed=True,
        model=str(tmp_path),  # not used: the command replaces the runtime
        command=command,
        api_key_env="MY_SERVER_KEY",  # the one variable of modelyard's it is given
    )
    app = modelyard([inst], monitor=False)
    hidden = ("sk-flag", "hf_inline", "hf_assigned", "pa55word")
    shown = app.http.get("/api/providers").json()["instances"][0]["command"]
    assert shown[3:] == [
        "--api-key",
        "***",
        "--hf-token=***",
        "HF_TOKEN=***",
        "https://user:***@mirror.example/models",
    ]
    started = app.http.post("/api/providers/llamacpp/instances/wrapped/start")
    assert started.status_code == 200
    pid = app.services.processes.check("llamacpp/wrapped").record.pid  # type: ignore[union-attr]
    _, env = _proc(pid)
    assert env["MY_SERVER_KEY"] == "sk-named" and not set(SECRETS) & set(env)
    log = app.http.get("/api/providers/llamacpp/instances/wrapped/logs").json()
    written = Path(log["path"]).read_text()
    assert "modelyard starts llamacpp/wrapped" in written
    for text in (str(log["lines"]), written, started.text):
        assert not any(secret in text for secret in hidden), text
    assert app.http.post("/api/providers/llamacpp/instances/wrapped/stop").status_code == 200
