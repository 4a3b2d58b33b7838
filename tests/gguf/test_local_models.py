"""Scanning a models directory of real generated GGUF files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from modelyard.gguf.files import MetadataCache, scan_models_dir
from modelyard.instance_config import ModelMode
from tests.support.tiny_gguf import write_tiny_gguf


@pytest.fixture
def models(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    write_tiny_gguf(root / "tiny.gguf")
    write_tiny_gguf(root / "hf" / "org" / "repo" / "chat-q8_0.gguf", file_type="q8_0")
    write_tiny_gguf(root / "embed" / "nomic-embed-f16.gguf", file_type="f16", pooling=True)
    return root


def names(root: Path, cache: MetadataCache | None = None) -> list[str]:
    return [model.name for model in scan_models_dir(root, cache=cache or MetadataCache())]


def test_nested_models_are_named_by_relative_posix_path(models: Path) -> None:
    found = {m.name: m for m in scan_models_dir(models, cache=MetadataCache())}

    assert sorted(found) == [
        "embed/nomic-embed-f16.gguf",
        "hf/org/repo/chat-q8_0.gguf",
        "tiny.gguf",
    ]
    chat = found["hf/org/repo/chat-q8_0.gguf"]
    assert chat.path == (models / "hf/org/repo/chat-q8_0.gguf").resolve()
    assert chat.size == chat.path.stat().st_size
    assert chat.mtime == chat.path.stat().st_mtime
    assert chat.quantization == "Q8_0"
    assert chat.info is not None and chat.info.context_length == 2048
    assert chat.error is None
    assert found["embed/nomic-embed-f16.gguf"].mode is ModelMode.EMBED
    assert found["tiny.gguf"].mode is ModelMode.LLM


def test_things_that_are_not_models_are_skipped(models: Path) -> None:
    tiny = models / "tiny.gguf"
    shutil.copy(tiny, models / "download.gguf.part")
    shutil.copy(tiny, models / ".hidden.gguf")
    (models / ".cache" / "huggingface").mkdir(parents=True)
    shutil.copy(tiny, models / ".cache" / "huggingface" / "blob.gguf")
    shutil.copy(tiny, models / "embed" / "mmproj-model-f16.gguf")
    (models / "README.md").write_text("notes")

    assert names(models) == [
        "embed/nomic-embed-f16.gguf",
        "hf/org/repo/chat-q8_0.gguf",
        "tiny.gguf",
    ]


def test_broken_files_are_listed_with_an_error(models: Path) -> None:
    data = (models / "tiny.gguf").read_bytes()
    (models / "half-Q4_K_M.gguf").write_bytes(data[: len(data) // 2])
    (models / "page.gguf").write_text("<html>Not Found</html>")

    found = {m.name: m for m in scan_models_dir(models, cache=MetadataCache())}

    half, page = found["half-Q4_K_M.gguf"], found["page.gguf"]
    assert half.info is None and half.error_code == "invalid_gguf"
    assert "ends early" in (half.error or "")
    assert half.quantization == "Q4_K_M"  # from the name when the header is unreadable
    assert page.info is None and page.error_code == "invalid_gguf"
    assert found["tiny.gguf"].error is None


def test_split_model_is_one_model(models: Path) -> None:
    write_tiny_gguf(models / "big" / "split.gguf", split_max_tensors=8)
    parts = sorted((models / "big").iterdir())

    found = {m.name: m for m in scan_models_dir(models, cache=MetadataCache())}

    split = found["big/split-00001-of-00003.gguf"]
    assert not any(name.startswith("big/split-0000") and name != split.name for name in found)
    assert split.split_count == 3
    assert split.size == sum(p.stat().st_size for p in parts)
    assert split.info is not None and split.info.tensor_count == 21
    assert split.error is None


def test_incomplete_split_models_carry_an_error(models: Path) -> None:
    write_tiny_gguf(models / "a" / "m.gguf", split_max_tensors=8)
    write_tiny_gguf(models / "b" / "m.gguf", split_max_tensors=8)
    (models / "a" / "m-00002-of-00003.gguf").unlink()
    (models / "b" / "m-00001-of-00003.gguf").unlink()

    found = {m.name: m for m in scan_models_dir(models, cache=MetadataCache())}

    assert found["a/m-00001-of-00003.gguf"].error_code == "incomplete_split"
    assert "m-00002-of-00003.gguf" in (found["a/m-00001-of-00003.gguf"].error or "")
    missing_first = found["b/m-00001-of-00003.gguf"]
    assert missing_first.error_code == "incomplete_split"
    assert missing_first.size == sum(p.stat().st_size for p in (models / "b").iterdir())


def test_missing_models_dir_has_no_models(tmp_path: Path) -> None:
    assert scan_models_dir(tmp_path / "not-yet", cache=MetadataCache()) == []


def test_rescanning_unchanged_files_reads_no_headers(tmp_path: Path) -> None:
    root = tmp_path / "models"
    source = write_tiny_gguf(tmp_path / "source.gguf", file_type="q8_0")
    for i in range(200):
        shelf = root / f"shelf{i % 10}"
        shelf.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, shelf / f"m{i:03d}.gguf")
    cache = MetadataCache()

    first = scan_models_dir(root, cache=cache)
    assert (len(first), cache.misses, cache.hits) == (200, 200, 0)

    second = scan_models_dir(root, cache=cache)
    assert (cache.misses, cache.hits) == (200, 200)
    assert second == first


def test_changed_files_are_read_again(tmp_path: Path) -> None:
    root = tmp_path / "models"
    write_tiny_gguf(root / "a.gguf")
    write_tiny_gguf(root / "b.gguf")
    cache = MetadataCache()
    scan_models_dir(root, cache=cache)

    write_tiny_gguf(root / "a.gguf", context_length=8192)  # same size, new content
    for name in ("a.gguf", "b.gguf"):  # a second later, whatever the clock's resolution
        stat = (root / name).stat()
        os.utime(root / name, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    found = {m.name: m for m in scan_models_dir(root, cache=cache)}

    assert cache.misses == 4
    assert found["a.gguf"].info is not None and found["a.gguf"].info.context_length == 8192


def test_a_repaired_file_loses_its_error(tmp_path: Path) -> None:
    root = tmp_path / "models"
    root.mkdir()
    (root / "m.gguf").write_bytes(b"partial")
    cache = MetadataCache()
    assert scan_models_dir(root, cache=cache)[0].error_code == "invalid_gguf"

    write_tiny_gguf(root / "m.gguf")

    assert scan_models_dir(root, cache=cache)[0].error is None


def test_wire_form_is_json(models: Path) -> None:
    (models / "bad.gguf").write_bytes(b"nope")

    rows = [m.wire() for m in scan_models_dir(models, cache=MetadataCache())]

    decoded = json.loads(json.dumps(rows))
    by_name = {row["name"]: row for row in decoded}
    assert by_name["tiny.gguf"]["info"]["architecture"] == "llama"
    assert by_name["tiny.gguf"]["modified_at"].endswith("Z")
    assert by_name["bad.gguf"]["info"] is None
    assert by_name["bad.gguf"]["error_code"] == "invalid_gguf"
