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

`follow_change(chain_id, trusted, change)` takes one item of GET /v1/light/validator_changes
and the `TrustedSet` the client holds (the set deciding the heights after `trusted.after`),
and returns the next `TrustedSet` once the change is proven from its block alone
(docs/protocol.md §6.2): the block was decided and certified by the trusted set, and its
header's `next_validators_hash` commits to the new set. `verify_tx_proof` checks a
transaction's inclusion and result (GET /v1/txs/{hash}/proof) against a certified header.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from ledger import statetree
from ledger.crypto import parse_hex
from ledger.block import Certificate, Header, next_validators_hash, validator_set_hash
from ledger.crypto import PUBLIC_KEY_SIZE
from ledger.encoding import decode, encode, sha256
from ledger.errors import BlockInvalid, EncodingError
from ledger.merkle import verify_inclusion

CODES = ("malformed", "chain_id", "height", "state_root", "validators_hash", "certificate", "cert_signature",
         "state_proof", "genesis_root",
         # following validator-set changes (follow_change)
         "vset_order", "vset_gap", "vset_hash", "vset_proof",
         # a transaction's inclusion (verify_tx_proof)
         "tx_proof",
         # the answer's fields are not the proven values (checked by the caller, e.g. cli/light.py)
         "answer")


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


def _header_and_cert(doc: dict, whose: str) -> tuple[Header, Certificate]:
    """`header_raw` and `certificate_raw` of an answer, decoded strictly (`malformed` otherwise)."""
    try:
        return (Header.from_wire(decode(_raw(doc, "header_raw"))),
                Certificate.from_wire(decode(_raw(doc, "certificate_raw"))))
    except (EncodingError, BlockInvalid, ValueError, TypeError) as exc:
        raise LightClientError("malformed", f"{whose} header or certificate does not decode: {exc}") from None


def _check_certified_header(header: Header, cert: Certificate, *, chain_id: str, height: int, validators) -> None:
    """`header` is of this chain and `height`, decided by `validators` (its validator_set_hash),
    and `cert` is a valid certificate of it by a quorum of them."""
    if header.chain_id != chain_id:
        raise LightClientError("chain_id", f"the header is of chain {header.chain_id!r}, not {chain_id!r}")
    if header.height != height:
        raise LightClientError("height", f"the header is of height {header.height}, the proof says {height}")
    if header.validator_set_hash != validator_set_hash(list(validators)):
        raise LightClientError("validators_hash", f"height {height} was decided by another validator set than "
                                                  "the one trusted here (follow the validator-set changes)")
    if cert.height != height or cert.block_hash != header.hash:
        raise LightClientError("certificate", "the certificate is not for this header")
    try:
        cert.verify(chain_id, list(validators))
    except BlockInvalid as exc:
        raise LightClientError("cert_signature", str(exc)) from None


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
        header, cert = _header_and_cert(proof, "the proof's")
        _check_certified_header(header, cert, chain_id=chain_id, height=height, validators=validators)
        if header.state_root != root:
            raise LightClientError("state_root", "the proof's state root is not the certified header's")
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


# -- validator-set changes ---------------------------------------------------------------------

VALIDATOR_FIELDS = ("org", "key", "p2p", "api")


@dataclass(frozen=True, slots=True)
class TrustedSet:
    """A validator set the client has verified, deciding every height after `after` until the
    next change. `validators` are as the genesis file writes them: {org, key (hex), p2p, api},
    in set order. The genesis set is `TrustedSet(0, genesis_doc["validators"])`."""

    after: int
    validators: tuple

    @property
    def keys(self) -> list[bytes]:
        return [bytes.fromhex(v["key"]) for v in self.validators]

    def to_json(self) -> dict:
        return {"after": self.after, "validators": [dict(v) for v in self.validators]}

    @classmethod
    def from_json(cls, data) -> "TrustedSet":
        if not isinstance(data, dict) or not isinstance(data.get("after"), int) or isinstance(data["after"], bool):
            raise LightClientError("malformed", "a trusted set is {after, validators}")
        return cls(data["after"], tuple(_validators(data.get("validators"), "trusted set")))


def _validators(items, what: str) -> list[dict]:
    """A validator list as in the genesis file, shape-checked; keys lower-case hex, no duplicates."""
    if not isinstance(items, list) or not items:
        raise LightClientError("malformed", f"{what}: the validators are not a non-empty list")
    out, seen = [], set()
    for i, v in enumerate(items):
        if not isinstance(v, dict) or not all(isinstance(v.get(f), str) for f in VALIDATOR_FIELDS):
            raise LightClientError("malformed", f"{what}: validators[{i}] is not {{org, key, p2p, api}}")
        key = _hex(v["key"], f"{what}: validators[{i}].key")
        if len(key) != PUBLIC_KEY_SIZE or key in seen:
            raise LightClientError("malformed", f"{what}: validators[{i}].key is not a new 32-byte key")
        seen.add(key)
        out.append({"org": v["org"], "key": key.hex(), "p2p": v["p2p"], "api": v["api"]})
    return out


def genesis_set(genesis_doc: dict) -> TrustedSet:
    """The set deciding height 1 onwards, from a validated genesis document."""
    return TrustedSet(0, tuple(_validators(genesis_doc["validators"], "genesis")))


def genesis_state_root(genesis_doc: dict) -> bytes:
    """The state root at height 0, computed from the genesis document alone."""
    from ledger.genesis_state import genesis_tree, genesis_view
    from ledger.store.memory import MemoryStore

    return genesis_tree(genesis_view(MemoryStore(), genesis_doc)).root


def follow_page(chain_id: str, sets: list[TrustedSet], page, *, until: int | None = None) -> bool:
    """Follow one answer of GET /v1/light/validator_changes?from=<sets[-1].after>: append to
    `sets` each change it proves (`follow_change`), stopping once the last set was installed
    at or after `until` (when given). True when another page should be asked for."""
    changes = page.get("changes") if isinstance(page, dict) else None
    if not isinstance(changes, list):
        raise LightClientError("malformed", "the validator changes answer has no list of changes")
    for change in changes:
        if until is not None and sets[-1].after >= until:
            return False
        sets.append(follow_change(chain_id, sets[-1], change))
    return bool(changes) and page.get("more") is True and (until is None or sets[-1].after < until)


def set_deciding(sets: list[TrustedSet], height: int) -> TrustedSet:
    """The set that decides `height` among verified sets in order (the last with after < height)."""
    found = [s for s in sets if s.after < height]
    if not found:
        raise LightClientError("height", f"no trusted validator set decides height {height}")
    return found[-1]


def follow_change(chain_id: str, trusted: TrustedSet, change: dict) -> TrustedSet:
    """The set a validator-set change installs, proven from its block (docs/protocol.md §6.2).

    Checks: the change is at a height above the trusted one (`vset_order`); its header is of
    this chain and height; it was decided by the trusted set (`header.validator_set_hash`,
    else a change in between is missing: `vset_gap`); its certificate is for the header and
    signed by a quorum of the trusted set (`certificate`, `cert_signature`); the new set's
    sorted keys hash to `header.next_validators_hash` (`vset_hash`); and, when the answer
    carries a state proof of the `validators` entry, that it proves exactly this set, in this
    order, with these orgs and endpoints, against the header's state root (`vset_proof`)."""
    if not isinstance(change, dict):
        raise LightClientError("malformed", "a validator-set change is not an object")
    height = change.get("height")
    if not isinstance(height, int) or isinstance(height, bool) or height < 1:
        raise LightClientError("malformed", "the change's height is not a block height")
    if height <= trusted.after:
        raise LightClientError("vset_order", f"a change at block {height} is not after the trusted height "
                                             f"{trusted.after} (changes come oldest first, each once)")
    header, cert = _header_and_cert(change, "the change's")
    if header.chain_id != chain_id:
        raise LightClientError("chain_id", f"the change's header is of chain {header.chain_id!r}, not {chain_id!r}")
    if header.height != height:
        raise LightClientError("height", f"the change says block {height}, its header is of height {header.height}")
    keys = trusted.keys
    if header.validator_set_hash != validator_set_hash(keys):
        raise LightClientError("vset_gap", f"block {height} was not decided by the validator set trusted since "
                                           f"height {trusted.after}: a validator-set change between them is "
                                           "missing from the node's answer (or the block is forged)")
    if cert.height != height or cert.block_hash != header.hash:
        raise LightClientError("certificate", f"the certificate of the change at block {height} is not for its header")
    try:
        cert.verify(chain_id, keys)
    except BlockInvalid as exc:
        raise LightClientError("cert_signature", f"the change at block {height} is not certified by the trusted "
                                                 f"set: {exc}") from None
    new = _validators(change.get("validators"), f"the change at block {height}")
    if next_validators_hash([bytes.fromhex(v["key"]) for v in new]) != header.next_validators_hash:
        raise LightClientError("vset_hash", f"the validator set given for block {height} is not the one its "
                                            "certified header commits to (next_validators_hash)")
    if change.get("state_proof") is not None:
        value = _hex(change.get("validators_value"), "validators_value")
        try:
            proof = statetree.StateProof.decode(_hex(change["state_proof"], "state_proof"))
        except (EncodingError, ValueError, TypeError) as exc:
            raise LightClientError("malformed", f"the change's state proof does not decode: {exc}") from None
        stored = [{"org": v["org"], "key": bytes.fromhex(v["key"]), "p2p": v["p2p"], "api": v["api"]} for v in new]
        if not statetree.verify_proof(header.state_root, b"validators", value, proof) or value != encode(stored):
            raise LightClientError("vset_proof", f"the validator set given for block {height} is not the "
                                                 "`validators` entry proven by its state root")
    return TrustedSet(height, tuple(new))


# -- transactions ------------------------------------------------------------------------------

def verify_tx_proof(proof: dict, *, chain_id: str, validators: list[bytes], tx_hash: bytes) -> dict:
    """Check GET /v1/txs/{hash}/proof against the validator set deciding its height: the
    header is certified by that set, the transaction with hash `tx_hash` is at `index` of the
    header's txs_root, and the receipt at the same index of its results_root. Returns
    {height, block_hash, index, receipt (bytes)}."""
    if not isinstance(proof, dict):
        raise LightClientError("malformed", "the transaction proof is not an object")
    try:
        header = Header.from_wire(decode(_raw(proof, "header_raw")))
        cert = Certificate.from_wire(decode(_raw(proof, "certificate_raw")))
    except (EncodingError, BlockInvalid, ValueError, TypeError) as exc:
        raise LightClientError("malformed", f"header or certificate does not decode: {exc}") from None
    height, index, size = proof.get("height"), proof.get("index"), proof.get("tx_count")
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (height, index, size)):
        raise LightClientError("malformed", "height, index and tx_count must be integers")
    _check_certified_header(header, cert, chain_id=chain_id, height=height, validators=validators)
    tx = _hex(proof.get("tx"), "tx")
    receipt = _hex(proof.get("receipt_bytes"), "receipt_bytes")
    paths = []
    for name in ("tx_proof", "receipt_proof"):
        items = proof.get(name)
        if not isinstance(items, list):
            raise LightClientError("malformed", f"{name} is not a list")
        paths.append([_hex(p, name) for p in items])
    if sha256(tx) != tx_hash:
        raise LightClientError("tx_proof", "the proven transaction is not the one asked for (its hash differs)")
    if not verify_inclusion(tx, index, size, paths[0], header.txs_root):
        raise LightClientError("tx_proof", f"the transaction is not at index {index} of block {height}'s txs_root")
    if not verify_inclusion(receipt, index, size, paths[1], header.results_root):
        raise LightClientError("tx_proof", f"the receipt is not at index {index} of block {height}'s results_root")
    return {"height": height, "block_hash": header.hash, "index": index, "receipt": receipt}
