"""The authenticated state tree: a path-compressed binary sparse Merkle tree over all state.

Every state entry (key without the store's ``s/`` prefix, value = its canonical bytes)
is a leaf at the shortest prefix of ``sha256(key)`` that no other key shares; an
internal node exists only where at least two leaves lie below it. The shape, and so the
root, depends only on the set of (key, value) pairs, never on the order they were
written in or on history. Hashing (docs/protocol.md §8, with the proof format and how to
verify one from the spec alone):

    empty    = 32 zero bytes
    leaf     = sha256(0x00 || sha256(key) || sha256(value))
    internal = sha256(0x01 || left || right)          (an empty child hashes as empty)

Bit ``d`` of ``sha256(key)`` (most significant first) picks the child at depth ``d``:
0 left, 1 right.

Storage: nodes are versioned by block height (version 0 is genesis) and written in the
block's own batch (`TreeUpdate.puts`), so a crash leaves the tree at a block boundary
like everything else. A block writes only the nodes on the paths it touched; an old
node it replaces is listed as stale at that version and deleted once no kept version
needs it (`prune_puts`). Store layout (all heights 8 bytes big-endian):

    n/ <version> <depth: 2 bytes> <path: 32 bytes>  -> node
    q/ <version>                                    -> root reference of that version
    x/ <stale since> <node key without n/>          -> b"" (pruning index)
    m/tree_pruned                                   -> highest version pruned

A node reference is ``kind (1 byte: 0 empty, 1 leaf, 2 internal) || version (8) || hash
(32)``; an internal node is ``0x01 || left ref || right ref``; a leaf is ``0x00 ||
encode([key, value])`` (the value is kept so any kept version can be proven with its
value, and served to a syncing node).

The public API: `apply_writes` (the next version's root and node writes, pure: nothing
is written), `prove(store, key, version)` and `verify_proof(root, key, value, proof)`
(pure, needs no store: for outsiders, CLIs and light clients).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from dataclasses import dataclass
from typing import Iterator

from ledger.encoding import decode, encode
from ledger.errors import EncodingError, LedgerError
from ledger.store.base import PREFIX_META, PREFIX_TREE_NODE, PREFIX_TREE_ROOT, PREFIX_TREE_STALE, Store

PREFIX_NODE = PREFIX_TREE_NODE
PREFIX_ROOT = PREFIX_TREE_ROOT
PREFIX_STALE = PREFIX_TREE_STALE
META_PRUNED = PREFIX_META + b"tree_pruned"

# Heights of the tree kept provable by default (node config `state_versions_kept`). At
# full load a version costs ~1-2 MB of nodes, so this bounds the tree to a few hundred MB
# while leaving minutes of history for proofs and state-sync snapshots.
DEFAULT_VERSIONS_KEPT = 256

EMPTY_HASH = bytes(32)
KEY_BITS = 256
MAX_PROOF_DEPTH = KEY_BITS

KIND_EMPTY, KIND_LEAF, KIND_INTERNAL = 0, 1, 2
_EMPTY_REF = bytes(41)
_LEAF_TAG, _INTERNAL_TAG = b"\x00", b"\x01"

_sha = hashlib.sha256


class StateTreeError(LedgerError):
    """The store's tree is missing or inconsistent (a local fault, not a peer's)."""

    code = "state_tree"


class VersionUnavailable(StateTreeError):
    """The asked version is above the head or was pruned."""

    code = "version_unavailable"


class ProofDecodeError(EncodingError):
    """Proof bytes that are not a canonical state proof."""

    code = "bad_proof"


def key_hash(key: bytes) -> bytes:
    return _sha(key).digest()


def leaf_hash(kh: bytes, value: bytes) -> bytes:
    return _sha(_LEAF_TAG + kh + _sha(value).digest()).digest()


def _leaf_hash_vh(kh: bytes, vh: bytes) -> bytes:
    return _sha(_LEAF_TAG + kh + vh).digest()


def internal_hash(left: bytes, right: bytes) -> bytes:
    return _sha(_INTERNAL_TAG + left + right).digest()


def h8(n: int) -> bytes:
    return n.to_bytes(8, "big")


_DEPTH = [d.to_bytes(2, "big") for d in range(KEY_BITS + 1)]


def node_key(version: int, depth: int, path: int) -> bytes:
    """`path` is the node's first `depth` key-hash bits as an int."""
    return _node_key(h8(version), depth, path)


def _node_key(version8: bytes, depth: int, path: int) -> bytes:
    return PREFIX_NODE + version8 + _DEPTH[depth] + (path << (KEY_BITS - depth)).to_bytes(32, "big")


# --- in-memory nodes during an update ---------------------------------------------------
#
# A node already in the store is carried as its 41-byte reference (kind || version ||
# hash), so an untouched subtree costs nothing; a node made by this update is a _Leaf or
# _Internal, hashed once when made and stored (under its final position) by `emit`.


class _Leaf:
    __slots__ = ("kh", "key", "value", "hash")
    kind = KIND_LEAF

    def __init__(self, kh: bytes, key: bytes, value: bytes):
        self.kh, self.key, self.value = kh, key, value
        self.hash = leaf_hash(kh, value)


class _Internal:
    __slots__ = ("left", "right", "hash")
    kind = KIND_INTERNAL

    def __init__(self, left, right):
        self.left, self.right = left, right
        self.hash = _sha(_INTERNAL_TAG + _hash_of(left) + _hash_of(right)).digest()


def _hash_of(node) -> bytes:
    if node is None:
        return EMPTY_HASH
    if type(node) is bytes:
        return node[9:41]
    return node.hash


def _kind_of(node) -> int:
    return node[0] if type(node) is bytes else node.kind


def _child(raw_ref: bytes) -> bytes | None:
    return None if raw_ref[0] == KIND_EMPTY else raw_ref


def _ref_bytes(kind: int, version8: bytes, hash_: bytes) -> bytes:
    return bytes((kind,)) + version8 + hash_


@dataclass(frozen=True, slots=True)
class NodeRef:
    kind: int
    version: int
    hash: bytes


def root_ref(store: Store, version: int) -> NodeRef | None:
    raw = store.get(PREFIX_ROOT + h8(version))
    if raw is None:
        raise VersionUnavailable(f"the state tree holds no version {version} (pruned, or above the head)")
    return _parse_ref(raw)


def _parse_ref(raw: bytes) -> NodeRef | None:
    if raw[0] == KIND_EMPTY:
        return None
    return NodeRef(raw[0], int.from_bytes(raw[1:9], "big"), raw[9:41])


def root_hash(store: Store, version: int) -> bytes:
    ref = root_ref(store, version)
    return EMPTY_HASH if ref is None else ref.hash


@dataclass(frozen=True, slots=True)
class TreeUpdate:
    """The result of `apply_writes`: the new root, and every store write that makes it."""

    version: int
    root: bytes
    puts: dict[bytes, bytes | None]


class _Updater:
    def __init__(self, store: Store, version: int, ups: list):
        self.get = store.get
        self.version8 = h8(version)
        self.ups = ups                               # sorted (kh_int, kh, key, value or None)
        self.ints = [u[0] for u in ups]
        self.stale: list[bytes] = []                 # node keys (with n/) replaced at this version

    def _load(self, ref: bytes, depth: int, path: int) -> tuple[bytes, bytes]:
        key = PREFIX_NODE + ref[1:9] + _DEPTH[depth] + (path << (KEY_BITS - depth)).to_bytes(32, "big")
        raw = self.get(key)
        if raw is None:
            raise StateTreeError(f"state tree node missing at depth {depth} "
                                 f"(version {int.from_bytes(ref[1:9], 'big')})")
        return key, raw

    def _load_leaf(self, ref: bytes, depth: int, path: int) -> tuple[bytes, _Leaf]:
        key, raw = self._load(ref, depth, path)
        k, v = decode(raw[1:])
        return key, _Leaf(key_hash(k), k, v)

    def _split(self, lo: int, hi: int, depth: int, path: int) -> int:
        """First index in [lo, hi) whose key hash has bit `depth` set."""
        return bisect_left(self.ints, ((path << 1) | 1) << (KEY_BITS - 1 - depth), lo, hi)

    def update(self, node, depth: int, path: int, lo: int, hi: int):
        """The subtree at (depth, path) with ups[lo:hi] applied (never an empty range)."""
        if node is None:
            return self._build(depth, path, [u for u in self.ups[lo:hi] if u[3] is not None])
        if node[0] == KIND_LEAF:
            key, leaf = self._load_leaf(node, depth, path)
            ups = self.ups[lo:hi]
            mine = next((u for u in ups if u[1] == leaf.kh), None)
            live = [u for u in ups if u[3] is not None and u is not mine]
            if mine is None:
                if not live:
                    return node  # only deletions of absent keys
                live.append((int.from_bytes(leaf.kh, "big"), leaf.kh, leaf.key, leaf.value))
                live.sort()
            else:
                if not live and mine[3] == leaf.value:
                    return node  # the same value written again
                if mine[3] is not None:
                    live.append(mine)
                    live.sort()
            self.stale.append(key)
            return self._build(depth, path, live)
        key, raw = self._load(node, depth, path)
        left, right = _child(raw[1:42]), _child(raw[42:83])
        split = self._split(lo, hi, depth, path)
        new_left = self.update(left, depth + 1, path << 1, lo, split) if split > lo else left
        new_right = self.update(right, depth + 1, (path << 1) | 1, split, hi) if split < hi else right
        if new_left is left and new_right is right:
            return node
        self.stale.append(key)
        return self._join(new_left, new_right, depth, path)

    def _build(self, depth: int, path: int, live: list):
        if not live:
            return None
        if len(live) == 1:
            _, kh, key, value = live[0]
            return _Leaf(kh, key, value)
        threshold = ((path << 1) | 1) << (KEY_BITS - 1 - depth)
        split = bisect_left(live, threshold, key=_first)
        return self._join(self._build(depth + 1, path << 1, live[:split]),
                          self._build(depth + 1, (path << 1) | 1, live[split:]), depth, path)

    def _join(self, left, right, depth: int, path: int):
        if left is None and right is None:
            return None
        if left is None or right is None:
            only = left if right is None else right
            if _kind_of(only) == KIND_LEAF:
                # a lone leaf moves up: a leaf sits at the shortest unique prefix
                if type(only) is bytes:
                    key, leaf = self._load_leaf(only, depth + 1, (path << 1) | (0 if right is None else 1))
                    self.stale.append(key)
                    return leaf
                return only
        return _Internal(left, right)

    def emit(self, node, depth: int, path: int, puts: dict) -> bytes:
        """Store every new node under its final position; return its reference bytes."""
        if node is None:
            return _EMPTY_REF
        if type(node) is bytes:
            return node
        key = PREFIX_NODE + self.version8 + _DEPTH[depth] + (path << (KEY_BITS - depth)).to_bytes(32, "big")
        if type(node) is _Leaf:
            puts[key] = _LEAF_TAG + encode([node.key, node.value])
            return _ref_bytes(KIND_LEAF, self.version8, node.hash)
        # children that are unchanged (bytes) or empty need no call
        left, right = node.left, node.right
        if left is not None and type(left) is not bytes:
            left = self.emit(left, depth + 1, path << 1, puts)
        if right is not None and type(right) is not bytes:
            right = self.emit(right, depth + 1, (path << 1) | 1, puts)
        puts[key] = _INTERNAL_TAG + (left or _EMPTY_REF) + (right or _EMPTY_REF)
        return _ref_bytes(KIND_INTERNAL, self.version8, node.hash)


def _first(u) -> int:
    return u[0]


def apply_writes(store: Store, version: int, writes: dict[bytes, bytes | None]) -> TreeUpdate:
    """The tree of `version` = the tree of `version - 1` (none for 0) with `writes` applied.

    `writes` maps state keys (without ``s/``) to their new canonical bytes, None to delete.
    Reads `store`, writes nothing: the caller commits `TreeUpdate.puts` with the block.
    Each touched node is hashed once, whatever the number of writes below it.
    """
    if version == 0:
        return build_version(store, 0, writes)
    raw = store.get(PREFIX_ROOT + h8(version - 1))
    if raw is None:
        raise VersionUnavailable(f"the state tree holds no version {version - 1} to build {version} on")
    return _apply(store, version, _child(raw), writes)


def build_version(store: Store, version: int, writes: dict[bytes, bytes | None]) -> TreeUpdate:
    """A tree of `version` holding exactly `writes` (no earlier version below it): genesis,
    or a state-sync snapshot restored at its height. Reads `store` for nothing it needs."""
    return _apply(store, version, None, writes)


def _apply(store: Store, version: int, base, writes: dict[bytes, bytes | None]) -> TreeUpdate:
    ups = []
    for key, value in writes.items():
        kh = _sha(key).digest()
        ups.append((int.from_bytes(kh, "big"), kh, key, value))
    ups.sort(key=_first)
    updater = _Updater(store, version, ups)
    new_root = updater.update(base, 0, 0, 0, len(ups)) if ups else base
    puts: dict[bytes, bytes | None] = {}
    puts[PREFIX_ROOT + updater.version8] = updater.emit(new_root, 0, 0, puts)
    stale_prefix = PREFIX_STALE + updater.version8
    for key in updater.stale:
        puts[stale_prefix + key[len(PREFIX_NODE):]] = b""
    return TreeUpdate(version, _hash_of(new_root), puts)


def prune_puts(store: Store, head: int, keep: int,
               pending: dict[bytes, bytes | None] | None = None) -> dict[bytes, bytes | None]:
    """Deletes that drop every version below ``head - keep + 1`` (keep >= 1 versions).

    A node replaced at version s is needed only by versions < s, so it goes once s is at
    most the oldest kept version; the root pointers of dropped versions go too. `pending`:
    the writes of the batch being committed with these deletes (its stale index entries
    are not in the store yet). Apply the result after `pending`.
    """
    if keep < 1:
        raise ValueError("keep at least one state version")
    oldest_kept = head - keep + 1
    raw = store.get(META_PRUNED)
    done = -1 if raw is None else int.from_bytes(raw, "big")  # versions <= done are dropped
    if oldest_kept - 1 <= done:
        return {}
    puts: dict[bytes, bytes | None] = {}
    for dropped in range(done + 1, oldest_kept):
        puts[PREFIX_ROOT + h8(dropped)] = None
        # nodes that went stale at version dropped + 1 served only versions <= dropped
        prefix = PREFIX_STALE + h8(dropped + 1)
        stale = [k for k, _ in store.iterate(prefix)]
        if pending:
            stale += [k for k in pending if k.startswith(prefix)]
        for key in stale:
            puts[key] = None
            puts[PREFIX_NODE + key[len(PREFIX_STALE) + 8:]] = None
    puts[META_PRUNED] = h8(oldest_kept - 1)
    return puts


# --- proofs -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateProof:
    """The path from the root to where `key`'s search ends.

    `siblings[d]` is the hash of the sibling of the path's node at depth d+1, top-down.
    `leaf` is the (key hash, value hash) of the leaf the path ends at, at depth
    len(siblings), or None when it ends at an empty subtree. Inclusion: the leaf is the
    key's own. Exclusion: no leaf, or another key's leaf sharing the path.
    """

    siblings: tuple[bytes, ...]
    leaf: tuple[bytes, bytes] | None

    def encode(self) -> bytes:
        return encode([list(self.siblings), None if self.leaf is None else list(self.leaf)])

    @classmethod
    def decode(cls, data: bytes) -> "StateProof":
        try:
            w = decode(data, max_size=64 * 1024)
        except EncodingError as exc:
            raise ProofDecodeError(f"state proof does not decode: {exc.message}") from exc
        if not isinstance(w, list) or len(w) != 2:
            raise ProofDecodeError("state proof: expected [siblings, leaf]")
        siblings, leaf = w
        if not isinstance(siblings, list) or len(siblings) > MAX_PROOF_DEPTH:
            raise ProofDecodeError(f"state proof: siblings must be a list of at most {MAX_PROOF_DEPTH} hashes")
        for i, s in enumerate(siblings):
            if not isinstance(s, bytes) or len(s) != 32:
                raise ProofDecodeError(f"state proof: sibling {i} is not a 32-byte hash")
        if leaf is not None:
            if not (isinstance(leaf, list) and len(leaf) == 2
                    and all(isinstance(x, bytes) and len(x) == 32 for x in leaf)):
                raise ProofDecodeError("state proof: leaf must be nil or [key hash, value hash], 32 bytes each")
            leaf = (leaf[0], leaf[1])
        if siblings and siblings[-1] == EMPTY_HASH:
            # the path's last node would have an empty sibling: that node cannot exist in
            # a compressed tree (a lone leaf moves up; an empty pair is empty)
            raise ProofDecodeError("state proof: non-canonical (its last sibling is empty)")
        return cls(tuple(siblings), leaf)


def prove(store: Store, key: bytes, version: int) -> tuple[bytes | None, StateProof]:
    """(value of `key` at `version` or None, proof) against that version's root."""
    ref = root_ref(store, version)
    kh = key_hash(key)
    kint = int.from_bytes(kh, "big")
    siblings: list[bytes] = []
    depth, path = 0, 0
    while ref is not None and ref.kind == KIND_INTERNAL:
        raw = store.get(node_key(ref.version, depth, path))
        if raw is None:
            raise StateTreeError(f"state tree node missing at depth {depth} (version {ref.version})")
        bit = (kint >> (KEY_BITS - 1 - depth)) & 1
        left, right = raw[1:42], raw[42:83]
        mine, other = (right, left) if bit else (left, right)
        siblings.append(other[9:41])
        ref = _parse_ref(mine)
        depth, path = depth + 1, (path << 1) | bit
    if ref is None:
        return None, StateProof(tuple(siblings), None)
    raw = store.get(node_key(ref.version, depth, path))
    if raw is None:
        raise StateTreeError(f"state tree leaf missing at depth {depth} (version {ref.version})")
    k, v = decode(raw[1:])
    found_kh = key_hash(k)
    leaf = (found_kh, _sha(v).digest())
    return (v if k == key else None), StateProof(tuple(siblings), leaf)


def _shares_prefix(a: bytes, b: bytes, bits: int) -> bool:
    x = int.from_bytes(a, "big") ^ int.from_bytes(b, "big")
    return bits == 0 or x >> (KEY_BITS - bits) == 0


def verify_proof(root: bytes, key: bytes, value: bytes | None, proof: "StateProof | bytes") -> bool:
    """True iff `proof` shows that, in the tree with `root`, `key` holds `value`
    (canonical bytes) or, with value None, that `key` is absent.

    Pure: needs nothing but its arguments. Raises ProofDecodeError for proof bytes that
    are not a canonical proof; any well-formed proof that does not match returns False.
    """
    if not isinstance(proof, StateProof):
        proof = StateProof.decode(proof)
    kh = key_hash(key)
    depth = len(proof.siblings)
    if value is not None:
        if proof.leaf is None or proof.leaf[0] != kh or proof.leaf[1] != _sha(value).digest():
            return False
        node = _leaf_hash_vh(kh, proof.leaf[1])
    elif proof.leaf is None:
        node = EMPTY_HASH
    else:
        other_kh, other_vh = proof.leaf
        if other_kh == kh or not _shares_prefix(other_kh, kh, depth):
            return False
        node = _leaf_hash_vh(other_kh, other_vh)
    kint = int.from_bytes(kh, "big")
    for d in range(depth - 1, -1, -1):
        sibling = proof.siblings[d]
        if (kint >> (KEY_BITS - 1 - d)) & 1:
            node = internal_hash(sibling, node)
        else:
            node = internal_hash(node, sibling)
    return node == root


# --- reading a whole version (state sync, tests) --------------------------------------


def iter_leaves(store: Store, version: int) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) of `version`'s tree, in key-hash order."""
    ref = root_ref(store, version)
    stack = [] if ref is None else [(ref, 0, 0)]
    while stack:
        ref, depth, path = stack.pop()
        raw = store.get(node_key(ref.version, depth, path))
        if raw is None:
            raise StateTreeError(f"state tree node missing at depth {depth} (version {ref.version})")
        if ref.kind == KIND_LEAF:
            k, v = decode(raw[1:])
            yield k, v
            continue
        right, left = _parse_ref(raw[42:83]), _parse_ref(raw[1:42])
        if right is not None:
            stack.append((right, depth + 1, (path << 1) | 1))
        if left is not None:
            stack.append((left, depth + 1, path << 1))
