"""A conversation's options as its JSON column keeps them."""

from __future__ import annotations

from typing import get_type_hints

from modelyard.chat.types import ChatOptions, StoredOptions


def test_stored_options_name_every_option_and_leave_unset_ones_out() -> None:
    assert set(get_type_hints(StoredOptions)) == set(ChatOptions.model_fields)
    options = ChatOptions(temperature=0.2, max_tokens=64)
    assert options.stored() == {"temperature": 0.2, "max_tokens": 64}
    assert ChatOptions.kept(options.stored()) == options
    assert ChatOptions.kept({"temperature": 9}) == ChatOptions()  # no longer valid: dropped
