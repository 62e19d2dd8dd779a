"""Governance changes on a running network of four validators in one process (real p2p,
real LevelDB), with no restart but the one an operator must make for a key or address
change: consensus parameters (rotation_blocks, view_timeout_ms) switch on every node at
the same height; update_validator rotates a validator's key and moves its p2p endpoint in
one proposal, the peers drop the old key, dial the new address and count the new key's
votes."""

from __future__ import annotations

import aiohttp
import pytest

from consensus.state import primary_index
from ledger import governance
from ledger.crypto import Signer
from ledger.encoding import sha256
from ledger.keystore import write_key
from ledger.tx import make_tx

from tests.integration.test_node_multi import _free_ports, net_homes, start, submit, until  # noqa: F401

pytestmark = pytest.mark.slow

NEW_KEY = Signer(sha256(b"live-governance rotated node key"))


class Driver:
    """Transactions from the organisations' admins, nonces counted here."""

    def __init__(self, net, session, nodes):
        self.net, self.s, self.nodes = net, session, nodes
        self.nonces: dict[str, int] = {}

    def tx(self, org: str, kind: str, payload: dict):
        signer = self.net.admins[org]
        n = self.nonces.get(org, 0)
        self.nonces[org] = n + 1
        return make_tx(signer, self.net.doc["chain_id"], n, kind, payload)

    async def commit(self, stx, nodes=None, what="commit"):
        nodes = nodes or self.nodes
        await submit(self.s, nodes[0], stx)
        await until(lambda: all(n.chain.get_tx(stx.hash) for n in nodes), timeout=30, what=what)

    async def transfer(self, nodes=None):
        await self.commit(self.tx("org1", "transfer", {"to": self.net.operators["org2"].address, "amount": 1}), nodes)

    async def pass_(self, actions: list[dict]) -> int:
        """Propose (org1) and vote (org2, org3): executed; returns the height that executed it."""
        await self.commit(self.tx("org1", "propose", {"actions": actions}))
        state = self.nodes[0].chain.state()
        pid = state.get(b"gov/next") - 1
        await self.commit(self.tx("org2", "vote", {"proposal": pid, "approve": True}))
        await self.commit(self.tx("org3", "vote", {"proposal": pid, "approve": True}))
        p = governance.get_proposal(self.nodes[0].chain.state(), pid)
        assert p["status"] == "executed", p
        return p["decided_height"]


async def test_consensus_parameters_switch_on_every_node_at_one_height(net_homes):
    net, homes = net_homes
    nodes = [await start(h) for h in homes]
    try:
        async with aiohttp.ClientSession() as s:
            d = Driver(net, s, nodes)
            assert {n.runner.replica.config.rotation_blocks for n in nodes} == {30}
            g = await d.pass_([{"action": "set_param", "args": {"name": "rotation_blocks", "value": 1}},
                               {"action": "set_param", "args": {"name": "view_timeout_ms", "value": 1500}}])
            for _ in range(6):
                await d.transfer()
            # the same nodes, never restarted, run with the new parameters
            assert all((n.runner.replica.config.rotation_blocks, n.runner.replica.config.view_timeout_ms)
                       == (1, 1500) for n in nodes)
            top = min(n.chain.height for n in nodes)
            assert top >= g + 6
            keys = nodes[0].chain.validator_keys
            proposers = set()
            for h in range(1, top + 1):
                header = nodes[0].chain.get_block(h).header
                assert len({n.chain.get_block(h).hash for n in nodes}) == 1  # one chain
                rotation = 30 if h <= g else 1  # the state after g decides g+1
                assert header.proposer == keys[primary_index(header.view, h, 4, rotation)], h
                if h > g:
                    proposers.add(header.proposer)
            assert len(proposers) >= 3  # the pen now moves at every height
    finally:
        for n in nodes:
            await n.stop()


async def test_update_validator_rotates_the_key_and_moves_the_endpoint_in_one_proposal(net_homes):
    net, homes = net_homes
    nodes = [await start(h) for h in homes]
    old_key = nodes[3].signer.public_key
    (new_port,) = _free_ports(1)
    new_url = f"http://127.0.0.1:{new_port}"
    try:
        async with aiohttp.ClientSession() as s:
            d = Driver(net, s, nodes)
            g = await d.pass_([{"action": "update_validator",
                                "args": {"key": old_key.hex(), "new_key": NEW_KEY.public_key.hex(), "p2p": new_url}}])
            while min(n.chain.height for n in nodes[:3]) < g + 2:  # validator_delay 2: a block installs it
                await d.transfer(nodes[:3])
            for n in nodes[:3]:
                assert n.chain.validator_keys[3] == NEW_KEY.public_key
                links = {p["key"]: p["url"] for p in n.transport.peer_status()}
                assert old_key.hex() not in links and links[NEW_KEY.public_key.hex()] == new_url

            # the operator restarts the validator with its new key on its new address
            moved = nodes.pop(3)
            await moved.stop()
            key_file = homes[3] / "node_key.json"
            key_file.unlink()
            write_key(key_file, NEW_KEY)
            nodes.append(await start(homes[3], p2p_port=new_port))
            assert nodes[3].signer.public_key == NEW_KEY.public_key
            await d.transfer()
            await until(lambda: all(p["connected"] for p in nodes[0].transport.peer_status()), timeout=30,
                        what="peers connect to the moved validator")

            # its votes count: with another validator down, the quorum (3 of 4) needs it
            down = nodes.pop(2)
            await down.stop()
            await d.transfer(nodes)
            top = min(n.chain.height for n in nodes)
            cert = nodes[0].chain.get_cert(top)
            assert NEW_KEY.public_key in {k for k, _ in cert.signatures}
            assert len({n.chain.get_block(top).hash for n in nodes}) == 1
    finally:
        for n in nodes:
            await n.stop()
