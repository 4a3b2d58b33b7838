"""Times from a server are instants (issue 18, item 1): an Ollama whose clock is not UTC writes
its wall clock with an offset (``…-07:00``); modelyard shows the instant it means, in UTC, and
a sync with nothing changed reports everything ``unchanged`` and publishes no catalog change,
in any zone, with no zone at all (taken as UTC) and on both sides of a DST change."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest

from tests.fakes.fixtures import serve
from tests.fakes.ollama import OllamaState, create_ollama_app
from tests.support.app_server import RunningApp
from tests.support.catalog import catalog, drain, instance

App = Callable[..., RunningApp]
DENVER = ZoneInfo("America/Denver")

# Instants around America/Denver's two changes of 2026: 8 March 02:00 MST → 03:00 MDT, and
# 1 November 02:00 MDT → 01:00 MST (01:30 happens twice there: -06:00, then -07:00).
DST_INSTANTS = {
    "before-spring:latest": datetime(2026, 3, 8, 8, 30, 0, 125_000, tzinfo=UTC),  # 01:30-07:00
    "after-spring:latest": datetime(2026, 3, 8, 9, 30, 0, 250_000, tzinfo=UTC),  # 03:30-06:00
    "first-0130:latest": datetime(2026, 11, 1, 7, 30, 0, 375_000, tzinfo=UTC),  # 01:30-06:00
    "second-0130:latest": datetime(2026, 11, 1, 8, 30, 0, 500_000, tzinfo=UTC),  # 01:30-07:00
}
PLAIN_INSTANTS = {
    "llama3.2:latest": datetime(2026, 12, 7, 12, 15, 34, 624_456, tzinfo=UTC),
    "qwen2:0.5b": datetime(2026, 12, 6, 23, 59, 59, 999_999, tzinfo=UTC),
}


def _instant(text: str) -> datetime:
    assert text.endswith("Z"), text  # shown in UTC
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _check_zone(
    modelyard: App, tz: tzinfo, instants: dict[str, datetime], *, with_zone: bool = True
) -> None:
    state = OllamaState(tz=tz, times_with_zone=with_zone)
    for name, moment in instants.items():
        state.add_model(name, modified_at=moment)
    with serve(create_ollama_app(state), state) as server:
        before_load = datetime.now(UTC)
        state.load("llama3.2:latest" if "llama3.2:latest" in instants else next(iter(instants)))
        app = modelyard([instance("ollama", server.url)])
        first = app.http.post("/api/models/sync").json()
        assert first["errors"] == [] and first["removed"] == 0, first

        shown = {key[2]: m for key, m in catalog(app).items()}
        assert {name: _instant(m["modified_at"]) for name, m in shown.items()} == instants
        (loaded,) = [m for m in shown.values() if m["status"] == "loaded"]
        expires = _instant(loaded["loaded"]["expires_at"])
        keep_alive = timedelta(seconds=state.default_keep_alive)
        assert before_load + keep_alive <= expires + timedelta(microseconds=1)
        assert expires <= datetime.now(UTC) + keep_alive

        sub = app.services.bus.subscribe(["catalog.changed", "model.state"])
        for _ in range(3):
            again = app.http.post("/api/models/sync").json()
            assert (again["added"], again["updated"], again["removed"]) == (0, 0, 0), again
            assert again["unchanged"] == len(instants), again
        assert drain(sub) == []
        assert {key[2]: _instant(m["modified_at"]) for key, m in catalog(app).items()} == instants


@pytest.mark.parametrize(
    "tz",
    [timezone(timedelta(hours=-7)), timezone(timedelta(hours=5, minutes=30)), UTC],
    ids=["-07:00", "+05:30", "Z"],
)
def test_an_ollama_in_another_zone_shows_the_instants_it_means(modelyard: App, tz: tzinfo) -> None:
    _check_zone(modelyard, tz, PLAIN_INSTANTS)


def test_times_without_a_zone_are_taken_as_utc(modelyard: App) -> None:
    _check_zone(modelyard, UTC, PLAIN_INSTANTS, with_zone=False)


def test_instants_on_both_sides_of_a_dst_change_stay_apart_and_unchanged(modelyard: App) -> None:
    _check_zone(modelyard, DENVER, DST_INSTANTS)


def test_the_stand_in_writes_the_wall_clock_of_its_zone() -> None:
    """The stand-in itself, as real Ollama: the offset moves with DST, a fold is told apart."""
    state = OllamaState(tz=DENVER)
    texts = [state.time_text(moment) for moment in DST_INSTANTS.values()]
    assert texts == [
        "2026-03-08T01:30:00.125-07:00",
        "2026-03-08T03:30:00.25-06:00",
        "2026-11-01T01:30:00.375-06:00",
        "2026-11-01T01:30:00.5-07:00",
    ]
    assert OllamaState(tz=UTC, times_with_zone=False).time_text(
        PLAIN_INSTANTS["llama3.2:latest"]
    ) == ("2026-12-07T12:15:34.624456")
