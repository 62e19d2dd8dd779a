"""Checking a node's `?prove=1` answer without trusting the node (pure: no I/O, no clock).

`verify_state_proof(proof, chain_id=…, validators=…)` takes the `proof` object of a state
read (node/proofs.py, docs/api.md "Proofs") and the validator keys the client trusts for
that height (from the genesis file, or a set it followed itself). It checks, in order:
the header is of this chain and height and carries the proof's state root; the header's
validator_set_hash is the hash of the trusted set (else the set changed since the client
learned it: `validators_hash`); the certificate is for this header's hash and is signed
by a quorum of that set; every entry's Merkle proof leads to the state root. It returns
{key: value or None}, the proven state entries; anything else raises LightClientError
with a stable code naming what failed.
"""

from __future__ import annotations

import base64
import binascii

from ledger import statetree
from ledger.crypto import parse_hex
from ledger.block import Certificate, Header, validator_set_hash
from ledger.encoding import decode
from ledger.errors import BlockInvalid, EncodingError

CODES = ("malformed", "chain_id", "height", "state_root", "validators_hash", "certificate", "cert_signature",
         "state_proof", "genesis_root")


class LightClientError(Exception):
    def __init__(self, code: str, message: str):
        assert code in CODES, code
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def _raw(proof: dict, field: str) -> bytes:
    try:
        return base64.b64decode(proof[field], validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise LightClientError("malformed", f"proof.{field} is not base64") from None


def _hex(value, what: str) -> bytes:
    try:
        return parse_hex(value)
    except ValueError:
        raise LightClientError("malformed", f"{what} is not hex") from None


def verify_state_proof(proof: dict, *, chain_id: str, validators: list[bytes],
                       genesis_state_root: bytes | None = None) -> dict[bytes, bytes | None]:
    if not isinstance(proof, dict) or not isinstance(proof.get("entries"), list):
        raise LightClientError("malformed", "the answer has no proof object with entries")
    height, root = proof.get("height"), _hex(proof.get("state_root"), "proof.state_root")
    if not isinstance(height, int) or isinstance(height, bool) or height < 0:
        raise LightClientError("malformed", "proof.height is not a height")
    if height == 0:
        if genesis_state_root is None or root != genesis_state_root:
            raise LightClientError("genesis_root", "a proof at height 0 must be against the genesis file's state root")
    else:
        try:
            header = Header.from_wire(decode(_raw(proof, "header_raw")))
            cert = Certificate.from_wire(decode(_raw(proof, "certificate_raw")))
        except (EncodingError, BlockInvalid, ValueError, TypeError) as exc:
            raise LightClientError("malformed", f"header or certificate does not decode: {exc}") from None
        if header.chain_id != chain_id:
            raise LightClientError("chain_id", f"the header is of chain {header.chain_id!r}, not {chain_id!r}")
        if header.height != height:
            raise LightClientError("height", f"the header is of height {header.height}, the proof says {height}")
        if header.state_root != root:
            raise LightClientError("state_root", "the proof's state root is not the certified header's")
        if header.validator_set_hash != validator_set_hash(list(validators)):
            raise LightClientError("validators_hash", f"height {height} was decided by another validator set than "
                                                      "the one trusted here (follow the validator-set changes)")
        if cert.height != height or cert.block_hash != header.hash:
            raise LightClientError("certificate", "the certificate is not for this header")
        try:
            cert.verify(chain_id, list(validators))
        except BlockInvalid as exc:
            raise LightClientError("cert_signature", str(exc)) from None
    out: dict[bytes, bytes | None] = {}
    for i, entry in enumerate(proof["entries"]):
        if not isinstance(entry, dict):
            raise LightClientError("malformed", f"proof.entries[{i}] is not an object")
        key = _hex(entry.get("key"), f"proof.entries[{i}].key")
        value = None if entry.get("value") is None else _hex(entry.get("value"), f"proof.entries[{i}].value")
        try:
            state_proof = statetree.StateProof.decode(_hex(entry.get("proof"), f"proof.entries[{i}].proof"))
        except (EncodingError, ValueError, TypeError) as exc:
            raise LightClientError("malformed", f"proof.entries[{i}].proof does not decode: {exc}") from None
        if not statetree.verify_proof(root, key, value, state_proof):
            raise LightClientError("state_proof", f"entry {key!r}: the Merkle proof does not lead to the state root")
        out[key] = value
    return out
