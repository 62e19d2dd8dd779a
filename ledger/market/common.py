"""Market state keys, id counters, payload checks and the time-ordered due index.

State keys (under the store's ``s/`` prefix; ``<n8>`` is an 8-byte big-endian integer,
``<p4>`` a 4-byte one):

    mkt/next/<kind>                        uint  next id for listing | lease | attestation
    mkt/l/<listing n8>                     map   a listing
    mkt/ls/<lease n8>                      map   a lease (with its remaining escrow)
    mkt/r/<lease n8><period p4>            map   a usage report (one per lease period)
    mkt/s/<lease n8><seq p4>               map   a settlement record: written once, never changed
    mkt/a/<attestation n8>                 map   an attestation
    mkt/ix/lp/<org>/<listing n8>           nil   listings by provider organisation
    mkt/ix/tn/<address>/<lease n8>         nil   leases by tenant
    mkt/ix/pv/<org>/<lease n8>             nil   leases by provider organisation
    mkt/ix/as/<org|listing>/<subject>/<attestation n8>   nil   attestations by subject
    mkt/due/<time n8>/<kind>/<lease n8>[<period p4>]     nil   a time-driven transition due then
    mkt/duec/<time n8 first 5 bytes>       uint  due items in that 2^24 ms (~4.7 h) bucket
    mkt/duen                               uint  due items in total
    mkt/duecur                             uint  block time up to which due items were run

The due index is read without scanning it: the begin-block hook walks the coarse buckets
between the cursor and the block time (one read each, skipping empty ones) and, inside a
non-empty one, the 2^16 ms (~65 s) sub-prefixes ``mkt/due/<time n8 first 6 bytes>``.
`earliest_due_ms` (for heartbeat blocks, ledger/heartbeat.py) reads only the first key.
"""

from __future__ import annotations

from ledger.accounts import MAX_AMOUNT
from ledger.market.errors import reject
from ledger.state import StateView

HOUR_MS = 3_600_000
MAX_TEXT = 64
MAX_LIST = 32
_COARSE = 5     # bytes of the time shared by a coarse bucket (2^24 ms)
_FINE = 6       # bytes of the time shared by a fine bucket (2^16 ms)

DUE_ACCEPT = b"accept"    # a pending lease's acceptance deadline
DUE_END = b"end"          # an active lease's end time
DUE_FINAL = b"final"      # the end of the report window: the lease may be finalised
DUE_REPORT = b"report"    # a usage report's dispute window closes: it confirms


def n8(value: int) -> bytes:
    return value.to_bytes(8, "big")


def p4(value: int) -> bytes:
    return value.to_bytes(4, "big")


def listing_key(lid: int) -> bytes:
    return b"mkt/l/" + n8(lid)


def lease_key(lid: int) -> bytes:
    return b"mkt/ls/" + n8(lid)


def report_prefix(lease_id: int) -> bytes:
    return b"mkt/r/" + n8(lease_id)


def report_key(lease_id: int, period: int) -> bytes:
    return report_prefix(lease_id) + p4(period)


def settlement_prefix(lease_id: int) -> bytes:
    return b"mkt/s/" + n8(lease_id)


def settlement_key(lease_id: int, seq: int) -> bytes:
    return settlement_prefix(lease_id) + p4(seq)


def attestation_key(aid: int) -> bytes:
    return b"mkt/a/" + n8(aid)


def ix_provider_listing(org: str, lid: int) -> bytes:
    return b"mkt/ix/lp/" + org.encode() + b"/" + n8(lid)


def ix_tenant_lease(address: str, lid: int) -> bytes:
    return b"mkt/ix/tn/" + address.encode() + b"/" + n8(lid)


def ix_provider_lease(org: str, lid: int) -> bytes:
    return b"mkt/ix/pv/" + org.encode() + b"/" + n8(lid)


def ix_subject_prefix(subject_type: str, subject) -> bytes:
    sub = n8(subject) if subject_type == "listing" else str(subject).encode()
    return b"mkt/ix/as/" + subject_type.encode() + b"/" + sub + b"/"


def next_id(state: StateView, kind: str) -> int:
    key = b"mkt/next/" + kind.encode()
    value = state.get(key, 1)
    state.put(key, value + 1)
    return value


def put_once(state: StateView, key: bytes, value) -> None:
    """Append-only records (settlements): a second write to a key is a bug, never allowed."""
    if state.get_raw(key) is not None:
        raise AssertionError(f"append-only key {key!r} written twice")
    state.put(key, value)


# payload checks ---------------------------------------------------------------------
def check_fields(payload: dict, required: set[str], optional: set[str] = frozenset()) -> None:
    if not isinstance(payload, dict):
        raise reject("bad_payload", "payload must be a map")
    missing = sorted(required - set(payload))
    if missing:
        raise reject("bad_payload", f"missing fields: {', '.join(missing)}")
    unknown = sorted(set(payload) - required - set(optional))
    if unknown:
        raise reject("bad_payload", f"unknown fields: {', '.join(unknown)}")


def int_field(payload: dict, name: str, lo: int = 0, hi: int = MAX_AMOUNT) -> int:
    value = payload.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise reject("bad_payload", f"{name} must be an integer in [{lo}, {hi}]")
    return value


def price_field(payload: dict, name: str) -> int:
    value = payload.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_AMOUNT:
        raise reject("bad_amount", f"{name} must be a positive integer of micro-credits")
    return value


def text_field(payload: dict, name: str, max_len: int = MAX_TEXT, allow_empty: bool = False) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or len(value) > max_len or (not value and not allow_empty):
        raise reject("bad_payload", f"{name} must be text of 1-{max_len} characters")
    if any(ord(c) < 0x20 for c in value):
        raise reject("bad_payload", f"{name} must not contain control characters")
    return value


def text_list(payload: dict, name: str, max_items: int = MAX_LIST) -> list[str]:
    """A list of short strings, returned sorted and without duplicates (a canonical set)."""
    value = payload.get(name)
    if not isinstance(value, list) or len(value) > max_items:
        raise reject("bad_payload", f"{name} must be a list of at most {max_items} strings")
    for item in value:
        text_field({name: item}, name)
    return sorted(set(value))


def bytes_field(payload: dict, name: str, size: int) -> bytes:
    value = payload.get(name)
    if not isinstance(value, bytes) or len(value) != size:
        raise reject("bad_payload", f"{name} must be {size} bytes")
    return value


def id_field(payload: dict, name: str) -> int:
    return int_field(payload, name, 1, 2**63 - 1)


# the due index ------------------------------------------------------------------------
def due_key(time_ms: int, kind: bytes, lease_id: int, period: int | None = None) -> bytes:
    key = b"mkt/due/" + n8(time_ms) + b"/" + kind + b"/" + n8(lease_id)
    return key if period is None else key + p4(period)


def _coarse_key(time_ms: int) -> bytes:
    return b"mkt/duec/" + n8(time_ms)[:_COARSE]


def schedule(state: StateView, now_ms: int, time_ms: int, kind: bytes, lease_id: int, period: int | None = None) -> None:
    """Add a due item. It must lie in the future: the hook of this block has already run,
    and never having due-by-now items appear mid-hook is what lets it read each once."""
    if time_ms <= now_ms:
        raise AssertionError(f"due item {kind!r} for lease {lease_id} at {time_ms} is not after {now_ms}")
    key = due_key(time_ms, kind, lease_id, period)
    if state.get_raw(key) is not None:
        return
    total = state.get(b"mkt/duen", 0)
    if total == 0:
        # nothing was due, so the hook kept no cursor: everything up to now has been run
        state.put(b"mkt/duecur", now_ms)
    state.put(b"mkt/duen", total + 1)
    ck = _coarse_key(time_ms)
    state.put(ck, state.get(ck, 0) + 1)
    state.put(key, None)


def unschedule(state: StateView, time_ms: int, kind: bytes, lease_id: int, period: int | None = None) -> None:
    key = due_key(time_ms, kind, lease_id, period)
    if state.get_raw(key) is None:
        return
    state.delete(key)
    total = state.get(b"mkt/duen", 0) - 1
    if total:
        state.put(b"mkt/duen", total)
    else:
        state.delete(b"mkt/duen")
    ck = _coarse_key(time_ms)
    left = state.get(ck, 0) - 1
    if left:
        state.put(ck, left)
    else:
        state.delete(ck)


def parse_due(key: bytes) -> tuple[int, bytes, int, int | None]:
    """(time, kind, lease id, period or None) of a due key."""
    rest = key[len(b"mkt/due/"):]
    time_ms = int.from_bytes(rest[:8], "big")
    kind, ids = rest[9:].split(b"/", 1)
    lease_id = int.from_bytes(ids[:8], "big")
    period = int.from_bytes(ids[8:12], "big") if len(ids) == 12 else None
    return time_ms, kind, lease_id, period


def due_items(state: StateView, now_ms: int):
    """Yield due items (time <= now) in key order, reading only buckets that hold some.

    Each item is read once: `schedule` only accepts future times, so processing an item
    never adds one that is already due. The consumer unschedules what it is given.
    """
    total = state.get(b"mkt/duen", 0)
    if not total:
        return
    cursor = state.get(b"mkt/duecur", now_ms)
    start = cursor + 1 if cursor < now_ms else now_ms
    coarse_span = 1 << (8 * (8 - _COARSE))
    fine_span = 1 << (8 * (8 - _FINE))
    coarse = start - start % coarse_span
    while coarse <= now_ms:
        if state.get(_coarse_key(coarse), 0):
            fine = max(coarse, start - start % fine_span)
            while fine < coarse + coarse_span and fine <= now_ms:
                prefix = b"mkt/due/" + n8(fine)[:_FINE]
                batch = []
                for key, _ in state.iter_raw(prefix):
                    if int.from_bytes(key[8:16], "big") > now_ms:
                        break  # keys are in time order
                    batch.append(key)
                for key in batch:
                    if state.get_raw(key) is not None:  # not unscheduled by an earlier item
                        yield parse_due(key)
                fine += fine_span
        coarse += coarse_span
    state.put(b"mkt/duecur", now_ms)


def earliest_due_ms(state: StateView) -> int | None:
    """The time of the earliest item in the due index, or None when it is empty.

    Reads one key (the index is in time order), never the index: heartbeat checks run
    before every empty block (ledger/heartbeat.py). After a block's hook has run, every
    item left lies after that block's time.
    """
    if not state.get(b"mkt/duen", 0):
        return None
    first = state.first_raw(b"mkt/due/")
    return None if first is None else parse_due(first[0])[0]
