"""Small readers of setting values that report what is wrong as ``Problem``s."""

from __future__ import annotations

import difflib
from typing import Any

from carrot.conf.types import Problem


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def number(
    raw: dict[str, Any], key: str, default: Any, problems: list[Problem], *, minimum: float
) -> Any:
    value = raw.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or value < minimum:
        problems.append(
            Problem(
                "carrot.E008",
                f"CARROT[{key!r}] is misconfigured: expected a number >= {minimum}, got {value!r}.",
            )
        )
        return default
    return value


def unknown_keys(
    raw: dict[str, Any], known: set[str], where: str, problems: list[Problem], *, close: bool
) -> None:
    for key in sorted(set(raw) - known):
        if close:
            match = difflib.get_close_matches(key, known, n=1)
            hint = f"Did you mean {match[0]!r}?" if match else None
        else:
            hint = f"Known keys: {', '.join(sorted(known))}."
        problems.append(
            Problem(
                "carrot.W002" if where.startswith("CARROT['queues']") else "carrot.W001",
                f"{where} has an unknown key {key!r}; it is ignored.",
                hint=hint,
                warning=True,
            )
        )
