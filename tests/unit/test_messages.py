import datetime
import json

import pytest

from carrot.exceptions import MessageDecodeError, MessageTooLarge
from carrot.messages import MAX_DEPTH, decode_body, encode_body, normalise_arguments


def test_tuples_become_lists_and_values_are_copied():
    args, kwargs = normalise_arguments((1, (2, 3)), {"a": {"b": (4,)}}, who="t")
    assert args == [1, [2, 3]]
    assert kwargs == {"a": {"b": [4]}}


@pytest.mark.parametrize(
    ("args", "kwargs", "fragment"),
    [
        ((datetime.date(2020, 1, 1),), {}, "argument 0 is a datetime.date"),
        ((), {"when": object()}, "keyword argument 'when' is a builtins.object"),
        ((), {"d": {1: "x"}}, "has the key 1"),
        ((float("nan"),), {}, "JSON cannot represent"),
        (({1, 2},), {}, "builtins.set"),
        ("notalist", {}, "args must be a list"),
        ((), [], "kwargs must be a dict"),
    ],
)
def test_non_json_arguments_raise_type_error_naming_the_culprit(args, kwargs, fragment):
    with pytest.raises(TypeError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        normalise_arguments(args, kwargs, who="send.delay()")


def test_too_deep_arguments_are_refused():
    deep = []
    for _ in range(MAX_DEPTH + 2):
        deep = [deep]
    with pytest.raises(TypeError, match="nested more than"):
        normalise_arguments([deep], {}, who="t")


def test_encode_and_decode_round_trip():
    body = encode_body([1, "é"], {"k": None}, max_bytes=1000)
    assert json.loads(body) == {"args": [1, "é"], "kwargs": {"k": None}}
    assert decode_body(body, max_bytes=1000) == ([1, "é"], {"k": None})


def test_encode_refuses_oversize_payloads():
    with pytest.raises(MessageTooLarge, match="max_message_bytes"):
        encode_body(["x" * 2000], {}, max_bytes=1024)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"\xff not json", "not UTF-8"),
        (b"not json", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"args": []}', "must be a JSON object"),
        (b'{"args": {}, "kwargs": {}}', "must be a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
        (b'{"args": [' + b"1" * 10_000 + b'], "kwargs": {}}', "cannot be decoded"),
        (b'{"args": [' + b"[" * 70 + b"]" * 70 + b'], "kwargs": {}}', "nested more than"),
    ],
)
def test_decode_refuses_malformed_bodies_with_a_reason(body, fragment):
    with pytest.raises(MessageDecodeError, match=fragment):
        decode_body(body, max_bytes=10_000_000)


def test_decode_checks_size_before_parsing():
    with pytest.raises(MessageDecodeError, match="over the limit"):
        decode_body(b"x" * 2048, max_bytes=1024)
