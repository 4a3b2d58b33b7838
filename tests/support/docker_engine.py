"""A Docker engine for the container tests, and the images they run (no registry is reached).

``engine()`` uses ``MODELYARD_TEST_DOCKER_HOST`` when set; otherwise it starts Debian's
``dockerd`` with its bridge and iptables off (every test container runs with
``--network host``, so all traffic stays on loopback) and a persistent data root under
``~/.cache/modelyard-tests/docker``, so images built once per machine are reused; ``stop()``
ends only a daemon it started. Images:

* ``llama_image`` — a root filesystem holding the genuine ``llama-server`` of the tests
  (tests/support/llama_build.py) and the libraries ``ldd`` lists, imported with ``docker
  import``; its entrypoint is ``llama-server``.
* ``python_base_image`` — Debian bookworm made with ``debootstrap`` (python3, venv), imported
  (one to four minutes, once per machine).
* ``ollama_image`` — the project's Ollama stand-in (tests/fakes) as ``ollama serve``, since no
  Ollama binary exists here.
* ``modelyard_image`` — the repository's Dockerfile on that base (its dependencies' layer is
  cached while pyproject.toml is unchanged).

``python -m tests.support.docker_engine`` builds them ahead of the tests and says how long
each took (``make test`` runs it).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import docker
import docker.errors

from tests.support.llama_build import CACHE, genuine

DATA_ROOT = CACHE / "docker"
RUN_DIR = Path("/run/modelyard-test-docker")
SOCKET = RUN_DIR / "docker.sock"
PID_FILE = RUN_DIR / "dockerd.pid"
ROOTFS_IMAGE = "modelyard-test/debian-python:bookworm-rootfs"
BASE_IMAGE = "modelyard-test/debian-python:bookworm"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
STAND_IN_PACKAGES = ("starlette", "uvicorn", "httpx")
MODELYARD_IMAGE = "modelyard-test/modelyard:latest"
ROOT = Path(__file__).resolve().parents[2]
START_S = 60.0


class Engine:
    """The test daemon: its address, and whether this process started it."""

    def __init__(self) -> None:
        self.url = os.environ.get("MODELYARD_TEST_DOCKER_HOST", "")
        self.process: subprocess.Popen[bytes] | None = None
        self.missing = ""

    def start(self) -> Engine:
        if self.url:
            return self
        self.url = f"unix://{SOCKET}"
        if self._answers():
            return self  # left running by a test run of another worktree: shared, not ours
        dockerd = shutil.which("dockerd")
        if dockerd is None or os.geteuid() != 0:
            self.missing = "no dockerd (apt-get install docker.io) or not root"
            return self
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        DATA_ROOT.mkdir(parents=True, exist_ok=True)
        log = open(RUN_DIR / "dockerd.log", "ab")  # noqa: SIM115 (the daemon's, kept open)
        self.process = subprocess.Popen(
            [
                dockerd,
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                f"--data-root={DATA_ROOT}",
                f"--exec-root={RUN_DIR / 'exec'}",
                f"--pidfile={PID_FILE}",
                f"--host={self.url}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_S
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.missing = f"dockerd did not start (see {RUN_DIR / 'dockerd.log'})"
                self.stop()
                return self
            time.sleep(0.1)
        return self

    def _answers(self) -> bool:
        try:
            client = docker.DockerClient(base_url=self.url, timeout=5)
        except (docker.errors.DockerException, OSError):
            return False
        try:
            return bool(client.ping())
        except (docker.errors.DockerException, OSError):
            return False
        finally:
            client.close()

    def client(self, timeout: int = 120) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, timeout=timeout)

    def stop(self) -> None:
        """Stop the daemon this process started (never one it found running)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None


def _has(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def _libraries(binary: str, env: dict[str, str]) -> list[Path]:
    out = subprocess.run(
        ["ldd", binary], capture_output=True, text=True, check=True, env=env
    ).stdout
    found = []
    for line in out.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if path.startswith("/"):
            found.append(Path(path))
    return found


def llama_image(client: docker.DockerClient) -> str:
    """The llama-server image (imported once per binary: its tag carries the binary's hash)."""
    binary, env = genuine()
    digest = hashlib.sha256(Path(binary).read_bytes()).hexdigest()[:12]
    tag = f"modelyard-test/llama-server:{digest}"
    if _has(client, tag):
        return tag
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(binary, arcname="usr/local/bin/llama-server")
        for lib in _libraries(binary, env):
            # Each library at the path ldd named, whatever symlinks lead there on this machine.
            tar.add(str(lib.resolve()), arcname=str(lib).lstrip("/"))
        for name in ("tmp",):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777
            tar.addfile(info)
    client.api.import_image_from_data(
        buffer.getvalue(),
        repository=tag.split(":")[0],
        tag=digest,
        changes=['ENTRYPOINT ["/usr/local/bin/llama-server"]'],
    )
    return tag


def python_base_image(client: docker.DockerClient) -> str:
    """Debian bookworm with Debian's python3, from debootstrap (once per machine), plus this
    machine's CA bundle for pip (PyPI may be reached through a TLS-inspecting proxy here)."""
    if _has(client, BASE_IMAGE):
        return BASE_IMAGE
    if not _has(client, ROOTFS_IMAGE):
        with tempfile.TemporaryDirectory(prefix="rootfs-", dir=CACHE) as tmp:
            rootfs = Path(tmp) / "rootfs"
            subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    "--include=python3,python3-venv,ca-certificates",
                    "bookworm",
                    str(rootfs),
                    "http://deb.debian.org/debian",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            import_rootfs(client, rootfs, ROOTFS_IMAGE)
    dockerfile = (
        f"FROM {ROOTFS_IMAGE}\n"
        f"COPY ca-certificates.crt {CA_BUNDLE}\n"
        f"ENV PIP_CERT={CA_BUNDLE} REQUESTS_CA_BUNDLE={CA_BUNDLE}\n"
    ).encode()
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in (("Dockerfile", dockerfile), ("ca-certificates.crt", _ca_bundle())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    client.images.build(fileobj=context, custom_context=True, tag=BASE_IMAGE, rm=True)
    return BASE_IMAGE


def _ca_bundle() -> bytes:
    return Path(CA_BUNDLE).read_bytes()


def modelyard_image(client: docker.DockerClient) -> str:
    """The repository's Dockerfile built on the Debian base (the layer cache keeps the
    dependencies' layer while pyproject.toml is unchanged)."""
    base = python_base_image(client)
    client.images.build(
        path=str(ROOT),
        tag=MODELYARD_IMAGE,
        buildargs={"BASE": base},
        network_mode="host",  # pip reaches PyPI from the build; the daemon has no bridge
        rm=True,
        forcerm=True,
    )
    return MODELYARD_IMAGE


def ollama_image(client: docker.DockerClient) -> str:
    """The project's Ollama stand-in (tests/fakes) on the Debian base, entrypoint
    ``python -m tests.fakes.ollama_serve``: tagged by the stand-in's sources, its packages in a
    layer of their own (pinned to the versions the tests run with)."""
    base = python_base_image(client)
    sources = sorted((ROOT / "tests" / "fakes").glob("*.py"))
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:12]
    tag = f"modelyard-test/ollama-stand-in:{digest}"
    if _has(client, tag):
        return tag
    pins = " ".join(f"{name}=={version(name)}" for name in STAND_IN_PACKAGES)
    dockerfile = (
        f"FROM {base}\n"
        f"RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir -q {pins}\n"
        "COPY tests /app/tests\n"
        "WORKDIR /app\n"
        'ENTRYPOINT ["/opt/venv/bin/python", "-m", "tests.fakes.ollama_serve"]\n'
    ).encode()
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
        tar.add(ROOT / "tests" / "__init__.py", arcname="tests/__init__.py")
        for path in sources:
            tar.add(path, arcname=f"tests/fakes/{path.name}")
    context.seek(0)
    client.images.build(
        fileobj=context, custom_context=True, tag=tag, network_mode="host", rm=True, forcerm=True
    )
    return tag


def import_rootfs(client: docker.DockerClient, rootfs: Path, tag: str) -> None:
    repository, _, version = tag.rpartition(":")
    with tempfile.NamedTemporaryFile(suffix=".tar", dir=CACHE) as archive:
        subprocess.run(["tar", "-C", str(rootfs), "-cf", archive.name, "."], check=True)
        client.api.import_image_from_file(archive.name, repository=repository, tag=version)


def main() -> None:
    engine = Engine().start()
    if engine.missing:
        raise SystemExit(f"no Docker engine: {engine.missing}")
    client = engine.client(timeout=600)
    try:
        for build in (llama_image, python_base_image, ollama_image, modelyard_image):
            began = time.monotonic()
            tag = build(client)
            print(f"{tag}: ready in {time.monotonic() - began:.1f} s")
    finally:
        client.close()
        engine.stop()


if __name__ == "__main__":
    main()
