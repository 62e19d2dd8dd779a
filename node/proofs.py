"""`?prove=1` on the client API's state reads: the stored values a read is built from, each
with its Merkle proof against the state root of the height answered, plus that height's
header and commit certificate, so a client holding the genesis file can check the answer
without trusting the node (docs/api.md "Proofs", docs/protocol.md §8).

Only exact state entries are proven (an account's `bal/`, `nonce/` and `m/` entries, a
listing's `mkt/l/…`, …); fields the node derives from them (a listing's status at the
current time, an account's open leases found through an index scan) are not, and say so
in the answer's `covers`.
"""

from __future__ import annotations

from aiohttp import web

from ledger import statetree
from ledger.chain import Chain
from node.errors import BadRequest
from node.views import b64, certificate_view, header_view

_FLAG = {"1": True, "true": True, "0": False, "false": False}


def wants_proof(request: web.Request) -> bool:
    """True for `?prove=1` (or `true`); a value other than 1/0/true/false is 400 `bad_query`."""
    raw = request.query.get("prove")
    if raw is None:
        return False
    if raw not in _FLAG:
        raise BadRequest("prove: give 1 (or true) for a proof, 0 (or false) for none", "bad_query")
    return _FLAG[raw]


def state_proof(chain: Chain, keys: list[bytes], covers: list[str]) -> dict:
    """Proofs of `keys` (state-tree keys, docs/protocol.md §8.4) at the head. Call it in the
    same synchronous step as the read it proves, so both see one height."""
    height = chain.height
    entries = []
    for key in keys:
        value, proof = statetree.prove(chain.store, key, height)
        entries.append({"key": key.hex(), "value": None if value is None else value.hex(),
                        "proof": proof.encode().hex()})
    doc = {"height": height, "state_root": chain.head.state_root.hex(), "entries": entries, "covers": covers,
           "header": None, "header_raw": None, "certificate": None, "certificate_raw": None}
    if height > 0:  # at height 0 the state root is the genesis file's own (docs/protocol.md §8)
        block, cert = chain.get_block(height), chain.get_cert(height)
        doc |= {"header": header_view(block.header), "header_raw": b64(block.header.encode()),
                "certificate": certificate_view(cert), "certificate_raw": b64(cert.encode())}
    return doc


def with_proof(request: web.Request, chain: Chain, doc: dict, keys: list[bytes], covers: list[str]) -> dict:
    """`doc` as it is, or with `"proof": state_proof(...)` when the request asks for one."""
    if not wants_proof(request):
        return doc
    return {**doc, "proof": state_proof(chain, keys, covers)}
