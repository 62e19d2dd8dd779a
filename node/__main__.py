"""`python -m node HOME`: run a validator node until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

from node.errors import NodeError
from ledger.errors import LedgerError


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m node HOME   (a node home made by `cxl node init`)", file=sys.stderr)
        return 2
    from node.app import run_node
    try:
        run_node(args[0])
    except (NodeError, LedgerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
