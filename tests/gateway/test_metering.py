"""The meters cut streams into whole events, find the usage, and strip only what we added."""

from __future__ import annotations

import json
import random

import pytest

from modelyard.gateway.metering import (
    AnthropicMeter,
    OllamaMeter,
    OpenAIMeter,
    StreamMeter,
    body_usage,
)
from modelyard.gateway.wire import Dialect, Usage


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    body = {
        "choices": [{"finish_reason": finish, "index": 0, "delta": delta}],
        "id": "chatcmpl-1",
        "model": "tiny.gguf",
        "object": "chat.completion.chunk",
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


USAGE_EVENT = (
    b'data: {"choices":[],"id":"chatcmpl-1","object":"chat.completion.chunk",'
    b'"usage":{"completion_tokens":3,"prompt_tokens":19,"total_tokens":22}}\n\n'
)
# What llama-server sends for three tokens when asked for usage (shape copied from b11434).
OPENAI_STREAM = (
    _chunk({"role": "assistant", "content": None})
    + _chunk({"content": "%"})
    + _chunk({"content": "&"})
    + _chunk({"content": "re"})
    + _chunk({}, "length")
    + USAGE_EVENT
    + b"data: [DONE]\n\n"
)


def _feed_in_pieces(meter: StreamMeter, data: bytes, seed: int) -> bytes:
    rng = random.Random(seed)
    out = b""
    at = 0
    while at < len(data):
        step = rng.randint(1, 40)
        out += meter.feed(data[at : at + step])
        at += step
    return out + meter.flush()


@pytest.mark.parametrize("seed", range(20))
def test_openai_stream_passes_whole_events_and_reads_usage(seed: int) -> None:
    meter = OpenAIMeter()
    out = _feed_in_pieces(meter, OPENAI_STREAM, seed)
    assert out == OPENAI_STREAM
    assert meter.usage == Usage(19, 3, exact=True)
    assert meter.finished and meter.events == 7


@pytest.mark.parametrize("seed", range(20))
def test_openai_usage_event_is_stripped_when_the_client_did_not_ask(seed: int) -> None:
    meter = OpenAIMeter(strip_usage=True)
    out = _feed_in_pieces(meter, OPENAI_STREAM, seed)
    assert out == OPENAI_STREAM.replace(USAGE_EVENT, b"")
    assert meter.usage == Usage(19, 3, exact=True)


def test_a_usage_inside_a_chunk_with_choices_is_left_alone() -> None:
    last = (
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
        b'"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}\n\n'
    )
    stream = _chunk({"role": "assistant"}) + _chunk({"content": "a"}) + last + b"data: [DONE]\n\n"
    meter = OpenAIMeter(strip_usage=True)
    assert meter.feed(stream) == stream
    assert meter.usage == Usage(5, 2, exact=True)


def test_a_cut_off_stream_is_counted_from_its_chunks() -> None:
    meter = OpenAIMeter()
    pieces = [_chunk({"role": "assistant", "content": ""})]
    pieces += [_chunk({"content": f"t{i}"}) for i in range(5)]
    out = meter.feed(b"".join(pieces) + b'data: {"choi')  # the sixth token is half-sent
    assert out == b"".join(pieces)
    assert meter.usage == Usage(None, 5, exact=False)
    assert not meter.finished


def test_crlf_framed_sse_is_cut_at_its_own_delimiter() -> None:
    stream = OPENAI_STREAM.replace(b"\n\n", b"\r\n\r\n")
    meter = OpenAIMeter(strip_usage=True)
    out = _feed_in_pieces(meter, stream, 3)
    assert out == stream.replace(USAGE_EVENT.replace(b"\n\n", b"\r\n\r\n"), b"")
    assert meter.usage.completion_tokens == 3 and meter.usage.exact


def test_an_in_stream_error_is_reported() -> None:
    error = b'data: {"error":{"code":500,"message":"slot died","type":"server_error"}}\n\n'
    meter = OpenAIMeter()
    meter.feed(_chunk({"role": "assistant"}) + _chunk({"content": "x"}) + error)
    assert meter.error == "slot died"
    assert meter.usage == Usage(None, 1, exact=False)


ANTHROPIC_STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":'
    b'"message","role":"assistant","content":[],"model":"m","stop_reason":null,'
    b'"usage":{"input_tokens":12,"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
    b'event: ping\ndata: {"type": "ping"}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"Hel"}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"lo"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
    b'"usage":{"output_tokens":2}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


@pytest.mark.parametrize("seed", range(10))
def test_anthropic_stream_usage_comes_from_message_start_and_delta(seed: int) -> None:
    meter = AnthropicMeter()
    assert _feed_in_pieces(meter, ANTHROPIC_STREAM, seed) == ANTHROPIC_STREAM
    assert meter.usage == Usage(12, 2, exact=True)
    assert meter.finished


def test_anthropic_cut_off_counts_deltas() -> None:
    meter = AnthropicMeter()
    meter.feed(ANTHROPIC_STREAM[: ANTHROPIC_STREAM.index(b"event: content_block_stop")])
    assert meter.usage == Usage(12, 2, exact=False)


OLLAMA_STREAM = (
    b'{"model":"m","created_at":"2025-01-01T00:00:00.1Z","message":{"role":"assistant",'
    b'"content":"Hi"},"done":false}\n'
    b'{"model":"m","created_at":"2025-01-01T00:00:00.2Z","message":{"role":"assistant",'
    b'"content":"!"},"done":false}\n'
    b'{"model":"m","created_at":"2025-01-01T00:00:00.3Z","message":{"role":"assistant",'
    b'"content":""},"done":true,"done_reason":"stop","total_duration":1,'
    b'"prompt_eval_count":7,"eval_count":2}\n'
)


@pytest.mark.parametrize("seed", range(10))
def test_ollama_ndjson_usage_comes_from_the_done_line(seed: int) -> None:
    meter = OllamaMeter()
    assert _feed_in_pieces(meter, OLLAMA_STREAM, seed) == OLLAMA_STREAM
    assert meter.usage == Usage(7, 2, exact=True)
    assert meter.done_reason == "stop"


def test_ollama_error_line_and_cut_off_count() -> None:
    meter = OllamaMeter()
    lines = OLLAMA_STREAM.split(b"\n")
    meter.feed(lines[0] + b"\n" + b'{"error":"model runner has unexpectedly stopped"}\n')
    assert meter.error == "model runner has unexpectedly stopped"
    assert meter.usage == Usage(None, 1, exact=False)


@pytest.mark.parametrize(
    ("dialect", "body", "usage"),
    [
        pytest.param(
            Dialect.OPENAI,
            b'{"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":9}}',
            Usage(4, 9, True),
            id="openai",
        ),
        pytest.param(
            Dialect.OPENAI,
            b'{"data":[],"usage":{"prompt_tokens":4,"total_tokens":4}}',
            Usage(4, 0, True),
            id="openai-embeddings",
        ),
        pytest.param(
            Dialect.ANTHROPIC,
            b'{"content":[],"usage":{"input_tokens":3,"output_tokens":8}}',
            Usage(3, 8, True),
            id="anthropic",
        ),
        pytest.param(
            Dialect.OLLAMA,
            b'{"done":true,"prompt_eval_count":6,"eval_count":2}',
            Usage(6, 2, True),
            id="ollama",
        ),
        pytest.param(Dialect.OPENAI, b"not json", None, id="garbage"),
        pytest.param(Dialect.OLLAMA, b'{"embeddings":[]}', None, id="no-counts"),
    ],
)
def test_body_usage(dialect: Dialect, body: bytes, usage: Usage | None) -> None:
    assert body_usage(dialect, body) == usage
