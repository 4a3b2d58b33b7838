"""What answering keeps in memory between messages stays what the store says."""

from __future__ import annotations

from pathlib import Path

from modelyard.chat.memory import Current, Memory, Recall, Said
from modelyard.chat.store import ConversationStore
from modelyard.chat.types import ChatOptions
from modelyard.store.db import Database


def recall(conversation_id: str, *said: Said) -> Recall:
    return Recall(conversation_id, "ollama", "default", "m", "t", "", ChatOptions(), said)


def same(p: str, i: str, m: str) -> tuple[str, str, str]:
    return p, i, m


def test_a_read_that_raced_a_change_is_not_kept() -> None:
    memory = Memory()
    epoch = memory.epoch("c1")
    memory.forget("c1")  # e.g. a rename committed while the store was being read
    memory.put(recall("c1"), epoch)
    assert memory.get("c1") is None
    memory.put(recall("c1"), memory.epoch("c1"))
    assert memory.get("c1") is not None


def test_least_recently_used_go_first() -> None:
    memory = Memory(size=2)
    for name in ("a", "b"):
        memory.put(recall(name), 0)
    assert memory.get("a") is not None  # now "b" is the oldest
    memory.put(recall("c"), 0)
    assert [memory.get(n) is not None for n in ("a", "b", "c")] == [True, False, True]


def test_turns_and_finished_answers_update_memory() -> None:
    memory = Memory()
    memory.put(recall("c", Said("u1", 1, "user", "hi", "complete")), 0)
    memory.turn(
        "c",
        [],
        [Said("u2", 2, "user", "again", "complete"), Said("a2", 3, "assistant", "", "streaming")],
        Current("ollama", "default", "n", "New title"),
    )
    memory.finished("c", "a2", "the answer", "stopped")
    found = memory.get("c")
    assert found is not None and (found.model, found.title) == ("n", "New title")
    assert [(m.id, m.content, m.state) for m in found.messages] == [
        ("u1", "hi", "complete"),
        ("u2", "again", "complete"),
        ("a2", "the answer", "stopped"),
    ]
    memory.turn("c", ["a2"], [], Current("ollama", "default", "n", "New title"))
    assert [m.id for m in memory.get("c").messages] == ["u1", "u2"]  # type: ignore[union-attr]


def test_a_store_answers_from_memory_exactly_as_from_the_database(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'chat.db'}")
    db.migrate()
    store = ConversationStore(db)
    cid = store.create({"provider": "ollama", "instance_id": "default", "model": "m"}).id
    for text in ("first", "second"):
        start = store.prepare_turn(cid, text, same)
        store.write_turn(start.writes)
        store.finish(start.message_id, {"content": f"answer to {text}", "state": "complete"})
    store.update(cid, {"system": "Be brief."})
    warm = store.prepare_turn(cid, "third", same)  # reads the store again after the update
    cold = ConversationStore(db).prepare_turn(cid, "third", same)  # nothing in memory
    assert warm.history == cold.history
    assert [t.content for t in warm.history] == [
        "first",
        "answer to first",
        "second",
        "answer to second",
        "third",
    ]
    assert warm.system == cold.system == "Be brief."
    assert warm.title == cold.title == "first"
    db.dispose()
