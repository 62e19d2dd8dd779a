"""Start-up sync: bring the chain up to what the peers have committed before the
consensus core may sign anything (called by `node.runner.Runner` before it starts the core).

A validator whose data directory was wiped (or restored from an old backup) no longer
knows what it signed. Started at its old height it would propose and vote again at
heights it already signed: a second, different signature at one (view, height). So:

1. It asks *every* peer, one by one, for certified blocks above its head and applies
   them, until a round in which the head did not move: every peer that answered had
   nothing newer, and at least f+1 answered (at least one of them honest). So one peer
   that lags (or a byzantine one that answers with nothing) cannot end the sync early
   while a peer with the chain is reachable; that was the bug of a sync that stopped at
   the first answer. A peer that does not answer in time is asked again next round.
2. A node with no signing record (an empty WAL) whose key signed one of the last
   `LOOKBACK` certificates, or proposed one of those blocks, took part before and lost
   its record (a wiped data directory): it may have signed at the height after the
   head too, and nobody can tell it what. It signs nothing there: it waits until that
   height is committed without it (fetched with its certificate, step 1 again), then
   starts at the next one. This is the "wait one block" an operator had to do by hand
   before. A node that never signed (a new validator, or one slower to start than the
   others on a fresh chain) appears in no certificate and starts at once.

If no peer answers at all within `quiet_s` (the whole network starting at once) it
starts where it is. Every block is verified (`Chain.apply_certified`); a block that
does not verify is that peer's fault and its answer does not count. A storage failure
is raised as `DurableWriteFailed` (the runner halts).
"""

from __future__ import annotations

import asyncio
import logging

from ledger.block import Block, Certificate
from ledger.chain import Chain
from ledger.encoding import decode
from ledger.errors import LedgerError, StoreError

FETCH_LIMIT = 100
LOOKBACK = 1000  # certificates searched for this node's own signature (step 2)
RETRY_S = 0.2  # between rounds of asking peers that had nothing, or were not reachable
REPORT_S = 10.0  # how often a node that waits says so in the log


class DurableWriteFailed(Exception):
    """Writing a synced block failed."""


async def sync_before_signing(chain: Chain, transport, me: bytes, has_record: bool, log: logging.Logger,
                              quiet_s: float = 3.0) -> int:
    """Apply what the peers have committed; returns the height the core may start at."""
    if len(chain.validator_keys) < 2:
        return chain.height + 1
    answered = await _sync_from_peers(chain, transport, me, log, quiet_s)
    # a node the synced blocks removed from the set signs nothing anyway: it follows (node/follower.py)
    if answered and not has_record and me in chain.validator_keys and _took_part(chain, me):
        wait_for = chain.height + 1
        log.warning("no signing record, but this node's key signed recent blocks (a wiped data directory?) "
                    "on a chain at height %d: signing nothing until height %d is committed without this node",
                    chain.height, wait_for)
        while chain.height < wait_for and me in chain.validator_keys:
            await _sync_from_peers(chain, transport, me, log, quiet_s)
            if chain.height < wait_for:
                await asyncio.sleep(RETRY_S)
    return chain.height + 1


async def _sync_from_peers(chain: Chain, transport, me: bytes, log: logging.Logger, quiet_s: float) -> bool:
    """Step 1. Rounds: every peer is asked once at the current head; one that has blocks
    is drained first (and the round starts over at the new head). Done after a round in
    which the head did not move and at least f+1 peers answered (the others did not
    answer in time). Returns False if no peer answered within `quiet_s`."""
    loop = asyncio.get_running_loop()
    started = last_report = loop.time()
    anyone = False
    while True:
        keys = chain.validator_keys
        peers = [k for k in keys if k != me]
        need = min((len(keys) - 1) // 3 + 1, len(peers))
        confirmed = 0  # peers with nothing above the head, this round
        moved = False
        for peer in peers:
            while True:
                try:
                    blocks = await transport.fetch_blocks(chain.height + 1, peer, FETCH_LIMIT)
                except Exception:  # not connected (yet), or no answer in time
                    break
                anyone = True
                applied, ok = _apply(chain, blocks, log)
                if not applied:
                    confirmed += ok
                    break
                moved = True  # it had more: ask it again from the new head
            if moved:
                break
        if moved:
            continue
        if confirmed >= need:
            return True
        now = loop.time()
        if not anyone and now - started > quiet_s:
            return False
        if now - last_report > REPORT_S:
            last_report = now
            log.warning("start-up sync at height %d: %d of the %d peers needed confirmed it is the head; "
                        "asking again", chain.height, confirmed, need)
        await asyncio.sleep(RETRY_S)


def _took_part(chain: Chain, me: bytes) -> bool:
    """Did `me` sign a commit certificate, or propose a block, among the last LOOKBACK heights?"""
    for height in range(chain.height, max(0, chain.height - LOOKBACK), -1):
        cert, block = chain.get_cert(height), chain.get_block(height)
        if (cert is not None and any(key == me for key, _ in cert.signatures)) or \
                (block is not None and block.header.proposer == me):
            return True
    return False


def _apply(chain: Chain, blocks: list, log: logging.Logger) -> tuple[int, bool]:
    """Apply fetched (block, certificate) pairs in order; (how many applied, answer usable)."""
    applied = 0
    for block_raw, cert_raw in blocks:
        try:
            block = Block.decode(block_raw)
            cert = Certificate.from_wire(decode(cert_raw))
        except Exception as exc:  # garbage from that peer
            log.warning("start-up sync: fetched block refused: %s", exc)
            return applied, False
        if block.height <= chain.height:
            continue
        try:
            chain.apply_certified(block, cert)
            applied += 1
        except StoreError as exc:
            raise DurableWriteFailed(f"writing synced block failed: {exc}") from exc
        except LedgerError as exc:
            log.warning("start-up sync: fetched block refused: %s", exc)
            return applied, False
        except Exception as exc:  # e.g. plyvel.IOError from the synced batch
            raise DurableWriteFailed(f"writing synced block failed: {exc!r}") from exc
    return applied, True
