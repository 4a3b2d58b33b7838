"""Hugging Face sources: parsing, metadata through huggingface_hub, bytes through the engine.

Everything runs against the Hub stand-in (tests/fakes/huggingface.py): the real
``huggingface_hub`` client talks to it over HTTP, and its CDN is a real Range-capable server
on another host name.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import gguf
import pytest
from huggingface_hub import HfApi
from huggingface_hub.hf_api import RepoFile

from modelyard.downloads.http_engine import FetchRequest, fetch_with_retries
from modelyard.downloads.huggingface import (
    HFRef,
    auth_headers,
    list_gguf_files,
    parse_hf_uri,
    quantization_of,
    resolve_file,
)
from modelyard.errors import InvalidInput, ModelyardError
from tests.fakes.huggingface import FakeHub
from tests.support.servers import closed_port
from tests.support.tiny_gguf import write_tiny_gguf

TOKEN = "hf_granted"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param(
            "hf://bartowski/Qwen2.5-0.5B-GGUF/Qwen2.5-0.5B-Q4_K_M.gguf",
            HFRef("bartowski/Qwen2.5-0.5B-GGUF", "Qwen2.5-0.5B-Q4_K_M.gguf", "main"),
            id="plain",
        ),
        pytest.param(
            "hf://owner/repo/Q8_0/model-Q8_0-00001-of-00002.gguf@v1.2",
            HFRef("owner/repo", "Q8_0/model-Q8_0-00001-of-00002.gguf", "v1.2"),
            id="subfolder-and-revision",
        ),
        pytest.param(
            "hf://owner/repo/model.gguf@" + "a" * 40,
            HFRef("owner/repo", "model.gguf", "a" * 40),
            id="commit",
        ),
        pytest.param(
            {"repo": "owner/repo", "filename": "dir/model.gguf"},
            HFRef("owner/repo", "dir/model.gguf", "main"),
            id="mapping",
        ),
        pytest.param(
            {"repo": "owner/repo", "filename": "model.gguf", "revision": "refs/pr/1"},
            HFRef("owner/repo", "model.gguf", "refs/pr/1"),
            id="mapping-with-revision",
        ),
    ],
)
def test_parse_hf_sources(source: str | dict[str, object], expected: HFRef) -> None:
    parsed = parse_hf_uri(source)
    assert parsed == expected
    assert parse_hf_uri(parsed.uri) == parsed


@pytest.mark.parametrize(
    ("source", "code"),
    [
        pytest.param("https://huggingface.co/owner/repo", "hf_invalid_uri", id="not-hf"),
        pytest.param("hf://owner", "hf_invalid_repo", id="no-repo"),
        pytest.param("hf://owner/repo", "hf_missing_filename", id="no-file"),
        pytest.param("hf://owner/re..po/x.gguf", "hf_invalid_repo", id="dots-in-repo"),
        pytest.param("hf://-owner/repo/x.gguf", "hf_invalid_repo", id="leading-dash"),
        pytest.param("hf://owner/repo/../x.gguf", "hf_invalid_filename", id="traversal"),
        pytest.param("hf://owner/repo/.hidden.gguf", "hf_invalid_filename", id="hidden"),
        pytest.param("hf://owner/repo/x.gguf@", "hf_invalid_revision", id="empty-revision"),
        pytest.param("hf://owner/repo/x.gguf@a b", "hf_invalid_revision", id="space-in-rev"),
        pytest.param({"repo": "owner/repo"}, "hf_invalid_uri", id="mapping-no-file"),
        pytest.param({"repo": 3, "filename": "x.gguf"}, "hf_invalid_uri", id="mapping-types"),
    ],
)
def test_bad_hf_sources_get_clear_codes(source: str | dict[str, object], code: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_hf_uri(source)
    assert caught.value.error_code == code
    assert caught.value.hint


@pytest.mark.parametrize(
    ("filename", "quantization"),
    [
        ("Meta-Llama-3-8B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("qwen2.5-0.5b-instruct-q8_0.gguf", "Q8_0"),
        ("Q4_K_S/model-IQ4_XS-00001-of-00002.gguf", "IQ4_XS"),
        ("gemma-2-2b-it-IQ2_XXS.gguf", "IQ2_XXS"),
        ("model.Q3_K_L.gguf", "Q3_K_L"),
        ("Qwen3-8B-UD-Q4_K_XL.gguf", "Q4_K_XL"),
        ("phi-3-mini-4k-instruct-fp16.gguf", "FP16"),
        ("Llama-3.2-1B-Instruct-BF16.gguf", "BF16"),
        ("model-f16.gguf", "F16"),
        ("llama-2-7b.Q4_0_4_4.gguf", "Q4_0_4_4"),
        ("mmproj-model-f16.gguf", "F16"),
        ("Qwen2-7B-Instruct.gguf", None),
    ],
)
def test_quantization_is_read_from_the_file_name(filename: str, quantization: str | None) -> None:
    assert quantization_of(filename) == quantization


def gguf_repo(hub: FakeHub, tmp_path: Path, **options: object) -> tuple[str, bytes]:
    """A repo holding one real tiny GGUF (a Q8_0 model), plus a README kept in git."""
    model = write_tiny_gguf(tmp_path / "tiny.gguf", file_type="q8_0").read_bytes()
    files = {"tiny-Q8_0.gguf": model, "README.md": b"# tiny\n"}
    hub.add_repo("tiny/tiny-GGUF", files, **options)  # type: ignore[arg-type]
    return "tiny/tiny-GGUF", model


def test_resolve_file_reads_size_sha256_and_commit(fake_hub: FakeHub, tmp_path: Path) -> None:
    repo_id, model = gguf_repo(fake_hub, tmp_path)
    commit = fake_hub.repos[repo_id].revisions["main"]

    found = resolve_file(fake_hub.endpoint, None, repo_id, "tiny-Q8_0.gguf")

    assert (found.size, found.sha256, found.commit) == (
        len(model),
        hashlib.sha256(model).hexdigest(),
        commit,
    )
    assert found.url == f"{fake_hub.endpoint}/{repo_id}/resolve/{commit}/tiny-Q8_0.gguf"
    assert found.relative_dest == "hf/tiny/tiny-GGUF/tiny-Q8_0.gguf"
    readme = resolve_file(fake_hub.endpoint, "", repo_id, "README.md")
    assert readme.sha256 is None and readme.size == len(b"# tiny\n")
    assert all(r.authorization is None for r in fake_hub.requests)


@pytest.mark.parametrize(
    ("repo", "filename", "revision", "token", "code"),
    [
        pytest.param("tiny/nope", "tiny-Q8_0.gguf", "main", None, "hf_repo_not_found", id="repo"),
        pytest.param("tiny/nope", "x.gguf", "main", TOKEN, "hf_repo_not_found", id="repo-auth"),
        pytest.param("tiny/tiny-GGUF", "x.gguf", "main", None, "hf_file_not_found", id="file"),
        pytest.param(
            "tiny/tiny-GGUF", "tiny-Q8_0.gguf", "v9", None, "hf_revision_not_found", id="rev"
        ),
        pytest.param(
            "tiny/tiny-GGUF", "tiny-Q8_0.gguf", "main", "hf_bogus", "hf_unauthorized", id="token"
        ),
    ],
)
def test_hub_errors_become_modelyard_errors(
    fake_hub: FakeHub,
    tmp_path: Path,
    repo: str,
    filename: str,
    revision: str,
    token: str | None,
    code: str,
) -> None:
    gguf_repo(fake_hub, tmp_path)
    fake_hub.tokens.add(TOKEN)

    with pytest.raises(ModelyardError) as caught:
        resolve_file(fake_hub.endpoint, token, repo, filename, revision)

    assert caught.value.error_code == code and caught.value.hint


def test_gated_and_private_repos_need_a_granted_token(fake_hub: FakeHub, tmp_path: Path) -> None:
    fake_hub.tokens |= {TOKEN, "hf_other"}
    repo_id, model = gguf_repo(fake_hub, tmp_path, gated=True, granted={TOKEN})
    fake_hub.add_repo("tiny/secret", {"s-Q4_0.gguf": b"secret"}, private=True, granted={TOKEN})

    for token in (None, "hf_other"):
        with pytest.raises(ModelyardError) as caught:
            resolve_file(fake_hub.endpoint, token, repo_id, "tiny-Q8_0.gguf")
        assert caught.value.error_code == "hf_gated" and caught.value.http_status == 403
    assert resolve_file(fake_hub.endpoint, TOKEN, repo_id, "tiny-Q8_0.gguf").size == len(model)

    with pytest.raises(ModelyardError) as caught:
        resolve_file(fake_hub.endpoint, None, "tiny/secret", "s-Q4_0.gguf")
    assert caught.value.error_code == "hf_repo_not_found"
    assert resolve_file(fake_hub.endpoint, TOKEN, "tiny/secret", "s-Q4_0.gguf").size == 6


def test_an_unreachable_hub_is_a_clear_upstream_error() -> None:
    with pytest.raises(ModelyardError) as caught:
        resolve_file(f"http://127.0.0.1:{closed_port()}", None, "a/b", "c.gguf")
    assert caught.value.error_code == "hf_unreachable"


def test_list_gguf_files_groups_splits_and_marks_projectors(fake_hub: FakeHub) -> None:
    files = {
        "README.md": b"readme",
        "model-Q4_K_M.gguf": b"q" * 400,
        "model-IQ4_XS.gguf": b"i" * 350,
        "Q8_0/model-Q8_0-00001-of-00003.gguf": b"a" * 300,
        "Q8_0/model-Q8_0-00003-of-00003.gguf": b"c" * 100,
        "Q8_0/model-Q8_0-00002-of-00003.gguf": b"b" * 300,
        "mmproj-model-f16.gguf": b"m" * 50,
        "config.json": b"{}",
    }
    fake_hub.add_repo("owner/model-GGUF", files)

    choices = list_gguf_files(fake_hub.endpoint, None, "owner/model-GGUF")

    summary = [(c.filename, c.size, c.quantization, c.is_projector) for c in choices]
    assert summary == [
        ("model-IQ4_XS.gguf", 350, "IQ4_XS", False),
        ("model-Q4_K_M.gguf", 400, "Q4_K_M", False),
        ("Q8_0/model-Q8_0-00001-of-00003.gguf", 700, "Q8_0", False),
        ("mmproj-model-f16.gguf", 50, "F16", True),
    ]
    split = choices[2]
    assert [p.filename.rsplit("-", 3)[1] for p in split.parts] == ["00001", "00002", "00003"]
    assert split.sha256 is None
    assert split.parts[1].sha256 == hashlib.sha256(b"b" * 300).hexdigest()
    assert choices[1].sha256 == hashlib.sha256(b"q" * 400).hexdigest()


def test_list_gguf_files_of_a_missing_revision(fake_hub: FakeHub) -> None:
    fake_hub.add_repo("owner/model-GGUF", {"m-Q4_0.gguf": b"x"})
    with pytest.raises(ModelyardError) as caught:
        list_gguf_files(fake_hub.endpoint, None, "owner/model-GGUF", "nope")
    assert caught.value.error_code == "hf_revision_not_found"


def test_download_through_the_cdn_redirect_resumes_and_keeps_the_token_home(
    fake_hub: FakeHub, tmp_path: Path
) -> None:
    fake_hub.tokens.add(TOKEN)
    repo_id, model = gguf_repo(fake_hub, tmp_path, gated=True, granted={TOKEN})
    found = resolve_file(fake_hub.endpoint, TOKEN, repo_id, "tiny-Q8_0.gguf")
    fake_hub.cdn.cut(after_bytes=len(model) // 2)
    dest = tmp_path / "models" / found.relative_dest
    req = FetchRequest(
        url=found.url,
        dest=dest,
        expected_size=found.size,
        expected_sha256=found.sha256,
        headers=auth_headers(TOKEN),
    )

    result = fetch_with_retries(
        req,
        max_attempts=3,
        cancel=threading.Event(),
        on_progress=lambda done, total: None,
        sleep=lambda _: None,
    )

    assert result.sha256 == found.sha256 and result.resumed_from > 0
    assert gguf.GGUFReader(dest).fields["general.architecture"] is not None
    cdn_gets = [r for r in fake_hub.cdn.requests if r.method == "GET"]
    assert [r.header("Range") is not None for r in cdn_gets] == [False, True]
    assert all(r.header("Authorization") is None for r in cdn_gets)
    resolves = [r for r in fake_hub.requests if "/resolve/" in r.path]
    assert resolves and all(r.authorization == f"Bearer {TOKEN}" for r in resolves)


def test_the_stand_in_pages_its_tree_like_the_hub(fake_hub: FakeHub) -> None:
    files = {f"dir/part-{i}.gguf": bytes([i]) * (i + 1) for i in range(5)} | {"a.md": b"a"}
    fake_hub.add_repo("owner/tree", files)

    api = HfApi(endpoint=fake_hub.endpoint, token=False)
    entries = list(api.list_repo_tree("owner/tree", recursive=True))

    paths = [e.path for e in entries if isinstance(e, RepoFile)]
    assert sorted(paths) == sorted(files)
    assert len([r for r in fake_hub.requests if "/tree/" in r.path]) > 1  # followed Link: next
    lfs = {e.path: e.lfs.sha256 for e in entries if isinstance(e, RepoFile) and e.lfs}
    assert lfs["dir/part-4.gguf"] == hashlib.sha256(bytes([4]) * 5).hexdigest()
