"""Disk, RAM, CPU and GPU of this machine, and whether a model fits (SPEC §4 resource checks).

GPUs come from NVML (``pynvml``). Without an NVIDIA driver the list is empty, without an
error; the failed initialisation is remembered so later calls cost nothing.
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import psutil
import pynvml
from typing_extensions import TypedDict  # pydantic documents these (typing.TypedDict: 3.12+)

from modelyard.errors import InsufficientResources
from modelyard.gguf.metadata import GGUFInfo

MiB = 2**20
GiB = 2**30
# llama.cpp's compute buffers and runtime: a few hundred MiB for common models and contexts.
COMPUTE_OVERHEAD = 256 * MiB
# llama-server's own default context size, used when neither caller nor model says.
DEFAULT_CTX_SIZE = 4096
_KV_BYTES = 2  # f16 cache entries
# Approximate bits per weight, scales included (llama.cpp's quantize table).
BITS_PER_WEIGHT: dict[str, float] = {
    "F32": 32.0,
    "F16": 16.0,
    "BF16": 16.0,
    "Q8_0": 8.5,
    "Q6_K": 6.56,
    "Q5_1": 6.0,
    "Q5_K_M": 5.69,
    "Q5_K_S": 5.54,
    "Q5_0": 5.5,
    "Q5_K": 5.5,
    "Q4_1": 5.0,
    "Q4_K_M": 4.85,
    "Q4_K_S": 4.58,
    "Q4_0": 4.55,
    "Q4_K": 4.5,
    "IQ4_NL": 4.5,
    "IQ4_XS": 4.25,
    "MXFP4_MOE": 4.25,
    "Q3_K_L": 4.27,
    "Q3_K_M": 3.91,
    "IQ3_M": 3.66,
    "Q3_K_S": 3.5,
    "IQ3_S": 3.44,
    "Q3_K": 3.44,
    "IQ3_XS": 3.3,
    "Q2_K": 3.17,
    "Q2_K_S": 3.17,
    "IQ3_XXS": 3.06,
    "IQ2_M": 2.7,
    "IQ2_S": 2.5,
    "IQ2_XS": 2.31,
    "IQ2_XXS": 2.06,
    "TQ2_0": 2.06,
    "IQ1_M": 1.75,
    "TQ1_0": 1.69,
    "IQ1_S": 1.56,
}
# An unknown quantization is taken as unquantized: overestimating is the safe side.
_DEFAULT_BITS = 16.0
# KV cache bytes per token without metadata, fitted to f16 caches of real models
# (Qwen2.5-0.5B 12 KiB, Llama-3-8B 128 KiB, Qwen2.5-7B 56 KiB, Llama-3-70B 320 KiB):
# about 20 KB at 1B parameters, growing with the 2/3 power of the parameter count.
_KV_PER_TOKEN_AT_1B = 20_000
_KV_EXPONENT = 2 / 3
# How to override a refusal, worded for the API and the CLI alike.
_FORCE = "retry with force to try anyway (force=true in the API, --force in the CLI)"

Target = Literal["vram", "vram+ram", "ram", "disk"]
Verdict = Literal["fits", "tight", "too_large"]


class DiskUsage(TypedDict):
    path: str
    total: int
    used: int
    free: int


class MemoryUsage(TypedDict):
    total: int
    available: int
    used: int
    percent: float


class CpuUsage(TypedDict):
    count: int
    physical: int | None
    load_avg: list[float]
    percent: float


class GpuUsage(TypedDict):
    index: int
    name: str
    memory_total: int
    memory_used: int
    memory_free: int
    utilization: int | None


class SystemResources(TypedDict):
    disk: DiskUsage
    memory: MemoryUsage
    cpu: CpuUsage
    gpus: list[GpuUsage]


@dataclass(frozen=True)
class MemoryEstimate:
    """Memory a model needs to run, by part. ``basis`` says where the numbers came from."""

    weights: int
    kv_cache: int
    compute: int
    total: int
    ctx_size: int
    basis: Literal["gguf", "parameters", "file_size"]

    def wire(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FitVerdict:
    """Whether something fits where it must go; ``fits`` is False for tight and too_large."""

    fits: bool
    verdict: Verdict
    available: int
    required: int
    margin: int
    target: Target
    hint: str

    def wire(self) -> dict[str, Any]:
        return asdict(self)

    def require(self, *, force: bool = False) -> None:
        """Raise ``InsufficientResources`` unless it fits or the caller forces it."""
        if self.fits or force:
            return
        what = "disk space" if self.target == "disk" else "memory"
        raise InsufficientResources(
            f"not enough {what}: {_human(self.required)} needed plus a {_human(self.margin)} "
            f"margin, {_human(self.available)} available",
            code="insufficient_disk" if self.target == "disk" else "insufficient_memory",
            hint=self.hint,
            required=self.required,
            available=self.available,
            verdict=self.verdict,
        )


def system_resources(models_dir: Path) -> SystemResources:
    """Disk of the models directory's filesystem, RAM, CPU and NVIDIA GPUs, right now."""
    disk = shutil.disk_usage(_existing_ancestor(models_dir))
    memory = psutil.virtual_memory()
    return {
        "disk": {
            "path": str(models_dir),
            "total": disk.total,
            "used": disk.used,
            "free": disk.free,
        },
        "memory": {
            "total": int(memory.total),
            "available": int(memory.available),
            "used": int(memory.used),
            "percent": float(memory.percent),
        },
        "cpu": {
            "count": os.cpu_count() or 1,
            "physical": psutil.cpu_count(logical=False),
            "load_avg": [round(load, 2) for load in os.getloadavg()],
            # Since the previous call; never blocks to sample.
            "percent": float(psutil.cpu_percent(interval=None)),
        },
        "gpus": _NVML.gpus(),
    }


def free_memory() -> int:
    """RAM available plus free GPU memory, right now: the most ``check_fits`` holds a model
    to (free VRAM when a GPU is visible, with RAM taking the layers that do not fit)."""
    return int(psutil.virtual_memory().available) + sum(g["memory_free"] for g in _NVML.gpus())


def _existing_ancestor(path: Path) -> Path:
    """The path itself or its nearest existing parent (the models directory may not exist yet)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class _Nvml:
    """NVML initialised once per process; a machine without the driver reports no GPUs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready: bool | None = None

    def _init(self) -> bool:
        with self._lock:
            if self._ready is None:
                try:
                    pynvml.nvmlInit()
                    self._ready = True
                except pynvml.NVMLError:
                    self._ready = False
            return self._ready

    def gpus(self) -> list[GpuUsage]:
        if not self._init():
            return []
        try:
            return [self._gpu(index) for index in range(pynvml.nvmlDeviceGetCount())]
        except pynvml.NVMLError:  # a GPU fell off the bus or the driver was reloaded
            return []

    @staticmethod
    def _gpu(index: int) -> GpuUsage:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        name = pynvml.nvmlDeviceGetName(handle)
        try:
            utilization: int | None = int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except pynvml.NVMLError:  # not supported on some boards
            utilization = None
        return {
            "index": index,
            "name": name.decode() if isinstance(name, bytes) else str(name),
            "memory_total": int(memory.total),
            "memory_used": int(memory.used),
            "memory_free": int(memory.free),
            "utilization": utilization,
        }


_NVML = _Nvml()


def process_memory(pids: list[int]) -> dict[int, int]:
    """Resident memory (RSS, bytes) of each process still running; others are left out."""
    result: dict[int, int] = {}
    for pid in pids:
        try:
            result[pid] = int(psutil.Process(pid).memory_info().rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return result


def bits_per_weight(quantization: str | None) -> float:
    """Approximate storage bits per weight of a quantization name (unknown: 16)."""
    if not quantization:
        return _DEFAULT_BITS
    return BITS_PER_WEIGHT.get(quantization.upper().removeprefix("UD-"), _DEFAULT_BITS)


def estimate_memory(
    info: GGUFInfo | None,
    *,
    file_size: int,
    ctx_size: int,
    parameter_count: int | None = None,
    quantization: str | None = None,
) -> MemoryEstimate:
    """Weights + KV cache for ``ctx_size`` tokens + compute buffers, in bytes.

    With GGUF metadata the KV cache is exact for an f16 cache: layers × ctx × kv_heads ×
    (key_length + value_length) × 2 bytes. Without it, the parameter count (given, or
    derived from the file size and quantization) gives a typical cache size. ``ctx_size``
    0 means the model's own context length, as with ``llama-server -c 0``.
    """
    if ctx_size <= 0:
        ctx_size = (info.context_length if info else None) or DEFAULT_CTX_SIZE
    kv = _gguf_kv_cache(info, ctx_size) if info is not None else None
    if info is not None:
        parameter_count = parameter_count or info.parameter_count
        quantization = quantization or info.quantization
        file_size = file_size or info.file_size
    bits = bits_per_weight(quantization)
    weights = file_size if file_size > 0 else int((parameter_count or 0) * bits / 8)
    basis: Literal["gguf", "parameters", "file_size"] = "gguf"
    if kv is None:
        basis = "parameters" if parameter_count else "file_size"
        guessed = parameter_count or int(file_size * 8 / bits)
        kv = round(_KV_PER_TOKEN_AT_1B * (guessed / 1e9) ** _KV_EXPONENT) * ctx_size
    return MemoryEstimate(
        weights=weights,
        kv_cache=kv,
        compute=COMPUTE_OVERHEAD,
        total=weights + kv + COMPUTE_OVERHEAD,
        ctx_size=ctx_size,
        basis=basis,
    )


def _gguf_kv_cache(info: GGUFInfo, ctx_size: int) -> int | None:
    layers, kv_heads = info.block_count, info.head_count_kv
    key, value = info.key_length, info.value_length
    if not (layers and kv_heads and key and value):
        return None
    return layers * ctx_size * kv_heads * (key + value) * _KV_BYTES


def check_fits(estimate: MemoryEstimate, resources: SystemResources, margin: int) -> FitVerdict:
    """Compare the estimate with free VRAM when a GPU is visible, else with available RAM.

    A model larger than free VRAM still fits when VRAM and RAM together hold it: llama.cpp
    then keeps some layers on the CPU (slower), and the hint says so.
    """
    return _fits(estimate.total, resources["memory"]["available"], resources["gpus"], margin)


def fits_now(estimate: MemoryEstimate, margin: int) -> FitVerdict:
    """``check_fits`` against RAM and GPUs right now: a start's memory check reads only what
    it compares (``system_resources`` also reads the disk and the CPUs, a third of a
    millisecond on the way to a loaded model)."""
    return _fits(estimate.total, int(psutil.virtual_memory().available), _NVML.gpus(), margin)


def _fits(need: int, ram: int, gpus: list[GpuUsage], margin: int) -> FitVerdict:
    if gpus:
        vram = sum(gpu["memory_free"] for gpu in gpus)
        if need + margin <= vram:
            return FitVerdict(True, "fits", vram, need, margin, "vram", "It fits in GPU memory.")
        if need + margin <= vram + ram:
            hint = (
                f"Only {_human(vram)} of GPU memory is free, so part of the model will run "
                "from system RAM, which is slower."
            )
            return FitVerdict(True, "fits", vram + ram, need, margin, "vram+ram", hint)
        return _short(need, vram + ram, margin, "vram+ram", "memory")
    if need + margin <= ram:
        return FitVerdict(True, "fits", ram, need, margin, "ram", "It fits in memory.")
    return _short(need, ram, margin, "ram", "memory")


def check_disk(path: Path, needed: int, margin: int) -> FitVerdict:
    """Whether ``needed`` bytes plus ``margin`` fit on the filesystem holding ``path``."""
    free = shutil.disk_usage(_existing_ancestor(path)).free
    if needed + margin <= free:
        return FitVerdict(True, "fits", free, needed, margin, "disk", "There is enough space.")
    return _short(needed, free, margin, "disk", "disk space")


def _short(need: int, available: int, margin: int, target: Target, what: str) -> FitVerdict:
    if need <= available:
        hint = (
            f"It would fit only by using the {_human(margin)} safety margin; free some {what} "
            f"or {_FORCE}."
        )
        return FitVerdict(False, "tight", available, need, margin, target, hint)
    hint = (
        f"It needs {_human(need)} but only {_human(available)} is available; free some {what}, "
        f"choose a smaller model or context, or {_FORCE}."
    )
    return FitVerdict(False, "too_large", available, need, margin, target, hint)


def _human(size: int) -> str:
    if size >= GiB:
        return f"{size / GiB:.1f} GiB"
    return f"{size / MiB:.0f} MiB"
