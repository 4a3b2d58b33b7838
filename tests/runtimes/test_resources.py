"""Machine resources, memory estimates and fit checks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.errors import InsufficientResources
from modelyard.gguf.metadata import read_gguf
from modelyard.runtimes.resources import (
    COMPUTE_OVERHEAD,
    DEFAULT_CTX_SIZE,
    GiB,
    MemoryEstimate,
    MiB,
    SystemResources,
    bits_per_weight,
    check_disk,
    check_fits,
    estimate_memory,
    fits_now,
    process_memory,
    system_resources,
)
from tests.support.tiny_gguf import write_tiny_gguf


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait(10)


def test_system_resources_on_this_machine(tmp_path: Path) -> None:
    res = system_resources(tmp_path)

    disk, memory, cpu = res["disk"], res["memory"], res["cpu"]
    assert disk["path"] == str(tmp_path)
    assert disk["total"] >= disk["free"] > 0
    assert disk["free"] == pytest.approx(shutil.disk_usage(tmp_path).free, rel=0.05)
    assert memory["total"] >= memory["available"] > 0
    assert 0 <= memory["percent"] <= 100
    assert cpu["count"] >= 1
    assert len(cpu["load_avg"]) == 3
    assert 0 <= cpu["percent"] <= 100
    if not Path("/proc/driver/nvidia").exists():
        assert res["gpus"] == []
    json.dumps(res)


def test_models_dir_that_does_not_exist_yet(tmp_path: Path) -> None:
    res = system_resources(tmp_path / "data" / "models")

    assert res["disk"]["path"] == str(tmp_path / "data" / "models")
    assert res["disk"]["total"] == shutil.disk_usage(tmp_path).total


def test_process_memory(child: subprocess.Popen[bytes]) -> None:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait(30)

    rss = process_memory([child.pid, finished.pid])

    assert set(rss) == {child.pid}
    assert rss[child.pid] > MiB


def test_estimate_from_gguf_metadata(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    info = read_gguf(path)
    size = path.stat().st_size

    estimate = estimate_memory(info, file_size=size, ctx_size=1024)

    # 2 layers x 1024 tokens x 2 KV heads x (16 + 16) key/value dims x 2 bytes
    assert estimate.kv_cache == 2 * 1024 * 2 * 32 * 2 == 262_144
    assert estimate.weights == size
    assert estimate.compute == COMPUTE_OVERHEAD
    assert estimate.total == size + 262_144 + COMPUTE_OVERHEAD
    assert (estimate.ctx_size, estimate.basis) == (1024, "gguf")


def test_estimate_with_context_zero_uses_the_models_context(tmp_path: Path) -> None:
    info = read_gguf(write_tiny_gguf(tmp_path / "tiny.gguf", context_length=8192))

    estimate = estimate_memory(info, file_size=0, ctx_size=0)

    assert estimate.ctx_size == 8192
    assert estimate.kv_cache == 2 * 8192 * 2 * 32 * 2
    assert estimate.weights == info.file_size


def test_estimate_from_parameters_and_quantization() -> None:
    estimate = estimate_memory(
        None, file_size=0, ctx_size=4096, parameter_count=8_000_000_000, quantization="Q4_K_M"
    )

    assert estimate.weights == int(8_000_000_000 * 4.85 / 8)
    # 20 KB per token at 1B parameters, times 8 ** (2/3) = 4 at 8B
    assert estimate.kv_cache == 80_000 * 4096
    assert estimate.basis == "parameters"
    assert estimate.total == estimate.weights + estimate.kv_cache + COMPUTE_OVERHEAD


def test_estimate_from_file_size_only() -> None:
    estimate = estimate_memory(None, file_size=4 * GiB, ctx_size=0, quantization="Q8_0")

    assert estimate.weights == 4 * GiB
    assert estimate.ctx_size == DEFAULT_CTX_SIZE
    assert estimate.basis == "file_size"
    assert estimate.kv_cache > 0


@pytest.mark.parametrize(
    ("name", "bits"),
    [("Q4_K_M", 4.85), ("q8_0", 8.5), ("F16", 16), ("UD-Q4_K_M", 4.85), (None, 16), ("??", 16)],
)
def test_bits_per_weight(name: str | None, bits: float) -> None:
    assert bits_per_weight(name) == bits


def _resources(ram: int, vram: list[int] | None = None) -> SystemResources:
    gpus = [
        {
            "index": i,
            "name": "GPU",
            "memory_total": free * 2,
            "memory_used": free,
            "memory_free": free,
            "utilization": 0,
        }
        for i, free in enumerate(vram or [])
    ]
    return {
        "disk": {"path": "/", "total": 0, "used": 0, "free": 0},
        "memory": {"total": ram * 2, "available": ram, "used": ram, "percent": 50.0},
        "cpu": {"count": 2, "physical": 1, "load_avg": [0.0, 0.0, 0.0], "percent": 0.0},
        "gpus": gpus,  # type: ignore[typeddict-item]
    }


def _estimate(total: int) -> MemoryEstimate:
    return MemoryEstimate(total, 0, 0, total, 4096, "gguf")


@pytest.mark.parametrize(
    ("need", "ram", "vram", "verdict", "fits", "target"),
    [
        pytest.param(4 * GiB, 16 * GiB, None, "fits", True, "ram", id="ram-fits"),
        pytest.param(15 * GiB, 16 * GiB, None, "tight", False, "ram", id="ram-within-margin"),
        pytest.param(20 * GiB, 16 * GiB, None, "too_large", False, "ram", id="ram-too-small"),
        pytest.param(6 * GiB, 16 * GiB, [8 * GiB], "fits", True, "vram", id="vram-fits"),
        pytest.param(6 * GiB, 1 * GiB, [4 * GiB, 4 * GiB], "fits", True, "vram", id="two-gpus"),
        pytest.param(12 * GiB, 16 * GiB, [8 * GiB], "fits", True, "vram+ram", id="spills"),
        pytest.param(30 * GiB, 16 * GiB, [8 * GiB], "too_large", False, "vram+ram", id="no"),
    ],
)
def test_check_fits(
    need: int, ram: int, vram: list[int] | None, verdict: str, fits: bool, target: str
) -> None:
    result = check_fits(_estimate(need), _resources(ram, vram), 2 * GiB)

    assert (result.verdict, result.fits, result.target) == (verdict, fits, target)
    assert result.required == need
    assert result.hint


def test_refusal_is_a_clear_error_with_an_override() -> None:
    result = check_fits(_estimate(20 * GiB), _resources(16 * GiB), 256 * MiB)

    with pytest.raises(InsufficientResources) as caught:
        result.require()

    problem = caught.value.to_problem()
    assert problem["status"] == 507
    assert problem["code"] == "insufficient_memory"
    assert problem["required"] == 20 * GiB and problem["available"] == 16 * GiB
    assert "force=true" in problem["hint"]
    result.require(force=True)


def test_tiny_model_fits_on_this_machine(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    estimate = estimate_memory(read_gguf(path), file_size=path.stat().st_size, ctx_size=2048)

    result = check_fits(estimate, system_resources(tmp_path), margin=0)

    assert result.fits, result.hint
    result.require()


def test_a_start_checks_the_same_memory_as_the_resources_report(tmp_path: Path) -> None:
    """``fits_now`` (a start's check) reads only RAM and GPUs; its verdict is the one the full
    report gives, and it refuses what the machine cannot hold."""
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    estimate = estimate_memory(read_gguf(path), file_size=path.stat().st_size, ctx_size=2048)

    assert fits_now(estimate, margin=0).fits
    short = fits_now(estimate, margin=2**50)
    report = check_fits(estimate, system_resources(tmp_path), margin=2**50)
    assert (short.fits, short.verdict, short.target) == (False, "tight", "ram")
    assert (report.fits, report.verdict, report.target) == (False, "tight", "ram")
    with pytest.raises(InsufficientResources):
        short.require()


def test_check_disk_on_this_machine(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free

    assert check_disk(tmp_path / "models", 1 * MiB, 1 * MiB).verdict == "fits"
    assert check_disk(tmp_path, free // 2, free).verdict == "tight"
    too_large = check_disk(tmp_path, free + 2**50, 0)
    assert (too_large.verdict, too_large.target) == ("too_large", "disk")
    with pytest.raises(InsufficientResources) as caught:
        too_large.require()
    assert caught.value.error_code == "insufficient_disk"
    assert json.loads(json.dumps(too_large.wire()))["verdict"] == "too_large"
