"""The only reader of ``settings.CARROT``: parsed once into frozen dataclasses.

``get_config()`` is cached and the cache is cleared when the setting changes (tests use
``override_settings``). ``parse()`` never raises: it returns the problems it found, which
``carrot.checks`` reports with stable ids and ``get_config()`` raises as
``CarrotConfigError``.
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from carrot.conf.brokers import parse_broker
from carrot.conf.parsing import parse
from carrot.conf.types import (
    DEFAULT_BROKER_URL,
    DEFAULT_CONSUMER_CLASS,
    DEFAULT_QUEUE,
    BrokerConfig,
    CarrotConfig,
    MetricsConfig,
    Problem,
    QueueConfig,
    SchedulerConfig,
)
from carrot.exceptions import CarrotConfigError

__all__ = [
    "DEFAULT_BROKER_URL",
    "DEFAULT_CONSUMER_CLASS",
    "DEFAULT_QUEUE",
    "BrokerConfig",
    "CarrotConfig",
    "MetricsConfig",
    "Problem",
    "QueueConfig",
    "SchedulerConfig",
    "get_config",
    "get_problems",
    "parse",
    "parse_broker",
]


@functools.cache
def _cached() -> tuple[CarrotConfig, tuple[Problem, ...]]:
    config, problems = parse(getattr(settings, "CARROT", None))
    return config, tuple(problems)


def get_config() -> CarrotConfig:
    """Return the parsed CARROT setting; raise CarrotConfigError if it has errors."""
    config, problems = _cached()
    errors = [p for p in problems if not p.warning]
    if errors:
        first = errors[0]
        raise CarrotConfigError(f"{first.msg} {first.hint or ''}".strip())
    return config


def get_problems() -> tuple[Problem, ...]:
    """Return every problem found in the CARROT setting."""
    return _cached()[1]


@receiver(setting_changed)
def _clear_cache(*, setting: str, **kwargs: Any) -> None:
    if setting == "CARROT":
        _cached.cache_clear()
