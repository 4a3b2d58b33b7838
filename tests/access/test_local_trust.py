"""Local trust means the same OS user (SPEC §12; issue 19, hole 1).

modelyard runs as an ordinary user; callers are that user, a member of its trusted group,
another user and root, each a real process of that user on this machine. Without a key only
the first, the second and root get in; a key is judged by the key alone; the CLI finds the
key ``serve`` wrote, where its file's permissions let it.
"""

from __future__ import annotations

import grp
import json
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.app_server import RunningApp, ServerProcess
from tests.support.os_users import OsUsers, os_users, owned_dir, python_argv
from tests.support.servers import free_port

__all__ = ["os_users"]

# A request from another user's process: the standard library only, so it starts quickly.
CALL = """
import http.client, json, sys
method, port, path, headers, body = sys.argv[1:6]
conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=60)
conn.request(method, path, body=body or None, headers=json.loads(headers))
resp = conn.getresponse()
data = resp.read()
kind = resp.getheader("content-type") or ""
print(json.dumps([resp.status, json.loads(data).get("code") if "json" in kind else None]))
"""


class Served:
    """modelyard served by ``os_users.owner`` from a data directory of its own."""

    def __init__(self, users: OsUsers, base: Path, **settings: str) -> None:
        self.users = users
        self.data_dir = base / "data"
        self.env = {
            "MODELYARD_DATA_DIR": str(self.data_dir),
            "MODELYARD_MONITOR": "off",
            "MODELYARD_CONFIG": "",
            "HOME": str(base),
            **{f"MODELYARD_{k.upper()}": v for k, v in settings.items()},
        }
        self.server = ServerProcess(self.env, free_port(), base / "serve.log", user=users.owner)

    def call(
        self,
        user: str,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: str = "",
    ) -> tuple[int, str | None]:
        """(status, problem code) of a request made by a process of ``user``."""
        args = [method, str(self.server.port), path, json.dumps(headers or {}), body]
        done = self.users.run(user, python_argv("-c", CALL, *args), {})
        assert done.returncode == 0, done.stderr
        status, code = json.loads(done.stdout)
        return int(status), code

    def cli(self, user: str, *args: str) -> tuple[int, str]:
        env = {**self.env, "MODELYARD_PORT": str(self.server.port)}
        done = self.users.run(user, python_argv("-m", "modelyard", *args), env, timeout=120)
        return done.returncode, done.stdout + done.stderr


@pytest.fixture(scope="module")
def serve(os_users: OsUsers) -> Iterator[Callable[..., Served]]:
    """A factory of servers run by the owner; each stays up for the module's tests."""
    started: dict[tuple[tuple[str, str], ...], Served] = {}
    base = Path(tempfile.mkdtemp(prefix="myd-", dir="/tmp"))
    base.chmod(0o755)  # every user reaches the data directories below it

    def start(**settings: str) -> Served:
        key = tuple(sorted(settings.items()))
        if key not in started:
            home = owned_dir(base / f"s{len(started)}", os_users.owner)
            started[key] = Served(os_users, home, **settings)
            # A CI-sized budget: another user's Python imports the whole app on two busy cores.
            started[key].server.start(timeout=120)
        return started[key]

    yield start
    for served in started.values():
        served.server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def grouped(os_users: OsUsers, serve: Callable[..., Served]) -> Served:
    return serve(trusted_group=os_users.group)


def test_only_its_own_user_root_and_the_trusted_group_get_in_without_a_key(
    os_users: OsUsers, grouped: Served
) -> None:
    for user in (os_users.owner, os_users.member, "root"):
        assert grouped.call(user, "GET", "/api/providers") == (200, None), user
    assert grouped.call(os_users.other, "GET", "/api/providers") == (401, "unauthorized")
    # The hole: another user creating (and then starting) an instance with any command.
    body = json.dumps({"id": "x", "base_url": "http://127.0.0.1:9"})
    post = ("POST", "/api/providers/ollama/instances", {"Content-Type": "application/json"})
    assert grouped.call(os_users.other, *post, body) == (401, "unauthorized")
    assert grouped.call(os_users.member, *post, body)[0] == 201


def test_keys_are_judged_alone_and_never_lock_the_owner_out(
    os_users: OsUsers, grouped: Served
) -> None:
    created = httpx.post(
        f"{grouped.server.url}/api/keys", json={"name": "teammate", "scopes": ["read"]}
    ).json()  # as root: trusted
    key = {"Authorization": f"Bearer {created['key']}"}
    assert grouped.call(os_users.other, "GET", "/api/providers", key) == (200, None)
    post = ("POST", "/api/models/sync", key)
    assert grouped.call(os_users.other, *post) == (403, "insufficient_scope")
    assert grouped.call(os_users.owner, *post) == (403, "insufficient_scope")  # the key decides
    wrong = {"Authorization": "Bearer my_wrong"}
    assert grouped.call(os_users.owner, "GET", "/api/providers", wrong) == (401, "unauthorized")
    # Keys exist now; the owner's browser (no key) keeps working.
    assert grouped.call(os_users.owner, "GET", "/api/providers") == (200, None)
    assert grouped.call(os_users.owner, "POST", "/api/models/sync")[0] == 200


def test_no_caller_gives_an_instance_a_command_or_a_key_variable(
    os_users: OsUsers, grouped: Served, tmp_path: Path
) -> None:
    """Issue 19's attacks 1 and 2, as a trusted member without a key and as another user
    holding the admin key: refused, whoever sends them."""
    proof = tmp_path / "proof.txt"
    tmp_path.chmod(0o777)  # where the attack's shell could write, were it ever run
    admin = {"Authorization": f"Bearer {(grouped.data_dir / 'cli.key').read_text().strip()}"}
    post = ("POST", "/api/providers/ollama/instances")
    run_it = {"id": "run-it", "base_url": "http://127.0.0.1:9", "managed": True}
    run_it["command"] = ["/bin/sh", "-c", f"id > {proof}"]
    leak_it = {"id": "leak-it", "base_url": "http://127.0.0.1:9", "api_key_env": "HF_TOKEN"}
    for body in (run_it, leak_it):
        sent = json.dumps(body)
        json_ = {"Content-Type": "application/json"}
        assert grouped.call(os_users.other, *post, json_, sent) == (401, "unauthorized")
        refused = (400, "config_file_only")
        assert grouped.call(os_users.other, *post, {**json_, **admin}, sent) == refused
        assert grouped.call(os_users.member, *post, json_, sent) == refused
    start = "/api/providers/ollama/instances/run-it/start"
    assert grouped.call(os_users.member, "POST", start) == (404, "instance_not_found")
    assert not proof.exists()


def test_a_request_through_a_proxy_is_never_local(os_users: OsUsers, grouped: Served) -> None:
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        proxied = {header: "127.0.0.1"}
        assert grouped.call(os_users.owner, "GET", "/api/providers", proxied) == (
            401,
            "unauthorized",
        )


def test_the_cli_key_is_for_the_owner_and_the_group_only(
    os_users: OsUsers, grouped: Served
) -> None:
    data = grouped.data_dir.stat()
    assert stat.S_IMODE(data.st_mode) == 0o710 and data.st_gid == _gid(os_users.group)
    key_file = grouped.data_dir / "cli.key"
    mode = key_file.stat()
    assert stat.S_IMODE(mode.st_mode) == 0o640 and mode.st_gid == _gid(os_users.group)
    read = f"print(open({str(key_file)!r}).read().strip())"
    key = os_users.python(os_users.member, read).stdout.strip()
    assert key.startswith("my_")  # a member reads it…
    assert "PermissionError" in os_users.python(os_users.other, read).stderr  # …no one else
    assert (
        "PermissionError"
        in os_users.python(
            os_users.member, f"import os; os.listdir({str(grouped.data_dir)!r})"
        ).stderr
    )  # and a member sees nothing else there

    # The key in the file is an admin key, judged alone (it works wherever it is sent from).
    as_key = {"Authorization": f"Bearer {key}"}
    assert grouped.call(os_users.other, "POST", "/api/models/sync", as_key)[0] == 200
    assert grouped.cli(os_users.member, "status")[0] == 0
    code, output = grouped.cli(os_users.other, "status")
    assert code == 1 and "API key" in output and "Traceback" not in output


def test_without_a_group_the_data_directory_is_the_owners_alone(
    os_users: OsUsers, serve: Callable[..., Served]
) -> None:
    alone = serve()
    assert stat.S_IMODE(alone.data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((alone.data_dir / "cli.key").stat().st_mode) == 0o600
    assert alone.call(os_users.member, "GET", "/api/providers") == (401, "unauthorized")
    assert alone.cli(os_users.owner, "status")[0] == 0


def test_any_restores_ollamas_openness_and_none_asks_everyone(
    os_users: OsUsers, serve: Callable[..., Served], modelyard: Callable[..., RunningApp]
) -> None:
    opened = serve(local_trust="any")
    assert opened.call(os_users.other, "GET", "/api/providers") == (200, None)
    closed = modelyard(monitor=False, local_trust="none")
    assert closed.http.get("/api/providers").json()["code"] == "unauthorized"
    assert closed.http.get("/").status_code == 200  # the shell loads and asks for a key


def _gid(group: str) -> int:
    return grp.getgrnam(group).gr_gid
