"""Build the compiled stream core (``stream.native``): ``python -m stream.build_native [--if-stale | --status]``.

``--if-stale`` builds only when the compiled modules are missing or older than their source (what
``scripts/bootstrap.sh`` runs); ``--status`` prints whether the build is current and exits 1 when it is not.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from stream import native


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    if args in ([], ["--if-stale"]):
        if args and native.built_status().compiled:
            return 0
        native.build()
        return 0
    if args == ["--status"]:
        status = native.built_status()
        print(("compiled" if status.compiled else "source") + ": " + status.reason)
        return 0 if status.compiled else 1
    print("usage: python -m stream.build_native [--if-stale | --status]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
