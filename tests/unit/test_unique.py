"""Unique tasks without services: the options and the keys."""

from __future__ import annotations

import pytest

from carrot.exceptions import InvalidTask
from carrot.publishing.calls import prepare
from carrot.publishing.unique import key_of
from carrot.tasks import make_task
from tests.testapp.tasks import add, sync_account, unique_record


def module_level(x=1):
    return x


def test_the_options_are_checked():
    with pytest.raises(InvalidTask, match=r"@task\(unique=...\).*True or False, got 'yes'"):
        make_task(module_level, unique="yes")
    with pytest.raises(InvalidTask, match=r"@task\(unique_key=...\).*a function"):
        make_task(module_level, unique_key="x")
    assert make_task(module_level, unique_key=lambda x=1: str(x)).unique is True
    assert make_task(module_level).unique is False


def test_keys_follow_the_arguments_not_their_spelling():
    one = key_of(unique_record, ["a"], {"seconds": 1, "z": [1, {"b": 2, "a": 1}]})
    same = key_of(unique_record, ["a"], {"z": [1, {"a": 1, "b": 2}], "seconds": 1})
    assert one == same and len(one) == 64
    assert key_of(unique_record, ["b"], {}) != key_of(unique_record, ["a"], {})
    assert key_of(unique_record, ["a"], {}) != key_of(unique_record, [], {"key": "a"})
    assert key_of(add, [1, 2], {}) is None  # not a unique task


def test_a_custom_key_names_what_makes_calls_the_same():
    assert key_of(sync_account, [7], {"full": True}) == key_of(sync_account, [7], {})
    assert key_of(sync_account, [7], {}) != key_of(sync_account, [8], {})
    # Another task with the same custom key string still has another key.
    other = make_task(module_level, unique_key=lambda *a, **k: "account-7")
    assert key_of(other, [], {}) != key_of(sync_account, [7], {})


def test_a_custom_key_must_be_a_string():
    bad = make_task(module_level, unique_key=lambda x=1: x)
    with pytest.raises(TypeError, match="unique_key of .* must return a string, got 1"):
        key_of(bad, [1], {})


def test_prepare_sets_the_key():
    assert prepare(unique_record.name, ["p"], {}, queue="default").log.unique_key == key_of(
        unique_record, ["p"], {}
    )
    assert prepare(add.name, [1, 2], {}, queue="default").log.unique_key is None
