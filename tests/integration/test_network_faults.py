"""Fault tests on a real 4-validator localnet: every validator is its own OS process
(`cxl node start --home H`), talking over the real p2p transport on 127.0.0.1.

Perturbations in the spirit of the CometBFT e2e suite and Jepsen's Tendermint tests:
kill (SIGKILL) a backup or the primary, pause (SIGSTOP) the primary, restart all four
at once, wipe one node's data directory; and the same network over mutual TLS. After
each, the checks a user cares about:

* every transaction the network acknowledged as committed is committed, in the same
  block, on every node (`GET /v1/txs/{hash}` on all of them);
* all nodes report the identical block (hash, parent, state root) at every common
  height (`GET /v1/blocks/{h}`): no fork;
* no node reports evidence of a validator signing two different messages;
* a node that came back is in the same view as the others (it takes part again, rather
  than only following the chain by fetching blocks).

Views time out after 1 s in these genesis files, so a view change costs about a second.
"""

from __future__ import annotations

import re
import time

import pytest

from ledger.keystore import load_key
from ledger.tx import make_tx

from netharness import (LocalNet, Workload, check_acked_everywhere, check_no_evidence,
                        check_same_chain, check_same_view)

pytestmark = pytest.mark.slow

PARAMS = {"view_timeout_ms": 1000, "block_interval_ms": 20}


@pytest.fixture
def net(request, tmp_path):
    slot = sum(map(ord, request.node.name))  # a different port range for every test
    n = LocalNet(tmp_path / "net", 4, params=PARAMS, slot=slot)
    try:
        n.start_all()
        n.wait_ready()
        yield n
    finally:
        n.close()


def primary_of(net: LocalNet, asking: int) -> int:
    key = net.status(asking)["primary"]
    keys = [x["node_key"]["public_key"] for x in net.nodes]
    return keys.index(key)


def check_all(net: LocalNet, load: Workload, nodes: list[int] | None = None, min_height: int = 0) -> int:
    top = check_same_chain(net, nodes, min_height=min_height)
    check_acked_everywhere(net, load.acked, nodes)
    check_no_evidence(net, nodes)
    check_same_view(net, nodes)
    return top


def test_txs_sent_to_any_node_commit_on_all_with_identical_blocks(net):
    load = Workload(net)
    load.run(rounds=5)  # each round: one transfer per funded key, spread over all four APIs
    assert len(load.acked) == 5 * len(load.signers)
    top = check_all(net, load)
    assert top >= 5
    roots = {net.status(i)["state_root"] for i in range(4)}
    assert len(roots) == 1


def test_killed_backup_does_not_stop_progress_and_catches_up(net):
    load = Workload(net)
    load.run(rounds=2)
    backup = (primary_of(net, 0) + 1) % 4
    net.kill(backup)
    others = [i for i in range(4) if i != backup]
    load.run(rounds=3, nodes=others)
    top_without = check_all(net, load, others)

    net.start(backup)
    net.wait_ready([backup])
    load.run(rounds=2)  # traffic at heights beyond its own makes it fetch what it missed
    check_all(net, load, list(range(4)), min_height=top_without + 1)


def test_killed_primary_view_change_and_progress(net):
    load = Workload(net)
    load.run(rounds=2)
    primary = primary_of(net, 0)
    view_before = net.status(0)["view"]
    others = [i for i in range(4) if i != primary]
    pending = load.submit_round(nodes=others)
    net.kill(primary)  # with transactions in flight
    load.confirm(pending, timeout=30)
    load.run(rounds=2, nodes=others)
    for i in others:
        st = net.status(i)
        assert st["view"] > view_before and st["primary"] != net.nodes[primary]["node_key"]["public_key"]
        text = net.metrics(i)
        assert "cxl_view_changes_total" in text and "cxl_view_changes_total 0.0" not in text
    top = check_all(net, load, others)

    net.start(primary)  # the old primary comes back as a backup and catches up
    net.wait_ready([primary])
    load.run(rounds=2)
    check_all(net, load, list(range(4)), min_height=top + 1)


def test_paused_primary_is_replaced_and_rejoins_after_resume(net):
    load = Workload(net)
    load.run(rounds=2)
    primary = primary_of(net, 0)
    others = [i for i in range(4) if i != primary]
    net.pause(primary)  # SIGSTOP: its sockets stay open, it just stops answering
    try:
        load.run(rounds=3, nodes=others)
        top = check_all(net, load, others)
        assert all(net.status(i)["view"] >= 1 for i in others)
    finally:
        net.resume(primary)
    load.run(rounds=3)
    check_all(net, load, list(range(4)), min_height=top + 1)


def test_all_four_killed_and_restarted_at_once_resume_without_fork(net):
    load = Workload(net)
    load.run(rounds=3)
    heads_before = {i: net.status(i)["head_hash"] for i in range(4)}
    height_before = min(net.status(i)["height"] for i in range(4))
    pending = load.submit_round()  # in flight when the power goes
    for i in range(4):
        net.kill(i)
    net.start_all()
    net.wait_ready()
    for i in range(4):  # nothing committed was lost: each restarts at or above its old head
        assert net.status(i)["height"] >= height_before, (heads_before, net.diagnose())
    load.confirm(pending, timeout=30)
    load.run(rounds=3)
    check_all(net, load, list(range(4)), min_height=height_before + 1)


def test_wiped_data_dir_resyncs_without_double_signing(net):
    load = Workload(net)
    load.run(rounds=4)
    victim = primary_of(net, 0)  # the node that signed the most: proposals as well as votes
    net.kill(victim)
    net.wipe_data(victim)  # keys and config stay: the same validator, with no memory of what it signed
    others = [i for i in range(4) if i != victim]
    load.run(rounds=2, nodes=others)
    top = check_all(net, load, others)

    net.start(victim)
    net.wait_ready([victim])
    # a transaction it can include at once (an unused key: nonce 0 is ready at any height),
    # sent to it alone: a node replaying from genesis would propose it at height 1, view 0,
    # where it proposed another block before the wipe: a second signature at one position
    auditor = load_key(net.manifest["orgs"][1]["keys"]["auditor"]["path"])
    probe = make_tx(auditor, net.chain_id, 0, "transfer", {"to": auditor.address, "amount": 0})
    net.submit(victim, [probe.raw])
    deadline = time.monotonic() + 30
    log_file = net.homes[victim] / "node.log"
    while time.monotonic() < deadline:  # load until it is back: it waits for one block committed without it
        load.run(rounds=1)
        if net.status(victim)["height"] > top and "before signing anything" in log_file.read_text():
            break
    check_all(net, load, list(range(4)), min_height=top + 1)
    load.run(rounds=2)  # and it takes part again: the chain keeps going with it
    check_all(net, load, list(range(4)))
    # what it signed since the restart: nothing at a height that was decided before it
    log = (net.homes[victim] / "node.log").read_text().split("node started")[-1]
    replayed = [int(h) for h in re.findall(r"proposing block (\d+) view", log) if int(h) <= top]
    assert not replayed, f"the wiped node proposed again at decided heights {replayed}"


def test_mutual_tls_network_commits_and_survives_a_restart(tmp_path):
    # every validator with p2p_tls on (certificates derived from and pinned to node keys)
    net = LocalNet(tmp_path / "tls", 4, params=PARAMS, slot=7919, config={"p2p_tls": True})
    try:
        net.start_all()
        net.wait_ready()
        load = Workload(net)
        load.run(rounds=2)
        net.kill(2)
        load.run(rounds=2, nodes=[0, 1, 3])
        net.start(2)
        net.wait_ready([2])
        load.run(rounds=2)
        check_all(net, load, list(range(4)))
        log = (net.homes[0] / "node.log").read_text()
        assert "(tls)" in log and "(plain)" not in log
    finally:
        net.close()


def test_wiped_node_restarted_at_once_waits_for_a_block_before_signing(net):
    """No "wait one block" by hand: the wiped primary is started again straight away, with
    a transaction it could propose at once. It syncs from f+1 peers, finds it has no signing
    record, and signs nothing at the height after its head (where it may have signed
    before the wipe) until the others have committed that height without it."""
    load = Workload(net)
    load.run(rounds=4)
    victim = primary_of(net, 0)
    others = [i for i in range(4) if i != victim]
    net.kill(victim)
    top = max(net.status(i)["height"] for i in others)
    net.wipe_data(victim)
    net.start(victim)  # at once: the others have committed nothing since it stopped
    net.wait_ready([victim])
    auditor = load_key(net.manifest["orgs"][1]["keys"]["auditor"]["path"])
    probe = make_tx(auditor, net.chain_id, 0, "transfer", {"to": auditor.address, "amount": 0})
    net.submit(victim, [probe.raw])
    deadline = time.monotonic() + 30
    log_file = net.homes[victim] / "node.log"
    while time.monotonic() < deadline:
        load.run(rounds=1, nodes=others)
        if net.status(victim)["height"] > top + 1 and "before signing anything" in log_file.read_text():
            break
    load.run(rounds=2)  # and it takes part again
    check_all(net, load, list(range(4)), min_height=top + 2)
    log = (net.homes[victim] / "node.log").read_text().split("node started")[-1]
    assert f"signing nothing until height {top + 1} is committed without this node" in log
    early = [int(h) for h in re.findall(r"proposing block (\d+) view", log) if int(h) <= top + 1]
    assert not early, f"the wiped node proposed at heights {early}, where it may have signed before"
