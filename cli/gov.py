"""`cxl gov …`: see and take part in governance.

    cxl gov list [--status open]            proposals, newest first, with their tally
    cxl gov show ID                         one proposal: actions, votes by organisation, threshold
    cxl gov propose ACTION K=V… [ACTION K=V…]   one proposal with one or several actions
    cxl gov vote ID --yes|--no              your organisation's vote
    cxl gov orgs [ORG]                      organisations; one with its members and validators
    cxl gov params                          chain parameters with their allowed ranges

Reads use GET /v1/proposals, /v1/orgs and /v1/params (node/gov_api.py); propose and vote
are ordinary transactions sent through cli/submit.py (dry run first, --dry-run, --force).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from cli.client import NodeClient, NodeError
from cli.common import (CliError, client_for, json_option, node_option, print_fields, print_json, print_table,
                        proposal_blocks_option)
from cli.light import emit, json_doc, light_options, list_note, verified_get
from cli.submit import TxOptions, submit_tx, tx_options
from ledger.errors import TxRejected
from ledger.governance import ACTIONS, MAX_ACTIONS, normalise_action

# Governance arguments that are integers on chain; everything else is text (hex keys included).
INT_ARGS = {"value", "amount", "port"}
STATUSES = ("open", "executed", "failed", "rejected", "expired")


def _fetch(what: str):
    return lambda client, path, params: _get(client, path, what, params)


def _get(client: NodeClient, path: str, what: str, params: dict | None = None) -> dict:
    try:
        return client.get(path, params)
    except NodeError as exc:
        if exc.status == 404 and exc.code in ("not_found", "http_404"):
            raise CliError(f"the node at {client.url} has no governance API ({path}); is it an older version?") from None
        if exc.status == 404:
            raise CliError(f"{what}: {exc.message}") from None
        raise


@click.group("gov")
def gov_group() -> None:
    """Governance: proposals, votes, organisations and chain parameters."""


# -- reads ------------------------------------------------------------------------------------

def _actions_text(actions: list[dict]) -> str:
    return ", ".join(a["action"] for a in actions)


@gov_group.command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only proposals in this status.")
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
@click.option("--cursor", type=click.IntRange(1), help="Continue with proposals older than this id.")
@node_option
@light_options
@json_option
def gov_list(status, limit, cursor, node_url, as_json):
    """Proposals, newest first: status, actions, votes so far and what is needed (not verified: see `gov show`)."""
    page = _get(client_for(node_url), "/v1/proposals", "proposals",
                {"status": status, "limit": limit, "cursor": cursor})
    list_note("proposal lists", "check one with `cxl gov show ID`")
    if as_json:
        print_json(page)
        return
    if not page["items"]:
        click.echo("no proposals" + (f" with status {status}" if status else ""))
        return
    print_table(["ID", "STATUS", "ACTIONS", "YES", "NO", "NEEDED", "EXPIRES", "PROPOSER"],
                [[p["id"], p["status"], _actions_text(p["actions"]), p["tally"]["yes"], p["tally"]["no"],
                  f"{p['tally']['yes_needed']} of {p['tally']['orgs']}", p["expires_height"], p["proposer"]]
                 for p in page["items"]])
    if page.get("next_cursor"):
        click.echo(f"(more: --cursor {page['next_cursor']})")


@gov_group.command("show")
@click.argument("proposal", type=click.IntRange(1))
@node_option
@light_options
@json_option
def gov_show(proposal, node_url, as_json):
    """One proposal: its actions, every organisation's vote, the threshold and expiry.

    With a genesis file the stored proposal (actions, proposer, heights, status) is verified;
    the tally by organisation is derived by the node and said to be."""
    p, verified = verified_get(client_for(node_url), f"/v1/proposals/{proposal}", "proposal", proposal,
                               fetch=_fetch(f"proposal {proposal}"))
    if as_json:
        print_json(json_doc(p, verified))
        return
    t = p["tally"]
    print_fields([
        ("proposal", p["id"]), ("status", p["status"]), ("reason", p.get("reason")),
        ("proposer", p["proposer"]),
        ("tally", f"{t['yes']} yes, {t['no']} no, {t['not_voted']} not voted of {t['orgs']} organisations; "
                  f"{t['yes_needed']} yes needed (threshold {t['threshold']})"),
        ("created", f"height {p['created_height']}"),
        ("expires", f"after height {p['expires_height']} (now {p.get('height')})"),
        ("decided", None if p.get("decided_height") is None else f"height {p['decided_height']}"),
    ])
    click.echo("\nactions:")
    print_table(["#", "ACTION", "ARGS"],
                [[i, a["action"], " ".join(f"{k}={v}" for k, v in sorted(a["args"].items()))]
                 for i, a in enumerate(p["actions"])])
    click.echo("\nvotes:")
    print_table(["ORG", "VOTE"], [[v["org"], v["vote"]] for v in p["votes"]])
    emit(verified)


@gov_group.command("orgs")
@click.argument("org", required=False)
@node_option
@light_options
@json_option
def gov_orgs(org, node_url, as_json):
    """Organisations; with ORG, its members (address, role, key) and validators.

    With ORG and a genesis file, the organisation's id and name are verified (its members and
    validators are listed by the node from other entries, and said to be); the list is not."""
    client = client_for(node_url)
    if org is None:
        page = _get(client, "/v1/orgs", "organisations")
        list_note("organisation lists", "check one with `cxl gov orgs ORG`")
        if as_json:
            print_json(page)
            return
        print_table(["ORG", "NAME", "ADMINS", "OPERATORS", "AUDITORS", "VALIDATORS"],
                    [[o["id"], o["name"], o["members"]["admin"], o["members"]["operator"], o["members"]["auditor"],
                      o["validators"]] for o in page["items"]])
        return
    info, verified = verified_get(client, f"/v1/orgs/{org}", "org", org, fetch=_fetch(f"organisation {org}"))
    if as_json:
        print_json(json_doc(info, verified))
        return
    print_fields([("org", info["id"]), ("name", info["name"])])
    click.echo("\nmembers:")
    print_table(["ADDRESS", "ROLE", "KEY"], [[m["address"], m["role"], m["key"]] for m in info["members"]])
    click.echo("\nvalidators:")
    if info["validators"]:
        print_table(["KEY", "P2P", "API"], [[v["key"], v["p2p"], v["api"]] for v in info["validators"]])
    else:
        click.echo("none")
    if "validators_next" in info:
        nxt = info["validators_next"]
        click.echo(f"\nfrom height {nxt['height']}: " + (", ".join(v["key"][:16] + "…" for v in nxt["validators"])
                                                         or "no validators"))
    emit(verified)


@gov_group.command("params")
@node_option
@light_options
@json_option
def gov_params(node_url, as_json):
    """Chain parameters: current value, default, and the range governance may set (values verified with a genesis file)."""
    body, verified = verified_get(client_for(node_url), "/v1/params", "params", fetch=_fetch("parameters"))
    if as_json:
        print_json(json_doc(body, verified))
        return
    print_table(["PARAMETER", "VALUE", "DEFAULT", "RANGE"],
                [[name, p["value"], p["default"], "-" if p["range"] is None else f"{p['range'][0]}..{p['range'][1]}"]
                 for name, p in sorted(body["params"].items())])
    emit(verified)


# -- transactions -----------------------------------------------------------------------------

def parse_actions(tokens: tuple[str, ...]) -> list[dict]:
    """``ACTION KEY=VALUE… [ACTION KEY=VALUE…]`` into ``[{action, args}]``, each checked as the
    chain checks it (before anything is signed)."""
    actions: list[dict] = []
    for token in tokens:
        if "=" not in token:
            token = token.replace("-", "_")  # add-node is add_node
            if token not in ACTIONS:
                raise click.BadParameter(f"{token!r} is neither an action ({', '.join(ACTIONS)}) nor KEY=VALUE",
                                         param_hint="ACTIONS")
            actions.append({"action": token, "args": {}})
            continue
        if not actions:
            raise click.BadParameter(f"{token!r} comes before any action; start with one of {', '.join(ACTIONS)}",
                                     param_hint="ACTIONS")
        k, v = token.split("=", 1)
        args = actions[-1]["args"]
        if k in args:
            raise click.BadParameter(f"{k} given twice for {actions[-1]['action']}", param_hint="ACTIONS")
        if k in INT_ARGS:
            if not re.fullmatch(r"\d+", v):
                raise click.BadParameter(f"{k} must be a whole number, got {v!r}", param_hint="ACTIONS")
            args[k] = int(v)
        else:
            args[k] = v
    return actions


def _check(actions: list[dict], hint: str) -> None:
    if not 1 <= len(actions) <= MAX_ACTIONS:
        raise click.BadParameter(f"a proposal carries 1 to {MAX_ACTIONS} actions, not {len(actions)}", param_hint=hint)
    for i, a in enumerate(actions):
        try:
            normalise_action(a["action"], a["args"])
        except TxRejected as exc:
            raise click.BadParameter(f"action {i + 1} ({a['action']}): {exc.message}", param_hint=hint) from None


def _read_file(path: str) -> list[dict]:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise CliError(f"{path} is not JSON: {exc}") from None
    if isinstance(data, dict) and "actions" in data:
        data = data["actions"]
    if not isinstance(data, list) or not all(isinstance(a, dict) and isinstance(a.get("action"), str) and
                                             isinstance(a.get("args", {}), dict) and set(a) <= {"action", "args"}
                                             for a in data):
        raise CliError(f'{path}: expected a JSON list of {{"action": ..., "args": {{...}}}} (or {{"actions": [...]}})')
    return [{"action": a["action"], "args": a.get("args", {})} for a in data]


@gov_group.command("propose")
@click.argument("tokens", nargs=-1, metavar="ACTION KEY=VALUE... [ACTION KEY=VALUE...]")
@click.option("--file", "actions_file", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help='The actions as JSON: [{"action": "add_org", "args": {...}}, ...].')
@proposal_blocks_option("100000")
@tx_options
def gov_propose(tokens, actions_file, expires_in_blocks, txopts: TxOptions):
    """Open a proposal with one or more actions (admins only); your organisation votes yes.

    All actions of a proposal apply together when it passes, in order, or none does: add an
    organisation with its members and validator in one proposal:

    \b
      cxl gov propose add_org org=acme name="Acme Compute" admin=HEX \\
                      add_member org=acme key=HEX role=operator \\
                      add_validator org=acme key=HEX p2p=http://… api=http://… --key ADMIN

    \b
    Actions and their arguments:
      add_org          org, name, admin (hex key)
      remove_org       org
      add_member       org, key (hex), role (admin|operator|auditor)
      remove_member    address
      add_validator    org, key (hex node key), p2p, api
      remove_validator key
      update_validator key (current), new_key, p2p, api: at least one of the
                       last three; a new key and/or endpoints in one proposal
      set_param        name, value        (see `cxl gov params`)
      mint             to, amount
      add_node         org, key (hex node key), host and port (optional): a full node
      remove_node      key

    Rotate a validator's node key, or move it to another address, in one proposal
    (it takes effect validator_delay blocks after it passes, like add_validator):

    \b
      cxl gov propose update-validator key=OLD_HEX new_key=NEW_HEX --key ADMIN
      cxl gov propose update-validator key=HEX p2p=http://10.1.2.4:26601 \\
                      api=http://10.1.2.4:26701 --key ADMIN

    Action names may be written with '-' (add-node) or '_' (add_node).
    """
    if bool(tokens) == bool(actions_file):
        raise click.UsageError("give the actions as arguments (ACTION KEY=VALUE…) or with --file, one of the two")
    actions = _read_file(actions_file) if actions_file else parse_actions(tokens)
    _check(actions, "--file" if actions_file else "ACTIONS")
    # one action: the original payload form, understood by every node version
    payload: dict = dict(actions[0]) if len(actions) == 1 else {"actions": actions}
    if expires_in_blocks is not None:
        payload["expires_in"] = expires_in_blocks
    record = submit_tx(txopts, None, "propose", payload)
    result = (record.get("receipt") or {}).get("result") or {}
    if not txopts.as_json and result.get("status") == "open":
        click.echo(f"proposal {result['proposal']} is open: other organisations' admins vote with "
                   f"`cxl gov vote {result['proposal']} --yes --key ADMIN`; follow it with "
                   f"`cxl gov show {result['proposal']}`")


@gov_group.command("vote")
@click.argument("proposal", type=click.IntRange(1))
@click.option("--yes/--no", "approve", default=None, help="Approve or reject (one is required).")
@tx_options
def gov_vote(proposal, approve, txopts: TxOptions):
    """Cast your organisation's vote on PROPOSAL (admins only; see it first with `cxl gov show`)."""
    if approve is None:
        raise click.UsageError("say --yes or --no")
    submit_tx(txopts, None, "vote", {"proposal": proposal, "approve": approve})
