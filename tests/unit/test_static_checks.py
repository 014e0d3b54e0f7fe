"""The package never deserialises, evaluates or imports anything it is sent.

Each listed pattern is refused in carrot/ (code and templates), except for the entries in
tests/static_allowlist.txt, each with its reason. Entries that no longer match fail too,
so the list stays true.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATTERNS = {
    "pickle": r"\bpickle\b",
    "marshal": r"\bmarshal\b",
    "eval(": r"(?<![\w.])eval\(",
    "exec(": r"(?<![\w.])exec\(",
    "literal_eval": r"literal_eval",
    "import_module(": r"import_module\(",
    "import_string(": r"import_string\(",
    "__import__": r"__import__",
    "mark_safe": r"mark_safe",
    "|safe": r"\|\s*safe\b",
    "autoescape off": r"autoescape\s+off",
    "csrf_exempt": r"csrf_exempt",
    "shell=True": r"shell\s*=\s*True",
    "os.system": r"os\.system",
    "yaml.load": r"yaml\.(unsafe_)?load\(",
}


def allowlist() -> set[tuple[str, str]]:
    entries = set()
    for line in (ROOT / "tests" / "static_allowlist.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        path, pattern, reason = (part.strip() for part in line.split("|", 2))
        assert reason, f"allow-list entry {path} {pattern} has no reason"
        entries.add((path, pattern))
    return entries


def findings(root: Path = ROOT) -> set[tuple[str, str]]:
    found = set()
    files = [p for p in (root / "carrot").rglob("*") if p.suffix in (".py", ".html", ".js")]
    for path in files:
        if "migrations" in path.parts:
            continue
        text = path.read_text()
        for name, regex in PATTERNS.items():
            if re.search(regex, text):
                found.add((str(path.relative_to(root)), name))
    return found


def test_no_unsafe_patterns_outside_the_allow_list():
    unexpected = findings() - allowlist()
    assert not unexpected, f"unsafe patterns without a justification: {sorted(unexpected)}"


def test_the_allow_list_has_no_stale_entries():
    stale = allowlist() - findings()
    assert not stale, f"allow-list entries that no longer match anything: {sorted(stale)}"


def test_the_check_can_fail(tmp_path):
    (tmp_path / "carrot" / "templates").mkdir(parents=True)
    (tmp_path / "carrot" / "probe.py").write_text("import pickle\nvalue = eval(text)\n")
    (tmp_path / "carrot" / "templates" / "x.html").write_text("{{ log.output|safe }}")
    assert findings(tmp_path) == {
        ("carrot/probe.py", "pickle"),
        ("carrot/probe.py", "eval("),
        ("carrot/templates/x.html", "|safe"),
    }
