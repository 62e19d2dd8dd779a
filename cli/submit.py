"""The one "sign, submit, wait, print" flow every transaction command uses.

A command that sends a transaction (``cxl tx transfer``, ``cxl listing create`` …)::

    @click.command()
    @click.option("--to", ...)
    @tx_options
    def transfer(to, amount, txopts: TxOptions):
        submit_tx(txopts, None, "transfer", {"to": to, "amount": amount})

`tx_options` adds ``--key --passphrase-file --node --nonce --chain-id --expiry
--sign-only --no-wait --timeout --json --dry-run --force`` and passes them as one
`TxOptions`. `submit_tx` opens the key (when no signer is given), fills in chain id and
nonce from the node when they are not given (a nonce for a send is reserved under a local
per-address lock, so parallel calls with one key do not collide: cli/nonces.py), signs,
then either prints the signed transaction (``--sign-only``) or sends it with `send_signed`:

1. a dry run first (``POST /v1/txs/simulate``: executed on the node's current state at the
   next height, nothing committed); if it says the transaction would fail, nothing is sent
   and the command exits 1 with the reason (``--force`` sends anyway, ``--dry-run`` stops
   after printing it). A node without the endpoint is sent to as before;
2. the post, then, unless ``--no-wait``, a long-poll until it is committed, and where it
   landed. A committed transaction whose receipt is not ``ok`` exits 1. With a genesis
   file (``--genesis``, ``$CXL_GENESIS``, `cxl light trust`) the commit is verified: the
   transaction's inclusion proof and receipt against a certified header (cli/light.py),
   printed as ``verified at height H``.
"""

from __future__ import annotations

import base64
import functools
import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable

import click

from cli.client import DEFAULT_NODE_URL, NODE_ENV, NodeClient, NodeError, NodeUnreachable
from cli.common import CliError, format_value, print_json
from cli.light import light_options, verify_commit
from cli.nonces import NonceReservation
from cli.timeparse import seconds_option
from ledger.crypto import Signer
from ledger.tx import SignedTx, make_tx

DEFAULT_WAIT_S = 30.0


@dataclass
class TxOptions:
    key: str | None = None
    passphrase_file: str | None = None
    node_url: str | None = None
    nonce: int | None = None
    chain_id: str | None = None
    expiry: int = 0
    sign_only: bool = False
    wait: bool = True
    timeout: float = DEFAULT_WAIT_S
    as_json: bool = False
    dry_run: bool = False
    force: bool = False
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: dict) -> "TxOptions":
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in params.items() if k in names}
        if "no_wait" in params:
            known["wait"] = not params["no_wait"]
        return cls(**known)

    def client(self) -> NodeClient:
        return NodeClient(self.node_url)


def tx_options(f: Callable | None = None, *, key_required: bool = True) -> Callable:
    """Decorator: the standard transaction options, delivered as ``txopts: TxOptions``."""

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            params = {k: kwargs.pop(k) for k in _OPTION_NAMES}
            kwargs["txopts"] = TxOptions.from_params(params)
            return fn(*args, **kwargs)

        opts = [
            click.option("--key", "-k", required=key_required, metavar="NAME|PATH",
                         help="Signing key: a name in the key directory or a key file."),
            click.option("--passphrase-file", type=click.Path(dir_okay=False),
                         help="Passphrase for an encrypted key [default: $CXL_PASSPHRASE or prompt]."),
            click.option("--node", "node_url", envvar=NODE_ENV, default=DEFAULT_NODE_URL, show_default=True,
                         show_envvar=True, metavar="URL", help="API URL of a node."),
            click.option("--nonce", type=click.IntRange(0),
                         help="Account nonce [default: the node's pending nonce, reserved under a local lock so "
                              "parallel calls with one key do not collide]."),
            click.option("--chain-id", help="Chain id [default: fetched from the node]."),
            click.option("--expiry", type=click.IntRange(0), default=0, show_default=True, metavar="HEIGHT",
                         help="Last block height that may include the transaction (0: never expires)."),
            click.option("--sign-only", is_flag=True,
                         help="Print the signed transaction (base64) instead of sending it; offline this needs --nonce and --chain-id."),
            click.option("--no-wait", is_flag=True, help="Return once the node accepted it, without waiting for the commit."),
            seconds_option("--timeout", default=f"{DEFAULT_WAIT_S:g}s", help="How long to wait for the commit"),
            click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
            *dry_run_options(),
        ]
        wrapper = light_options(wrapper)  # --genesis / --trust-node: verify the commit
        for opt in reversed(opts):
            wrapper = opt(wrapper)
        return wrapper

    return decorate(f) if f is not None else decorate


_OPTION_NAMES = ("key", "passphrase_file", "node_url", "nonce", "chain_id", "expiry", "sign_only", "no_wait",
                 "timeout", "as_json", "dry_run", "force")


def dry_run_options() -> list[Callable]:
    """``--dry-run`` and ``--force``: every command that sends a transaction has both."""
    return [
        click.option("--dry-run", is_flag=True,
                     help="Only execute it against the node's current state and print the receipt it would get; "
                          "send nothing (exit 1 if it would fail)."),
        click.option("--force", is_flag=True,
                     help="Send even if the dry run (done before every send) says it would fail."),
    ]


def _as_options(ctx_or_opts: Any) -> TxOptions:
    if isinstance(ctx_or_opts, TxOptions):
        return ctx_or_opts
    if isinstance(ctx_or_opts, click.Context):
        return TxOptions.from_params(ctx_or_opts.params)
    if isinstance(ctx_or_opts, dict):
        return TxOptions.from_params(ctx_or_opts)
    raise TypeError("submit_tx takes TxOptions, a click.Context or a dict of options")


def fetch_nonce(client: NodeClient, address: str) -> int:
    """The next nonce to use: after the account's transactions already waiting in the
    node's mempool (``pending_nonce``), so back-to-back ``--no-wait`` sends do not collide."""
    try:
        info = client.account(address)
        return int(info.get("pending_nonce", info.get("nonce", 0)))
    except NodeError as exc:
        if exc.status == 404:  # an account the node has never seen starts at nonce 0
            return 0
        raise


def build_tx(opts: TxOptions, signer: Signer, kind: str, payload: dict) -> SignedTx:
    """Sign `kind`/`payload`, asking the node for chain id and nonce only when they are not given."""
    chain_id, nonce = opts.chain_id, opts.nonce
    if chain_id is None or nonce is None:
        client = opts.client()
        try:
            if chain_id is None:
                chain_id = client.status()["chain_id"]
            if nonce is None:
                nonce = fetch_nonce(client, signer.address)
        except NodeUnreachable as exc:
            if opts.sign_only:
                raise CliError(f"{exc.message}\nto sign offline, give both --chain-id and --nonce") from None
            raise
    return make_tx(signer, chain_id, nonce, kind, payload, opts.expiry)


def submit_tx(ctx_or_opts: Any, signer: Signer | None, kind: str, payload: dict) -> dict:
    """Sign and (unless --sign-only) send a transaction; print the outcome; return it as a dict.

    `signer` None opens ``--key`` (with `cli.keys.load_signer`). Raises `CliError` (exit 1)
    when the node refuses the transaction or its receipt is an error.
    """
    opts = _as_options(ctx_or_opts)
    if signer is None:
        from cli.keys import load_signer  # local: keys imports this module's neighbours

        if not opts.key:
            raise click.UsageError("give the signing key with --key NAME|PATH")
        signer = load_signer(opts.key, opts.passphrase_file)
    if opts.sign_only and opts.dry_run:
        raise click.UsageError("--sign-only and --dry-run do not go together: a dry run needs the node")
    if not (opts.sign_only or opts.dry_run or opts.nonce is not None):
        return _send_with_reserved_nonce(opts, signer, kind, payload)
    stx = build_tx(opts, signer, kind, payload)
    if opts.sign_only:
        encoded = base64.b64encode(stx.raw).decode()
        if opts.as_json:
            print_json({"hash": stx.hash.hex(), "tx": encoded, **describe_tx(stx)})
        else:
            click.echo(encoded)
        return {"hash": stx.hash.hex(), "tx": encoded, "status": "signed"}
    return send_signed(opts, stx)


class _CachedNonceAhead(Exception):
    """The dry run says nonce_gap for a nonce taken from the local cache (see cli/nonces.py)."""


def _send_with_reserved_nonce(opts: TxOptions, signer: Signer, kind: str, payload: dict) -> dict:
    """Sign with a nonce reserved under the address's local lock, so that parallel `cxl`
    calls with one key do not collide (cli/nonces.py); the lock is held until the node
    accepted the transaction."""
    client = opts.client()
    chain_id = opts.chain_id or client.status()["chain_id"]
    with NonceReservation(signer.address, chain_id) as reservation:
        nonce = reservation.choose(fetch_nonce(client, signer.address))
        try:
            return send_signed(opts, make_tx(signer, chain_id, nonce, kind, payload, opts.expiry), reservation)
        except _CachedNonceAhead:
            # a transaction this machine sent was dropped before it was committed: trust the node
            reservation.forget()
            nonce = reservation.choose(fetch_nonce(client, signer.address))
            return send_signed(opts, make_tx(signer, chain_id, nonce, kind, payload, opts.expiry), reservation)


def simulate(client: NodeClient, stx: SignedTx) -> dict | None:
    """The node's dry run of `stx`, or None when the node has no dry runs (an older node)."""
    try:
        sim = client.post("/v1/txs/simulate", {"tx": base64.b64encode(stx.raw).decode()})
    except NodeError as exc:
        if exc.status in (404, 405) and exc.code in ("not_found", "method_not_allowed", "http_404", "http_405"):
            return None
        raise
    return sim if isinstance(sim, dict) and "ok" in sim and "code" in sim else None


def why_not(sim: dict) -> str:
    """What a failed dry run says, in one line."""
    result = sim.get("result") or {}
    if sim.get("code") != "ok":
        return f"{sim.get('code')}: {sim.get('message')}"
    if result.get("status") == "failed":
        return f"proposal {result.get('proposal')} would be executed and fail: {result.get('reason')}"
    preview = sim.get("preview") or {}
    return (f"proposal {result.get('proposal')} would fail if approved now: {preview.get('reason')} "
            "(fix the actions, or pass --force if an earlier proposal will make them valid)")


def report_dry_run(sim: dict, as_json: bool) -> None:
    if as_json:
        print_json({**sim, "dry_run": True})
    elif sim["ok"]:
        result = sim.get("result") or {}
        extra = ", ".join(f"{k}={format_value(v)}" for k, v in sorted(result.items()))
        click.echo(f"dry run at height {sim.get('height')}: ok" + (f" ({extra})" if extra else "") +
                   "; nothing was sent")
    else:
        click.echo(f"dry run at height {sim.get('height')}: would fail: {why_not(sim)}; nothing was sent")


def send_signed(ctx_or_opts: Any, stx: SignedTx, reservation: NonceReservation | None = None) -> dict:
    """Dry-run, then post an already signed transaction, then wait and print as `submit_tx` does.

    With `reservation` (the nonce came from cli/nonces.py), it is told once the node accepted
    the transaction, which records the nonce and releases the lock before the wait."""
    opts = _as_options(ctx_or_opts)
    client = opts.client()
    if opts.dry_run or not opts.force:
        try:
            sim = simulate(client, stx)
        except NodeError as exc:
            if isinstance(exc, NodeUnreachable) or opts.dry_run:
                raise
            sim = None  # e.g. too many dry runs at once: the send itself still checks admission
            click.echo(f"note: no dry run ({exc.message} [{exc.code}]); sending without it", err=True)
        if opts.dry_run:
            if sim is None:
                raise CliError(f"the node at {client.url} does not offer dry runs (POST /v1/txs/simulate)")
            report_dry_run(sim, opts.as_json)
            if not sim["ok"]:
                raise click.exceptions.Exit(1)
            return {**sim, "status": "simulated"}
        if sim is not None and not sim["ok"] and sim.get("code") == "nonce_gap" and reservation is not None \
                and reservation.from_cache:
            raise _CachedNonceAhead()
        if sim is not None and not sim["ok"]:
            raise CliError(f"not sent: a dry run at height {sim.get('height')} says it would fail: {why_not(sim)}\n"
                           "nothing was committed and no nonce was used; fix it, or send anyway with --force")
    try:
        accepted = client.submit(base64.b64encode(stx.raw).decode())
    except NodeError as exc:
        if isinstance(exc, NodeUnreachable):
            raise
        raise CliError(f"the node refused the transaction: {exc.message} [{exc.code}]") from None
    if reservation is not None:
        reservation.accepted(stx.tx.nonce)
    tx_hash = accepted.get("hash") or stx.hash.hex()
    if not opts.wait:
        record = {"hash": tx_hash, "status": accepted.get("status", "pending")}
        if opts.as_json:
            print_json(record)
        else:
            click.echo(f"submitted {tx_hash} ({record['status']}); follow it with `cxl tx show {tx_hash}`")
        return record
    record = wait_for_commit(client, tx_hash, opts.timeout)
    verified = verify_commit(client, record)  # with a genesis file: inclusion and result, certified
    if verified is not None:
        record = {**record, "verified": verified.to_json()}
    report(record, opts.as_json)
    if verified is not None and not opts.as_json:
        click.echo(verified.line())
    return record


def wait_for_commit(client: NodeClient, tx_hash: str, timeout: float) -> dict:
    """Long-poll ``GET /v1/txs/{hash}?wait=N`` until committed or `timeout` seconds passed."""
    deadline = time.monotonic() + timeout
    record: dict = {"hash": tx_hash, "status": "pending"}
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            record = client.tx(tx_hash, wait=max(1, min(left, 30)))
        except NodeError as exc:
            if exc.status != 404:  # 404: not visible yet (e.g. gossip to this node lags)
                raise
            time.sleep(min(0.2, max(left, 0)))
            continue
        if record.get("status") == "committed":
            return record
    raise CliError(
        f"transaction {tx_hash} was accepted but not committed within {timeout:g}s; "
        f"check later with `cxl tx show {tx_hash}`"
    )


def receipt_ok(record: dict) -> bool:
    return (record.get("receipt") or {}).get("code") == "ok"


def landed(record: dict) -> str:
    """``committed in block 12 (index 3): ok`` or ``…: insufficient_funds: balance 3 is less than 5``."""
    receipt = record.get("receipt") or {}
    where = f"committed in block {record.get('height')} (index {record.get('index')})"
    if receipt.get("code") == "ok":
        result = receipt.get("result") or {}
        extra = ", ".join(f"{k}={format_value(v)}" for k, v in sorted(result.items()))
        return f"{where}: ok" + (f" ({extra})" if extra else "")
    return f"{where}: failed: {receipt.get('code')}: {receipt.get('message')}"


def report(record: dict, as_json: bool) -> None:
    if as_json:
        print_json(record)
    else:
        click.echo(f"{record.get('hash')} {landed(record)}")
    if record.get("status") == "committed" and not receipt_ok(record):
        raise click.exceptions.Exit(1)


def describe_tx(stx: SignedTx) -> dict:
    t = stx.tx
    return {"chain_id": t.chain_id, "sender": t.sender_address, "public_key": t.sender.hex(), "nonce": t.nonce,
            "type": t.type, "payload": t.payload, "expiry": t.expiry}
