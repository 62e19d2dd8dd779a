"""Market throughput: `python scripts/bench_market.py [--leases N] [--block N] [--json]`
(see docs/marketplace.md, "Throughput")."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger.market.bench import main  # noqa: E402

main()
