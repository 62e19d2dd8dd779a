"""Two processes with one node key (an HA mistake): each peer keeps only the newest session
from a key, so the two take it from each other. The node told "replaced by a newer
session" knows another process has its key: it says so, tells the node (which stops
signing) and redials that peer only every duplicate_backoff_s instead of ~720 times a minute."""

from __future__ import annotations

import asyncio
import dataclasses

from p2p.testing import FAST_LIMITS, Cluster, free_port, wait_until


async def test_a_second_process_with_our_key_is_detected_and_does_not_flap(caplog):
    limits = dataclasses.replace(FAST_LIMITS, duplicate_backoff_s=1.0)
    async with Cluster.build(3, limits=limits) as cluster:
        original, peer = cluster.nodes[0], cluster.nodes[1]
        assert original.net.duplicate_key is None and not original.inbox.duplicates
        twin = cluster.make_node(original.signer, free_port(), limits=limits)
        caplog.set_level("WARNING", logger="cxl.p2p")
        await twin.net.start()
        try:
            # the twin's sessions replace the original's at both peers: the original hears 4003
            await wait_until(lambda: original.inbox.duplicates, timeout=10)
            seen = original.net.duplicate_key
            assert seen is not None and seen["peer"] in {n.key.hex() for n in cluster.nodes[1:]}
            assert any("another process is running with this key" in r.getMessage() for r in caplog.records)
            # the peer saw the sessions of one key replace each other and says so too
            await wait_until(lambda: any("keep replacing each other" in r.getMessage() for r in caplog.records),
                             timeout=10)
            # no flapping: over 3 s each side redials a peer at most once per backoff
            link = original.net._links[peer.key]
            before = link.connects
            await asyncio.sleep(3.0)
            assert link.connects - before <= 4, link.connects - before
        finally:
            await twin.net.stop()


async def test_a_normal_reconnect_is_not_a_duplicate_key():
    async with Cluster.build(3) as cluster:
        a, b = cluster.nodes[0], cluster.nodes[1]
        await b.net.stop()  # the peer goes away and comes back: a new session, not a second process
        b2 = cluster.make_node(b.signer, b.port)
        cluster.nodes[1] = b2
        await b2.net.start()
        await wait_until(cluster.fully_connected, timeout=10)
        assert a.net.duplicate_key is None and not a.inbox.duplicates
        assert b2.net.duplicate_key is None and not b2.inbox.duplicates
