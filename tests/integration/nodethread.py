"""A real node on its own event loop in a daemon thread, so blocking CLI calls
(click's CliRunner, urllib) in a test can reach it over real HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path

from node.app import Node
from node.config import load_config


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
