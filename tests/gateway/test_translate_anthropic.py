"""Anthropic Messages over OpenAI backends: the official anthropic SDK in front of the gateway,
a genuine llama-server (text) or a scripted OpenAI server (tool calls) behind it."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from modelyard.gateway.translate.anthropic import (
    AnthropicOverOpenAI,
    chat_request,
    message_response,
)
from tests.support.gateway_app import openai_target, running_gateway

TRANSLATIONS = {"/v1/messages": AnthropicOverOpenAI}


def sdk(url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0, timeout=60)


def test_a_message_and_a_message_stream_from_llama_cpp(llama_url: str) -> None:
    targets = {"tiny": openai_target("tiny", llama_url)}
    with running_gateway(targets, translations=TRANSLATIONS) as (server, app):
        client = sdk(server.url)
        message = client.messages.create(
            model="tiny",
            max_tokens=6,
            system="You are terse.",
            messages=[{"role": "user", "content": "Hello"}],
        )
        with client.messages.stream(
            model="tiny", max_tokens=7, messages=[{"role": "user", "content": "Hi"}]
        ) as stream:
            texts = list(stream.text_stream)
            final = stream.get_final_message()
    assert message.type == "message" and message.model == "tiny"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 6 and message.usage.input_tokens > 0
    assert "".join(texts) == final.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 7
    assert final.usage.input_tokens > 0  # from message_delta: OpenAI sends usage last
    assert app.exchanges[1].relay.usage is not None
    assert app.exchanges[1].relay.usage.completion_tokens == 7


WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def test_tool_use_streams_and_whole(tool_server: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = tool_server
    targets = {"claude-ish": openai_target("claude-ish", url, model="tool-model")}
    with running_gateway(targets, health_path="/v1/models", translations=TRANSLATIONS) as (
        server,
        _,
    ):
        client = sdk(server.url)
        ask: dict[str, Any] = {
            "model": "claude-ish",
            "max_tokens": 100,
            "tools": [WEATHER_TOOL],
            "tool_choice": {"type": "tool", "name": "get_weather"},
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
        }
        with client.messages.stream(**ask) as stream:
            streamed = stream.get_final_message()
        whole = client.messages.create(**ask)
    assert [b.type for b in streamed.content] == ["text", "tool_use"]
    tool = streamed.content[1]
    assert tool.type == "tool_use" and tool.id == "call_1" and tool.name == "get_weather"
    assert tool.input == {"city": "Paris"}
    assert streamed.stop_reason == "tool_use"
    assert streamed.usage.input_tokens == 31 and streamed.usage.output_tokens == 12
    assert whole.content[0].type == "tool_use" and whole.content[0].input == {"city": "Oslo"}
    assert whole.stop_reason == "tool_use" and whole.usage.output_tokens == 9
    sent = received[0]
    assert sent["model"] == "tool-model"
    assert sent["tools"][0]["function"]["parameters"] == WEATHER_TOOL["input_schema"]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["stream_options"] == {"include_usage": True}


def test_a_conversation_with_tool_results_and_images_becomes_openai_messages() -> None:
    body: dict[str, Any] = {
        "model": "m",
        "max_tokens": 50,
        "system": [{"type": "text", "text": "Be brief."}],
        "stop_sequences": ["END"],
        "temperature": 0.2,
        "top_k": 5,
        "metadata": {"user_id": "u-1"},
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this? "},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAA"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "t1", "name": "look", "input": {"q": 1}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "a cat"},
                    {"type": "text", "text": "And?"},
                ],
            },
        ],
    }
    sent = chat_request(body, "backend")
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this? "},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAA"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "t1",
                    "type": "function",
                    "function": {"name": "look", "arguments": '{"q":1}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "a cat"},
        {"role": "user", "content": "And?"},
    ]
    assert sent["stop"] == ["END"] and sent["top_k"] == 5 and sent["user"] == "u-1"
    assert sent["tool_choice"] == "required" and sent["parallel_tool_calls"] is False
    assert sent["max_tokens"] == 50 and sent["model"] == "backend"


def test_documents_are_refused_with_a_clear_code(llama_url: str) -> None:
    targets = {"tiny": openai_target("tiny", llama_url)}
    document = {"type": "document", "source": {"type": "text", "data": "x"}}
    with (
        running_gateway(targets, translations=TRANSLATIONS) as (server, _),
        pytest.raises(anthropic.BadRequestError) as refused,
    ):
        sdk(server.url).messages.create(
            model="tiny",
            max_tokens=5,
            messages=[{"role": "user", "content": [document]}],  # type: ignore[list-item]
        )
    assert refused.value.body["code"] == "not_supported"  # type: ignore[index]


def test_finish_reasons_map_to_stop_reasons() -> None:
    for finish, stop in [("stop", "end_turn"), ("length", "max_tokens"), (None, "end_turn")]:
        answer = {"choices": [{"finish_reason": finish, "message": {"content": "x"}}]}
        assert message_response(answer, "m")["stop_reason"] == stop
