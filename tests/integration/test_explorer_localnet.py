"""The explorer's live validator status on a real 4-validator localnet (four `cxl node start`
processes on 127.0.0.1): the overview of node 1 lists every validator, its link from node 1
and whether it signed the head's commit certificate; when a validator is killed, the open
page shows it disconnected and missing from new certificates, without a reload; when node 1
itself stops, the page says it is offline."""

from __future__ import annotations

import pytest

from explorer_browser import Page, browser  # noqa: F401  (browser: a fixture; skips without Chromium)
from netharness import LocalNet, Workload

pytestmark = pytest.mark.slow
PARAMS = {"view_timeout_ms": 1000}


@pytest.fixture
def net(tmp_path):
    n = LocalNet(tmp_path / "net", 4, params=PARAMS, slot=4243, chain_id="cxl-explorer-net")
    try:
        n.start_all()
        n.wait_ready()
        yield n
    finally:
        n.close()


def validator_cells(page: Page, key: str) -> str:
    return page.text(f"#validators tr[data-key='{key}']")


def test_validators_live_status_on_a_localnet(net, browser, tmp_path):
    work = Workload(net)
    work.run(rounds=2)  # some blocks, each certified by a quorum
    status = net.get(0, "/v1/status")
    keys = [v["key"] for v in status["validators"]]
    assert len(keys) == 4
    page = Page(browser, net.apis[0], tmp_path)
    try:
        assert page.rows("#validators", "data-key") == keys
        assert "this node" in validator_cells(page, status["node_key"])
        others = [k for k in keys if k != status["node_key"]]
        page.page.wait_for_function(  # node 1's links to the other three are up
            "ks => ks.every(k => { const t = document.querySelector(`#validators tr[data-key='${k}']`).innerText;"
            " return t.includes('connected') && !t.includes('disconnected'); })",
            arg=others, timeout=20_000)
        head = net.get(0, f"/v1/blocks/{page.page.get_attribute('#view .overview', 'data-height')}")
        signed = {s["key"] for s in head["certificate"]["signatures"]}
        assert len(signed) >= 3  # a quorum of 2f+1 = 3
        for k in keys:
            assert (f"signed #{head['height']}" in validator_cells(page, k)) == (k in signed), k
        page.shot("localnet-overview")

        # validator 4 dies: the open page shows it without a reload
        victim = net.nodes[3]
        victim_key = next(v["key"] for v in status["validators"] if v["api"] == net.apis[3])
        net.kill(3)
        page.page.wait_for_function(
            "k => document.querySelector(`#validators tr[data-key='${k}']`).innerText.includes('disconnected')",
            arg=victim_key, timeout=20_000)
        work.run(rounds=1, nodes=[0, 1, 2])  # the other three still commit
        height = net.get(0, "/v1/status")["height"]
        page.page.wait_for_function(
            "h => document.querySelector(\"#status tr[data-field='height'] td\").textContent === h",
            arg=f"{height:,}", timeout=20_000)
        assert f"missed #{height}" in validator_cells(page, victim_key), victim
        page.shot("localnet-one-down")

        # the page's own node stops: the page says it is offline instead of showing stale data as live
        net.kill(0)
        page.page.wait_for_function("() => document.getElementById('live').innerText.includes('offline')",
                                    timeout=20_000)
    finally:
        page.close()
