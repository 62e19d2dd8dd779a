"""Addresses are bech32 (BIP-173) with the human-readable part ``cx``: 41 lower-case
characters, ``cx1`` + 32 data characters + a 6-character checksum, everywhere.

The checksum refuses any one mistyped character and any swap of two neighbours, so a typo
can no longer send credits to a dead address. Before this was one strict check,
`bytes.fromhex` skipped whitespace and a transfer to "cx" + 40 spaces burned the credits.
"""

from __future__ import annotations

import bech32
import pytest
from hypothesis import given, settings, strategies as st

from genesis import schema
from ledger import governance
from ledger.accounts import require_address
from ledger.crypto import (Signer, account_address, address_from_payload, address_of, address_payload,
                           address_problem, convert_old_address, is_address, parse_hex)
from ledger.encoding import sha256
from ledger.errors import GenesisError, TxRejected

ADDR = Signer(sha256(b"addr")).address
KEY = Signer(sha256(b"addr")).public_key
OLD = "cx" + sha256(b"cxl/address/v1" + KEY)[:20].hex()  # the same account, written the old way

# Characters `bytes.fromhex`, `int()` or `str.isdigit()` let through although they are no digit
SNEAKY = [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\u00a0", "\u2003", "\u3000",
          "\u0660", "\u0661", "\u06f1", "\u0966", "\uff10", "\uff41", "\U0001d7ce", "A", "F", "_", "\x00"]


def test_an_address_is_bech32_of_the_account_id():
    payload = sha256(b"cxl/address/v1" + KEY)[:20]
    assert ADDR == bech32.bech32_encode("cx", bech32.convertbits(payload, 8, 5, True))
    assert ADDR.startswith("cx1") and len(ADDR) == 41 and ADDR == ADDR.lower()
    assert address_payload(ADDR) == payload and address_from_payload(payload) == ADDR
    assert address_problem(ADDR) is None and is_address(ADDR)


def test_every_single_character_typo_is_refused():
    """All 31 other alphabet characters at each of the 38 data and checksum positions."""
    for pos in range(3, len(ADDR)):
        for c in bech32.CHARSET:
            if c == ADDR[pos]:
                continue
            typo = ADDR[:pos] + c + ADDR[pos + 1:]
            assert address_problem(typo) == ("bad_address", "the address checksum does not match: a character is mistyped"), typo


def test_every_swap_of_two_neighbours_is_refused():
    for pos in range(3, len(ADDR) - 1):
        if ADDR[pos] != ADDR[pos + 1]:
            swapped = ADDR[:pos] + ADDR[pos + 1] + ADDR[pos] + ADDR[pos + 2:]
            assert not is_address(swapped), swapped


def test_the_old_form_is_refused_with_its_checksummed_form():
    code, message = address_problem(OLD)
    assert code == "old_address_form" and ADDR in message
    assert convert_old_address(OLD) == ADDR
    with pytest.raises(TxRejected) as exc:
        require_address(OLD, "to")
    assert exc.value.code == "bad_address" and ADDR in exc.value.message
    with pytest.raises(ValueError):
        convert_old_address(ADDR)


@pytest.mark.parametrize("text, says", [
    (ADDR.upper(), "lower case"), ("CX" + ADDR[2:], "lower case"), ("cx" + ADDR[2:].upper(), "lower case"),
    ("bc" + ADDR[2:], "starts with cx1"), ("cy" + ADDR[2:], "starts with cx1"),
    (ADDR[:-1], "41 characters"), (ADDR + "q", "41 characters"), ("", "starts with cx1"), ("cx1", "41 characters"),
    (ADDR[:10] + "b" + ADDR[11:], "alphabet"), (ADDR[:10] + "i" + ADDR[11:], "alphabet"),
    (ADDR[:10] + "o" + ADDR[11:], "alphabet"), (ADDR[:10] + "1" + ADDR[11:], "alphabet"),
    (" " + ADDR[1:], "spaces"), (ADDR + " ", "spaces"), (ADDR[:-1] + "\n", "spaces"),
])
def test_each_kind_of_wrong_address_says_what_is_wrong(text, says):
    code, message = address_problem(text)
    assert code == "bad_address" and says in message
    with pytest.raises(TxRejected) as exc:
        require_address(text, "to")
    assert exc.value.code == "bad_address" and says in exc.value.message
    assert account_address(text) is None


def test_another_hrp_with_a_valid_checksum_is_refused():
    other = bech32.bech32_encode("cy", bech32.convertbits(b"\x01" * 20, 8, 5, True))
    assert bech32.bech32_decode(other)[0] == "cy"  # a valid bech32 string, just not ours
    assert address_problem(other) == ("bad_address", "an address starts with cx1")


def test_a_valid_checksum_over_the_wrong_length_is_refused():
    short = bech32.bech32_encode("cx", bech32.convertbits(b"\x01" * 19, 8, 5, True))
    long_ = bech32.bech32_encode("cx", bech32.convertbits(b"\x01" * 21, 8, 5, True))
    assert not is_address(short) and not is_address(long_)


@pytest.mark.parametrize("text", [
    "cx" + " " * 40, "cx" + "\t" * 40, "cx1" + " " * 38, "cx" + "\u0660" * 40, "cx1" + "\uff10" * 38,
    "cx1" + "q" * 38, "cx", "cx" + "0" * 39, "cx" + "0" * 41, "x" * 10_000,
])
def test_whitespace_unicode_and_junk_are_not_addresses(text):
    assert not is_address(text)
    with pytest.raises(TxRejected) as exc:
        require_address(text, "to")
    assert exc.value.code == "bad_address"
    assert account_address(text) is None


@pytest.mark.parametrize("value", [None, 42, ADDR.encode(), [ADDR]])
def test_non_strings_are_not_addresses(value):
    assert not is_address(value)
    assert address_problem(value)[0] == "bad_address"
    assert account_address(value) is None


@settings(max_examples=300, deadline=None)
@given(pos=st.integers(0, 40), ch=st.sampled_from(SNEAKY + list(bech32.CHARSET)), replace=st.booleans())
def test_fuzz_one_changed_or_inserted_character_anywhere_is_refused(pos, ch, replace):
    text = ADDR[:pos] + ch + ADDR[pos + (1 if replace else 0):]
    if text != ADDR:
        assert not is_address(text)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=20, max_size=20))
def test_fuzz_every_account_id_round_trips(payload):
    address = address_from_payload(payload)
    assert is_address(address) and address_payload(address) == payload


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


@pytest.mark.parametrize("address", ["cx" + " " * 40, "cx" + "\t" * 40, ADDR + "\n", "cx" + "\u0660" * 40, OLD,
                                     ADDR[:-1] + ("q" if ADDR[-1] != "q" else "p")])
def test_genesis_refuses_whitespace_and_unicode_balances(address):
    schema.validate(_genesis(ADDR))  # the document is otherwise valid
    with pytest.raises(GenesisError) as exc:
        schema.validate(_genesis(address))
    assert exc.value.message.startswith("balances[0].address:")


@pytest.mark.parametrize("to, says", [
    ("cx" + " " * 40, "neither an address"), (" " + ADDR, "neither an address"), ("cx" + "\u0660" * 40, "neither an address"),
    (ADDR + " ", "no spaces"), (ADDR[:-1] + ("q" if ADDR[-1] != "q" else "p"), "checksum does not match"),
    (OLD, "convert-address"),
])
def test_the_cli_refuses_a_typo_or_old_address_before_signing(tmp_path, to, says):
    from click.testing import CliRunner

    from cli.main import cli
    from ledger.keystore import write_key

    write_key(tmp_path / "k.json", Signer(sha256(b"cli-addr")))
    r = CliRunner().invoke(cli, ["tx", "transfer", "--key", str(tmp_path / "k.json"), "--to", to, "--amount", "5",
                                 "--sign-only", "--chain-id", "c", "--nonce", "0"], catch_exceptions=False)
    assert r.exit_code == 2 and says in r.stderr and "Traceback" not in r.output
    assert "signed" not in r.stdout  # nothing was signed or printed


def test_the_cli_converts_an_old_address_and_warns(tmp_path):
    from click.testing import CliRunner

    from cli.main import cli

    r = CliRunner().invoke(cli, ["keys", "convert-address", OLD])
    assert r.exit_code == 0 and r.stdout.strip() == ADDR and "confirm" in r.stderr
    r = CliRunner().invoke(cli, ["keys", "convert-address", "--json", OLD])
    assert r.exit_code == 0 and '"address": "%s"' % ADDR in r.stdout and '"checked": false' in r.stdout
    r = CliRunner().invoke(cli, ["keys", "convert-address", ADDR])
    assert r.exit_code == 1 and "already a checksummed address" in r.stderr
