"""Compare the chains of several nodes and name the first height where they differ.

Each node is asked for its head (`GET /v1/status`) and for block headers
(`GET /v1/blocks/{h}`). Headers are hash-linked, so if every node has the same block at
height h they agree on every height below it: a binary search over the common range finds
the first disagreement, which is then confirmed by fetching that height and the one below.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ledger.block import Block
from ledger.errors import EncodingError

from audit.source import HttpSource


@dataclass
class Comparison:
    nodes: list[str]
    heights: dict[str, int]
    common_height: int
    first_difference: int | None = None       # None: the nodes agree on every common height
    hashes: dict[str, str] = field(default_factory=dict)  # at first_difference, per node
    requests: int = 0
    confirmed: bool = True

    @property
    def ok(self) -> bool:
        return self.first_difference is None

    def to_json(self) -> dict:
        return {"ok": self.ok, "nodes": self.nodes, "heights": self.heights, "common_height": self.common_height,
                "first_difference": self.first_difference, "hashes": self.hashes, "confirmed": self.confirmed, "requests": self.requests}

    def text(self) -> str:
        lines = [f"{url}: height {self.heights[url]}" for url in self.nodes]
        if self.ok:
            lines.append(f"agree on all {self.common_height} common blocks")
        else:
            note = "" if self.confirmed else " (not confirmed: the answers changed during the search)"
            lines.append(f"first difference at height {self.first_difference}{note}:")
            lines += [f"  {url}: {h}" for url, h in self.hashes.items()]
        return "\n".join(lines)


def _hash_at(src: HttpSource, height: int) -> str:
    raw, _ = src.get_block(height)
    if raw is None:
        return "missing"
    try:
        return Block.decode(raw).hash.hex()
    except EncodingError:
        return "undecodable"


def compare_nodes(urls: list[str], parallel: int = 8) -> Comparison:
    sources = [HttpSource(u) for u in urls]
    names = [s.client.base_url for s in sources]
    with ThreadPoolExecutor(max(1, min(parallel, len(sources)))) as pool:
        heights = list(pool.map(lambda s: s.head_height(), sources))
        cmp = Comparison(names, dict(zip(names, heights)), min(heights), requests=len(sources))

        def at(h: int) -> list[str]:
            cmp.requests += len(sources)
            return list(pool.map(lambda s: _hash_at(s, h), sources))

        def agree(h: int) -> bool:
            return len(set(at(h))) == 1

        lo, hi = 0, cmp.common_height  # invariant: all agree at lo (height 0 is the genesis)
        if hi == 0 or agree(hi):
            return cmp
        while hi - lo > 1:  # disagree at hi
            mid = (lo + hi) // 2
            if agree(mid):
                lo = mid
            else:
                hi = mid
        # confirm: they agree below and differ here
        hashes = at(hi)
        cmp.first_difference = hi
        cmp.hashes = dict(zip(names, hashes))
        # False when the answers changed during the search (a node rewriting history, or
        # serving blocks that are not hash-linked): the height is then only a lead
        cmp.confirmed = len(set(hashes)) > 1 and (hi == 1 or agree(hi - 1))
        return cmp
