"""Check that an installed environment holds exactly the pins of requirements/lock.txt (stdlib only).

The image build runs it on the runtime virtualenv::

    pip --python /opt/bindwatch/bin/python freeze --all | python deploy/check_pins.py requirements/lock.txt

It fails (exit 1) when a package is installed at a version other than the lock's, or is not in the lock at
all, so a transitive dependency can never slip into the image unpinned. ``bindwatch`` itself is exempt.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping

EXEMPT = frozenset({"bindwatch"})


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pins(lines: Iterable[str]) -> dict[str, str]:
    """``name==version`` / ``name @ url`` lines (lock file or ``pip freeze``) as {canonical name: version}."""
    pins: dict[str, str] = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*(==|@)\s*([^\s;]+)\s*(?:;.*)?", line)
        if m:
            # "name @ url" (a direct reference) is kept as a version no lock pin can equal.
            pins[canonical(m.group(1))] = m.group(3) if m.group(2) == "==" else f"@ {m.group(3)}"
    return pins


def mismatches(installed: Mapping[str, str], lock: Mapping[str, str]) -> list[str]:
    """What makes ``installed`` differ from the lock, one message per package (empty when all pinned)."""
    problems = []
    for name, version in sorted(installed.items()):
        name = canonical(name)
        if name in EXEMPT:
            continue
        if name not in lock:
            problems.append(f"{name} {version} is installed but not pinned in the lock file")
        elif lock[name] != version:
            problems.append(f"{name} {version} is installed but the lock file pins {lock[name]}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: pip freeze --all | python deploy/check_pins.py requirements/lock.txt", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        lock = parse_pins(f)
    problems = mismatches(parse_pins(sys.stdin), lock)
    for p in problems:
        print(f"check_pins: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
