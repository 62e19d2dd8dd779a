"""docs/operations.md lists every key-file error code the keystore can raise."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def raised_codes(source: str) -> set[str]:
    """The last string argument of every `KeystoreError(...)` call in `source`."""
    codes = set()
    for m in re.finditer(r"KeystoreError\(", source):
        depth, i = 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(source[i], 0)
            i += 1
        found = re.findall(r'"([a-z_]+)"', source[m.end():i - 1])
        if found:
            codes.add(found[-1])
    return codes


def test_every_keystore_error_code_is_documented():
    codes = raised_codes((ROOT / "ledger" / "keystore.py").read_text())
    assert {"key_permissions", "bad_kdf_params", "wrong_passphrase", "bad_key_file"} <= codes
    doc = (ROOT / "docs" / "operations.md").read_text()
    missing = sorted(c for c in codes if f"| `{c}` |" not in doc)
    assert missing == []
