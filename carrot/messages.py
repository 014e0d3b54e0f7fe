"""The JSON envelope that travels through RabbitMQ: ``{"args": [...], "kwargs": {...}}``.

Arguments are normalised to JSON in the caller, so a bad argument fails at ``delay()`` and
not in a worker. The worker decodes with limits (size, depth, number length) before
anything else looks at the body.
"""

from __future__ import annotations

import json
import math
from typing import Any

from carrot.exceptions import MessageDecodeError, MessageTooLarge

CONTENT_TYPE = "application/json"
APP_ID = "carrot"
# Milliseconds since the epoch before which a message must not run (countdown, retries).
ETA_HEADER = "x-carrot-eta"
# Deeper structures are almost always a mistake or an attack on the decoder.
MAX_DEPTH = 64

_JSON_HINT = (
    "Task arguments must be JSON: str, int, float, bool, None, lists and dicts with "
    "string keys. Pass ids and plain values, not objects."
)


def _normalise(value: Any, path: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise TypeError(f"{path} is nested more than {MAX_DEPTH} levels deep. {_JSON_HINT}")
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if type(value) is not int:  # an IntEnum would arrive as a plain int
            return int(value)
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{path} is {value!r}, which JSON cannot represent. {_JSON_HINT}")
        return value
    if isinstance(value, list | tuple):
        return [_normalise(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, v in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"{path} has the key {key!r} of type {type(key).__name__}; JSON object keys "
                    f"must be strings. {_JSON_HINT}"
                )
            out[key] = _normalise(v, f"{path}[{key!r}]", depth + 1)
        return out
    kind = type(value)
    raise TypeError(
        f"{path} is a {kind.__module__}.{kind.__qualname__}, which is not JSON-serialisable. "
        f"{_JSON_HINT}"
    )


def normalise_arguments(args: Any, kwargs: Any, *, who: str) -> tuple[list[Any], dict[str, Any]]:
    """Return JSON-ready copies of ``args`` and ``kwargs``; raise TypeError naming the culprit."""
    if args is None:
        args = ()
    if kwargs is None:
        kwargs = {}
    if not isinstance(args, list | tuple):
        raise TypeError(f"{who}: args must be a list or tuple, got {type(args).__name__}.")
    if not isinstance(kwargs, dict):
        raise TypeError(f"{who}: kwargs must be a dict, got {type(kwargs).__name__}.")
    norm_args = [_normalise(v, f"{who}: argument {i}", 1) for i, v in enumerate(args)]
    norm_kwargs: dict[str, Any] = {}
    for key, v in kwargs.items():
        if not isinstance(key, str):
            raise TypeError(f"{who}: keyword names must be strings, got {key!r}.")
        norm_kwargs[key] = _normalise(v, f"{who}: keyword argument {key!r}", 1)
    return norm_args, norm_kwargs


def normalise_value(value: Any) -> Any:
    """Return ``value`` as JSON-ready data; raise TypeError if it cannot be."""
    return _normalise(value, "value", 1)


def encode_body(args: list[Any], kwargs: dict[str, Any], *, max_bytes: int) -> bytes:
    """Encode normalised arguments; raise MessageTooLarge above ``max_bytes``."""
    body = json.dumps(
        {"args": args, "kwargs": kwargs}, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
    if len(body) > max_bytes:
        raise MessageTooLarge(
            f"The task's arguments encode to {len(body)} bytes, over the limit of {max_bytes} "
            "(CARROT['max_message_bytes']). Store large data elsewhere (a model, a file) and "
            "pass its id."
        )
    return body


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, list | dict):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def decode_body(body: bytes, *, max_bytes: int) -> tuple[list[Any], dict[str, Any]]:
    """Decode a message body into (args, kwargs); raise MessageDecodeError with the reason."""
    if len(body) > max_bytes:
        raise MessageDecodeError(
            f"message body is {len(body)} bytes, over the limit of {max_bytes} "
            "(CARROT['max_message_bytes'])"
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MessageDecodeError(f"message body is not UTF-8 text ({exc.reason})") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise MessageDecodeError("message body is JSON nested too deeply to decode") from None
    except json.JSONDecodeError as exc:
        raise MessageDecodeError(f"message body is not JSON ({exc.msg})") from None
    except ValueError as exc:  # e.g. integers longer than sys.get_int_max_str_digits()
        raise MessageDecodeError(f"message body cannot be decoded ({exc})") from None
    if not isinstance(data, dict) or "args" not in data or "kwargs" not in data:
        raise MessageDecodeError(
            'message body must be a JSON object with "args" (a list) and "kwargs" (an object)'
        )
    args, kwargs = data["args"], data["kwargs"]
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise MessageDecodeError(
            'message body must be a JSON object with "args" (a list) and "kwargs" (an object)'
        )
    if _depth_exceeds(data, MAX_DEPTH + 1):
        raise MessageDecodeError(f"message body is nested more than {MAX_DEPTH} levels deep")
    return args, kwargs
