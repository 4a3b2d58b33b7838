"""A key's rules at the gateway, and what each request cost it (docs/GATEWAY.md, "Keys").

Before a request reaches the scheduler: its model must match the key's allow-list under one
of the model's names (else 404 ``model_not_found``, as for a model that does not exist, so a
key learns nothing of models it may not use), and the key's limits must admit it — its tokens
reserved up front: the prompt's estimate (its text, plus what the model's chat template
added to earlier prompts, at least ``TEMPLATE_ALLOWANCE``) plus ``max_tokens`` (or what the
dialect calls it, or the model's context when absent). After it: the reservation settled
with the backend's usage, and the request added to the usage per day, key and model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modelyard.access.keys import Principal
from modelyard.access.limits import KeyLimiter, Reservation
from modelyard.access.usage import UsageCounts, UsageLog
from modelyard.errors import NotFound
from modelyard.gateway.exchange import Exchange
from modelyard.providers.base import BYTES_PER_TOKEN_ESTIMATE

DEFAULT_OUTPUT_TOKENS = 4096  # reserved when neither the request nor the model says more
# What a chat template adds to the text (role markers, a default system prompt), reserved
# until the backend has shown more for the model: an estimate below the truth would let
# concurrent requests overshoot the limit.
TEMPLATE_ALLOWANCE = 48
_TEXT_FIELDS = ("messages", "system", "prompt", "input", "instructions", "content", "text")
_OUTPUT_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def not_found(name: str) -> NotFound:
    return NotFound(
        f"the model {name!r} does not exist or this key may not use it",
        code="model_not_found",
        hint="GET /v1/models lists the names you can use.",
    )


def allowed(principal: Principal | None, names: Iterable[str]) -> bool:
    rules = principal.rules if principal is not None else None
    return rules is None or rules.allows_model(names)


def prompt_estimate(body: Mapping[str, Any]) -> int:
    """The prompt's tokens, estimated from its text as ``count_tokens`` does without a
    tokenizer (images and other data are not text and are not counted)."""
    size = sum(len(text.encode()) for field in _TEXT_FIELDS for text in _texts(body.get(field)))
    return math.ceil(size / BYTES_PER_TOKEN_ESTIMATE)


def _texts(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)
    elif isinstance(value, dict):
        for field in _TEXT_FIELDS:
            yield from _texts(value.get(field))


def output_limit(body: Mapping[str, Any], model_context: Callable[[], int | None]) -> int:
    """The most the answer may cost: the request's own limit in any dialect (times the
    choices asked for, OpenAI's ``n``), else the model's context, else
    ``DEFAULT_OUTPUT_TOKENS``."""
    options = body.get("options")
    asked = [body.get(f) for f in _OUTPUT_FIELDS]
    if isinstance(options, dict):
        asked.append(options.get("num_predict"))
    times = max(_count(body.get("n")) or 1, 1)
    for value in asked:
        count = _count(value)
        if count is not None:
            return count * times
    return (model_context() or DEFAULT_OUTPUT_TOKENS) * times


def _count(value: Any) -> int | None:
    """A JSON integer of at least 0, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


@dataclass
class Admission:
    """One keyed request's reservation, its prompt's text estimate and what was reserved for
    the prompt (for settling a request whose backend never said how long the prompt was)."""

    reservation: Reservation | None
    text_tokens: int = 0
    prompt_tokens: int = 0


class KeyGate:
    """The limiter and the usage log, as the gateway's request path uses them."""

    def __init__(self, limiter: KeyLimiter, usage: UsageLog) -> None:
        self.limiter = limiter
        self.usage = usage
        self._overhead: dict[str, int] = {}  # per model: the most a prompt exceeded its text

    def admit(
        self,
        principal: Principal | None,
        model: str,
        body: Mapping[str, Any],
        generates: bool,
        model_context: Callable[[], int | None],
    ) -> Admission:
        """Reserve the request's tokens under its key's limits, or raise 429. The model's
        context is looked up (``model_context``, a catalog read) only for a key with a token
        limit whose request sets no output limit of its own."""
        rules = principal.rules if principal is not None else None
        if principal is None or rules is None or not rules.limits.any:
            return Admission(None)
        text = prompt = output = 0
        if rules.limits.tokens_per_minute is not None:  # only then is the body read for it
            text = prompt_estimate(body)
            prompt = text + max(TEMPLATE_ALLOWANCE, self._overhead.get(model, 0))
            output = output_limit(body, model_context) if generates else 0
        reservation = self.limiter.admit(principal.subject, rules.limits, prompt + output)
        return Admission(reservation, text, prompt)

    def refused(self, principal: Principal | None, model: str) -> None:
        """A request refused before its turn, counted as an error in its caller's usage (a
        caller no key names — a bad key, none — has no usage). ``model``: the one it reached,
        "" when its name resolved to none it may use (so made-up names add no rows)."""
        if principal is None:
            return
        rules = principal.rules
        self.usage.record(
            key_id=rules.id if rules else "",
            key_prefix=rules.prefix if rules else "",
            model=model,
            counts=UsageCounts(requests=1, errors=1),
        )

    def finish(
        self, principal: Principal | None, admission: Admission, model: str, record: Exchange
    ) -> None:
        """Settle the reservation with what the request cost, and count its usage."""
        usage = record.relay.usage
        prompt = usage.prompt_tokens if usage and usage.prompt_tokens is not None else None
        completion = usage.completion_tokens if usage else 0
        if admission.reservation is not None:
            if prompt is not None and admission.prompt_tokens:
                seen = prompt - admission.text_tokens
                self._overhead[model] = max(self._overhead.get(model, 0), seen)
            spent = (prompt if prompt is not None else admission.prompt_tokens) + completion
            if usage is None and record.status is not None and record.status >= 400:
                spent = 0  # refused before the backend generated anything
            self.limiter.settle(admission.reservation, spent)
        rules = principal.rules if principal is not None else None
        status = record.status or 499
        failed = status >= 400 and not record.client_gone
        self.usage.record(
            key_id=rules.id if rules else "",
            key_prefix=rules.prefix if rules else "",
            model=model,
            counts=UsageCounts(
                requests=1,
                errors=1 if failed or record.relay.error else 0,
                prompt_tokens=prompt or 0,
                completion_tokens=completion,
                ttft_ms_sum=record.ttft_s * 1000 if record.ttft_s is not None else 0.0,
                ttft_count=1 if record.ttft_s is not None else 0,
            ),
        )
