"""Crash-test writer: commits certified blocks of transfers to a LevelDB chain until killed.

Run as ``python crash_writer.py <db path> [max_height]``. It resumes from whatever head
the store holds, prints ``ready <height>`` once open and ``committed <height>`` after each
commit returns (the batch is synced by then), and never stops on its own before
max_height. tests/integration/test_store_crash.py SIGKILLs it at random moments.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from genesis.testnet import make_testnet  # noqa: E402
from ledger import accounts  # noqa: E402
from ledger.crypto import Signer  # noqa: E402
from ledger.encoding import sha256  # noqa: E402
from ledger.store.leveldb import LevelDBStore  # noqa: E402
from ledger.tx import make_tx  # noqa: E402

TXS_PER_BLOCK = 24


def testnet():
    return make_testnet(n_orgs=4, n_validators=4, chain_id="cxl-crash")


def block_txs(net, chain):
    """Deterministic per height: transfers among funded accounts, some to new addresses,
    and one overspend per block (a failed receipt that still consumes a nonce)."""
    h = chain.height + 1
    senders = [net.admins[o] for o in sorted(net.admins)] + [net.operators[o] for o in sorted(net.operators)]
    state = chain.state()
    nonces = {s.address: accounts.next_nonce(state, s.address) for s in senders}
    txs = []
    for i in range(TXS_PER_BLOCK):
        s = senders[(h + i) % len(senders)]
        if i % 3 == 0:
            to = Signer(sha256(b"sink/%d" % ((h * 7 + i) % 50))).address
        else:
            to = senders[(h * 3 + i) % len(senders)].address
        amount = 10**15 if i == TXS_PER_BLOCK - 1 else 1 + (h * 31 + i) % 1000
        txs.append(make_tx(s, chain.chain_id, nonces[s.address], "transfer", {"to": to, "amount": amount}))
        nonces[s.address] += 1
    return txs


def main(argv: list[str]) -> int:
    path = argv[1]
    max_height = int(argv[2]) if len(argv) > 2 else 10**9
    net = testnet()
    store = LevelDBStore(path)
    chain = net.chain(store)
    print(f"ready {chain.height}", flush=True)
    while chain.height < max_height:
        last_cert = chain.get_cert(chain.height) if chain.height else None
        block, _ = chain.build_block(
            block_txs(net, chain), time_ms=chain.head.time_ms + 1000, view=0,
            proposer=net.validators[chain.height % 4].public_key, last_cert=last_cert,
        )
        result = chain.validate_block(block)
        chain.commit_block(block, net.certify(chain, block), result)
        print(f"committed {chain.height}", flush=True)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
