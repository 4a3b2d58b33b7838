"""Search on a catalog of over 1,000 models (SPEC §4, §8): every filter, every sort field in
both orders and paging, checked against an independent filter-and-sort of the full list."""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.fixtures import serve
from tests.fakes.lmstudio import LMStudioState, create_lmstudio_app
from tests.fakes.ollama import OllamaState, create_ollama_app
from tests.fakes.openai_compat import OpenAIState, create_openai_app
from tests.support.app_server import RunningApp, make_settings, running_app
from tests.support.catalog import assert_problem, instance

RANK = {"loaded": 0, "starting": 1, "downloading": 2, "available": 3, "failed": 4}
FAMILIES = ["llama", "qwen2", "gemma3", "phi3", "mistral", "nomic-bert"]
KINDS = ["chat", "Coder", "instruct", "base", "Vision"]
GB = 10**9


@pytest.fixture(scope="module")
def big(
    tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path
) -> Iterator[tuple[RunningApp, list[dict[str, Any]]]]:
    rng = random.Random(1234)
    ollama = OllamaState()
    now = ollama.now()
    for n in range(1000):
        family = FAMILIES[n % len(FAMILIES)]
        name = f"{family}-{rng.choice(KINDS)}-{n:04d}:{rng.choice(['q4_k_m', 'q8_0', 'f16'])}"
        ollama.add_model(
            name,
            size=rng.randrange(50_000_000, 40 * GB),
            family=family,
            modified_at=now - timedelta(minutes=rng.randrange(0, 200_000)),
        )
    for name in rng.sample(ollama.model_names(), 30):
        ollama.load(name, keep_alive=-1)
    lmstudio = LMStudioState()
    for n in range(20):
        lmstudio.add_model(
            f"publisher/lm-model-{n:02d}", loaded=n % 5 == 0, size_bytes=rng.randrange(GB, 10 * GB)
        )
    served = OpenAIState(models=[f"served-{n}" for n in range(5)])  # no sizes, no dates
    tmp = tmp_path_factory.mktemp("search")
    models = tmp / "models"
    models.mkdir()
    for n in range(4):
        shutil.copy(tiny_gguf, models / f"local-{n}.gguf")
    hf = models / "hf" / "acme" / "Tiny-GGUF"
    hf.mkdir(parents=True)
    shutil.copy(tiny_gguf, hf / "tiny-q8.gguf")
    with (
        serve(create_ollama_app(ollama), ollama) as o,
        serve(create_lmstudio_app(lmstudio), lmstudio) as lm,
        serve(create_openai_app(served), served) as oa,
    ):
        settings = make_settings(
            tmp,
            [
                instance("ollama", o.url),
                instance("lmstudio", lm.url),
                instance("openai_compat", oa.url, id="vllm"),
            ],
            models_dir=models,
            monitor=False,
        )
        with running_app(settings) as app:
            sync = app.http.post("/api/models/sync").json()
            assert sync["errors"] == []
            everything = app.http.get("/api/models/list").json()["models"]
            assert len(everything) == 1030
            yield app, everything


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def _source_ok(model: dict[str, Any], sources: list[str]) -> bool:
    src = model["source"]
    return any(
        (s == "hf" and src.startswith("hf://"))
        or (s == "url" and src.startswith(("http://", "https://")))
        or s == src
        for s in sources
    )


def expected(models: list[dict[str, Any]], params: dict[str, Any]) -> list[dict[str, Any]]:
    """The same search, done in Python on the full list."""
    q = params.get("q", "").lower()
    statuses = params.get("status", "").split(",") if params.get("status") else []
    providers = params.get("provider", "").split(",") if params.get("provider") else []
    sources = params.get("source", "").split(",") if params.get("source") else []
    low, high = params.get("min_size"), params.get("max_size")
    rows = [
        m
        for m in models
        if q in m["name"].lower()
        and (not statuses or m["status"] in statuses)
        and (not providers or m["provider"] in providers)
        and (not sources or _source_ok(m, sources))
        and (low is None or (m["size"] is not None and m["size"] >= low))
        and (high is None or (m["size"] is not None and m["size"] <= high))
    ]
    rows.sort(key=lambda m: (m["name"].lower(), m["provider"], m["instance_id"]))
    sort, desc = params.get("sort", "name"), params.get("order") == "desc"
    value = {
        "name": lambda m: m["name"].lower(),
        "size": lambda m: m["size"],
        "modified": lambda m: _time(m["modified_at"]),
        "status": lambda m: RANK[m["status"]],
    }[sort]
    # Python's sort is stable in both directions, so ties keep the tie-break order above.
    known = sorted((m for m in rows if value(m) is not None), key=value, reverse=desc)
    return known + [m for m in rows if value(m) is None]


def _keys(models: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(m["provider"], m["instance_id"], m["name"]) for m in models]


FILTERS = [
    pytest.param({}, id="no-filter"),
    pytest.param({"q": "coder"}, id="name-substring-any-case"),
    pytest.param({"q": "VISION-01"}, id="name-upper-case"),
    pytest.param({"status": "loaded"}, id="status-loaded"),
    pytest.param(
        {"status": "loaded,available", "provider": "lmstudio"}, id="statuses-and-provider"
    ),
    pytest.param({"provider": "llamacpp"}, id="provider-llamacpp"),
    pytest.param({"provider": "openai_compat,llamacpp"}, id="sizes-and-dates-unknown"),
    pytest.param({"provider": "ollama,lmstudio", "q": "0"}, id="two-providers"),
    pytest.param({"source": "hf"}, id="source-hf"),
    pytest.param({"source": "local,lmstudio"}, id="source-local-or-lmstudio"),
    pytest.param({"min_size": 10 * GB}, id="min-size"),
    pytest.param({"max_size": GB}, id="max-size"),
    pytest.param({"min_size": 2 * GB, "max_size": 3 * GB, "q": "qwen"}, id="size-range-and-name"),
    pytest.param(
        {"q": "gemma", "status": "available", "min_size": GB, "source": "ollama"}, id="all"
    ),
    pytest.param({"q": "no-such-model"}, id="nothing"),
]


@pytest.mark.parametrize("sort", ["name", "size", "modified", "status"])
@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("filters", FILTERS)
def test_search_matches_an_independent_filter_and_sort(
    big: tuple[RunningApp, list[dict[str, Any]]], filters: dict[str, Any], sort: str, order: str
) -> None:
    app, everything = big
    params = {**filters, "sort": sort, "order": order, "page_size": 100}
    page = app.http.get("/api/models/search", params=params).json()
    want = expected(everything, params)
    assert page["total"] == len(want)
    assert (page["page"], page["page_size"]) == (1, 100)
    assert _keys(page["models"]) == _keys(want[:100])


def test_pages_walk_every_match_exactly_once(big: tuple[RunningApp, list[dict[str, Any]]]) -> None:
    app, everything = big
    params: dict[str, Any] = {
        "provider": "ollama",
        "sort": "size",
        "order": "desc",
        "page_size": 97,
    }
    seen: list[tuple[str, str, str]] = []
    page_no = 1
    while True:
        page = app.http.get("/api/models/search", params={**params, "page": page_no}).json()
        if not page["models"]:
            break
        seen += _keys(page["models"])
        page_no += 1
    assert page_no == 12 and page["total"] == 1000
    assert seen == _keys(expected(everything, params))
    sizes = [m["size"] for m in expected(everything, params)]
    assert sizes == sorted(sizes, reverse=True)


def test_the_list_holds_every_model_of_every_provider(
    big: tuple[RunningApp, list[dict[str, Any]]],
) -> None:
    _, everything = big
    providers = {
        p: sum(1 for m in everything if m["provider"] == p)
        for p in ("ollama", "lmstudio", "llamacpp")
    }
    assert providers == {"ollama": 1000, "lmstudio": 20, "llamacpp": 5}
    assert sum(1 for m in everything if m["size"] is None) == 5
    assert sum(1 for m in everything if m["status"] == "loaded") == 30 + 4
    assert {m["source"] for m in everything if m["provider"] == "llamacpp"} == {
        "local",
        "hf://acme/Tiny-GGUF/tiny-q8.gguf",
    }


BAD = [
    pytest.param({"status": "sleeping"}, 400, "invalid_status", id="unknown-status"),
    pytest.param({"provider": "nope"}, 404, "unknown_provider", id="unknown-provider"),
    pytest.param({"sort": "colour"}, 422, "validation_error", id="unknown-sort"),
    pytest.param({"order": "up"}, 422, "validation_error", id="unknown-order"),
    pytest.param({"page": 0}, 422, "validation_error", id="page-zero"),
    pytest.param({"page_size": 5000}, 422, "validation_error", id="page-too-big"),
    pytest.param({"min_size": -1}, 422, "validation_error", id="negative-size"),
    pytest.param({"min_size": 5, "max_size": 4}, 400, "invalid_size_range", id="empty-range"),
]


@pytest.mark.parametrize(("params", "status", "code"), BAD)
def test_bad_search_input_is_a_problem(
    big: tuple[RunningApp, list[dict[str, Any]]], params: dict[str, Any], status: int, code: str
) -> None:
    app, _ = big
    assert_problem(app.http.get("/api/models/search", params=params), status, code)
