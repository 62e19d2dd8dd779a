"""Addresses are exactly ``cx`` + 40 lower-case ASCII hex digits, everywhere.

`bytes.fromhex` skips whitespace, so before this was one regular expression a transfer
to "cx" + 40 spaces committed `ok` and burned the credits (an account no key controls).
"""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings, strategies as st

from genesis import schema
from ledger import governance
from ledger.accounts import require_address
from ledger.crypto import Signer, account_address, address_of, is_address, parse_hex
from ledger.encoding import sha256
from ledger.errors import GenesisError, TxRejected

ADDR = Signer(sha256(b"addr")).address
KEY = Signer(sha256(b"addr")).public_key

# Characters `bytes.fromhex`, `int()` or `str.isdigit()` let through although they are no hex digit
SNEAKY = [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\u00a0", "\u2003", "\u3000",
          "\u0660", "\u0661", "\u06f1", "\u0966", "\uff10", "\uff41", "\U0001d7ce", "A", "F", "g", "_", "\x00"]


@pytest.mark.parametrize("text", [
    "cx" + " " * 40, "cx" + "\t" * 40, "cx" + " " * 20 + "ab" * 10, "cx" + ADDR[2:22] + " " + ADDR[23:],
    " " + ADDR[1:], ADDR + " ", ADDR + "\n", " " + ADDR, ADDR[:-1] + "\n", "cx" + "\u0660" * 40,
    "cx" + "\uff10" * 40, ADDR.upper(), "CX" + ADDR[2:], "cx" + ADDR[2:].upper(), "cx0x" + ADDR[4:], "",
    "cx", "cx" + "0" * 39, "cx" + "0" * 41,
])
def test_whitespace_unicode_and_case_variants_are_not_addresses(text):
    assert not is_address(text)
    with pytest.raises(TxRejected) as exc:
        require_address(text, "to")
    assert exc.value.code == "bad_address"
    assert account_address(text) is None


@pytest.mark.parametrize("value", [None, 42, b"cx" + b"0" * 40, ["cx" + "0" * 40]])
def test_non_strings_are_not_addresses(value):
    assert not is_address(value)
    assert account_address(value) is None


@settings(max_examples=300, deadline=None)
@given(pos=st.integers(0, 41), ch=st.sampled_from(SNEAKY), replace=st.booleans())
def test_fuzz_one_sneaky_character_anywhere_is_refused(pos, ch, replace):
    text = ADDR[:pos] + ch + ADDR[pos + (1 if replace else 0):]
    assert not is_address(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("cx0123456789abcdef" + "".join(SNEAKY))), min_size=40, max_size=44))
def test_fuzz_an_accepted_address_is_canonical(text):
    """Whatever is accepted is exactly cx + the lower-case hex of 20 bytes (nothing skipped)."""
    if is_address(text):
        assert text == "cx" + bytes.fromhex(text[2:]).hex() and len(text) == 42
        assert account_address(text) == text


def test_a_real_address_and_a_public_key_resolve():
    assert is_address(ADDR) and account_address(ADDR) == ADDR
    assert account_address(KEY.hex()) == address_of(KEY)
    assert account_address(KEY.hex().upper()) == address_of(KEY)
    assert account_address(" " + KEY.hex()) is None
    assert account_address(KEY.hex()[:-2] + " \t") is None
    assert account_address(KEY.hex()[:-1] + "\u0661") is None


def test_parse_hex_is_strict():
    assert parse_hex("00ff", 2) == b"\x00\xff"
    assert parse_hex("00FF") == b"\x00\xff"
    for bad in ("00 ff", " 00ff", "00ff\n", "0", "\u0660\u0661", "0x00", "zz"):
        with pytest.raises(ValueError):
            parse_hex(bad)
    with pytest.raises(ValueError):
        parse_hex("00ff", 3)


def test_governance_hex_key_with_whitespace_is_refused():
    spaced = " ".join(KEY.hex()[i:i + 2] for i in range(0, 64, 2))
    assert bytes.fromhex(spaced) == KEY  # what the old check relied on
    with pytest.raises(TxRejected) as exc:
        governance.normalise_action("add_member", {"org": "org1", "key": spaced, "role": "operator"})
    assert exc.value.code == "bad_payload"
    ok = governance.normalise_action("add_member", {"org": "org1", "key": KEY.hex(), "role": "operator"})
    assert ok["key"] == KEY


def _genesis(address: str) -> dict:
    admin = Signer(sha256(b"g-admin")).public_key.hex()
    node = Signer(sha256(b"g-node")).public_key.hex()
    return {"chain_id": "cxl-addr", "genesis_time_ms": 1, "params": {},
            "orgs": [{"id": "acme", "name": "Acme", "members": [{"key": admin, "role": "admin"}]}],
            "validators": [{"org": "acme", "key": node, "p2p": "http://127.0.0.1:1", "api": "http://127.0.0.1:2"}],
            "balances": [{"address": address, "amount": 5}]}


@pytest.mark.parametrize("address", ["cx" + " " * 40, "cx" + "\t" * 40, ADDR + "\n", "cx" + "\u0660" * 40])
def test_genesis_refuses_whitespace_and_unicode_balances(address):
    schema.validate(_genesis(ADDR))  # the document is otherwise valid
    with pytest.raises(GenesisError) as exc:
        schema.validate(_genesis(address))
    assert exc.value.message.startswith("balances[0].address:")


@pytest.mark.parametrize("to", ["cx" + " " * 40, "cx" + "\t" * 40, " " + ADDR, ADDR + " ", "cx" + "\u0660" * 40])
def test_the_cli_refuses_a_whitespace_or_unicode_address_before_signing(tmp_path, to):
    from click.testing import CliRunner

    from cli.main import cli
    from ledger.keystore import write_key

    write_key(tmp_path / "k.json", Signer(sha256(b"cli-addr")))
    r = CliRunner().invoke(cli, ["tx", "transfer", "--key", str(tmp_path / "k.json"), "--to", to, "--amount", "5",
                                 "--sign-only", "--chain-id", "c", "--nonce", "0"], catch_exceptions=False)
    assert r.exit_code == 2 and "not an address" in r.stderr and "Traceback" not in r.output
