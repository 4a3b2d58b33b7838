"""GGUF metadata read from a file's header, never from its tensor data. The header
(key/values and tensor infos) is parsed with the value types, quantization tables and enums
of the ``gguf`` package. ``gguf.GGUFReader`` itself is not used: it builds
a numpy view per array element, which takes seconds for a real 150,000-token vocabulary,
whereas skipping the arrays we do not need keeps a read in the tens of milliseconds. The
header is read with ordinary buffered reads rather than a memory map, so a file that shrinks
while it is read gives a clean error instead of a SIGBUS.
"""

from __future__ import annotations

import re
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from gguf import (
    GGML_QUANT_SIZES,
    GGUF_DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    GGMLQuantizationType,
    GGUFValueType,
    LlamaFileType,
    PoolingType,
)

from modelyard.errors import InvalidInput, NotFound
from modelyard.instance_config import ModelMode

Scalar = int | float | bool | str
Value = Scalar | tuple[Scalar, ...]

_SCALAR_FORMATS: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "B",
    GGUFValueType.INT8: "b",
    GGUFValueType.UINT16: "H",
    GGUFValueType.INT16: "h",
    GGUFValueType.UINT32: "I",
    GGUFValueType.INT32: "i",
    GGUFValueType.FLOAT32: "f",
    GGUFValueType.BOOL: "?",
    GGUFValueType.UINT64: "Q",
    GGUFValueType.INT64: "q",
    GGUFValueType.FLOAT64: "d",
}
# Numeric arrays longer than this (token types, scores) are skipped, not decoded.
_MAX_KEPT_ARRAY = 4096
# GGUF allows arrays of arrays; no writer nests them deeper than this, and a header nesting
# thousands deep would otherwise exhaust Python's stack.
_MAX_ARRAY_DEPTH = 8
_MAX_DIMS = 8
_CHUNK = 1 << 20

# Architectures llama.cpp serves only as embedding models.
_EMBED_ARCHS = frozenset(
    {
        "bert",
        "modern-bert",
        "nomic-bert",
        "nomic-bert-moe",
        "neo-bert",
        "jina-bert-v2",
        "jina-bert-v3",
        "eurobert",
        "gemma-embedding",
        "t5encoder",
        "llama-embed",
    }
)
_SPLIT_RE = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
# A quantization name stands between separators: Q4_K_M, IQ4_XS, Q8_0, F16, BF16, TQ1_0, …
_QUANT_RE = re.compile(
    r"(?<![A-Za-z0-9])"
    r"(I?Q[1-8](?:_(?:XXS|XS|XL|NL|K|S|M|L|\d+))+|TQ[12]_0|MXFP4(?:_MOE)?|B?F16|FP16|F32|FP32)"
    r"(?![A-Za-z0-9])",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF model is, from its header. ``file_size`` counts every split part."""

    architecture: str | None
    name: str | None
    parameter_count: int
    parameter_size: str
    quantization: str | None
    context_length: int | None
    embedding_length: int | None
    block_count: int | None
    head_count: int | None
    head_count_kv: int | None
    key_length: int | None
    value_length: int | None
    has_chat_template: bool
    pooling_type: str | None
    mode: ModelMode
    file_size: int
    split_count: int
    tensor_count: int
    gguf_version: int

    def wire(self) -> dict[str, Any]:
        """A JSON-ready dict (``mode`` as its string value)."""
        data = asdict(self)
        data["mode"] = self.mode.value
        return data


@dataclass(frozen=True)
class _Tensor:
    name: str
    type_id: int
    n_dims: int
    n_elements: int
    end: int | None  # absolute offset one past its data; None for a type this gguf cannot size


@dataclass(frozen=True)
class _Header:
    version: int
    metadata: dict[str, Value]
    tensors: list[_Tensor]
    file_size: int


class _Truncated(Exception):
    """The file ends before its header, or the tensor data the header points at, does."""


class _Corrupt(Exception):
    """The header holds something no GGUF writer produces."""


class _HeaderReader:
    """Sequential reader over the start of a file, pulling bytes in as they are needed."""

    def __init__(self, fh: BinaryIO, file_size: int) -> None:
        self._fh = fh
        self.file_size = file_size
        self.buf = bytearray()
        self.pos = 0
        self.order = "<"
        self._structs: dict[str, struct.Struct] = {}

    def use_big_endian(self) -> None:
        self.order = ">"
        self._structs.clear()

    def _need(self, n: int) -> None:
        missing = self.pos + n - len(self.buf)
        while missing > 0:
            more = self._fh.read(max(_CHUNK, missing))
            if not more:
                raise _Truncated
            self.buf += more
            missing -= len(more)

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        packer = self._structs.get(fmt)
        if packer is None:
            packer = self._structs[fmt] = struct.Struct(self.order + fmt)
        self._need(packer.size)
        values = packer.unpack_from(self.buf, self.pos)
        self.pos += packer.size
        return values

    def u32(self) -> int:
        return int(self.unpack("I")[0])

    def u64(self) -> int:
        return int(self.unpack("Q")[0])

    def string(self) -> str:
        size = self.u64()
        if size > self.file_size:
            raise _Corrupt(f"a string claims {size} bytes")
        self._need(size)
        text = bytes(self.buf[self.pos : self.pos + size]).decode("utf-8", errors="replace")
        self.pos += size
        return text

    def skip(self, size: int) -> None:
        if self.pos + size > self.file_size:
            raise _Truncated
        self.pos += size

    def skip_strings(self, count: int) -> None:
        """Walk past ``count`` strings without decoding them (a vocabulary can hold 250k)."""
        length = self._structs.setdefault("Q", struct.Struct(self.order + "Q"))
        for _ in range(count):
            self._need(8)
            self.pos += 8 + length.unpack_from(self.buf, self.pos)[0]
            if self.pos > self.file_size:
                raise _Truncated

    def value(self, type_id: int, depth: int = 0) -> Value | None:
        """One metadata value; ``None`` for arrays skipped as too long or not numeric."""
        vtype = _value_type(type_id)
        if vtype == GGUFValueType.STRING:
            return self.string()
        if vtype != GGUFValueType.ARRAY:
            scalar: Scalar = self.unpack(_SCALAR_FORMATS[vtype])[0]
            return scalar
        if depth >= _MAX_ARRAY_DEPTH:
            raise _Corrupt(f"its arrays are nested more than {_MAX_ARRAY_DEPTH} deep")
        item_type = _value_type(self.u32())
        count = self.u64()
        if count > self.file_size:
            raise _Corrupt(f"an array claims {count} items")
        fmt = _SCALAR_FORMATS.get(item_type)
        if fmt is not None and count <= _MAX_KEPT_ARRAY:
            return tuple(self.unpack(f"{count}{fmt}"))
        if fmt is not None:
            self.skip(count * struct.calcsize(fmt))
        elif item_type == GGUFValueType.STRING:
            self.skip_strings(count)
        else:
            for _ in range(count):
                self.value(item_type, depth + 1)
        return None


def _value_type(type_id: int) -> GGUFValueType:
    try:
        return GGUFValueType(type_id)
    except ValueError:
        raise _Corrupt(f"unknown value type {type_id}") from None


def _read_header(path: Path) -> _Header:
    """Parse key/values and tensor infos; check the data the infos point at is all there."""
    with path.open("rb") as fh:
        reader = _HeaderReader(fh, path.stat().st_size)
        magic = reader.unpack("I")[0]
        if magic != GGUF_MAGIC:
            raise _Corrupt("it does not start with the GGUF magic bytes")
        version = reader.u32()
        if version & 0xFFFF == 0:  # written on a machine of the other byte order
            reader.use_big_endian()
            version = int.from_bytes(version.to_bytes(4, "little"), "big")
        if version not in (2, 3):
            raise _Corrupt(f"GGUF version {version} is not supported (only 2 and 3)")
        tensor_count, kv_count = reader.u64(), reader.u64()
        metadata: dict[str, Value] = {}
        for _ in range(kv_count):
            key = reader.string()
            value = reader.value(reader.u32())
            if value is not None:
                metadata[key] = value
        infos = [_read_tensor_info(reader) for _ in range(tensor_count)]
    alignment = metadata.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise _Corrupt(f"general.alignment {alignment!r} is not a power of two")
    data_start = -(-reader.pos // alignment) * alignment
    tensors = [
        _Tensor(name, type_id, dims, n, None if size is None else data_start + offset + size)
        for name, type_id, dims, n, offset, size in infos
    ]
    needed = max((t.end for t in tensors if t.end is not None), default=data_start)
    if needed > reader.file_size:
        raise _Truncated
    return _Header(version, metadata, tensors, reader.file_size)


def _read_tensor_info(reader: _HeaderReader) -> tuple[str, int, int, int, int, int | None]:
    name = reader.string()
    n_dims = reader.u32()
    if n_dims > _MAX_DIMS:
        raise _Corrupt(f"tensor {name!r} claims {n_dims} dimensions")
    n_elements = 1
    for dim in reader.unpack(f"{n_dims}Q"):
        n_elements *= int(dim)
    type_id, offset = reader.u32(), reader.u64()
    size: int | None = None
    if type_id in GGML_QUANT_SIZES:
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(type_id)]
        size = n_elements * type_size // block
    return name, type_id, n_dims, n_elements, offset, size


def read_gguf(path: Path) -> GGUFInfo:
    """Read a GGUF model's metadata from its header (all parts when ``path`` is part 1).
    Raises ``InvalidInput`` (``invalid_gguf``: not GGUF, truncated or corrupt;
    ``incomplete_split``: split parts missing) and ``NotFound`` (no such file)."""
    header = _read_checked(path)
    meta = header.metadata
    split_count = _int(meta.get("split.count")) or 1
    tensors, file_size = list(header.tensors), header.file_size
    if split_count > 1:
        for part in _other_parts(path, meta, split_count):
            part_header = _read_checked(part)
            tensors += part_header.tensors
            file_size += part_header.file_size
    return _info(header, tensors, file_size, split_count)


def _read_checked(path: Path) -> _Header:
    """``_read_header`` with every failure turned into a modelyard error."""
    try:
        return _read_header(path)
    except FileNotFoundError as exc:
        raise NotFound(
            f"{path} does not exist", code="file_not_found", hint="List the models directory."
        ) from exc
    except IsADirectoryError as exc:
        raise _invalid(path, "it is a directory") from exc
    except OSError as exc:
        raise InvalidInput(
            f"{path} cannot be read: {exc.strerror or exc}",
            code="unreadable_file",
            hint="Check the file's permissions and the disk.",
        ) from exc
    except _Truncated as exc:
        raise _invalid(path, "it ends early (truncated or still downloading)") from exc
    except _Corrupt as exc:
        raise _invalid(path, str(exc)) from exc
    except (struct.error, ValueError, OverflowError, RecursionError) as exc:
        # A header no check above foresaw is still one bad file, never a failed scan.
        raise _invalid(path, f"its header cannot be parsed ({exc.__class__.__name__})") from exc


def _invalid(path: Path, why: str) -> InvalidInput:
    return InvalidInput(
        f"{path.name} is not a usable GGUF file: {why}",
        code="invalid_gguf",
        hint="Download the file again, or remove it from the models directory.",
    )


def _other_parts(path: Path, meta: dict[str, Value], split_count: int) -> list[Path]:
    """Parts 2..n of a split model, named the way llama.cpp expects them."""
    parsed = split_part(path.name)
    if _int(meta.get("split.no")) or (parsed is not None and parsed[1] != 1):
        raise InvalidInput(
            f"{path.name} is not the first part of a split model",
            code="not_first_split",
            hint="Open the part named …-00001-of-….gguf.",
        )
    if parsed is None or parsed[2] != split_count:
        raise InvalidInput(
            f"{path.name} is part of a {split_count}-part model but is not named like one",
            code="incomplete_split",
            hint="Keep llama.cpp's names: <name>-00001-of-0000N.gguf.",
        )
    parts = split_paths(path.parent / parsed[0], split_count)[1:]
    missing = [p.name for p in parts if not p.is_file()]
    if missing:
        raise InvalidInput(
            f"{path.name} is missing {len(missing)} of its {split_count} parts: "
            + ", ".join(missing),
            code="incomplete_split",
            hint="Download the missing parts into the same directory.",
        )
    return parts


def split_paths(prefix: Path, count: int) -> list[Path]:
    """All part paths of a split model: ``<prefix>-00001-of-0000N.gguf`` … in order."""
    return [
        prefix.with_name(f"{prefix.name}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)
    ]


def split_part(filename: str) -> tuple[str, int, int] | None:
    """``("name", 2, 3)`` for ``name-00002-of-00003.gguf``; ``None`` for an unsplit name."""
    match = _SPLIT_RE.match(filename)
    if match is None:
        return None
    number, count = int(match["no"]), int(match["count"])
    if not 1 <= number <= count:
        return None
    return match["prefix"], number, count


def parse_quantization(filename: str) -> str | None:
    """The quantization a file name states (``…-q4_k_m.gguf`` → ``Q4_K_M``), if any."""
    stem = Path(filename).name
    parsed = split_part(stem)
    if parsed is not None:
        stem = parsed[0]
    elif stem.lower().endswith(".gguf"):
        stem = stem[: -len(".gguf")]
    matches = _QUANT_RE.findall(stem)
    if not matches:
        return None
    name = str(matches[-1]).upper()
    return {"FP16": "F16", "FP32": "F32"}.get(name, name)


def format_parameter_count(count: int) -> str:
    """Ollama-style size: ``7.6B``, ``494M``, ``109K``; one decimal below 100, none above."""
    rounded = float(f"{count:.3g}")  # so 999,960,000 reads 1B rather than 1000M
    for unit, scale in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if rounded >= scale:
            number = rounded / scale
            text = f"{number:.0f}" if number >= 100 or number.is_integer() else f"{number:.1f}"
            return text + unit
    return str(count)


def _info(header: _Header, tensors: list[_Tensor], file_size: int, split_count: int) -> GGUFInfo:
    meta = header.metadata
    arch = _str(meta.get("general.architecture"))

    def arch_int(key: str) -> int | None:
        return _int(meta.get(f"{arch}.{key}")) if arch else None

    embedding, heads = arch_int("embedding_length"), arch_int("attention.head_count")
    head_dim = embedding // heads if embedding and heads else None
    declared = _int(meta.get("general.parameter_count"))
    count = declared or sum(t.n_elements for t in tensors)
    pooling = _pooling_name(arch_int("pooling_type"))
    name = _str(meta.get("general.name"))
    return GGUFInfo(
        architecture=arch,
        name=name,
        parameter_count=count,
        parameter_size=format_parameter_count(count),
        quantization=_quantization(_int(meta.get("general.file_type")), tensors),
        context_length=arch_int("context_length"),
        embedding_length=embedding,
        block_count=arch_int("block_count"),
        head_count=heads,
        head_count_kv=arch_int("attention.head_count_kv") or heads,
        key_length=arch_int("attention.key_length") or head_dim,
        value_length=arch_int("attention.value_length") or head_dim,
        has_chat_template=bool(_str(meta.get("tokenizer.chat_template"))),
        pooling_type=pooling,
        mode=_guess_mode(arch, name, pooling, tensors),
        file_size=file_size,
        split_count=split_count,
        tensor_count=len(tensors),
        gguf_version=header.version,
    )


def _int(value: Value | None) -> int | None:
    """An integer key; per-layer arrays (some models vary heads by layer) give their maximum."""
    if isinstance(value, tuple):
        numbers = [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
        return max(numbers) if numbers else None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _str(value: Value | None) -> str | None:
    return value if isinstance(value, str) and value else None


def _pooling_name(value: int | None) -> str | None:
    if value is None:
        return None
    try:
        return PoolingType(value).name.lower()
    except ValueError:
        return str(value)


def _quantization(file_type: int | None, tensors: list[_Tensor]) -> str | None:
    """The name of ``general.file_type``; else the type holding most weights (matrices)."""
    if file_type is not None and file_type != LlamaFileType.GUESSED:
        try:
            return LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass
    totals: dict[int, int] = {}
    for tensor in tensors:
        if tensor.n_dims >= 2:
            totals[tensor.type_id] = totals.get(tensor.type_id, 0) + tensor.n_elements
    if not totals:
        return None
    dominant = max(totals, key=lambda type_id: totals[type_id])
    try:
        return GGMLQuantizationType(dominant).name
    except ValueError:
        return f"TYPE_{dominant}"


def _guess_mode(
    arch: str | None, name: str | None, pooling: str | None, tensors: list[_Tensor]
) -> ModelMode:
    """Rerankers score pairs (rank pooling or a classifier head); embedders pool; else LLM."""
    labels = f"{arch or ''} {name or ''}".lower()
    # Some embedding models use ``cls.output`` as an output projection next to mean or last
    # pooling; only without such pooling is it a classifier head.
    has_classifier = pooling in (None, "none", "cls") and any(
        t.name.startswith("cls.output") for t in tensors
    )
    if pooling == "rank" or has_classifier or "rerank" in labels:
        return ModelMode.RERANK
    if (pooling not in (None, "none")) or arch in _EMBED_ARCHS:
        return ModelMode.EMBED
    return ModelMode.LLM
