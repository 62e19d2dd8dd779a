"""docs/marketplace.md names every market transaction type and every market error code."""

from __future__ import annotations

from pathlib import Path

from ledger import market
from ledger.market.errors import CODES

DOC = (Path(__file__).resolve().parents[2] / "docs" / "marketplace.md").read_text()


def test_every_transaction_type_is_documented():
    missing = [name for name in market.TX_TYPES if f"**`{name}`**" not in DOC]
    assert missing == []


def test_every_error_code_is_documented_with_its_meaning():
    missing = [code for code, meaning in CODES.items() if f"| `{code}` | {meaning} |" not in DOC]
    assert missing == []
