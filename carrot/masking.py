"""Masking secrets wherever carrot shows task data (the monitor, the admin, search).

What is masked:

- the value under any dict key whose name looks secret (``password``, ``api_key``,
  ``token``, ``secret``, ``auth``...: Django's ``SafeExceptionReporterFilter`` pattern and a
  few spellings), at any depth of arguments, output and log records;
- the password in a URL (``scheme://user:password@host``), in any string;
- ``name=value`` and ``name: value`` where the name looks secret, in any string
  (exception messages, tracebacks, log lines, argument values).

What is not: a secret passed as a plain positional argument or inside free text without
a secret-looking name before it; carrot cannot know it is one.
"""

from __future__ import annotations

import json
import re
from typing import Any

# The pattern Django's SafeExceptionReporterFilter uses, plus a few common spellings.
SECRET_NAME = re.compile(r"API|TOKEN|KEY|SECRET|PASS|SIGNATURE|AUTH|CREDENTIAL|PWD", re.I)
MASK = "********"
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)(?P<secret>[^\s@/]+)(?=@)", re.I
)
# In free text only names that are clearly secret count (not "KeyError" or "monkey"): a
# secret word, alone or at the end of a snake/kebab-case name, before "=" or ":".
_NAMED_SECRET = re.compile(
    r"(?P<head>(?<![\w-])[\"']?(?:[\w-]*[_-])?"
    r"(?:password|passwd|pwd|pass|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key"
    r"|secret[_-]?key|auth|authorization|credentials?|signature|session[_-]?id|cookie)"
    r"[\"']?\s*[=:]\s*[\"']?)"
    r"(?P<secret>(?:(?:bearer|basic|token|digest)\s+)?[^\s\"',;&}\]]+)",
    re.I,
)


def is_secret(name: Any) -> bool:
    """Return True if a keyword or dict key named ``name`` should not be shown."""
    return isinstance(name, str) and bool(SECRET_NAME.search(name))


def mask_text(text: str) -> str:
    """Return ``text`` with URL passwords and ``secret_name=value`` values masked."""
    if not isinstance(text, str) or not text:
        return text
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    return _NAMED_SECRET.sub(
        lambda m: m.group("head") + (m.group("secret") if m.group("secret") == MASK else MASK),
        text,
    )


def mask(value: Any) -> Any:
    """Return a copy of JSON data with secrets masked (see the module's docstring)."""
    if isinstance(value, dict):
        return {k: MASK if is_secret(k) else mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def search_text(args: Any, kwargs: Any) -> str:
    """Return a call's arguments as the monitor searches them: masked, as compact JSON."""
    return json.dumps([mask(args), mask(kwargs)], ensure_ascii=False, separators=(",", ":"))


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
    if isinstance(posted, str) and isinstance(original, str) and posted == mask_text(original):
        return original  # shown masked and sent back unchanged
    return posted
