"""CARROT['queues']: each queue's options, checked one by one; ``default`` is always there."""

from __future__ import annotations

from typing import Any

from carrot.conf.brokers import parse_broker
from carrot.conf.fields import is_int, unknown_keys
from carrot.conf.types import (
    DEFAULT_CONSUMER_CLASS,
    DEFAULT_QUEUE,
    DERIVED_SUFFIXES,
    BrokerConfig,
    Problem,
    QueueConfig,
)

QUEUE_KEYS = {
    "name",
    "host",
    "concurrency",
    "consumable",
    "consumer_class",
    "max_priority",
    "prefetch",
}


def _queue_name(where: str, item: Any, problems: list[Problem]) -> str | None:
    if not isinstance(item, dict):
        problems.append(
            Problem("carrot.E003", f"{where} is misconfigured: expected a dict, got {item!r}.")
        )
        return None
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(
            Problem(
                "carrot.E003",
                f"{where} is misconfigured: expected a non-empty string 'name', got {name!r}.",
            )
        )
        return None
    if any(name.endswith(s) or f"{s}." in name for s in DERIVED_SUFFIXES):
        problems.append(
            Problem(
                "carrot.E003",
                f"{where} is misconfigured: the name {name!r} collides with the queues carrot "
                f"derives from a queue (suffixes {', '.join(DERIVED_SUFFIXES)}).",
                hint="Choose a name without those suffixes.",
            )
        )
        return None
    return name


def _queue_option(
    where: str,
    item: dict[str, Any],
    key: str,
    default: Any,
    valid: Any,
    expected: str,
    problems: list[Problem],
) -> Any:
    """Return ``item[key]`` if ``valid(value)``, else report it and return ``default``."""
    value = item.get(key, default)
    if valid(value):
        return value
    problems.append(
        Problem(
            "carrot.E003",
            f"{where} is misconfigured: expected {key!r} to be {expected}, got {value!r}.",
        )
    )
    return default


def _parse_queue(
    index: int, item: Any, default_broker: BrokerConfig, problems: list[Problem]
) -> QueueConfig | None:
    where = f"CARROT['queues'][{index}]"
    name = _queue_name(where, item, problems)
    if name is None:
        return None
    unknown_keys(item, QUEUE_KEYS, where, problems, close=False)
    broker = default_broker
    if "host" in item:
        try:
            broker = parse_broker(item["host"])
        except ValueError as exc:
            problems.append(
                Problem("carrot.E003", f"{where} is misconfigured: 'host' is invalid: {exc}.")
            )

    def option(key: str, default: Any, valid: Any, expected: str) -> Any:
        return _queue_option(where, item, key, default, valid, expected, problems)

    concurrency = option("concurrency", 1, lambda v: is_int(v) and v >= 1, "an integer >= 1")
    return QueueConfig(
        name=name,
        broker=broker,
        concurrency=concurrency,
        consumable=option("consumable", True, lambda v: isinstance(v, bool), "True or False"),
        consumer_class=option(
            "consumer_class",
            DEFAULT_CONSUMER_CLASS,
            lambda v: isinstance(v, str) and "." in v,
            "a dotted path",
        ),
        max_priority=option(
            "max_priority", 10, lambda v: is_int(v) and 1 <= v <= 255, "an integer from 1 to 255"
        ),
        prefetch=option(
            "prefetch",
            None,
            lambda v: v is None or (is_int(v) and v >= concurrency),
            f"an integer >= its concurrency ({concurrency})",
        ),
    )


def parse_queues(raw: dict[str, Any], default: BrokerConfig, problems: list[Problem]) -> Any:
    queues: list[QueueConfig] = []
    raw_queues = raw.get("queues", [])
    if not isinstance(raw_queues, list | tuple):
        problems.append(
            Problem(
                "carrot.E003",
                f"CARROT['queues'] is misconfigured: expected a list, got {raw_queues!r}.",
            )
        )
        raw_queues = []
    for index, item in enumerate(raw_queues):
        queue = _parse_queue(index, item, default, problems)
        if queue is None:
            continue
        if any(q.name == queue.name for q in queues):
            problems.append(
                Problem(
                    "carrot.E003",
                    f"CARROT['queues'][{index}] is misconfigured: the name {queue.name!r} is "
                    "used twice.",
                )
            )
            continue
        queues.append(queue)
    if not any(q.name == DEFAULT_QUEUE for q in queues):
        queues.insert(0, QueueConfig(name=DEFAULT_QUEUE, broker=default))
    return tuple(queues)
