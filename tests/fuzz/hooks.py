"""Schemathesis hooks for the fuzz run (``SCHEMATHESIS_HOOKS=tests.fuzz.hooks``).

The check: no answer is a 500, and any other 5xx must be a designed one — problem+json whose
``code`` the operation declares for that status in its OpenAPI responses (``x-codes``, see
``modelyard/api/designed.py``). Bodies go as generated: the API refuses a ``command`` (only
the config file gives one), so an instance the fuzzer creates runs nothing but its runtime.
"""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.check
def designed_server_errors(ctx: Any, response: Any, case: Any) -> bool | None:
    status = response.status_code
    if status < 500:
        return None
    try:
        code = response.json().get("code")
    except ValueError:
        code = None
    declared = case.operation.definition.raw.get("responses", {}).get(str(status), {})
    allowed = declared.get("x-codes", [])
    if status == 500 or code not in allowed:
        raise AssertionError(
            f"{case.method} {case.path} answered {status} with code {code!r}; "
            f"designed codes for {status} here: {allowed or 'none'}"
        )
    return None
