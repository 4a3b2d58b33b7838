"""History kept by modelyard: samples written, averaged into 5-minute points, pruned, and read
back through the API as a chart would."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import openai
import pytest

from modelyard.events import GATEWAY_REQUEST, EventBus, GatewayRequest
from modelyard.instance_config import InstanceConfig
from modelyard.monitoring.answers import MODEL_SERIES_MAX, SERIES_NAME_MAX, AnswerTally
from modelyard.monitoring.history import COARSE, COARSE_S, FINE, HistoryStore
from modelyard.store.db import Database
from modelyard.store.tables import SampleRow
from tests.fakes.common import ReplyScript
from tests.fakes.fixtures import FakeServer
from tests.fakes.openai_compat import OpenAIState
from tests.support.app_server import RunningApp
from tests.support.catalog import assert_problem
from tests.support.chat import send, text_of
from tests.support.servers import closed_port
from tests.support.waiting import wait_until


def test_samples_are_averaged_and_pruned(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'h.db'}")
    db.migrate()
    store = HistoryStore(db)
    now = int(time.time())
    start = now - 2 * 3600
    for ts in range(start, now, 10):  # two hours, every 10 s: 0, 1, 2 … within each bucket
        store.write(ts, {"system.cpu_percent": float(ts % COARSE_S // 10), "x.up": 1.0})
    store.downsample(now)

    with db.session() as s:
        fine = [r.ts for r in s.query(SampleRow).filter_by(resolution=FINE, series="x.up")]
        coarse = s.query(SampleRow).filter_by(resolution=COARSE, series="system.cpu_percent")
        averages = {r.ts: r.value for r in coarse}
    assert min(fine) >= now - 3600  # fine points older than an hour are gone
    whole = [ts for ts in averages if ts >= start - start % COARSE_S + COARSE_S]
    assert whole and all(averages[ts] == 14.5 for ts in whole)  # mean of 0..29
    assert max(averages) < now - now % COARSE_S  # only complete buckets

    store.downsample(now + 8 * 86400)  # a week later: everything has aged out
    with db.session() as s:
        assert s.query(SampleRow).count() == 0
    db.dispose()


def test_the_api_serves_series(modelyard: Callable[..., RunningApp]) -> None:
    off = InstanceConfig(provider="ollama", id="off", base_url=f"http://127.0.0.1:{closed_port()}")
    app = modelyard([off], history_sample_s=1)

    def points(name: str) -> list[list[float]]:
        answer = app.http.get("/api/history", params={"series": name, "range": "1h"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["resolution_s"] == 1
        found: list[list[float]] = body["series"][name]
        return found

    wait_until(lambda: len(points("system.cpu_percent")) >= 2, "two samples")
    names = app.http.get("/api/history/series").json()["series"]
    assert {"provider.ollama/off.up", "system.ram_percent", "downloads.bytes_per_s"} <= set(names)
    assert {value for _, value in points("provider.ollama/off.up")} == {0.0}
    week = app.http.get("/api/history", params={"series": "system.ram_percent", "range": "7d"})
    assert week.json()["resolution_s"] == COARSE_S
    assert_problem(
        app.http.get("/api/history", params={"series": "x", "range": "1y"}), 422, "validation_error"
    )
    assert_problem(app.http.get("/api/history"), 422, "validation_error")


def test_answers_through_the_gateway_and_in_chats_make_series_overall_and_per_model(
    modelyard: Callable[..., RunningApp], openai_server: FakeServer[OpenAIState]
) -> None:
    openai_server.state.models = ["busy", "idle", "chatty"]
    openai_server.state.reply = ReplyScript(pieces=["one ", "two ", "three"], token_delay=0.02)
    stand_in = InstanceConfig(provider="openai_compat", id="stand-in", base_url=openai_server.url)
    app = modelyard([stand_in], history_sample_s=1)
    assert app.http.post("/api/models/sync").status_code == 200
    sdk = openai.OpenAI(
        base_url=app.url + "/v1", api_key=app.services.api_keys.cli_key, max_retries=0
    )
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": "count"}
    ]
    for _ in range(3):
        chunks = list(
            sdk.chat.completions.create(
                model="openai_compat/stand-in/busy", messages=messages, stream=True
            )
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    for _ in range(5):  # logged as gateway requests, but a model list is no answer
        assert sdk.models.list().data

    # A chat answer counts too (chat's own accounting: its answer's TTFT and tokens).
    conversation = app.http.post(
        "/api/conversations",
        json={"provider": "openai_compat", "instance_id": "stand-in", "model": "chatty"},
    )
    assert conversation.status_code == 201, conversation.text
    events = send(app.http, conversation.json()["id"], content="count")
    assert events[-1]["type"] == "done" and text_of(events)

    busy = "model.openai_compat/stand-in/busy"
    chatty = "model.openai_compat/stand-in/chatty"

    def history(names: list[str]) -> dict[str, list[list[float]]]:
        answer = app.http.get("/api/history", params={"series": names, "range": "1h"})
        assert answer.status_code == 200, answer.text
        found: dict[str, list[list[float]]] = answer.json()["series"]
        return found

    wanted = [f"{busy}.answers_per_s", f"{busy}.tokens_per_s", f"{busy}.ttft_ms"]
    chatted = [f"{chatty}.answers_per_s", f"{chatty}.tokens_per_s", f"{chatty}.ttft_ms"]
    wait_until(lambda: all(history([*wanted, *chatted]).values()), "the models' series")
    series = history([*wanted, "answers.per_s", "answers.tokens_per_s", "answers.ttft_ms"])
    # Three answers in all, whichever samples they fell in (each point is a rate per second
    # over one 1 s interval; the sampler's interval is at least that long).
    answered = sum(value for _, value in series[f"{busy}.answers_per_s"])
    assert 0 < answered <= 3
    assert all(value > 0 for _, value in series[f"{busy}.tokens_per_s"])
    assert all(value > 0 for _, value in series[f"{busy}.ttft_ms"])
    chats = history(chatted)
    assert 0 < sum(value for _, value in chats[f"{chatty}.answers_per_s"]) <= 1
    assert all(value > 0 for _, value in chats[f"{chatty}.ttft_ms"])
    both = answered + sum(value for _, value in chats[f"{chatty}.answers_per_s"])
    assert sum(value for _, value in series["answers.per_s"]) == pytest.approx(both)
    assert series["answers.ttft_ms"] and series["answers.tokens_per_s"]
    names = set(app.http.get("/api/history/series").json()["series"])
    assert set(wanted) <= names
    assert not any("stand-in/idle" in name for name in names)  # no answer, no series


def _request(key: str, status: int = 200) -> GatewayRequest:
    return GatewayRequest(
        model=key,
        key=key,
        route="/v1/chat/completions",
        caller="me",
        key_prefix=None,
        status=status,
        stream=True,
        queue_ms=0.0,
        waited_for_load=False,
        ttft_ms=12.0,
        duration_ms=40.0,
        prompt_tokens=3,
        completion_tokens=5,
        client_gone=False,
        error=None,
    )


def test_the_per_model_series_stay_bounded() -> None:
    bus = EventBus()
    tally = AnswerTally(bus)
    for n in range(MODEL_SERIES_MAX + 5):  # model n answers n + 1 times
        for _ in range(n + 1):
            bus.publish(GATEWAY_REQUEST, _request(f"llamacpp/local/m{n}"))
    long_key = "llamacpp/local/" + "x" * SERIES_NAME_MAX
    bus.publish(GATEWAY_REQUEST, _request(long_key))
    bus.publish(GATEWAY_REQUEST, _request("llamacpp/local/m0", status=503))  # not an answer
    values = tally.take()
    models = {name.rsplit(".", 1)[0] for name in values if name.startswith("model.")}
    # the busiest only, and none whose name would not fit the samples table
    assert models == {f"model.llamacpp/local/m{n}" for n in range(5, MODEL_SERIES_MAX + 5)}
    assert all(len(name) <= SERIES_NAME_MAX for name in values)
    answered = sum(n + 1 for n in range(MODEL_SERIES_MAX + 5)) + 1  # the long key's counts
    assert values["answers.per_s"] > 0 and values["answers.ttft_ms"] == 12.0
    assert values["answers.tokens_per_s"] == pytest.approx(5 * values["answers.per_s"])
    busiest = values[f"model.llamacpp/local/m{MODEL_SERIES_MAX + 4}.answers_per_s"]
    # every answer counts overall, the models without series and the long key's included
    assert values["answers.per_s"] / busiest == pytest.approx(answered / (MODEL_SERIES_MAX + 5))
    assert not any(name.startswith("model.") for name in tally.take())  # a fresh interval
