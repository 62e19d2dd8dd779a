"""A real node on its own event loop in a daemon thread, so blocking CLI calls
(click's CliRunner, urllib) in a test can reach it over real HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path

from click.testing import CliRunner

from cli.main import cli
from genesis.schema import save as save_genesis
from ledger.keystore import write_key
from node.app import Node
from node.config import init_home, load_config


class NodeThread:
    """A node on its own event loop in a daemon thread, so blocking CLI calls can reach it."""

    def __init__(self, home: Path):
        self.home = home
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.node = self._run(self._start())
        self.url = self.node.api_url

    def _run(self, coro, timeout=30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> Node:
        node = Node(self.home, config=dataclasses.replace(load_config(self.home), api_port=0))
        await node.start()
        return node

    def stop(self):
        self._run(self.node.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def start_single_validator(net, directory: Path) -> NodeThread:
    """A home for the testnet's first validator under `directory` (genesis.json and
    validator.json beside it), started on a free API port."""
    save_genesis(net.doc, directory / "genesis.json")
    write_key(directory / "validator.json", net.validators[0])
    home = directory / "home"
    init_home(home, directory / "genesis.json", directory / "validator.json", api_port=1)
    return NodeThread(home)


def cxl(*args, code: int = 0) -> str:
    """Run `cxl ARGS` in-process; assert its exit code and return what it printed."""
    r = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == code, f"cxl {' '.join(map(str, args))} -> {r.exit_code}\n{r.output}"
    return r.output
