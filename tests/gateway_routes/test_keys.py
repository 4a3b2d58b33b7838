"""Keys at the gateway with the official openai, anthropic and ollama SDKs, against the
genuine llama-server and the Ollama stand-in: model allow-lists (wildcards, aliases), expiry,
each limit's 429 with Retry-After, revocation on the next request, and usage per key that
equals the backend's own usage figures."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic
import httpx
import ollama
import openai
import pytest
from typer.testing import CliRunner

from modelyard.cli import app
from modelyard.instance_config import InstanceConfig
from tests.gateway_routes.conftest import Stack
from tests.support.app_server import RunningApp
from tests.support.paced_upstream import PacedThread

HI = [{"role": "user", "content": "hi"}]
runner = CliRunner()


def make_key(stack: Stack, **rules: Any) -> dict[str, Any]:
    answer = stack.app.http.post(
        "/api/keys", json={"name": "test", "scopes": ["inference"], **rules}
    )
    assert answer.status_code == 201, answer.text
    key: dict[str, Any] = answer.json()
    return key


def gpt(stack: Stack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.app.url + "/v1", api_key=key, max_retries=0)


def claude(stack: Stack, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.app.url, api_key=key, max_retries=0)


def llama(stack: Stack, key: str) -> ollama.Client:
    return ollama.Client(host=stack.app.url + "/ollama", headers={"Authorization": f"Bearer {key}"})


def test_an_allow_list_matches_any_name_of_a_model(stack: Stack) -> None:
    key = make_key(stack, models=["small"])  # an alias of llamacpp/local/tiny.gguf
    assert key["prefix"] == key["key"][:8] and key["models"] == ["small"]
    sdk = gpt(stack, key["key"])
    for name in ("small", "tiny.gguf", "llamacpp/local/tiny.gguf"):
        done = sdk.chat.completions.create(model=name, messages=HI, max_tokens=2)  # type: ignore[arg-type]
        assert done.usage is not None and done.usage.completion_tokens == 2
    listed = {m.id for m in sdk.models.list()}
    assert listed == {"tiny.gguf", "small"}
    with pytest.raises(openai.NotFoundError) as raised:
        sdk.chat.completions.create(model="llama3.2", messages=HI, max_tokens=2)  # type: ignore[arg-type]
    assert isinstance(raised.value.body, dict) and raised.value.body["code"] == "model_not_found"
    with pytest.raises(anthropic.NotFoundError):
        claude(stack, key["key"]).messages.create(model="llama3.2", max_tokens=2, messages=HI)  # type: ignore[list-item]
    with pytest.raises(ollama.ResponseError) as refused:
        llama(stack, key["key"]).chat(model="llama3.2", messages=HI, stream=False)
    assert refused.value.status_code == 404
    tags = {m.model for m in llama(stack, key["key"]).list().models}
    assert tags == {"tiny.gguf:latest", "small:latest"}


def test_a_wildcard_allows_a_runtime_and_nothing_else(stack: Stack) -> None:
    key = make_key(stack, models=["ollama/*"])
    answer = llama(stack, key["key"]).chat(model="llama3.2", messages=HI, stream=False)
    assert answer.done
    with pytest.raises(ollama.ResponseError) as refused:
        llama(stack, key["key"]).chat(model="tiny.gguf", messages=HI, stream=False)
    assert refused.value.status_code == 404
    assert {m.id for m in gpt(stack, key["key"]).models.list()} == {"llama3.2:latest"}


def test_an_expired_key_is_refused_with_its_code(stack: Stack) -> None:
    expires = datetime.now(UTC) + timedelta(seconds=2)
    key = make_key(stack, expires_at=expires.isoformat())
    sdk = gpt(stack, key["key"])
    sdk.chat.completions.create(model="tiny.gguf", messages=HI, max_tokens=1)  # type: ignore[arg-type]
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.1)
    with pytest.raises(openai.AuthenticationError) as raised:
        sdk.chat.completions.create(model="tiny.gguf", messages=HI, max_tokens=1)  # type: ignore[arg-type]
    assert isinstance(raised.value.body, dict) and raised.value.body["code"] == "api_key_expired"


def test_a_revoked_key_is_refused_on_the_next_request_even_locally(stack: Stack) -> None:
    key = make_key(stack)
    sdk = gpt(stack, key["key"])
    sdk.chat.completions.create(model="tiny.gguf", messages=HI, max_tokens=1)  # type: ignore[arg-type]
    assert stack.app.http.delete(f"/api/keys/{key['id']}").status_code == 204
    with pytest.raises(openai.AuthenticationError):
        sdk.chat.completions.create(model="tiny.gguf", messages=HI, max_tokens=1)  # type: ignore[arg-type]
    with pytest.raises(ollama.ResponseError) as refused:
        llama(stack, key["key"]).list()
    assert refused.value.status_code == 401
    listed = stack.app.http.get("/api/keys").json()["keys"]
    assert key["id"] not in {k["id"] for k in listed}
    assert all("key" not in k and "key_hash" not in k for k in listed)  # never the secret


def test_a_placeholder_key_leaves_a_local_caller_to_local_trust(stack: Stack) -> None:
    """What SDKs send when any key will do is no key: this trusted local caller is answered
    (as llama-server, Ollama and LM Studio would); a wrong key of modelyard's form is not."""
    for placeholder in ("sk-no-key-required", "lm-studio"):
        done = gpt(stack, placeholder).chat.completions.create(
            model="tiny.gguf",
            messages=HI,  # type: ignore[arg-type]
            max_tokens=1,
        )
        assert done.usage is not None and done.usage.completion_tokens == 1
    assert (
        claude(stack, "placeholder")
        .messages.create(
            model="tiny.gguf",
            max_tokens=1,
            messages=HI,  # type: ignore[list-item]
        )
        .content
    )
    with pytest.raises(openai.AuthenticationError) as raised:
        gpt(stack, "my_not-a-key").models.list()
    assert isinstance(raised.value.body, dict) and raised.value.body["code"] == "unauthorized"


def test_requests_per_minute_in_each_dialect(stack: Stack) -> None:
    key = make_key(stack, limits={"requests_per_minute": 1})["key"]
    gpt(stack, key).chat.completions.create(model="tiny.gguf", messages=HI, max_tokens=1)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError) as raised:
        gpt(stack, key).chat.completions.create(model="tiny.gguf", messages=HI, max_tokens=1)  # type: ignore[arg-type]
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["code"] == "rate_limited_requests"
    assert 1 <= int(raised.value.response.headers["retry-after"]) <= 60
    with pytest.raises(anthropic.RateLimitError) as refused:
        claude(stack, key).messages.create(model="tiny.gguf", max_tokens=1, messages=HI)  # type: ignore[list-item]
    assert refused.value.response.headers["retry-after"]
    with pytest.raises(ollama.ResponseError) as ollama_refused:
        llama(stack, key).chat(model="tiny.gguf", messages=HI, stream=False)
    assert ollama_refused.value.status_code == 429


def test_tokens_per_minute_are_reserved_up_front(stack: Stack) -> None:
    key = make_key(stack, limits={"tokens_per_minute": 100})["key"]
    sdk = gpt(stack, key)
    # Into an empty window a request is admitted whatever it may cost; then the window is full.
    sdk.chat.completions.create(model="tiny.gguf", messages=HI, max_tokens=150)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError) as raised:
        sdk.chat.completions.create(model="tiny.gguf", messages=HI, max_tokens=95)  # type: ignore[arg-type]
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["code"] == "rate_limited_tokens"
    assert int(raised.value.response.headers["retry-after"]) >= 1


def test_concurrent_requests(stack: Stack) -> None:
    key = make_key(stack, limits={"concurrent_requests": 1})["key"]
    gpt(stack, key).chat.completions.create(model="tiny.gguf", messages=HI, max_tokens=1)  # type: ignore[arg-type]

    async def burst() -> list[int]:
        async with openai.AsyncOpenAI(
            base_url=stack.app.url + "/v1", api_key=key, max_retries=0
        ) as sdk:

            async def one() -> int:
                try:
                    await sdk.chat.completions.create(
                        model="tiny.gguf",
                        messages=HI,  # type: ignore[arg-type]
                        max_tokens=40,
                    )
                except openai.RateLimitError as refused:
                    assert isinstance(refused.body, dict)
                    assert refused.body["code"] == "rate_limited_concurrency"
                    return 429
                return 200

            return await asyncio.gather(*(one() for _ in range(8)))

    statuses = asyncio.run(burst())
    assert 200 in statuses and 429 in statuses


def test_limits_hold_under_50_concurrent_requests(stack: Stack) -> None:
    """Tokens admitted in the minute stay within the limit plus one request's reservation."""
    created = make_key(stack, limits={"tokens_per_minute": 100})
    max_tokens = 10

    async def run() -> list[openai.types.chat.ChatCompletion | None]:
        async with openai.AsyncOpenAI(
            base_url=stack.app.url + "/v1", api_key=created["key"], max_retries=0, timeout=120
        ) as sdk:

            async def one() -> openai.types.chat.ChatCompletion | None:
                try:
                    return await sdk.chat.completions.create(
                        model="tiny.gguf",
                        messages=HI,  # type: ignore[arg-type]
                        max_tokens=max_tokens,
                    )
                except openai.RateLimitError:
                    return None

            return await asyncio.gather(*(one() for _ in range(50)))

    answers = asyncio.run(run())
    admitted = [a for a in answers if a is not None]
    assert admitted and len(admitted) < 50
    spent = sum(a.usage.total_tokens for a in admitted if a.usage is not None)
    assert spent <= 100 + max_tokens
    assert spent == stack.app.services.gateway.keys.limiter.window_tokens(f"key:{created['id']}")


def test_usage_equals_the_backends_figures_over_a_mixed_run(stack: Stack) -> None:
    created = make_key(stack)
    key = created["key"]
    prompt = completion = 0
    done = gpt(stack, key).chat.completions.create(model="tiny.gguf", messages=HI, max_tokens=3)  # type: ignore[arg-type]
    assert done.usage is not None
    prompt, completion = (
        prompt + done.usage.prompt_tokens,
        completion + done.usage.completion_tokens,
    )
    chunks = list(
        gpt(stack, key).chat.completions.create(
            model="small",
            messages=HI,  # type: ignore[arg-type]
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usage = chunks[-1].usage
    assert usage is not None
    prompt, completion = prompt + usage.prompt_tokens, completion + usage.completion_tokens
    message = claude(stack, key).messages.create(model="tiny.gguf", max_tokens=5, messages=HI)  # type: ignore[list-item]
    prompt += message.usage.input_tokens
    completion += message.usage.output_tokens
    answer = llama(stack, key).chat(
        model="tiny.gguf", messages=HI, options={"num_predict": 2}, stream=False
    )
    assert answer.prompt_eval_count is not None and answer.eval_count is not None
    prompt, completion = prompt + answer.prompt_eval_count, completion + answer.eval_count
    with pytest.raises(openai.BadRequestError):  # the backend refuses it: an error, no tokens
        gpt(stack, key).chat.completions.create(
            model="tiny.gguf",
            messages=HI,  # type: ignore[arg-type]
            max_tokens=2,
            n=-3,
        )
    time.sleep(0.2)
    totals = stack.app.http.get(
        "/api/usage", params={"key": created["prefix"], "group": "key"}
    ).json()["totals"]
    assert totals["requests"] == 5 and totals["errors"] == 1
    assert (totals["prompt_tokens"], totals["completion_tokens"]) == (prompt, completion)
    assert totals["ttft_count"] == 4 and totals["ttft_ms_avg"] > 0
    csv = stack.app.http.get("/api/usage", params={"key": created["id"], "format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert created["prefix"] in csv.text and "llamacpp/local/tiny.gguf" in csv.text


@pytest.fixture
def paced() -> Iterator[PacedThread]:
    """The paced stand-in, a token every 50 ms (set up before, so torn down after, the app
    whose connections it serves)."""
    with PacedThread(interval=0.05) as server:
        yield server


def test_a_cut_off_stream_is_counted_up_to_the_disconnect(
    paced: PacedThread, modelyard: Callable[..., RunningApp]
) -> None:
    """Against the paced stand-in, so the client's disconnect falls between two tokens: the
    usage counts what was relayed until then."""
    app = modelyard(
        [InstanceConfig(provider="openai_compat", id="paced", base_url=paced.url)],
        monitor=False,
    )
    assert app.http.post("/api/models/sync").status_code == 200
    key = app.http.post("/api/keys", json={"name": "cut", "scopes": ["inference"]}).json()
    received = 0
    with (
        httpx.Client(base_url=app.url, timeout=60) as http,
        http.stream(
            "POST",
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key['key']}"},
            json={"model": "paced", "messages": HI, "max_tokens": 200, "stream": True},
        ) as answer,
    ):
        for line in answer.iter_lines():
            if line.startswith("data: ") and '"content":"' in line:
                received += 1
                if received == 5:
                    break
    deadline = time.monotonic() + 30
    rows: list[dict[str, Any]] = []
    while not rows and time.monotonic() < deadline:
        rows = app.http.get("/api/usage", params={"key": key["id"]}).json()["usage"]
        time.sleep(0.2)
    (row,) = rows
    assert row["requests"] == 1 and row["errors"] == 0 and row["ttft_count"] == 1
    assert abs(row["completion_tokens"] - received) <= 1


def test_key_validation_errors_are_problems(stack: Stack) -> None:
    for body in (
        {"name": "x", "scopes": ["inference"], "limits": {"tokens_per_minute": 0}},
        {"name": "x", "scopes": ["inference"], "expires_at": "2001-01-01T00:00:00Z"},
        {"name": "x", "scopes": ["inference"], "expires_at": "2099-01-01T00:00:00"},
        {"name": "x", "scopes": ["wizard"]},
        {"name": "x", "scopes": ["inference"], "models": [""]},
    ):
        answer = stack.app.http.post("/api/keys", json=body)
        assert answer.status_code in (400, 422), body
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["code"], body


def test_keys_and_usage_through_the_cli(stack: Stack) -> None:
    def cli(*args: str) -> str:
        result = runner.invoke(
            app, list(args), env={"MODELYARD_URL": stack.app.url}, catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        return str(result.output)

    out = cli("keys", "create", "ci", "--model", "tiny*", "--tpm", "5000", "--rpm", "30")
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("my_") and secret[:8] in out
    listed = cli("keys", "list", "--json")
    (key,) = [k for k in json.loads(listed)["keys"] if k["prefix"] == secret[:8]]
    assert key["models"] == ["tiny*"] and key["limits"]["tokens_per_minute"] == 5000
    assert secret not in cli("keys", "list")
    done = gpt(stack, secret).chat.completions.create(model="tiny.gguf", messages=HI, max_tokens=2)  # type: ignore[arg-type]
    assert done.usage is not None
    table = cli("usage", "--key", key["id"], "--by", "key")
    assert secret[:8] in table and str(done.usage.completion_tokens) in table
    csv = cli("usage", "--key", key["id"], "--csv")
    assert csv.startswith("day,key_prefix,key_id,model") and "llamacpp/local/tiny.gguf" in csv
    cli("keys", "revoke", key["id"])
    with pytest.raises(openai.AuthenticationError):
        gpt(stack, secret).models.list()
    refused = runner.invoke(
        app, ["keys", "create", "bad", "--tpm", "0"], env={"MODELYARD_URL": stack.app.url}
    )
    assert refused.exit_code == 1 and "Traceback" not in refused.output
