"""Compare the chains of several nodes and name the first height where they differ.

Each node is asked for its head (`GET /v1/status`) and for block headers
(`GET /v1/blocks/{h}`). Headers are hash-linked, so if every node has the same block at
height h they agree on every height below it: a binary search over the common range finds
the first disagreement, which is then confirmed by fetching that height and the one below.

A node that does not answer (refused, timed out, or an answer that is not a status or a
block) is reported in `Comparison.unreachable` with the reason, and the others are
compared without it; if it fails in the middle of the search, the search starts again
over the nodes still answering, so every result is about the same set of nodes.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ledger.block import Block
from ledger.errors import EncodingError

from audit.source import HttpSource, SourceError


@dataclass
class Comparison:
    nodes: list[str]                                         # every node asked, in the order given
    heights: dict[str, int]                                  # the nodes compared (they answered)
    common_height: int
    first_difference: int | None = None       # None: the compared nodes agree on every common height
    hashes: dict[str, str] = field(default_factory=dict)  # at first_difference, per node
    requests: int = 0
    confirmed: bool = True
    unreachable: dict[str, str] = field(default_factory=dict)  # node -> why it could not be compared

    @property
    def agree(self) -> bool:
        """The nodes that answered agree on every height they have in common."""
        return self.first_difference is None

    @property
    def complete(self) -> bool:
        """Every node answered, and at least two were compared."""
        return not self.unreachable and len(self.heights) >= 2

    @property
    def ok(self) -> bool:
        return self.agree and self.complete

    def to_json(self) -> dict:
        return {"ok": self.ok, "agree": self.agree, "complete": self.complete, "nodes": self.nodes,
                "compared": list(self.heights), "unreachable": self.unreachable, "heights": self.heights,
                "common_height": self.common_height, "first_difference": self.first_difference,
                "hashes": self.hashes, "confirmed": self.confirmed, "requests": self.requests}

    def text(self) -> str:
        lines = [f"{url}: height {self.heights[url]}" if url in self.heights else
                 f"{url}: UNREACHABLE, not compared ({self.unreachable.get(url, 'no answer')})" for url in self.nodes]
        if len(self.heights) < 2:
            lines.append(f"only {len(self.heights)} of {len(self.nodes)} nodes answered: nothing to compare")
        elif self.agree:
            scope = "" if not self.unreachable else f" ({len(self.heights)} of {len(self.nodes)} nodes compared)"
            lines.append(f"agree on all {self.common_height} common blocks{scope}")
        else:
            note = "" if self.confirmed else " (not confirmed: the answers changed during the search)"
            lines.append(f"first difference at height {self.first_difference}{note}:")
            lines += [f"  {url}: {h}" for url, h in self.hashes.items()]
        return "\n".join(lines)


class _Unreachable(Exception):
    """Some nodes failed to answer during a search: {name: reason}."""

    def __init__(self, failures: dict[str, str]):
        super().__init__(failures)
        self.failures = failures


def _hash_at(src: HttpSource, height: int) -> str:
    raw, _ = src.get_block(height)
    if raw is None:
        return "missing"
    try:
        return Block.decode(raw).hash.hex()
    except EncodingError:
        return "undecodable"


def _ask_all(pool: ThreadPoolExecutor, live: list[tuple[str, HttpSource]], ask) -> list:
    """`ask(source)` on every live node at once; raises `_Unreachable` naming each that failed."""

    def one(src: HttpSource):
        try:
            return True, ask(src)
        except SourceError as exc:
            return False, exc.message

    answers = list(pool.map(lambda item: one(item[1]), live))
    failures = {name: reason for (name, _), (ok, reason) in zip(live, answers) if not ok}
    if failures:
        raise _Unreachable(failures)
    return [value for _, value in answers]


def compare_nodes(urls: list[str], parallel: int = 8, timeout: float = 30.0) -> Comparison:
    """Compare the nodes at `urls` that answer. A malformed URL raises `SourceError` (bad input);
    a node that does not answer is reported in the result instead."""
    sources = [HttpSource(u, timeout=timeout) for u in urls]
    names = [s.client.base_url for s in sources]
    unreachable: dict[str, str] = {}
    requests = 0
    with ThreadPoolExecutor(max(1, min(parallel, len(sources)))) as pool:
        while True:
            live = [(n, s) for n, s in zip(names, sources) if n not in unreachable]
            cmp = Comparison(names, {}, 0, unreachable=unreachable, requests=requests)
            try:
                _search(pool, live, cmp)
                return cmp
            except _Unreachable as exc:  # start again without them: results about one set of nodes
                unreachable.update(exc.failures)
                requests = cmp.requests


def _search(pool: ThreadPoolExecutor, live: list[tuple[str, HttpSource]], cmp: Comparison) -> None:
    cmp.requests += len(live)
    heights = _ask_all(pool, live, lambda s: s.head_height())
    cmp.heights = {name: h for (name, _), h in zip(live, heights)}
    if len(live) < 2:
        cmp.common_height = heights[0] if heights else 0
        return
    cmp.common_height = min(heights)

    def at(h: int) -> list[str]:
        cmp.requests += len(live)
        return _ask_all(pool, live, lambda s: _hash_at(s, h))

    def agree(h: int) -> bool:
        return len(set(at(h))) == 1

    lo, hi = 0, cmp.common_height  # invariant: all agree at lo (height 0 is the genesis)
    if hi == 0 or agree(hi):
        return
    while hi - lo > 1:  # disagree at hi
        mid = (lo + hi) // 2
        if agree(mid):
            lo = mid
        else:
            hi = mid
    # confirm: they agree below and differ here
    hashes = at(hi)
    cmp.first_difference = hi
    cmp.hashes = {name: h for (name, _), h in zip(live, hashes)}
    # False when the answers changed during the search (a node rewriting history, or
    # serving blocks that are not hash-linked): the height is then only a lead
    cmp.confirmed = len(set(hashes)) > 1 and (hi == 1 or agree(hi - 1))
