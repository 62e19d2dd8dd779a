"""Block headers, blocks and commit certificates, with their canonical wire forms.

A header's fields are post-execution: `results_root` and `state_root` describe the
state *after* this block's transactions ran, so one header and its certificate prove a
receipt on their own. `last_cert_hash` binds the certificate of the parent carried in
the block body, so every copy of the chain verifies from the genesis file alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.crypto import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, verify
from ledger.encoding import (
    DOMAIN_COMMIT,
    decode,
    encode,
    expect,
    expect_array,
    expect_bytes,
    expect_uint,
    sha256,
    signing_bytes,
)
from ledger.errors import BlockInvalid, EncodingError

HASH_SIZE = 32
ZERO_HASH = b"\x00" * HASH_SIZE
MAX_BLOCK_BYTES = 64 * 1024 * 1024


def quorum(n: int) -> int:
    """Votes needed among n validators, with f = (n-1)//3 faulty tolerated.

    ceil((n + f + 1) / 2): any two quorums then share at least f+1 validators, so at
    least one honest one, whatever n is. For n = 3f+1 this is the classic 2f+1; for
    other sizes (n = 2, 5, 6 …) 2f+1 would let two quorums meet only in faulty nodes.
    """
    f = (n - 1) // 3
    return (n + f + 2) // 2


def _hash(value, what: str) -> bytes:
    return expect_bytes(value, HASH_SIZE, what)


def commit_signing_bytes(chain_id: str, view: int, height: int, block_hash: bytes) -> bytes:
    """What a validator signs to commit a block; certificates collect these signatures."""
    return signing_bytes(DOMAIN_COMMIT, chain_id, [view, height, block_hash])


def validator_set_hash(validator_keys: list[bytes]) -> bytes:
    """`header.validator_set_hash`: the set deciding a height, keys in set order."""
    return sha256(encode(list(validator_keys)))


def next_validators_hash(validator_keys: list[bytes]) -> bytes:
    """`header.next_validators_hash`: H(encode(sorted keys)) of the set that will sign the
    next height. Sorted, so a light client needs only the set's members, not its order."""
    return sha256(encode(sorted(validator_keys)))


# The header layout version, stored as meta key `m/header_format` in every data dir.
# 2: headers carry next_validators_hash (12 fields). Dirs without the key are older.
HEADER_FORMAT = 2
HEADER_FIELDS = 12


@dataclass(frozen=True, slots=True)
class Header:
    chain_id: str
    height: int
    view: int
    time_ms: int
    parent_hash: bytes
    txs_root: bytes
    results_root: bytes
    state_root: bytes
    proposer: bytes
    validator_set_hash: bytes
    next_validators_hash: bytes
    last_cert_hash: bytes

    def to_wire(self) -> list:
        return [
            self.chain_id, self.height, self.view, self.time_ms, self.parent_hash,
            self.txs_root, self.results_root, self.state_root, self.proposer,
            self.validator_set_hash, self.next_validators_hash, self.last_cert_hash,
        ]

    @classmethod
    def from_wire(cls, w) -> "Header":
        expect_array(w, HEADER_FIELDS, "header")
        proposer = expect(w[8], bytes, "header.proposer")
        if len(proposer) != PUBLIC_KEY_SIZE:
            raise EncodingError("header.proposer: expected a 32-byte public key")
        return cls(
            chain_id=expect(w[0], str, "header.chain_id"),
            height=expect_uint(w[1], "header.height"),
            view=expect_uint(w[2], "header.view"),
            time_ms=expect_uint(w[3], "header.time_ms"),
            parent_hash=_hash(w[4], "header.parent_hash"),
            txs_root=_hash(w[5], "header.txs_root"),
            results_root=_hash(w[6], "header.results_root"),
            state_root=_hash(w[7], "header.state_root"),
            proposer=proposer,
            validator_set_hash=_hash(w[9], "header.validator_set_hash"),
            next_validators_hash=_hash(w[10], "header.next_validators_hash"),
            last_cert_hash=_hash(w[11], "header.last_cert_hash"),
        )

    def encode(self) -> bytes:
        return encode(self.to_wire())

    @property
    def hash(self) -> bytes:
        return sha256(self.encode())


@dataclass(frozen=True, slots=True)
class Certificate:
    """A quorum (`quorum(n)` = ceil((n+f+1)/2), docs/protocol.md §9) of Commit signatures on
    (view, height, block_hash), ordered by signer key."""

    height: int
    view: int
    block_hash: bytes
    signatures: tuple[tuple[bytes, bytes], ...]  # (validator public key, signature)

    def to_wire(self) -> list:
        return [self.height, self.view, self.block_hash, [list(s) for s in self.signatures]]

    @classmethod
    def from_wire(cls, w) -> "Certificate":
        expect_array(w, 4, "certificate")
        sigs = []
        for i, pair in enumerate(expect(w[3], list, "certificate.signatures")):
            expect_array(pair, 2, f"certificate.signatures[{i}]")
            key = expect(pair[0], bytes, "certificate signer")
            sig = expect(pair[1], bytes, "certificate signature")
            if len(key) != PUBLIC_KEY_SIZE or len(sig) != SIGNATURE_SIZE:
                raise EncodingError(f"certificate.signatures[{i}]: wrong key or signature size")
            sigs.append((key, sig))
        return cls(
            height=expect_uint(w[0], "certificate.height"),
            view=expect_uint(w[1], "certificate.view"),
            block_hash=_hash(w[2], "certificate.block_hash"),
            signatures=tuple(sigs),
        )

    def encode(self) -> bytes:
        return encode(self.to_wire())

    @property
    def hash(self) -> bytes:
        return sha256(self.encode())

    @classmethod
    def build(cls, height: int, view: int, block_hash: bytes, votes: dict[bytes, bytes]) -> "Certificate":
        return cls(height, view, block_hash, tuple(sorted(votes.items())))

    def verify(self, chain_id: str, validators: list[bytes]) -> None:
        """Raise BlockInvalid unless `quorum(len(validators))` = ceil((n+f+1)/2) distinct
        validators of the set deciding this height signed this commit (2f+1 only when
        n = 3f+1: for n = 5 it is 4, not 3)."""
        allowed = set(validators)
        seen: set[bytes] = set()
        message = commit_signing_bytes(chain_id, self.view, self.height, self.block_hash)
        keys = [k for k, _ in self.signatures]
        if keys != sorted(keys):
            raise BlockInvalid(f"certificate for height {self.height}: signers not in order", "bad_certificate")
        for key, sig in self.signatures:
            if key in seen:
                raise BlockInvalid(f"certificate for height {self.height}: duplicate signer {key.hex()}", "bad_certificate")
            seen.add(key)
            if key not in allowed:
                raise BlockInvalid(
                    f"certificate for height {self.height}: signer {key.hex()} is not a validator", "bad_certificate"
                )
            if not verify(key, message, sig):
                raise BlockInvalid(
                    f"certificate for height {self.height}: bad signature from {key.hex()}", "bad_certificate"
                )
        need = quorum(len(validators))
        if len(seen) < need:
            raise BlockInvalid(
                f"certificate for height {self.height}: {len(seen)} signatures, {need} needed", "bad_certificate"
            )


@dataclass(frozen=True, slots=True)
class Block:
    header: Header
    txs: tuple[bytes, ...]  # signed transaction encodings, in execution order
    last_cert: Certificate | None  # certificate of the parent; None at height 1

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def height(self) -> int:
        return self.header.height

    def to_wire(self) -> list:
        return [
            self.header.to_wire(),
            list(self.txs),
            None if self.last_cert is None else self.last_cert.to_wire(),
        ]

    @classmethod
    def from_wire(cls, w) -> "Block":
        expect_array(w, 3, "block")
        txs = tuple(expect(t, bytes, "block.txs[]") for t in expect(w[1], list, "block.txs"))
        cert = None if w[2] is None else Certificate.from_wire(w[2])
        return cls(Header.from_wire(w[0]), txs, cert)

    def encode(self) -> bytes:
        return encode(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> "Block":
        return cls.from_wire(decode(data, max_size=MAX_BLOCK_BYTES))
