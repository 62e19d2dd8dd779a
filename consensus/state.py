"""Configuration, the persisted signing record, test-only fault switches, and the
leader schedule."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.block import HASH_SIZE
from ledger.encoding import decode, encode, expect, expect_array
from ledger.errors import EncodingError

from consensus.messages import PreparedCert, prepared_from_wire, prepared_to_wire

PHASES = ("vc", "nv", "pp", "prepare", "commit")


@dataclass(frozen=True, slots=True)
class ConsensusConfig:
    view_timeout_ms: int = 2000
    rotation_blocks: int = 30  # a new leader every R heights; 0 disables
    max_future_heights: int = 64  # messages further ahead are dropped (but we fetch)
    max_timeout_ms: int = 60_000  # doubling stops here
    max_buffered: int = 512  # future messages kept for replay, per sender
    max_buffered_bytes: int = 8 * 1024 * 1024  # and their bytes per sender (two of the largest blocks)
    slow_proposal_ms: int = 0  # a primary's proposal later than this is a strike; 0: view_timeout_ms // 2


@dataclass(frozen=True, slots=True)
class Faults:
    """Deliberate bugs, all off by default, so tests can show the simulator finds them."""

    commit_on_2f: bool = False  # decide on 2f matching commits instead of 2f+1
    ignore_prepared: bool = False  # a new primary proposes afresh, ignoring prepared certs
    forget_signed_on_restart: bool = False  # start from nothing instead of the persisted record
    unscoped_new_view: bool = False  # rule R1 off: NewViews also from ViewChanges about lower heights
    enter_lower_new_view: bool = False  # rule R2 off: enter a NewView for a lower height while prepared
    wait_for_claimed_height: bool = False  # a new primary waits for any height a ViewChange claims (issue 9.1)
    invalid_for_height: bool = False  # an invalid verdict (and the first bytes seen) kept for the height (9.2)
    # The timers before issue 13.2: progress timed from the first pending tx only, never
    # restarted by visible progress; a late PrePrepare a strike at the deadline, even when
    # others had it long before us (the slow link was ours); every commit resets the
    # timeout to T, also right after heights that needed view changes
    fixed_progress_timer: bool = False


@dataclass(frozen=True, slots=True)
class SignedState:
    """What must survive a restart, persisted (fsync) before any message it covers is sent.

    `height`/`view` is the position of the last signature and `phases` what was signed
    there (phase -> block hash, or digest for "vc"/"nv"); positions only move forward,
    so nothing at or below an older position is ever signed again. The rest is the view
    the replica is in (or changing to), the constraint its NewView put on that view,
    and its highest prepared certificate (needed for a truthful ViewChange).
    """

    height: int = 0
    view: int = 0
    phases: tuple[tuple[str, bytes], ...] = ()
    current_view: int = 0
    changing: bool = False
    nv_height: int = 0
    nv_hash: bytes | None = None
    prepared: PreparedCert | None = None

    def signed(self, phase: str) -> bytes | None:
        for p, digest in self.phases:
            if p == phase:
                return digest
        return None

    def to_wire(self) -> list:
        return [self.height, self.view, [[p, d] for p, d in self.phases], self.current_view, self.changing,
                self.nv_height, self.nv_hash, None if self.prepared is None else prepared_to_wire(self.prepared)]

    @classmethod
    def from_wire(cls, w) -> "SignedState":
        expect_array(w, 8, "signed_state")
        ints = [expect(w[i], int, "signed_state field") for i in (0, 1, 3, 5)]
        if min(ints) < 0:
            raise EncodingError("signed_state: negative field")
        phases = []
        for item in expect(w[2], list, "signed_state.phases"):
            expect_array(item, 2, "signed_state.phase")
            if item[0] not in PHASES:
                raise EncodingError(f"signed_state: unknown phase {item[0]!r}")
            phases.append((item[0], expect(item[1], bytes, "signed_state.digest")))
        nv_hash = w[6]
        if nv_hash is not None and (not isinstance(nv_hash, bytes) or len(nv_hash) != HASH_SIZE):
            raise EncodingError("signed_state.nv_hash: expected 32 bytes or nil")
        return cls(ints[0], ints[1], tuple(phases), ints[2], expect(w[4], bool, "signed_state.changing"),
                   ints[3], nv_hash, None if w[7] is None else prepared_from_wire(w[7]))

    def encode(self) -> bytes:
        return encode(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> "SignedState":
        return cls.from_wire(decode(data))


def primary_index(view: int, height: int, n: int, rotation_blocks: int) -> int:
    """Index of the primary of `view` at `height`: validators[(view + epoch) mod n].

    The epoch (height-1)//R moves the pen every R heights without a view change; it is
    a function of height alone, so replicas that decided the previous block in
    different views still agree on who leads next.
    """
    epoch = (height - 1) // rotation_blocks if rotation_blocks > 0 else 0
    return (view + epoch) % n
