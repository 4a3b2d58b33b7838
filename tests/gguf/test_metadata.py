"""GGUF header metadata from real generated files: shapes, splits, broken files, names."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import psutil
import pytest

from modelyard.errors import InvalidInput, NotFound
from modelyard.gguf.metadata import (
    format_parameter_count,
    parse_quantization,
    read_gguf,
    split_part,
)
from modelyard.instance_config import ModelMode
from tests.support.tiny_gguf import write_tiny_gguf

TINY_PARAMETERS = 108_736  # 21 tensors of the tiny llama model


def write_gguf(
    path: Path,
    arch: str,
    kv: dict[str, Any],
    tensors: dict[str, np.ndarray],
    endianess: gguf.GGUFEndian = gguf.GGUFEndian.LITTLE,
) -> Path:
    """A header-only style GGUF (any metadata, small tensors) for shapes the tiny model lacks."""
    writer = gguf.GGUFWriter(str(path), arch, endianess=endianess)
    for key, value in kv.items():
        if isinstance(value, str):
            writer.add_string(key, value)
        elif isinstance(value, list):
            writer.add_array(key, value)
        elif value >= 2**32:
            writer.add_uint64(key, value)
        else:
            writer.add_uint32(key, value)
    for name, data in tensors.items():
        writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_tiny_llama_model_reads_every_field(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "tiny.gguf", name="tiny-chat")

    info = read_gguf(path)

    assert info.architecture == "llama"
    assert info.name == "tiny-chat"
    assert info.parameter_count == TINY_PARAMETERS
    assert info.parameter_size == "109K"
    assert info.quantization == "F32"
    assert info.context_length == 2048
    assert info.embedding_length == 64
    assert info.block_count == 2
    assert (info.head_count, info.head_count_kv) == (4, 2)
    assert (info.key_length, info.value_length) == (16, 16)
    assert info.has_chat_template is True
    assert info.pooling_type is None
    assert info.mode is ModelMode.LLM
    assert info.file_size == path.stat().st_size
    assert (info.split_count, info.tensor_count, info.gguf_version) == (1, 21, 3)
    assert info.wire()["mode"] == "llm"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param({"file_type": "f16"}, {"quantization": "F16"}, id="f16"),
        pytest.param({"file_type": "q8_0"}, {"quantization": "Q8_0"}, id="q8_0"),
        pytest.param({"context_length": 32768}, {"context_length": 32768}, id="long-context"),
        pytest.param({"chat_template": False}, {"has_chat_template": False}, id="no-template"),
        pytest.param(
            {"pooling": True}, {"mode": ModelMode.EMBED, "pooling_type": "mean"}, id="embedding"
        ),
        pytest.param(
            {"rerank": True},
            {"mode": ModelMode.RERANK, "pooling_type": "rank", "architecture": "qwen3"},
            id="reranker",
        ),
    ],
)
def test_model_shapes(tmp_path: Path, options: dict[str, Any], expected: dict[str, Any]) -> None:
    info = read_gguf(write_tiny_gguf(tmp_path / "m.gguf", **options))

    for field, value in expected.items():
        assert getattr(info, field) == value, field


@pytest.mark.parametrize("file_type", ["f32", "f16", "q8_0"])
def test_agrees_with_gguf_reader(tmp_path: Path, file_type: str) -> None:
    path = write_tiny_gguf(tmp_path / "m.gguf", file_type=file_type, context_length=4096)
    reader = gguf.GGUFReader(path)

    info = read_gguf(path)

    assert info.tensor_count == len(reader.tensors)
    assert info.parameter_count == sum(t.n_elements for t in reader.tensors)
    assert info.context_length == reader.fields["llama.context_length"].contents()
    ftype = gguf.LlamaFileType(reader.fields["general.file_type"].contents())
    assert info.quantization == ftype.name.removeprefix("MOSTLY_").removeprefix("ALL_")


def test_declared_parameter_count_wins(tmp_path: Path) -> None:
    path = write_gguf(
        tmp_path / "m.gguf",
        "llama",
        {"general.parameter_count": 7_615_616_512},
        {"w": np.zeros((4, 4), np.float32)},
    )

    info = read_gguf(path)

    assert info.parameter_count == 7_615_616_512
    assert info.parameter_size == "7.6B"


def test_quantization_without_file_type_is_the_dominant_matrix_type(tmp_path: Path) -> None:
    tensors: dict[str, np.ndarray] = {
        "norm.weight": np.ones(4096, np.float32),  # more elements, but a vector
        "a.weight": np.zeros((32, 32), np.float16),
        "b.weight": np.zeros((32, 16), np.float32),
    }

    info = read_gguf(write_gguf(tmp_path / "m.gguf", "llama", {}, tensors))

    assert info.quantization == "F16"


@pytest.mark.parametrize(
    ("arch", "kv", "tensors", "mode"),
    [
        pytest.param("bert", {}, {}, ModelMode.EMBED, id="bert-is-embedding"),
        pytest.param("nomic-bert", {}, {}, ModelMode.EMBED, id="nomic-bert"),
        pytest.param(
            "bert", {}, {"cls.output.weight": (1, 8)}, ModelMode.RERANK, id="classifier-head"
        ),
        pytest.param(
            "qwen35",
            {"qwen35.pooling_type": 1},
            {"cls.output.weight": (8, 8)},
            ModelMode.EMBED,
            id="projection-with-pooling",
        ),
        pytest.param(
            "xlm-roberta",
            {"general.name": "bge-reranker-v2-m3"},
            {},
            ModelMode.RERANK,
            id="reranker-by-name",
        ),
        pytest.param("llama", {"llama.pooling_type": 0}, {}, ModelMode.LLM, id="pooling-none"),
    ],
)
def test_mode_guess(
    tmp_path: Path,
    arch: str,
    kv: dict[str, Any],
    tensors: dict[str, tuple[int, int]],
    mode: ModelMode,
) -> None:
    arrays = {"token_embd.weight": np.zeros((8, 8), np.float32)}
    arrays |= {name: np.zeros(shape, np.float32) for name, shape in tensors.items()}

    info = read_gguf(write_gguf(tmp_path / "m.gguf", arch, kv, arrays))

    assert info.mode is mode


def test_per_layer_head_counts_use_the_largest(tmp_path: Path) -> None:
    kv = {
        "openelm.attention.head_count": [4, 8, 12],
        "openelm.attention.head_count_kv": [2, 3, 4],
        "openelm.embedding_length": 768,
    }

    info = read_gguf(write_gguf(tmp_path / "m.gguf", "openelm", kv, {"w": np.zeros(4, np.float32)}))

    assert (info.head_count, info.head_count_kv, info.key_length) == (12, 4, 64)


def test_big_endian_file(tmp_path: Path) -> None:
    kv = {"llama.context_length": 1234, "general.name": "be"}
    path = write_gguf(
        tmp_path / "be.gguf",
        "llama",
        kv,
        {"w": np.zeros((2, 3), np.float32)},
        endianess=gguf.GGUFEndian.BIG,
    )

    info = read_gguf(path)

    assert (info.context_length, info.name, info.parameter_count) == (1234, "be", 6)


def test_large_vocabulary_is_skipped_not_decoded(tmp_path: Path) -> None:
    path = tmp_path / "vocab.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_token_list([f"token{i}" for i in range(150_000)])
    writer.add_token_scores([0.0] * 150_000)
    writer.add_chat_template("{{ messages }}")
    writer.add_context_length(131072)
    writer.add_tensor("w", np.zeros((4, 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    info = read_gguf(path)

    assert info.context_length == 131072
    assert info.has_chat_template


def _sparse_model(path: Path, tensor_bytes: int) -> int:
    """A model whose one tensor claims ``tensor_bytes`` of data, stored as a sparse hole."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(4096)
    n = tensor_bytes // 2
    writer.add_tensor_info("huge.weight", (n // 1024, 1024), np.dtype(np.float16), tensor_bytes)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    header = path.stat().st_size
    data_start = -(-header // gguf.GGUF_DEFAULT_ALIGNMENT) * gguf.GGUF_DEFAULT_ALIGNMENT
    return data_start + tensor_bytes


def test_tensor_data_is_never_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.gguf"
    end = _sparse_model(path, 4 * 2**30)
    os.truncate(path, end)
    rss_before = psutil.Process().memory_info().rss

    info = read_gguf(path)

    assert info.parameter_count == 2 * 2**30
    assert info.parameter_size == "2.1B"
    assert info.file_size == end
    assert psutil.Process().memory_info().rss - rss_before < 64 * 2**20


def test_missing_tensor_data_is_truncation(tmp_path: Path) -> None:
    path = tmp_path / "huge.gguf"
    end = _sparse_model(path, 4 * 2**30)
    os.truncate(path, end - 1)

    with pytest.raises(InvalidInput) as caught:
        read_gguf(path)

    assert caught.value.error_code == "invalid_gguf"
    assert "ends early" in caught.value.detail


@pytest.mark.parametrize("keep", [2, 16, 200, 5_000, -1], ids=lambda k: f"keep-{k}")
def test_truncated_file_is_invalid_gguf(tmp_path: Path, keep: int) -> None:
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    data = path.read_bytes()
    path.write_bytes(data[:keep])

    with pytest.raises(InvalidInput) as caught:
        read_gguf(path)

    assert caught.value.error_code == "invalid_gguf"
    assert "tiny.gguf" in caught.value.detail
    assert caught.value.hint


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"<html>404 Not Found</html>\n" * 20, id="html-error-page"),
        pytest.param(b"GGUF" + (1).to_bytes(4, "little") + bytes(64), id="gguf-v1"),
        pytest.param(b"GGUF" + (3).to_bytes(4, "little") + bytes(7), id="header-cut"),
    ],
)
def test_non_gguf_content_is_invalid_gguf(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(content)

    with pytest.raises(InvalidInput) as caught:
        read_gguf(path)

    assert caught.value.error_code == "invalid_gguf"
    assert caught.value.to_problem()["status"] == 400


def test_corrupt_counts_are_invalid_not_a_crash(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    data = bytearray(path.read_bytes())
    data[16:24] = (2**62).to_bytes(8, "little")  # the key/value count
    path.write_bytes(bytes(data))

    with pytest.raises(InvalidInput) as caught:
        read_gguf(path)

    assert caught.value.error_code == "invalid_gguf"


def test_directory_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "dir.gguf").mkdir()
    with pytest.raises(InvalidInput) as caught:
        read_gguf(tmp_path / "dir.gguf")
    assert caught.value.error_code == "invalid_gguf"

    with pytest.raises(NotFound) as missing:
        read_gguf(tmp_path / "nope.gguf")
    assert missing.value.error_code == "file_not_found"


def test_split_model_reads_all_parts(tmp_path: Path) -> None:
    first = write_tiny_gguf(tmp_path / "tiny.gguf", split_max_tensors=8)
    parts = sorted(tmp_path.glob("tiny-*-of-00003.gguf"))

    info = read_gguf(first)

    assert first.name == "tiny-00001-of-00003.gguf"
    assert info.split_count == 3
    assert info.tensor_count == 21
    assert info.parameter_count == TINY_PARAMETERS
    assert info.file_size == sum(p.stat().st_size for p in parts)
    assert info.context_length == 2048


def test_split_model_with_a_missing_part(tmp_path: Path) -> None:
    first = write_tiny_gguf(tmp_path / "tiny.gguf", split_max_tensors=8)
    (tmp_path / "tiny-00003-of-00003.gguf").unlink()

    with pytest.raises(InvalidInput) as caught:
        read_gguf(first)

    assert caught.value.error_code == "incomplete_split"
    assert "tiny-00003-of-00003.gguf" in caught.value.detail


def test_split_model_opened_at_a_later_part(tmp_path: Path) -> None:
    write_tiny_gguf(tmp_path / "tiny.gguf", split_max_tensors=8)

    with pytest.raises(InvalidInput) as caught:
        read_gguf(tmp_path / "tiny-00002-of-00003.gguf")

    assert caught.value.error_code == "not_first_split"


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("qwen2.5-0.5b-instruct-q4_k_m.gguf", "Q4_K_M"),
        ("Model-IQ4_XS.gguf", "IQ4_XS"),
        ("llama-2-7b.Q8_0.gguf", "Q8_0"),
        ("x.Q8_0.gguf", "Q8_0"),
        ("ggml-model-f16.gguf", "F16"),
        ("model-bf16.gguf", "BF16"),
        ("model-fp32.gguf", "F32"),
        ("model_q5_k_s.gguf", "Q5_K_S"),
        ("Qwen3-8B-UD-Q4_K_XL.gguf", "Q4_K_XL"),
        ("DeepSeek-IQ2_XXS-00001-of-00004.gguf", "IQ2_XXS"),
        ("gemma-3-4b-it-qat-Q4_0.gguf", "Q4_0"),
        ("bitnet-TQ1_0.gguf", "TQ1_0"),
        ("gpt-oss-20b-MXFP4.gguf", "MXFP4"),
        ("qwen2-7b.gguf", None),
        ("Llama-3-8B-Q3-notes.gguf", None),
        ("model.gguf", None),
    ],
)
def test_parse_quantization(filename: str, expected: str | None) -> None:
    assert parse_quantization(filename) == expected


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("Qwen-Q4_K_M-00001-of-00003.gguf", ("Qwen-Q4_K_M", 1, 3)),
        ("big-00003-of-00003.GGUF", ("big", 3, 3)),
        ("model.gguf", None),
        ("model-00004-of-00003.gguf", None),
        ("model-00000-of-00003.gguf", None),
        ("model-1-of-3.gguf", None),
    ],
)
def test_split_part(filename: str, expected: tuple[str, int, int] | None) -> None:
    assert split_part(filename) == expected


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (999, "999"),
        (999_960_000, "1B"),
        (8_030_261_248, "8.0B"),
        (108_736, "109K"),
        (494_032_768, "494M"),
        (1_543_714_304, "1.5B"),
        (7_615_616_512, "7.6B"),
        (8_000_000_000, "8B"),
        (70_553_706_496, "70.6B"),
        (671_026_419_200, "671B"),
        (1_000_000_000_000, "1T"),
    ],
)
def test_format_parameter_count(count: int, expected: str) -> None:
    assert format_parameter_count(count) == expected
