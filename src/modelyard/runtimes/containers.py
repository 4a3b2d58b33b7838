"""Managed instances as Docker containers, through the Docker SDK for Python (issue 23).

One container per instance key, named ``modelyard-<provider>-<id>`` and labelled
``io.modelyard.key``: a container without that label is never stopped or removed here, and a
restarted modelyard finds its containers again by label. Docker's own restart policy restarts
a container that exits; its restart count, read back on every check, tells a crash loop. What
a container runs (image, mounts, environment, devices) comes from the config file only: the
Docker socket is root, so the API never chooses it (it may pick another tag of the configured
image, on recreate).

Status checks inspect the container (one API call, with the status path's timeout); resource
figures (``stats``, which take Docker a second or more) are asked for separately.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import docker
import docker.errors
import requests.exceptions
from docker.models.containers import Container
from docker.types import DeviceRequest, Mount
from docker.types.daemon import CancellableStream

from modelyard.errors import Conflict, NotFound, Unavailable, UpstreamError
from modelyard.instance_config import ContainerConfig, RestartPolicy

log = logging.getLogger(__name__)

LABEL_KEY = "io.modelyard.key"
LABEL_SPEC = "io.modelyard.spec"
NAME_PREFIX = "modelyard-"
_OPERATION_TIMEOUT_S = 60.0
_TRANSPORT_ERRORS = (requests.exceptions.ConnectionError, requests.exceptions.Timeout)
# Exit codes of a server that was asked to stop (0, or SIGTERM's 128 + 15) rather than crashing.
CLEAN_EXITS = frozenset({0, 143})


@dataclass(frozen=True)
class ContainerSpec:
    """Everything a container is created from; its digest is kept as a label, so a start
    after the configuration changed creates the container anew instead of reusing it."""

    key: str
    image: str
    command: list[str]
    environment: dict[str, str]
    models_dir: Path | None  # bound read-only at ``models_mount``
    models_mount: str
    volumes: dict[str, str]
    network: str
    port: int | None
    container_port: int
    gpus: str
    memory: str
    cpus: float
    restart: RestartPolicy
    restart_max: int

    @property
    def digest(self) -> str:
        fields = {**self.__dict__, "models_dir": str(self.models_dir), "restart": self.restart}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def build(
        cls,
        key: str,
        config: ContainerConfig,
        *,
        image: str,
        command: list[str],
        environment: dict[str, str],
        models_dir: Path | None,
        port: int | None,
    ) -> ContainerSpec:
        return cls(
            key=key,
            image=image,
            command=command,
            environment={**environment, **config.environment},
            models_dir=models_dir if config.models_mount else None,
            models_mount=config.models_mount,
            volumes=dict(config.volumes),
            network=config.network,
            port=port,
            container_port=config.container_port or port or 0,
            gpus=config.gpus,
            memory=config.memory,
            cpus=config.cpus,
            restart=config.restart,
            restart_max=config.restart_max,
        )


@dataclass(frozen=True)
class ContainerState:
    """What one inspect of a container said."""

    id: str
    name: str
    image: str
    ours: bool  # carries our label for this key
    status: str  # created | running | paused | restarting | removing | exited | dead
    running: bool
    pid: int | None  # the main process on this machine while it runs
    exit_code: int | None
    oom_killed: bool
    restart_count: int
    restart_policy: str
    started_at: str
    finished_at: str

    @classmethod
    def from_attrs(cls, key: str, attrs: dict[str, Any]) -> ContainerState:
        state = attrs.get("State") or {}
        config = attrs.get("Config") or {}
        host = attrs.get("HostConfig") or {}
        labels = config.get("Labels") or {}
        running = bool(state.get("Running")) and not state.get("Restarting")
        pid = int(state.get("Pid") or 0)
        status = str(state.get("Status") or "unknown")
        exited = status in ("exited", "dead", "restarting")
        return cls(
            id=str(attrs.get("Id", ""))[:12],
            name=str(attrs.get("Name", "")).lstrip("/"),
            image=str(config.get("Image", "")),
            ours=labels.get(LABEL_KEY) == key,
            status=status,
            running=running,
            pid=pid if running and pid > 0 else None,
            exit_code=int(state.get("ExitCode", 0)) if exited else None,
            oom_killed=bool(state.get("OOMKilled")),
            restart_count=int(attrs.get("RestartCount") or 0),
            restart_policy=str((host.get("RestartPolicy") or {}).get("Name") or "no"),
            started_at=str(state.get("StartedAt", "")),
            finished_at=str(state.get("FinishedAt", "")),
        )


@dataclass(frozen=True)
class ContainerStats:
    """Resource use of a running container (one ``stats`` sample)."""

    cpu_percent: float
    memory_bytes: int
    memory_limit_bytes: int
    pids: int


def container_name(key: str) -> str:
    """``modelyard-<provider>-<id>``: Docker names allow the id's characters."""
    return NAME_PREFIX + key.replace("/", "-")


def _stem(key: str) -> str:
    return quote(key, safe="")


def _not_ours(key: str, name: str) -> Conflict:
    return Conflict(
        f"the container {name} was not created by modelyard for {key}",
        code="container_not_ours",
        hint=f"modelyard never stops or removes it; remove or rename it yourself "
        f"(docker rm {name}) to let modelyard run {key}.",
    )


def _engine_error(exc: Exception) -> Unavailable:
    return Unavailable(
        f"the Docker engine cannot be reached: {exc}",
        code="docker_unavailable",
        hint="Start Docker (systemctl start docker), or set MODELYARD_DOCKER_HOST to its socket.",
    )


def _api_error(what: str, exc: docker.errors.APIError) -> UpstreamError:
    reason = str(exc.explanation or exc)
    return UpstreamError(f"Docker could not {what}: {reason}", code="docker_error", hint=reason)


class ContainerManager:
    """Create, inspect, stop and remove modelyard's containers. Thread-safe; every method
    blocks (the SDK is synchronous), so async callers run it in a worker thread."""

    def __init__(self, docker_host: str, status_timeout_s: float, state_dir: Path) -> None:
        self.docker_host = docker_host
        self.status_timeout_s = status_timeout_s
        self.state_dir = state_dir
        self._lock = threading.Lock()
        self._clients: dict[float, docker.DockerClient] = {}

    # -- the engine ----------------------------------------------------------------------------

    def client(self, timeout: float = _OPERATION_TIMEOUT_S) -> docker.DockerClient:
        """A client with ``timeout`` per request, made on first use (the engine may start
        after modelyard); 503 ``docker_unavailable`` when the engine does not answer."""
        with self._lock:
            found = self._clients.get(timeout)
            if found is not None:
                return found
            try:
                if self.docker_host:
                    made = docker.DockerClient(base_url=self.docker_host, timeout=int(timeout) or 1)
                else:
                    made = docker.from_env(timeout=int(timeout) or 1)
            except docker.errors.DockerException as exc:
                raise _engine_error(exc) from exc
            # The SDK's constructor types whole seconds; requests takes a fraction too.
            made.api.timeout = timeout  # type: ignore[assignment]
            self._clients[timeout] = made
            return made

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    def nvidia_runtime(self) -> bool:
        """Whether the engine has the NVIDIA runtime (then containers may be given GPUs)."""
        try:
            runtimes = self.client().info().get("Runtimes") or {}
        except (Unavailable, docker.errors.DockerException, *_TRANSPORT_ERRORS):
            return False
        return "nvidia" in runtimes

    # -- looking ---------------------------------------------------------------------------------

    def _get(self, key: str, timeout: float = _OPERATION_TIMEOUT_S) -> Container | None:
        try:
            return self.client(timeout).containers.get(container_name(key))
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            raise _api_error("inspect a container", exc) from exc
        except _TRANSPORT_ERRORS as exc:
            raise _engine_error(exc) from exc

    def inspect(self, key: str) -> ContainerState | None:
        """The container of ``key`` as the engine sees it now (the status path: one request
        with the status timeout); None when there is none."""
        found = self._get(key, self.status_timeout_s)
        return None if found is None else ContainerState.from_attrs(key, found.attrs)

    def labelled(self) -> list[ContainerState]:
        """Every container carrying modelyard's key label (adoption after a restart)."""
        try:
            found = self.client().containers.list(all=True, filters={"label": LABEL_KEY})
        except (Unavailable, docker.errors.DockerException, *_TRANSPORT_ERRORS) as exc:
            log.warning("cannot list modelyard's containers: %s", exc)
            return []
        states = []
        for container in found:
            key = (container.labels or {}).get(LABEL_KEY, "")
            states.append(ContainerState.from_attrs(key, container.attrs))
        return states

    def _ours(self, key: str) -> Container | None:
        container = self._get(key)
        if container is not None and (container.labels or {}).get(LABEL_KEY) != key:
            raise _not_ours(key, container_name(key))
        return container

    # -- what modelyard remembers: a stop it asked for, the tag chosen on recreate ---------------

    def _stopped_path(self, key: str) -> Path:
        return self.state_dir / f"{_stem(key)}.container-stopped"

    def _image_path(self, key: str) -> Path:
        return self.state_dir / f"{_stem(key)}.container-image"

    def stopped_by_us(self, key: str, container_id: str) -> bool:
        """Whether modelyard stopped this very container (its exit is then no crash)."""
        try:
            return self._stopped_path(key).read_text(encoding="utf-8").strip() == container_id
        except OSError:
            return False

    def image_override(self, key: str) -> str | None:
        """The image a recreate chose for ``key`` (another tag of the configured one)."""
        try:
            return self._image_path(key).read_text(encoding="utf-8").strip() or None
        except OSError:
            return None

    def _remember(self, path: Path, value: str | None) -> None:
        if value is None:
            path.unlink(missing_ok=True)
            return
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(value, encoding="utf-8")
        os.replace(tmp, path)

    # -- the operations --------------------------------------------------------------------------

    def start(self, spec: ContainerSpec) -> ContainerState:
        """Start the key's container: the existing one when it was made from the same spec,
        else a new one (a stale one of ours is removed first)."""
        client = self.client()
        container = self._ours(spec.key)
        if container is not None and container.status in ("running", "restarting", "paused"):
            raise Conflict(
                f"{spec.key} already runs in container {container.name}",
                code="already_running",
                hint="Use restart to start it again.",
            )
        try:
            if container is not None and container.labels.get(LABEL_SPEC) != spec.digest:
                container.remove(force=True)
                container = None
            if container is None:
                container = self._create(client, spec)
            self._remember(self._stopped_path(spec.key), None)
            container.start()
            container.reload()
        except docker.errors.ImageNotFound as exc:
            raise NotFound(
                f"the image {spec.image} is not on this machine",
                code="image_not_found",
                hint=f"Pull or build it first (docker pull {spec.image}); modelyard never "
                "pulls images itself.",
            ) from exc
        except docker.errors.APIError as exc:
            raise _api_error(f"start {container_name(spec.key)}", exc) from exc
        except _TRANSPORT_ERRORS as exc:
            raise _engine_error(exc) from exc
        return ContainerState.from_attrs(spec.key, container.attrs)

    def _create(self, client: docker.DockerClient, spec: ContainerSpec) -> Container:
        options: dict[str, Any] = {
            "name": container_name(spec.key),
            "labels": {LABEL_KEY: spec.key, LABEL_SPEC: spec.digest},
            "environment": spec.environment,
            "network_mode": spec.network,
            "restart_policy": {"Name": spec.restart.value}
            | ({"MaximumRetryCount": spec.restart_max} if spec.restart_max else {}),
            "detach": True,
        }
        if spec.models_dir is not None:
            options["mounts"] = [
                Mount(spec.models_mount, str(spec.models_dir), type="bind", read_only=True)
            ]
        if spec.volumes:
            options["volumes"] = {
                src: {"bind": dst, "mode": "rw"} for src, dst in spec.volumes.items()
            }
        if spec.network == "bridge" and spec.port:
            options["ports"] = {f"{spec.container_port}/tcp": ("127.0.0.1", spec.port)}
        if spec.memory:
            options["mem_limit"] = spec.memory
        if spec.cpus:
            options["nano_cpus"] = int(spec.cpus * 1e9)
        if spec.gpus != "none" and self.nvidia_runtime():
            ids = None if spec.gpus in ("auto", "all") else spec.gpus.split(",")
            options["device_requests"] = [
                DeviceRequest(
                    count=-1 if ids is None else 0, device_ids=ids or [], capabilities=[["gpu"]]
                )
            ]
        return client.containers.create(spec.image, spec.command or None, **options)

    def stop(self, key: str, grace_s: float) -> bool:
        """Stop our container (SIGTERM, SIGKILL after ``grace_s``); False when none ran.
        409 ``container_not_ours`` for a container modelyard did not create."""
        container = self._ours(key)
        if container is None:
            return False
        self._remember(self._stopped_path(key), (container.id or "")[:12])
        if container.status not in ("running", "restarting", "paused", "created"):
            return False
        try:
            if container.status == "paused":
                container.unpause()
            container.stop(timeout=max(0, round(grace_s)))
        except docker.errors.APIError as exc:
            raise _api_error(f"stop {container.name}", exc) from exc
        except _TRANSPORT_ERRORS as exc:
            raise _engine_error(exc) from exc
        return True

    def remove(self, key: str) -> bool:
        """Remove our stopped container; 409 while it runs. False when there is none."""
        container = self._ours(key)
        if container is None:
            return False
        if container.status in ("running", "restarting", "paused"):
            raise Conflict(
                f"{key} still runs in container {container.name}",
                code="still_running",
                hint="Stop it first.",
            )
        try:
            container.remove()
        except docker.errors.NotFound:
            return False
        except docker.errors.APIError as exc:
            raise _api_error(f"remove {container.name}", exc) from exc
        self._remember(self._stopped_path(key), None)
        return True

    def set_image(self, key: str, image: str | None) -> None:
        """Remember the image a recreate chose (None: the configured one again)."""
        self._remember(self._image_path(key), image)

    def image_present(self, image: str) -> bool:
        try:
            self.client().images.get(image)
        except docker.errors.ImageNotFound:
            return False
        except _TRANSPORT_ERRORS as exc:
            raise _engine_error(exc) from exc
        return True

    def log_tail(self, key: str, lines: int) -> list[str]:
        """The last ``lines`` lines the container wrote (stdout and stderr)."""
        container = self._get(key, self.status_timeout_s)
        if container is None or lines <= 0:
            return []
        try:
            data: bytes = container.logs(tail=lines)
        except (docker.errors.DockerException, *_TRANSPORT_ERRORS) as exc:
            return [f"(the container's log cannot be read: {exc})"]
        return data.decode("utf-8", errors="replace").splitlines()[-lines:]

    def follow_logs(self, key: str, tail: int) -> CancellableStream[bytes]:
        """The last ``tail`` lines, then every new one until the container stops (or the
        stream is closed: ``close`` from another thread ends a read that waits)."""
        container = self._get(key)
        if container is None:
            raise NotFound(
                f"{key} has no container", code="no_container", hint="Start the instance first."
            )
        return container.logs(stream=True, follow=True, tail=tail)

    def stats(self, key: str) -> ContainerStats | None:
        """One resource sample of the running container; None when it does not run."""
        container = self._get(key)
        if container is None or container.status != "running":
            return None
        try:
            raw = cast(dict[str, Any], container.stats(stream=False))
        except (docker.errors.DockerException, *_TRANSPORT_ERRORS) as exc:
            raise _engine_error(exc) from exc
        return _stats(raw)


def _stats(raw: dict[str, Any]) -> ContainerStats:
    """CPU % as ``docker stats`` computes it (container delta over system delta, times CPUs)."""
    cpu, pre = raw.get("cpu_stats") or {}, raw.get("precpu_stats") or {}
    usage = (cpu.get("cpu_usage") or {}).get("total_usage", 0)
    pre_usage = (pre.get("cpu_usage") or {}).get("total_usage", 0)
    system, pre_system = cpu.get("system_cpu_usage", 0), pre.get("system_cpu_usage", 0)
    cpus = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or [1])
    delta, system_delta = usage - pre_usage, system - pre_system
    percent = delta / system_delta * cpus * 100 if delta > 0 and system_delta > 0 else 0.0
    memory = raw.get("memory_stats") or {}
    cache = (memory.get("stats") or {}).get("cache", 0)  # cgroup v1: page cache is not use
    return ContainerStats(
        cpu_percent=round(percent, 2),
        memory_bytes=max(0, int(memory.get("usage", 0)) - int(cache)),
        memory_limit_bytes=int(memory.get("limit", 0)),
        pids=int((raw.get("pids_stats") or {}).get("current", 0)),
    )
