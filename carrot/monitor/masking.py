"""Mask the values of keyword arguments whose names look secret, everywhere they are shown."""

from __future__ import annotations

import re
from typing import Any

# The pattern Django's SafeExceptionReporterFilter uses, plus a few common spellings.
SECRET_NAME = re.compile(r"API|TOKEN|KEY|SECRET|PASS|SIGNATURE|AUTH|CREDENTIAL|PWD", re.I)
MASK = "********"


def is_secret(name: Any) -> bool:
    """Return True if a keyword or dict key named ``name`` should not be shown."""
    return isinstance(name, str) and bool(SECRET_NAME.search(name))


def mask(value: Any) -> Any:
    """Return a copy of JSON data with the values under secret-looking keys masked."""
    if isinstance(value, dict):
        return {k: MASK if is_secret(k) else mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    return value


def unmask(posted: Any, original: Any) -> Any:
    """Put back original secrets where a form sent the mask unchanged."""
    if isinstance(posted, dict) and isinstance(original, dict):
        out = {}
        for key, value in posted.items():
            if is_secret(key) and value == MASK and key in original:
                out[key] = original[key]
            else:
                out[key] = unmask(value, original.get(key))
        return out
    if isinstance(posted, list) and isinstance(original, list):
        return [unmask(v, original[i] if i < len(original) else None) for i, v in enumerate(posted)]
    return posted
