"""How an answer's events are written: a fast model's tokens go out together, at most every
``SEND_EVERY_S``, while the first token, status events and the end are never held back."""

from __future__ import annotations

import asyncio

from modelyard.chat.answer import DRAIN_WAIT_S, SEND_EVERY_S, Generation
from modelyard.chat.answer_events import AnswerEvent, Done, Started, Status, Token
from modelyard.chat.types import Usage

START = Started("m1", "c1", "New chat", "ollama", "default", "m")
DONE = Done("m1", "complete", 1.0, 50.0, Usage(2, 200), "stop", "ollama", "default", "m", 0)


async def _collect(gen: Generation) -> list[tuple[float, list[AnswerEvent]]]:
    loop = asyncio.get_running_loop()
    return [(loop.time(), batch) async for batch in gen.events()]


def test_fast_tokens_are_batched_and_nothing_is_lost_or_reordered() -> None:
    async def scenario() -> tuple[float, list[tuple[float, list[AnswerEvent]]]]:
        loop = asyncio.get_running_loop()
        gen = Generation("c1")
        reader = asyncio.create_task(_collect(gen))
        gen.emit(START)
        began = loop.time()
        for i in range(200):  # a token a millisecond: 1,000 tokens a second
            gen.emit(Token(f"t{i} "))
            await asyncio.sleep(0.001)
        took = loop.time() - began
        gen.flush()
        gen.emit(DONE)
        gen.queue.put_nowait(None)
        return took, await reader

    took, batches = asyncio.run(scenario())
    events = [e for _, batch in batches for e in batch]
    assert [e.wire()["type"] for e in events] == ["start"] + ["token"] * 200 + ["done"]
    assert "".join(e.text for e in events if isinstance(e, Token)) == "".join(
        f"t{i} " for i in range(200)
    )
    token_batches = [b for _, b in batches if any(isinstance(e, Token) for e in b)]
    assert token_batches[0] == [Token("t0 ")], "the first token goes out alone, at once"
    # At most one write of tokens per pacing interval (plus the first and the flush).
    assert len(token_batches) <= took / SEND_EVERY_S + 2
    assert len(token_batches) < 100


def test_the_end_and_status_events_are_not_held_back() -> None:
    async def scenario() -> None:
        gen = Generation("c1")
        seen: list[AnswerEvent] = []

        async def read() -> None:
            async for batch in gen.events():
                seen.extend(batch)

        async def settle() -> None:  # let the reader run; far shorter than the pacing delay
            for _ in range(5):
                await asyncio.sleep(0)

        reader = asyncio.create_task(read())
        gen.emit(Token("first"))
        await settle()
        assert seen == [Token("first")]
        gen.emit(Token("second"))  # within the pacing interval: it waits for more
        await settle()
        assert seen == [Token("first")]
        gen.flush()  # the provider's stream ended: what waits goes out now
        await settle()
        assert seen[-1] == Token("second")
        gen.emit(Token("third"))
        gen.emit(Status("Thinking…"))  # a status event goes at once
        await settle()
        assert seen[-2:] == [Token("third"), Status("Thinking…")]
        gen.emit(DONE)
        gen.queue.put_nowait(None)
        await reader
        assert seen[-1:] == [DONE]

    asyncio.run(scenario())


def test_drained_waits_for_the_client_to_be_written_to_and_not_for_a_reader_gone() -> None:
    """Storing an answer waits until its tokens have gone out (a database write in a thread
    would delay them), but never for a client that stopped reading."""

    async def scenario() -> None:
        gen = Generation("c1")
        written: list[AnswerEvent] = []
        release = asyncio.Event()

        async def slow_client() -> None:
            async for batch in gen.events():
                await release.wait()  # the response is still writing this batch
                written.extend(batch)

        reader = asyncio.create_task(slow_client())
        gen.emit(Token("first"))
        waiting = asyncio.create_task(gen.drained())
        await asyncio.sleep(0.05)
        assert not waiting.done() and written == []
        release.set()
        await asyncio.wait_for(waiting, 1)
        assert written == [Token("first")]

        release.clear()
        gen.emit(Token("second"))
        gen.flush()
        waiting = asyncio.create_task(gen.drained())
        await asyncio.sleep(0.01)
        reader.cancel()  # the client went away mid-write
        loop = asyncio.get_running_loop()
        began = loop.time()
        await asyncio.wait_for(waiting, 1)
        assert loop.time() - began < DRAIN_WAIT_S / 2, "drained waited for a gone client"

    asyncio.run(scenario())
