"""A user-space Ethernet switch between network namespaces that can delay, drop and
partition: `tc netem` and iptables for kernels that have neither (this machine's has no
sch_netem). Run by tests/integration/netns.py as its own process:

    python netswitch.py NS1 NS2 ... HUB

It creates a tap device `eth0` in each namespace (the fd is the switch's: the device goes
away with the switch), prints `ready`, then forwards frames between them, learning MAC
addresses like a bridge. Commands, one JSON object a line on stdin, each answered `ok`:

    {"cmd": "shape", "delay_ms": 100, "jitter_ms": 0, "loss": 0.05}
    {"cmd": "partition", "groups": [[0, 1], [2, 3]]}     # by namespace index
    {"cmd": "heal"}

Shaping and partitions apply between the node namespaces (all but the last, the hub, where
the test's client sits): each frame from one node to another is dropped with probability
`loss`, else delivered after `delay_ms` (± `jitter_ms`, uniform): one-way delay, so a round
trip takes twice that. Frames across a partition vanish (no RST, no ICMP), like DROP.
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import json
import os
import random
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns failed")


def open_tap(namespace: str, name: str = "eth0") -> int:
    """A tap device `name` inside `namespace`; returns its fd (non-blocking)."""
    with open(f"/run/netns/{namespace}") as target, open("/proc/thread-self/ns/net") as home:
        _setns(target.fileno())
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI))
        finally:
            _setns(home.fileno())
    return fd


class Switch:
    def __init__(self, namespaces: list[str], seed: int = 13):
        self.fds = [open_tap(ns) for ns in namespaces]
        self.hub = len(self.fds) - 1
        self.macs: dict[bytes, int] = {}
        self.delay_s = 0.0
        self.jitter_s = 0.0
        self.loss = 0.0
        self.side: dict[int, int] | None = None
        self.rng = random.Random(seed)
        self.loop = asyncio.get_running_loop()
        self.dropped = 0

    def start(self) -> None:
        for port, fd in enumerate(self.fds):
            self.loop.add_reader(fd, self._readable, port)

    def _readable(self, port: int) -> None:
        fd = self.fds[port]
        for _ in range(64):  # bounded: other ports get their turn
            try:
                frame = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                return
            if len(frame) < 14:
                continue
            src, dst = frame[6:12], frame[0:6]
            self.macs[src] = port
            out = self.macs.get(dst) if not dst[0] & 1 else None
            targets = [out] if out is not None else [p for p in range(len(self.fds)) if p != port]
            for target in targets:
                if target != port:
                    self._forward(port, target, frame)

    def _forward(self, src: int, dst: int, frame: bytes) -> None:
        if self.hub in (src, dst):
            self._write(dst, frame)
            return
        if self.side is not None and self.side.get(src) != self.side.get(dst):
            self.dropped += 1
            return
        if self.loss and self.rng.random() < self.loss:
            self.dropped += 1
            return
        delay = self.delay_s + (self.rng.uniform(-self.jitter_s, self.jitter_s) if self.jitter_s else 0.0)
        if delay <= 0:
            self._write(dst, frame)
        else:
            self.loop.call_later(delay, self._write, dst, frame)

    def _write(self, port: int, frame: bytes) -> None:
        try:
            os.write(self.fds[port], frame)
        except OSError:  # device queue full or going away: a lost frame, as on a wire
            self.dropped += 1

    def command(self, line: str) -> str:
        msg = json.loads(line)
        cmd = msg.get("cmd")
        if cmd == "shape":
            self.delay_s = msg.get("delay_ms", 0) / 1000
            self.jitter_s = msg.get("jitter_ms", 0) / 1000
            self.loss = float(msg.get("loss", 0))
        elif cmd == "partition":
            self.side = {i: g for g, members in enumerate(msg["groups"]) for i in members}
        elif cmd == "heal":
            self.side = None
        elif cmd == "stats":
            return json.dumps({"dropped": self.dropped})
        else:
            return f"error: unknown command {cmd!r}"
        return "ok"


async def main(namespaces: list[str]) -> None:
    switch = Switch(namespaces)
    switch.start()
    reader = asyncio.StreamReader()
    await switch.loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    while line := await reader.readline():
        try:
            answer = switch.command(line.decode())
        except (ValueError, KeyError, TypeError) as exc:
            answer = f"error: {exc}"
        print(answer, flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: netswitch.py NODE_NS... HUB_NS")
    asyncio.run(main(sys.argv[1:]))
