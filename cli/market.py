"""`cxl listing …`, `cxl lease …`, `cxl attest …`: the capacity market from the command line.

Transaction commands go through `cli.submit` (sign, send, wait, print; a failed receipt
prints its error code and exits 1) and take the standard ``--key --node --json --no-wait
…`` options. Read commands use the node's market API (`node.market_api`).

Units on the command line: money in micro-credits (``--price`` per unit-hour), ``--vcpu``
in vCPUs (``--vcpu 0.5`` is 500 milli-vCPU on chain), ``--memory`` in GiB (stored in MiB),
``--storage`` in GiB, SLA figures in per-mille (1000 = 100 %). See docs/marketplace.md.
"""

from __future__ import annotations

import hashlib
import re
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path

import click

from cli.client import NodeClient, NodeError
from cli.common import CliError, client_for, json_option, node_option, print_fields, print_json, print_table
from cli.keys import address_or_key, load_signer
from cli.light import emit, json_doc, light_options, list_note, verified_get
from cli.submit import TxOptions, submit_tx, tx_options
from cli.timeparse import DURATION_HELP, DurationType, format_time, time_option
from ledger.market.leases import CLOSE_REASONS, REJECT_REASONS
from ledger.market.sealing import SealingError, open_access, seal_access
from ledger.market.usage import resolution_bytes

DAY_MS = 86_400_000
# `--expires-in` is a duration everywhere; attestations took bare days before, still read so
ATTESTATION_LIFETIME = DurationType(bare_unit="d", warn_bare=True, min_ms=60_000, max_ms=3650 * DAY_MS)
_HEX = re.compile(r"[0-9a-fA-F]+")


# -- helpers ---------------------------------------------------------------------------------

def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _scaled(value: str, scale: int, option: str, allow_zero: bool = True) -> int:
    """'0.5' with scale 1000 -> 500; whole results only."""
    try:
        d = Decimal(value) * scale
    except InvalidOperation:
        raise click.BadParameter(f"{value!r} is not a number", param_hint=option) from None
    if d != d.to_integral_value() or d < 0 or (d == 0 and not allow_zero):
        raise click.BadParameter(f"{value!r} must be positive and a multiple of 1/{scale}", param_hint=option)
    return int(d)


def _hex_bytes(text: str, size: int | None, option: str) -> bytes:
    text = text.strip().removeprefix("0x")
    if not _HEX.fullmatch(text) or len(text) % 2:
        raise click.BadParameter("expected hex digits", param_hint=option)
    raw = bytes.fromhex(text)
    if size is not None and len(raw) != size:
        raise click.BadParameter(f"expected {size} bytes ({2 * size} hex digits), got {len(raw)}", param_hint=option)
    return raw


def _digest(hex_value: str | None, file: str | None, hex_opt: str, file_opt: str, what: str) -> bytes:
    if (hex_value is None) == (file is None):
        raise click.UsageError(f"give the {what} as {hex_opt} HEX (32 bytes) or {file_opt} FILE (hashed with SHA-256)")
    if file is not None:
        return hashlib.sha256(Path(file).read_bytes()).digest()
    return _hex_bytes(hex_value, 32, hex_opt)


_FIND = {"unknown_listing": "find listings with `cxl listing list`",
         "unknown_lease": "find leases with `cxl lease list --tenant ADDR|KEY` or `--provider ORG`",
         "unknown_attestation": "find attestations with `cxl attest list --org ORG` or `--listing ID`"}


def _get(client: NodeClient, path: str, what: str, params: dict | None = None) -> dict:
    try:
        return client.get(path, params=params)
    except NodeError as exc:
        if exc.status == 404 and exc.code in _FIND:
            raise CliError(f"{exc.message.split(';')[0]} on the node at {client.url}; {_FIND[exc.code]}") from None
        if exc.status == 400 and exc.code == "bad_query":
            raise CliError(f"the node refused the query: {exc.message}") from None
        if exc.status == 404:
            raise CliError(f"the node at {client.url} has no market API ({what}): is it a cxl node?") from None
        raise


def _fmt_res(res: dict) -> str:
    vcpu = Decimal(res["vcpu_milli"]) / 1000
    mem = Decimal(res["memory_mib"]) / 1024
    out = f"{vcpu.normalize():f} vCPU, {mem.normalize():f} GiB RAM, {res['storage_gib']} GiB disk"
    if res.get("gpu_count"):
        out += f", {res['gpu_count']}x {res['gpu_model']}"
    return out


def _credits(micro: int | None) -> str | None:
    if micro is None:
        return None
    return f"{micro:,} ({Decimal(micro) / 10**6:f} credits)"


# -- listings --------------------------------------------------------------------------------

@click.group("listing")
def listing_group() -> None:
    """Offer capacity (provider operators) and browse offers.

    \b
    Units: --price in micro-credits per unit-hour; --vcpu in vCPUs (0.5 = 500 milli-vCPU),
    --memory and --storage in GiB, per unit; SLA figures in per-mille (999 = 99.9 %).
    """


def _term_options(required: bool):
    """Options shared by `listing create` (required ones required) and `listing update` (all optional)."""
    req = required
    opts = [
        click.option("--units", type=click.IntRange(1, 10**9), required=req, help="Units offered."),
        click.option("--vcpu", required=req, metavar="N", help="vCPUs per unit (e.g. 4 or 0.5)."),
        click.option("--memory", "memory_gib", required=req, metavar="GIB", help="Memory per unit in GiB (e.g. 16 or 0.5)."),
        click.option("--storage", "storage_gib", type=click.IntRange(0), default=None if not req else 0,
                     show_default=req, metavar="GIB", help="Disk per unit in GiB."),
        click.option("--gpus", "gpu_count", type=click.IntRange(0, 1024), default=None if not req else 0,
                     show_default=req, help="GPUs per unit."),
        click.option("--gpu-model", default=None, help="GPU model, needed when --gpus > 0 (e.g. H100)."),
        click.option("--region", required=req, help="Region, e.g. eu-west."),
        click.option("--jurisdiction", required=req, help="Jurisdiction, e.g. EU."),
        click.option("--feature", "features", multiple=True,
                     help="A feature (repeatable), e.g. confidential:sev-snp, encrypted-at-rest."),
        click.option("--price", type=click.IntRange(1, 2**62), required=req, metavar="MICRO",
                     help="Price per unit-hour in micro-credits (1,000,000 = 1 credit)."),
        time_option("--available-from", "available_from_ms",
                    help="Start of availability [create default: a minute ago]"),
        time_option("--available-until", "available_until_ms",
                    help="End of availability, e.g. 30d for 30 days from now [create default: now + --available-days]"),
        click.option("--available-days", type=click.IntRange(1, 3650), default=None,
                     help="Availability window length from now, in days [create default: 30]."),
        click.option("--uptime", "uptime_permille", type=click.IntRange(0, 1000), default=999 if req else None,
                     show_default=req, help="SLA uptime target in per-mille."),
        click.option("--penalty", "penalty_permille", type=click.IntRange(0, 1000), default=10 if req else None,
                     show_default=req, help="SLA penalty: per-mille of the period's charge per per-mille point missed."),
        click.option("--penalty-cap", "penalty_cap_permille", type=click.IntRange(0, 1000),
                     default=500 if req else None, show_default=req,
                     help="SLA penalty cap in per-mille of the period's charge."),
        click.option("--payee", metavar="ADDR", help="Who receives payouts (a member of your org) [default: you]."),
    ]

    def decorate(fn):
        for opt in reversed(opts):
            fn = opt(fn)
        return fn

    return decorate


def _terms(p: dict, current: dict | None) -> dict:
    """Payload fields from the options; with `current` (an update) only what changed, maps merged."""
    out: dict = {}
    res_given = {k: p[k] for k in ("vcpu", "memory_gib", "storage_gib", "gpu_count", "gpu_model") if p[k] is not None}
    if current is None or res_given:
        res = dict(current["resources"]) if current else {"storage_gib": 0, "gpu_count": 0, "gpu_model": ""}
        if p["vcpu"] is not None:
            res["vcpu_milli"] = _scaled(p["vcpu"], 1000, "--vcpu", allow_zero=False)
        if p["memory_gib"] is not None:
            res["memory_mib"] = _scaled(p["memory_gib"], 1024, "--memory")
        for k in ("storage_gib", "gpu_count", "gpu_model"):
            if p[k] is not None:
                res[k] = p[k]
        if res.get("gpu_count") and not res.get("gpu_model"):
            raise click.BadParameter("name the GPU model when --gpus > 0", param_hint="--gpu-model")
        out["resources"] = res
    sla_given = {k: p[k] for k in ("uptime_permille", "penalty_permille", "penalty_cap_permille") if p[k] is not None}
    if current is None or sla_given:
        out["sla"] = {**(current["sla"] if current else {}), **sla_given}
    for k in ("units", "region", "jurisdiction", "price", "payee"):
        if p[k] is not None:
            out[k] = p[k]
    if p["features"]:
        out["features"] = sorted(set(p["features"]))
    elif current is None:
        out["features"] = []
    now = _now_ms()
    if p["available_from_ms"] is not None:
        out["available_from_ms"] = p["available_from_ms"]
    elif current is None:
        out["available_from_ms"] = now - 60_000  # a minute back: usable at once whatever the clock skew
    if p["available_until_ms"] is not None:
        out["available_until_ms"] = p["available_until_ms"]
    elif p["available_days"] is not None or current is None:
        out["available_until_ms"] = now + (p["available_days"] or 30) * DAY_MS
    return out


@listing_group.command("create")
@_term_options(required=True)
@tx_options
def listing_create(txopts: TxOptions, **p):
    """List capacity for lease (an operator key of the provider organisation).

    \b
    Example: 4 units of 4 vCPU / 16 GiB / 100 GiB at 0.25 credits per unit-hour:
      cxl listing create --key org1-operator --units 4 --vcpu 4 --memory 16 --storage 100 \\
        --region eu-west --jurisdiction EU --feature confidential:sev-snp --price 250000
    """
    submit_tx(txopts, None, "listing_create", _terms(p, None))


@listing_group.command("update")
@click.argument("listing", type=click.IntRange(1))
@_term_options(required=False)
@tx_options
def listing_update(listing, txopts: TxOptions, **p):
    """Change terms of LISTING; only the options given change (running leases keep their terms).

    Resource and SLA options are merged into the listing's current maps (fetched from the node)."""
    maps = ("vcpu", "memory_gib", "storage_gib", "gpu_count", "gpu_model", "uptime_permille", "penalty_permille",
            "penalty_cap_permille")
    current = {"resources": {}, "sla": {}}
    if any(p[k] is not None for k in maps):
        current = _get(txopts.client(), f"/v1/listings/{listing}", "listing")
    payload = _terms(p, current)
    if not payload:
        raise click.UsageError("say what to change, e.g. --price 300000 or --units 8")
    submit_tx(txopts, None, "listing_update", {"listing": listing, **payload})


def _status_command(name: str, tx_type: str, doc: str):
    @listing_group.command(name, help=doc)
    @click.argument("listing", type=click.IntRange(1))
    @tx_options
    def cmd(listing, txopts: TxOptions):
        submit_tx(txopts, None, tx_type, {"listing": listing})

    return cmd


_status_command("pause", "listing_pause", "Stop new leases of LISTING until `cxl listing resume`; running leases go on.")
_status_command("resume", "listing_resume", "Accept new leases of a paused LISTING again.")
_status_command("withdraw", "listing_withdraw", "Withdraw LISTING for good (final); running leases go on to their end.")


def _listing_row(item: dict) -> list:
    sla = item["sla"]
    return [item["id"], item["provider"], item["region"], item["jurisdiction"], _fmt_res(item["resources"]),
            f"{item['available_units']}/{item['units']}", item["price"], f"{sla['uptime_permille']}‰",
            ",".join(item["features"]) or "-", item["status"]]


def _page_hint(page: dict, option: str = "--cursor") -> None:
    if page.get("next_cursor") is not None:
        click.echo(f"(more: add {option} {page['next_cursor']})")


@listing_group.command("list")
@click.option("--region")
@click.option("--jurisdiction")
@click.option("--feature", "features", multiple=True, help="Required feature (repeatable: all must be listed).")
@click.option("--provider", metavar="ORG", help="Only this provider organisation.")
@click.option("--min-vcpu", metavar="N", help="At least N vCPUs per unit.")
@click.option("--min-memory", metavar="GIB", help="At least this much memory per unit, GiB.")
@click.option("--min-storage", type=click.IntRange(0), metavar="GIB", help="At least this much disk per unit, GiB.")
@click.option("--min-gpus", type=click.IntRange(0), help="At least N GPUs per unit.")
@click.option("--gpu-model")
@click.option("--min-units", type=click.IntRange(0), help="At least N units available.")
@click.option("--max-price", type=click.IntRange(1), metavar="MICRO", help="At most this price per unit-hour.")
@click.option("--attested-by", multiple=True, metavar="ORG",
              help="Only listings with a live attestation by ORG (of each --feature, if given); repeatable.")
@click.option("--status", type=click.Choice(["active", "paused", "withdrawn", "any"]), default="active",
              show_default=True)
@click.option("--all", "include_unavailable", is_flag=True, help="Include listings outside their availability window.")
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
@click.option("--cursor", type=click.IntRange(0), help="Continue after this listing id (from the previous page).")
@node_option
@light_options
@json_option
def listing_list(node_url, as_json, **f):
    """Find listings: every filter given must match (not verified: see `cxl listing show`)."""
    params = {
        "region": f["region"], "jurisdiction": f["jurisdiction"], "provider": f["provider"],
        "feature": ",".join(f["features"]) or None, "attested_by": ",".join(f["attested_by"]) or None,
        "min_vcpu_milli": None if f["min_vcpu"] is None else _scaled(f["min_vcpu"], 1000, "--min-vcpu"),
        "min_memory_mib": None if f["min_memory"] is None else _scaled(f["min_memory"], 1024, "--min-memory"),
        "min_storage_gib": f["min_storage"], "min_gpu_count": f["min_gpus"], "gpu_model": f["gpu_model"],
        "min_units": f["min_units"], "max_price": f["max_price"], "status": f["status"],
        "include_unavailable": "true" if f["include_unavailable"] else None,
        "limit": f["limit"], "cursor": f["cursor"],
    }
    page = _get(client_for(node_url), "/v1/listings", "listings", params)
    list_note("listings", "check one with `cxl listing show ID`")
    if as_json:
        print_json(page)
        return
    if not page["items"]:
        click.echo("no listings match")
        return
    print_table(["ID", "PROVIDER", "REGION", "JURIS.", "PER UNIT", "FREE/UNITS", "PRICE/UNIT-H", "SLA", "FEATURES",
                 "STATUS"], [_listing_row(i) for i in page["items"]])
    _page_hint(page)


def _fetch(what: str):
    return lambda client, path, params: _get(client, path, what, params)


@listing_group.command("show")
@click.argument("listing", type=click.IntRange(1))
@node_option
@light_options
@json_option
def listing_show(listing, node_url, as_json):
    """One listing with its live attestations (the stored listing verified with a genesis file)."""
    item, verified = verified_get(client_for(node_url), f"/v1/listings/{listing}", "listing", listing,
                                  fetch=_fetch("listing"))
    if as_json:
        print_json(json_doc(item, verified))
        return
    sla = item["sla"]
    print_fields([
        ("listing", item["id"]), ("status", item["status"]), ("provider", item["provider"]), ("payee", item["payee"]),
        ("per unit", _fmt_res(item["resources"])), ("units", f"{item['available_units']} free of {item['units']}"),
        ("price", f"{item['price']:,} micro-credits per unit-hour"), ("region", item["region"]),
        ("jurisdiction", item["jurisdiction"]), ("features", ", ".join(item["features"]) or "-"),
        ("available", f"{format_time(item['available_from_ms'])} .. {format_time(item['available_until_ms'])}"),
        ("sla", f"uptime {sla['uptime_permille']}‰, penalty {sla['penalty_permille']}‰ per ‰ missed, "
                f"cap {sla['penalty_cap_permille']}‰"),
    ])
    for a in item.get("attestations", []):
        click.echo(f"attested    #{a['id']} {a['claim']} by {a['issuer']} (until {format_time(a['expires_ms'])})")
    emit(verified)


# -- leases ----------------------------------------------------------------------------------

@click.group("lease")
def lease_group() -> None:
    """Lease capacity (tenants), run it (providers), report, confirm, settle.

    \b
    Flow: tenant `open` (full price escrowed) -> provider `accept` (with access details
    sealed to the tenant) -> tenant `credentials` -> provider `report` per period ->
    tenant `confirm` or `dispute` (-> `sign-resolution` + `resolve`) -> `close`/end ->
    final settlement (automatic; `settle` pays confirmed usage early).
    """


def _lease(client: NodeClient, lease_id: int) -> dict:
    return _get(client, f"/v1/leases/{lease_id}", "lease")


@lease_group.command("open")
@click.argument("listing", type=click.IntRange(1))
@click.option("--units", type=click.IntRange(1, 10**9), default=1, show_default=True)
@click.option("--hours", type=click.IntRange(1, 87_840), required=True, help="Duration from acceptance.")
@click.option("--max-price", type=click.IntRange(1), metavar="MICRO",
              help="Refuse if the listing's price per unit-hour is above this [default: the price the node "
                   "shows now, so a later price rise makes the lease fail instead of costing more].")
@click.option("--require-attested", "require", multiple=True, metavar="CLAIM",
              help="A claim that needs a live attestation about the listing or its provider, "
                   "e.g. confidential:sev-snp (repeatable).")
@click.option("--attested-by", "issuers", multiple=True, metavar="ORG",
              help="Only attestations issued by ORG count (repeatable).")
@tx_options
def lease_open(listing, units, hours, max_price, require, issuers, txopts: TxOptions):
    """Lease UNITS of LISTING for HOURS; units x hours x price is escrowed at once."""
    if max_price is None:
        max_price = _get(txopts.client(), f"/v1/listings/{listing}", "listing")["price"]
    payload: dict = {"listing": listing, "units": units, "hours": hours, "max_price": max_price}
    if require:
        payload["require_attested"] = sorted(set(require))
    if issuers:
        payload["attested_by"] = sorted(set(issuers))
    submit_tx(txopts, None, "lease_open", payload)


def _accept_options(fn):
    opts = [
        click.argument("lease", type=click.IntRange(1)),
        click.option("--access", metavar="TEXT", help="Access details for the tenant (host, user, credentials)."),
        click.option("--access-file", type=click.Path(exists=True, dir_okay=False), help="Read them from a file."),
        click.option("--attestation-digest", metavar="HEX", help="32-byte digest of the platform attestation report."),
        click.option("--attestation-file", type=click.Path(exists=True, dir_okay=False),
                     help="The attestation report; its SHA-256 is posted."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return tx_options(fn)


def _accept(lease, access, access_file, attestation_digest, attestation_file, txopts: TxOptions):
    digest = _digest(attestation_digest, attestation_file, "--attestation-digest", "--attestation-file",
                     "attestation digest")
    if (access is None) == (access_file is None):
        raise click.UsageError("give the tenant's access details with --access TEXT or --access-file FILE")
    plaintext = access.encode() if access is not None else Path(access_file).read_bytes()
    if not plaintext or len(plaintext) > 4096 - 48:
        raise click.BadParameter(f"access details must be 1-{4096 - 48} bytes", param_hint="--access")
    info = _lease(txopts.client(), lease)
    sealed = seal_access(bytes.fromhex(info["tenant_key"]), plaintext)
    submit_tx(txopts, None, "lease_accept", {"lease": lease, "attestation_digest": digest, "sealed_access": sealed})


@lease_group.command("accept")
@_accept_options
def lease_accept(**kw):
    """Accept a pending LEASE and start it (a provider operator key).

    The access details are sealed on this machine to the tenant's key (read from the
    lease), so only the tenant can read them (`cxl lease credentials`)."""
    _accept(**kw)


@lease_group.command("activate")
@_accept_options
def lease_activate(**kw):
    """The same as `cxl lease accept`.

    The chain has no separate activation step: `lease_accept` both accepts and starts the
    lease, carrying the attestation digest and the sealed access details; the lease runs
    from that block. This alias exists for those who think of it as activating."""
    _accept(**kw)


@lease_group.command("reject")
@click.argument("lease", type=click.IntRange(1))
@click.option("--reason", type=click.Choice(REJECT_REASONS), default="other", show_default=True)
@tx_options
def lease_reject(lease, reason, txopts: TxOptions):
    """Decline a pending LEASE (provider); the tenant gets the full escrow back."""
    submit_tx(txopts, None, "lease_reject", {"lease": lease, "reason": reason})


@lease_group.command("close")
@click.argument("lease", type=click.IntRange(1))
@click.option("--reason", type=click.Choice(CLOSE_REASONS), default="no_longer_needed", show_default=True)
@tx_options
def lease_close(lease, reason, txopts: TxOptions):
    """End an active LEASE now (tenant or provider), or cancel a pending one (tenant).

    Usage up to now is still reported and settled; the lease settles finally once every
    period is reported and confirmed (or the report window ends)."""
    submit_tx(txopts, None, "lease_close", {"lease": lease, "reason": reason})


@lease_group.command("settle")
@click.argument("lease", type=click.IntRange(1))
@tx_options
def lease_settle(lease, txopts: TxOptions):
    """Pay confirmed usage of LEASE now, and finalise it if it can be (tenant or provider)."""
    submit_tx(txopts, None, "lease_settle", {"lease": lease})


@lease_group.command("report")
@click.argument("lease", type=click.IntRange(1))
@click.option("--period", type=click.IntRange(0), help="Period to report [default: the lease's next period].")
@click.option("--unit-hours", type=click.IntRange(0), required=True, help="Unit-hours delivered in the period.")
@click.option("--uptime", type=click.IntRange(0, 1000), required=True, metavar="PERMILLE",
              help="Measured uptime in per-mille (e.g. 990 = 99.0 %).")
@tx_options
def lease_report(lease, period, unit_hours, uptime, txopts: TxOptions):
    """Report usage of one period of LEASE (provider operator), once the period is over."""
    if period is None:
        period = _lease(txopts.client(), lease)["next_period"]
    submit_tx(txopts, None, "usage_report",
              {"lease": lease, "period": period, "unit_hours": unit_hours, "uptime_permille": uptime})


def _pending_period(txopts: TxOptions, lease: int, period: int | None) -> int:
    if period is not None:
        return period
    pending = [r["period"] for r in _lease(txopts.client(), lease)["reports"] if r["status"] == "pending"]
    if not pending:
        raise CliError(f"lease {lease} has no usage report awaiting confirmation; see `cxl lease show {lease}`")
    return pending[0]


@lease_group.command("confirm")
@click.argument("lease", type=click.IntRange(1))
@click.option("--period", type=click.IntRange(0), help="[default: the oldest report awaiting confirmation]")
@tx_options
def lease_confirm(lease, period, txopts: TxOptions):
    """Confirm a usage report of LEASE (the tenant)."""
    period = _pending_period(txopts, lease, period)
    submit_tx(txopts, None, "usage_confirm", {"lease": lease, "period": period})


@lease_group.command("dispute")
@click.argument("lease", type=click.IntRange(1))
@click.option("--period", type=click.IntRange(0), help="[default: the oldest report awaiting confirmation]")
@click.option("--reason", required=True, help="Why (1-256 characters).")
@tx_options
def lease_dispute(lease, period, reason, txopts: TxOptions):
    """Dispute a usage report of LEASE (the tenant), before its window ends.

    Settle it with `cxl lease sign-resolution` (the other party) + `cxl lease resolve`,
    or an auditor of a third organisation decides with `cxl lease arbitrate`."""
    if not 1 <= len(reason) <= 256:
        raise click.BadParameter("1-256 characters", param_hint="--reason")
    period = _pending_period(txopts, lease, period)
    submit_tx(txopts, None, "usage_dispute", {"lease": lease, "period": period, "reason": reason})


def _outcome_options(fn):
    opts = [
        click.argument("lease", type=click.IntRange(1)),
        click.argument("period", type=click.IntRange(0)),
        click.option("--unit-hours", type=click.IntRange(0), required=True, help="Agreed unit-hours."),
        click.option("--uptime", type=click.IntRange(0, 1000), required=True, metavar="PERMILLE",
                     help="Agreed uptime in per-mille."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


@lease_group.command("sign-resolution")
@_outcome_options
@click.option("--key", "-k", required=True, metavar="NAME|PATH", help="Your key (tenant or provider operator).")
@click.option("--passphrase-file", type=click.Path(dir_okay=False))
@click.option("--chain-id", help="Chain id [default: fetched from the node].")
@node_option
@json_option
def lease_sign_resolution(lease, period, unit_hours, uptime, key, passphrase_file, chain_id, node_url, as_json):
    """Sign an agreed outcome of a disputed report, for the other party to send.

    Prints your public key and the signature; the other party sends them with
    `cxl lease resolve LEASE PERIOD --unit-hours … --uptime … --counter-signer KEY --counter-signature SIG`."""
    signer = load_signer(key, passphrase_file)
    chain_id = chain_id or client_for(node_url).status()["chain_id"]
    sig = signer.sign(resolution_bytes(chain_id, lease, period, unit_hours, uptime))
    out = {"lease": lease, "period": period, "unit_hours": unit_hours, "uptime_permille": uptime,
           "signer": signer.public_key.hex(), "signature": sig.hex(), "chain_id": chain_id}
    if as_json:
        print_json(out)
        return
    print_fields([("signer", out["signer"]), ("signature", out["signature"])])
    click.echo(f"send with: cxl lease resolve {lease} {period} --unit-hours {unit_hours} --uptime {uptime} "
               f"--counter-signer {out['signer']} --counter-signature {out['signature']} --key <other party's key>")


@lease_group.command("resolve")
@_outcome_options
@click.option("--counter-signer", required=True, metavar="PUBKEY", help="The other party's public key (64 hex digits).")
@click.option("--counter-signature", required=True, metavar="HEX", help="Their signature (`cxl lease sign-resolution`).")
@tx_options
def lease_resolve(lease, period, unit_hours, uptime, counter_signer, counter_signature, txopts: TxOptions):
    """Settle a disputed report with the outcome both parties signed (tenant or provider)."""
    submit_tx(txopts, None, "usage_resolve", {
        "lease": lease, "period": period, "unit_hours": unit_hours, "uptime_permille": uptime,
        "signer": _hex_bytes(counter_signer, 32, "--counter-signer"),
        "signature": _hex_bytes(counter_signature, 64, "--counter-signature")})


@lease_group.command("arbitrate")
@_outcome_options
@tx_options
def lease_arbitrate(lease, period, unit_hours, uptime, txopts: TxOptions):
    """Decide a disputed report (an auditor of an organisation party to neither side)."""
    submit_tx(txopts, None, "usage_arbitrate",
              {"lease": lease, "period": period, "unit_hours": unit_hours, "uptime_permille": uptime})


@lease_group.command("credentials")
@click.argument("lease", type=click.IntRange(1))
@click.option("--key", "-k", required=True, metavar="NAME|PATH", help="The tenant's key.")
@click.option("--passphrase-file", type=click.Path(dir_okay=False))
@node_option
@light_options
@json_option
def lease_credentials(lease, key, passphrase_file, node_url, as_json):
    """Decrypt the access details the provider sealed to the tenant of LEASE (the sealed
    box is verified against the stored lease with a genesis file, like `lease show`)."""
    info, verified = verified_get(client_for(node_url), f"/v1/leases/{lease}", "lease", lease, fetch=_fetch("lease"))
    if verified is not None and "sealed_access" in verified.not_proven:
        raise CliError(f"lease {lease}: the node's sealed access details are not covered by the proof; "
                       "ask another node or pass --trust-node")
    if not info.get("sealed_access"):
        raise CliError(f"lease {lease} is {info['status']}: no access details yet (the provider posts them with "
                       "`cxl lease accept`)")
    signer = load_signer(key, passphrase_file)
    try:
        plaintext = open_access(signer.seed, bytes.fromhex(info["sealed_access"]))
    except SealingError as exc:
        hint = ""
        if signer.public_key.hex() != info["tenant_key"]:
            hint = (f"; they are sealed to the tenant {info['tenant']}, and this key is {signer.address}: "
                    "use the tenant's key")
        raise CliError(f"cannot open the access details of lease {lease}: {exc.message}{hint} [{exc.code}]") from None
    if as_json:
        print_json(json_doc({"lease": lease, "access": plaintext.decode(errors="replace")}, verified))
        return
    click.echo(plaintext.decode(errors="replace"))
    if verified is not None:  # stdout is the access details alone, so they can be piped
        click.echo(verified.line(), err=True)


@lease_group.command("show")
@click.argument("lease", type=click.IntRange(1))
@node_option
@light_options
@json_option
def lease_show(lease, node_url, as_json):
    """One lease with its usage reports and settlement records (the stored lease verified with a genesis file)."""
    info, verified = verified_get(client_for(node_url), f"/v1/leases/{lease}", "lease", lease, fetch=_fetch("lease"))
    if as_json:
        print_json(json_doc(info, verified))
        return
    print_fields([
        ("lease", info["id"]), ("status", info["status"]), ("listing", info["listing"]),
        ("provider", info["provider"]), ("tenant", info["tenant"]),
        ("terms", f"{info['units']} unit(s) x {info['hours']} h at {info['price']:,} per unit-hour"),
        ("per unit", _fmt_res(info["resources"])), ("total", _credits(info["total"])),
        ("escrow", _credits(info["escrow"])), ("paid", _credits(info["paid"])),
        ("penalties", _credits(info["penalties"])), ("refunded", _credits(info["refunded"])),
        ("attestations", info["attestations"] or None), ("start/end", f"{format_time(info['start_ms'])} .. {format_time(info['end_ms'])}"
                                                         if info["start_ms"] else None),
        ("closed", f"{info['close_reason']} by {info['closed_by']}" if info["closed_by"] else None),
        ("access", "sealed to the tenant (`cxl lease credentials`)" if info["sealed_access"] else None),
    ])
    if info["reports"]:
        click.echo("\nusage reports:")
        print_table(["PERIOD", "UNIT-H", "UPTIME‰", "STATUS", "BY", "CHARGE", "PENALTY"],
                    [[r["period"], r["unit_hours"], r["uptime_permille"], r["status"], r["confirmed_by"] or "-",
                      r["charge"], r["penalty"]] for r in info["reports"]])
    if info["settlement_records"]:
        click.echo("\nsettlements:")
        print_table(["SEQ", "KIND", "HEIGHT", "PERIODS", "CHARGE", "PENALTY", "PROVIDER PAYOUT", "TENANT REFUND",
                     "ESCROW AFTER"],
                    [[s["seq"], s["kind"], s["height"], s["periods"], s["charge"], s["penalty"], s["provider_payout"],
                      s["tenant_refund"], s["escrow_after"]] for s in info["settlement_records"]])
    emit(verified)


@lease_group.command("list")
@click.option("--tenant", metavar="ADDR|KEY", help="Leases of this tenant (address, or key name/path).")
@click.option("--provider", metavar="ORG", help="Leases of this provider organisation.")
@click.option("--status", type=click.Choice(["pending", "active", "ended", "closed", "settled", "rejected",
                                             "cancelled", "expired"]))
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
@click.option("--cursor", type=click.IntRange(0))
@node_option
@light_options
@json_option
def lease_list(tenant, provider, status, limit, cursor, node_url, as_json):
    """Leases of a tenant or of a provider organisation (give one; not verified: see `cxl lease show`)."""
    if (tenant is None) == (provider is None):
        raise click.UsageError("give --tenant ADDR|KEY or --provider ORG")
    params = {"tenant": None if tenant is None else address_or_key(tenant, "--tenant"), "provider": provider, "status": status,
              "limit": limit, "cursor": cursor}
    page = _get(client_for(node_url), "/v1/leases", "leases", params)
    list_note("leases", "check one with `cxl lease show ID`")
    if as_json:
        print_json(page)
        return
    if not page["items"]:
        click.echo("no leases")
        return
    print_table(["ID", "LISTING", "PROVIDER", "TENANT", "UNITS", "HOURS", "PRICE", "ESCROW", "PAID", "STATUS"],
                [[x["id"], x["listing"], x["provider"], x["tenant"], x["units"], x["hours"], x["price"], x["escrow"],
                  x["paid"], x["status"]] for x in page["items"]])
    _page_hint(page)


@lease_group.command("account")
@click.argument("account", metavar="ADDR|KEY")
@node_option
@light_options
@json_option
def lease_account(account, node_url, as_json):
    """Balance of an account and the escrow it holds in open leases (not verified: see `cxl account show`)."""
    address = address_or_key(account, "ADDR|KEY")
    info = _get(client_for(node_url), f"/v1/accounts/{address}/market", "account")
    list_note("escrow totals", "check the balance with `cxl account show ADDR` and each lease with `cxl lease show ID`")
    if as_json:
        print_json(info)
        return
    print_fields([("address", address), ("balance", _credits(info["balance"])),
                  ("escrow", _credits(info["escrow_as_tenant"])),
                  ("open leases", ", ".join(map(str, info["open_leases"])) or "none"),
                  ("at height", info.get("height"))])


# -- attestations ----------------------------------------------------------------------------

@click.group("attest")
def attest_group() -> None:
    """Auditor attestations about provider organisations and listings."""


@attest_group.command("create")
@click.option("--org", metavar="ORG", help="Attest an organisation.")
@click.option("--listing", type=click.IntRange(1), help="Attest a listing.")
@click.option("--claim", required=True, help="The claim, e.g. confidential:sev-snp or jurisdiction:EU.")
@click.option("--evidence-digest", metavar="HEX", help="32-byte digest of the evidence.")
@click.option("--evidence-file", type=click.Path(exists=True, dir_okay=False), help="The evidence; its SHA-256 is posted.")
@click.option("--expires-in", "expires_in_ms", type=ATTESTATION_LIFETIME, default="90d", show_default=True,
              help=f"How long the attestation stays live ({DURATION_HELP}; a bare number, deprecated, is days).")
@time_option("--expires", "expires_ms", help="When it expires, instead of --expires-in")
@tx_options
def attest_create(org, listing, claim, evidence_digest, evidence_file, expires_in_ms, expires_ms, txopts: TxOptions):
    """Attest a claim about an organisation or listing (an auditor key of another organisation)."""
    if (org is None) == (listing is None):
        raise click.UsageError("give the subject: --org ORG or --listing ID")
    evidence = _digest(evidence_digest, evidence_file, "--evidence-digest", "--evidence-file", "evidence")
    submit_tx(txopts, None, "attest", {
        "subject_type": "org" if org is not None else "listing", "subject": org if org is not None else listing,
        "claim": claim, "evidence_digest": evidence,
        "expires_ms": expires_ms if expires_ms is not None else _now_ms() + expires_in_ms})


@attest_group.command("revoke")
@click.argument("attestation", type=click.IntRange(1))
@tx_options
def attest_revoke(attestation, txopts: TxOptions):
    """Revoke ATTESTATION (an auditor of the issuing organisation)."""
    submit_tx(txopts, None, "attest_revoke", {"attestation": attestation})


@attest_group.command("list")
@click.option("--org", metavar="ORG", help="Attestations about this organisation.")
@click.option("--listing", type=click.IntRange(1), help="Attestations about this listing.")
@click.option("--live", is_flag=True, help="Only live ones (not revoked, not expired).")
@node_option
@light_options
@json_option
def attest_list(org, listing, live, node_url, as_json):
    """Attestations about an organisation or a listing (not verified: see `cxl attest show`)."""
    if (org is None) == (listing is None):
        raise click.UsageError("give the subject: --org ORG or --listing ID")
    params = {"subject_type": "org" if org is not None else "listing",
              "subject": org if org is not None else listing, "live": "true" if live else None}
    page = _get(client_for(node_url), "/v1/attestations", "attestations", params)
    list_note("attestation lists", "check one with `cxl attest show ID`")
    if as_json:
        print_json(page)
        return
    if not page["items"]:
        click.echo("no attestations")
        return
    print_table(["ID", "CLAIM", "ISSUER", "SUBJECT", "EXPIRES (UTC)", "LIVE", "EVIDENCE"],
                [[a["id"], a["claim"], a["issuer"], f"{a['subject_type']} {a['subject']}", format_time(a["expires_ms"]),
                  a.get("live"), a["evidence_digest"][:16] + "…"] for a in page["items"]])


@attest_group.command("show")
@click.argument("attestation", type=click.IntRange(1))
@node_option
@light_options
@json_option
def attest_show(attestation, node_url, as_json):
    """One attestation: claim, issuer, subject, evidence digest, expiry (verified with a genesis file)."""
    a, verified = verified_get(client_for(node_url), f"/v1/attestations/{attestation}", "attestation", attestation,
                               fetch=_fetch("attestation"))
    if as_json:
        print_json(json_doc(a, verified))
        return
    print_fields([("attestation", a["id"]), ("claim", a["claim"]), ("issuer", a["issuer"]),
                  ("subject", f"{a['subject_type']} {a['subject']}"), ("evidence digest", a["evidence_digest"]),
                  ("issued", format_time(a["issued_ms"])), ("expires", format_time(a["expires_ms"])),
                  ("revoked", None if a.get("revoked_ms") is None else format_time(a["revoked_ms"])),
                  ("live", a.get("live"))])
    emit(verified)


__all__ = ["listing_group", "lease_group", "attest_group"]
