"""Governance: proposals that organisations' admins approve by threshold.

One organisation, one vote (cast by any of its admins). A proposal passes when
``yes_orgs * den >= num * total_orgs`` (default 2/3) and is executed in the same
transaction that reaches the threshold; it is rejected once approval can no longer be
reached, and expires after `expires_in` blocks (no vote is accepted at a height above
`expires_height`; its stored status stays "open", views show it as "expired").

Two payload forms (docs/protocol.md §14):

    {action, args, expires_in?}            one action: the original form, kept byte for byte
                                           (existing chains replay through it)
    {actions: [{action, args}, ...], expires_in?}   1..MAX_ACTIONS actions, executed in
                                           order, all or nothing: if one fails, none applies
                                           and the proposal is "failed" with error_code and
                                           failed_action recorded

Actions:

    add_org {org, name, admin}            a new organisation with its first admin key
    remove_org {org}                      and all its members; not while it runs a validator
    add_member {org, key, role}           role in admin | operator | auditor
    remove_member {address}
    add_validator {org, key, p2p, api}    effective `validator_delay` blocks later
    remove_validator {key}                likewise
    update_validator {key, new_key?, p2p?, api?}   a validator's new key and/or endpoints,
                                          likewise; same org, same place in the set (codes
                                          unknown_validator, validator_exists, node_exists,
                                          no_change; bad_key, bad_payload when proposed)
    add_node {org, key, host?, port?}     list a full (non-validator) node: its peers accept it
    remove_node {key}                     (ledger/nodes.py; codes bad_key, unknown_org,
                                          node_exists, unknown_node, node_is_validator)
    set_param {name, value}               integer chain parameters
    mint {to, amount}                     the only way credits come into being

State: ``gov/next`` (uint), ``gov/p/<id:8 bytes BE>`` (proposal map: ``action`` + ``args``
for the single form, ``actions`` for the list form).
"""

from __future__ import annotations

import re

from ledger import accounts, nodes
from ledger.accounts import ROLES, require_address, require_amount
from ledger.crypto import PUBLIC_KEY_SIZE, address_of, is_valid_point, parse_hex
from ledger.errors import TxRejected
from ledger.state import StateView

ORG_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}\Z")  # \Z: "$" would accept a trailing newline
DEFAULT_EXPIRY_BLOCKS = 100_000
MAX_ACTIONS = 16
ACTIONS = ("add_org", "remove_org", "add_member", "remove_member", "add_validator", "remove_validator",
           "set_param", "mint", "add_node", "remove_node", "update_validator")
UPDATE_VALIDATOR_ARGS = ("key", "new_key", "p2p", "api")
HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.:-]{0,252}[A-Za-z0-9])?\Z")  # a DNS name, IPv4 or IPv6 address

# Parameters that governance may set, with their allowed ranges.
PARAM_RANGES: dict[str, tuple[int, int]] = {
    "block_interval_ms": (1, 60_000),
    "max_block_txs": (1, 100_000),
    "view_timeout_ms": (100, 600_000),
    "rotation_blocks": (0, 1_000_000),
    "max_tx_bytes": (256, 1024 * 1024),
    "time_skew_ms": (0, 60_000),
    "gov_threshold_num": (1, 100),
    "gov_threshold_den": (1, 100),
    "validator_delay": (1, 1000),
    "accept_window_ms": (1000, 30 * 86_400_000),
    "dispute_window_ms": (1000, 30 * 86_400_000),
    "usage_period_ms": (60_000, 30 * 86_400_000),
    "heartbeat_interval_ms": (0, 86_400_000),  # 0: no interval heartbeats (ledger/heartbeat.py)
}


def proposal_key(pid: int) -> bytes:
    return b"gov/p/" + pid.to_bytes(8, "big")


def _key_bytes(value, what: str) -> bytes:
    if isinstance(value, str):
        try:
            value = parse_hex(value, PUBLIC_KEY_SIZE)
        except ValueError:
            raise TxRejected(f"{what} must be a hex public key", "bad_payload") from None
    if not isinstance(value, bytes) or len(value) != PUBLIC_KEY_SIZE:
        raise TxRejected(f"{what} must be a 32-byte public key", "bad_payload")
    return value


def _node_key(value) -> bytes:
    """A full node's key: 32 bytes, or 64 hex characters (stable code bad_key)."""
    if isinstance(value, str):
        try:
            value = parse_hex(value, PUBLIC_KEY_SIZE)
        except ValueError:
            raise TxRejected("key must be a 32-byte public key in hex (64 characters)", "bad_key") from None
    if not isinstance(value, bytes) or len(value) != PUBLIC_KEY_SIZE:
        raise TxRejected("key must be a 32-byte public key", "bad_key")
    return value


def _node_endpoint(args: dict) -> dict:
    """The optional p2p endpoint of a listed node: host and port together, or neither."""
    host, port = args.get("host"), args.get("port")
    if host is None and port is None:
        return {}
    if host is None or port is None:
        raise TxRejected("give host and port together, or neither", "bad_payload")
    if not isinstance(host, str) or not HOST.match(host):
        raise TxRejected("host must be a DNS name or an IP address", "bad_payload")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise TxRejected("port must be an integer in [1, 65535]", "bad_payload")
    return {"host": host, "port": port}


# An endpoint URL: http(s)://host[:port][/path], the host a DNS name ("_" allowed, as in container
# names), an IPv4 address or an [IPv6] address, the port 1-65535, no user info; at most 200
# characters after the scheme.
URL = re.compile(r"^https?://(?P<authority>[^/\s]+)(/[^\s]*)?\Z")
URL_AUTHORITY = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])"
                           r"(?::(?P<port>[0-9]{1,5}))?\Z")


def _url(value, what: str) -> str:
    m = URL.match(value) if isinstance(value, str) and len(value.split("://", 1)[-1]) <= 200 else None
    authority = URL_AUTHORITY.match(m["authority"]) if m else None
    if authority is None or not 1 <= int(authority["port"] or 80) <= 65535:
        raise TxRejected(f"{what} must be an http(s) URL", "bad_payload")
    return value


def normalise_action(action: str, args: dict) -> dict:
    """Check an action's arguments without state; returns the canonical argument map."""
    if not isinstance(args, dict):
        raise TxRejected("args must be a map", "bad_payload")
    if action == "add_org":
        org_id = args.get("org")
        if not isinstance(org_id, str) or not ORG_ID.match(org_id):
            raise TxRejected("org must be 1-32 chars of a-z, 0-9 and '-'", "bad_payload")
        name = args.get("name")
        if not isinstance(name, str) or not 0 < len(name) <= 128:
            raise TxRejected("name must be 1-128 characters", "bad_payload")
        return {"org": org_id, "name": name, "admin": _key_bytes(args.get("admin"), "admin")}
    if action == "remove_org":
        return {"org": _org_id(args)}
    if action == "add_member":
        role = args.get("role")
        if role not in ROLES:
            raise TxRejected(f"role must be one of {', '.join(ROLES)}", "bad_payload")
        return {"org": _org_id(args), "key": _key_bytes(args.get("key"), "key"), "role": role}
    if action == "remove_member":
        return {"address": require_address(args.get("address"))}
    if action == "add_validator":
        return {
            "org": _org_id(args),
            "key": _key_bytes(args.get("key"), "key"),
            "p2p": _url(args.get("p2p"), "p2p"),
            "api": _url(args.get("api"), "api"),
        }
    if action == "remove_validator":
        return {"key": _key_bytes(args.get("key"), "key")}
    if action == "update_validator":
        return _update_validator_args(args)
    if action == "add_node":
        if set(args) - {"org", "key", "host", "port"}:
            raise TxRejected(f"add_node takes org, key, host, port; not {', '.join(sorted(set(args) - {'org', 'key', 'host', 'port'}))}",
                             "bad_payload")
        return {"org": _org_id(args), "key": _node_key(args.get("key")), **_node_endpoint(args)}
    if action == "remove_node":
        return {"key": _node_key(args.get("key"))}
    if action == "set_param":
        name, value = args.get("name"), args.get("value")
        if name not in PARAM_RANGES:
            raise TxRejected(f"unknown parameter {name!r}; known: {', '.join(sorted(PARAM_RANGES))}", "bad_payload")
        lo, hi = PARAM_RANGES[name]
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise TxRejected(f"{name} must be an integer in [{lo}, {hi}]", "bad_payload")
        return {"name": name, "value": value}
    if action == "mint":
        return {"to": require_address(args.get("to"), "to"), "amount": require_amount(args.get("amount"))}
    raise TxRejected(f"unknown governance action {action!r}", "bad_payload")


def _update_validator_args(args: dict) -> dict:
    """{key, new_key?, p2p?, api?}: the validator's current key and at least one change."""
    extra = set(args) - set(UPDATE_VALIDATOR_ARGS)
    if extra:
        raise TxRejected(f"update_validator takes key, new_key, p2p, api; not {', '.join(sorted(extra))}",
                         "bad_payload")
    out = {"key": _node_key(args.get("key"))}
    if args.get("new_key") is not None:
        new_key = _node_key(args["new_key"])
        if not is_valid_point(new_key):
            raise TxRejected("new_key is not a valid Ed25519 public key", "bad_key")
        if new_key == out["key"]:
            raise TxRejected("new_key is the validator's current key; leave it out to keep the key", "bad_payload")
        out["new_key"] = new_key
    for name in ("p2p", "api"):
        if args.get(name) is not None:
            out[name] = _url(args[name], name)
    if len(out) == 1:
        raise TxRejected("update_validator needs at least one change: new_key, p2p or api", "bad_payload")
    return out


def _org_id(args: dict) -> str:
    org_id = args.get("org")
    if not isinstance(org_id, str) or not ORG_ID.match(org_id):
        raise TxRejected("org must be an organisation id", "bad_payload")
    return org_id


def _execute(state: StateView, height: int, action: str, args: dict) -> None:
    """Carry out an approved action; raises TxRejected if state forbids it."""
    if action == "add_org":
        if accounts.org(state, args["org"]):
            raise TxRejected(f"organisation {args['org']} exists", "org_exists")
        address = address_of(args["admin"])
        if accounts.member(state, address):
            raise TxRejected(f"key {address} already belongs to an organisation", "member_exists")
        state.put(accounts.org_key(args["org"]), {"id": args["org"], "name": args["name"]})
        state.put(accounts.member_key(address), {"org": args["org"], "role": "admin", "key": args["admin"]})
    elif action == "remove_org":
        if not accounts.org(state, args["org"]):
            raise TxRejected(f"no organisation {args['org']}", "unknown_org")
        if any(v["org"] == args["org"] for v in _upcoming_validators(state)):
            raise TxRejected("remove the organisation's validators first", "org_has_validators")
        for address, _ in accounts.members_of(state, args["org"]):
            state.delete(accounts.member_key(address))
        for entry in nodes.listed_nodes(state):  # its full nodes go with it
            if entry["org"] == args["org"]:
                state.delete(nodes.node_key(entry["key"]))
        state.delete(accounts.org_key(args["org"]))
    elif action == "add_member":
        if not accounts.org(state, args["org"]):
            raise TxRejected(f"no organisation {args['org']}", "unknown_org")
        address = address_of(args["key"])
        if accounts.member(state, address):
            raise TxRejected(f"{address} already belongs to an organisation", "member_exists")
        state.put(accounts.member_key(address), {"org": args["org"], "role": args["role"], "key": args["key"]})
    elif action == "remove_member":
        m = accounts.member(state, args["address"])
        if not m:
            raise TxRejected(f"{args['address']} is not a member", "unknown_member")
        if m["role"] == "admin" and len(accounts.members_of(state, m["org"], "admin")) == 1:
            # an org without admins still counts towards the threshold but can never vote
            raise TxRejected(f"{args['address']} is the last admin of {m['org']}; remove the organisation instead",
                             "last_admin")
        state.delete(accounts.member_key(args["address"]))
    elif action in ("add_validator", "remove_validator"):
        current = _upcoming_validators(state)
        if action == "add_validator":
            if not accounts.org(state, args["org"]):
                raise TxRejected(f"no organisation {args['org']}", "unknown_org")
            if any(v["key"] == args["key"] for v in current):
                raise TxRejected("that key is a validator already", "validator_exists")
            new = current + [dict(args)]
        else:
            new = [v for v in current if v["key"] != args["key"]]
            if len(new) == len(current):
                raise TxRejected("that key is not a validator", "unknown_validator")
            if not new:
                raise TxRejected("the last validator cannot be removed", "last_validator")
        delay = accounts.params(state).get("validator_delay", 2)
        state.put(b"validators_next", {"height": height + delay, "validators": new})
    elif action == "update_validator":
        _update_validator(state, height, args)
    elif action == "add_node":
        if not accounts.org(state, args["org"]):
            raise TxRejected(f"no organisation {args['org']}", "unknown_org")
        if nodes.listed_node(state, args["key"]) is not None:
            raise TxRejected("that key is listed as a full node already", "node_exists")
        # the set after pending changes: a validator being removed may be listed (in the same
        # proposal, after its remove_validator) so its peers keep it as a full node
        if any(v["key"] == args["key"] for v in _upcoming_validators(state)):
            raise TxRejected("that key is a validator (or becomes one with a pending change); a validator "
                             "follows the chain already", "node_is_validator")
        state.put(nodes.node_key(args["key"]), dict(args))
    elif action == "remove_node":
        if nodes.listed_node(state, args["key"]) is None:
            raise TxRejected("that key is not a listed full node", "unknown_node")
        state.delete(nodes.node_key(args["key"]))
    elif action == "set_param":
        params = dict(accounts.params(state))
        params[args["name"]] = args["value"]
        if params.get("gov_threshold_num", 2) > params.get("gov_threshold_den", 3):
            # a threshold above 1 can never be reached, not even to lower it again
            raise TxRejected("gov_threshold_num may not exceed gov_threshold_den", "bad_threshold")
        state.put(b"params", params)
    elif action == "mint":
        # supply bounds every balance; keeping it <= MAX_AMOUNT keeps all of them encodable
        if accounts.supply(state) + args["amount"] > accounts.MAX_AMOUNT:
            raise TxRejected(f"minting {args['amount']} would take the supply above {accounts.MAX_AMOUNT}",
                             "supply_overflow")
        accounts.credit(state, args["to"], args["amount"])
        state.put(b"supply", accounts.supply(state) + args["amount"])
    else:  # normalise_action already refused anything else
        raise TxRejected(f"unknown governance action {action!r}", "bad_payload")


def _update_validator(state: StateView, height: int, args: dict) -> None:
    """Change one validator's key and/or endpoints, in place (its org and its position in
    the set stay), through `validators_next` like any other validator change."""
    current = _upcoming_validators(state)
    index = next((i for i, v in enumerate(current) if v["key"] == args["key"]), None)
    if index is None:
        raise TxRejected("that key is not a validator (after pending changes)", "unknown_validator")
    entry = dict(current[index])
    new_key = args.get("new_key")
    if new_key is not None:
        if any(v["key"] == new_key for v in current):
            raise TxRejected("new_key is a validator already", "validator_exists")
        if nodes.listed_node(state, new_key) is not None:
            raise TxRejected("new_key is listed as a full node; remove it first (remove_node in the same "
                             "proposal, before this action)", "node_exists")
        entry["key"] = new_key
    for name in ("p2p", "api"):
        if name in args:
            entry[name] = args[name]
    if entry == current[index]:
        raise TxRejected("the validator has that key and those endpoints already", "no_change")
    new = current[:index] + [entry] + current[index + 1:]
    delay = accounts.params(state).get("validator_delay", 2)
    state.put(b"validators_next", {"height": height + delay, "validators": new})


def _upcoming_validators(state: StateView) -> list[dict]:
    pending = state.get(b"validators_next")
    return list(pending["validators"]) if pending else list(accounts.validators(state))


def activate_validator_changes(state: StateView, next_height: int) -> bool:
    """At the end of a block: install a pending validator set due at `next_height`."""
    pending = state.get(b"validators_next")
    if pending and pending["height"] <= next_height:
        state.put(b"validators", pending["validators"])
        state.delete(b"validators_next")
        return True
    return False


def _tally(state: StateView, ctx, proposal: dict) -> None:
    params = ctx.params
    num, den = params.get("gov_threshold_num", 2), params.get("gov_threshold_den", 3)
    members = {o["id"] for o in accounts.orgs(state)}
    total = len(members)
    # only organisations that still exist count: a removed org's vote must not decide
    yes = sum(1 for org, v in proposal["votes"].items() if v and org in members)
    no = sum(1 for org, v in proposal["votes"].items() if not v and org in members)
    if yes * den >= num * total:
        child = state.child()
        failure = _run_actions(child, ctx.height, proposal)
        if failure is None:
            child.merge_into_parent()
            proposal["status"] = "executed"
        else:
            proposal["status"] = "failed"
            proposal.update(failure)
        proposal["decided_height"] = ctx.height
    elif (total - no) * den < num * total:
        proposal["status"] = "rejected"
        proposal["decided_height"] = ctx.height


def proposal_actions(proposal: dict) -> list[dict]:
    """A stored proposal's actions as ``[{action, args}]``, whichever form it was made in."""
    if "actions" in proposal:
        return list(proposal["actions"])
    return [{"action": proposal["action"], "args": proposal["args"]}]


def _run_actions(state: StateView, height: int, proposal: dict) -> dict | None:
    """Execute a proposal's actions in order on `state` (a child view the caller merges only
    on success). Returns None, or the failure fields to record on the proposal."""
    if "actions" not in proposal:  # the single form records exactly what it always did
        try:
            _execute(state, height, proposal["action"], proposal["args"])
        except TxRejected as exc:
            return {"reason": f"{exc.code}: {exc.message}"}
        return None
    for i, item in enumerate(proposal["actions"]):
        try:
            _execute(state, height, item["action"], item["args"])
        except TxRejected as exc:
            return {"reason": f"actions[{i}] {item['action']}: {exc.code}: {exc.message}",
                    "error_code": exc.code, "failed_action": i}
    return None


def preview(state: StateView, height: int, proposal: dict) -> dict | None:
    """What executing `proposal` would do on `state` now, without changing it: None if every
    action would apply, else ``{reason, error_code, failed_action}`` (dry runs use this)."""
    return _run_actions(state.child(), height, {"actions": proposal_actions(proposal)})


def normalise_actions(items) -> list[dict]:
    """Check the list form's actions without state; a bad one names its index in the message."""
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_ACTIONS:
        raise TxRejected(f"actions must be a list of 1-{MAX_ACTIONS} {{action, args}} maps", "bad_payload")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or set(item) - {"action", "args"} or "action" not in item:
            raise TxRejected(f"actions[{i}] must be a map {{action, args}}", "bad_payload")
        try:
            args = normalise_action(item["action"], item.get("args", {}))
        except TxRejected as exc:
            raise TxRejected(f"actions[{i}] ({item['action']}): {exc.message}", exc.code) from None
        out.append({"action": item["action"], "args": args})
    return out


def get_proposal(state: StateView, pid: int) -> dict | None:
    return state.get(proposal_key(pid))


def _outcome(proposal: dict) -> dict:
    out = {"proposal": proposal["id"], "status": proposal["status"]}
    for k in ("reason", "error_code", "failed_action"):
        if k in proposal:
            out[k] = proposal[k]
    return out


def propose(state: StateView, ctx, payload: dict) -> dict:
    """`propose {action, args, expires_in?}` or `propose {actions: [{action, args}, ...],
    expires_in?}`: an admin opens a proposal; their org votes yes."""
    if "actions" in payload:
        if "action" in payload or "args" in payload:
            raise TxRejected("give either action + args or actions, not both", "bad_payload")
        body = {"actions": normalise_actions(payload["actions"])}
    else:  # the original single-action form: unchanged, messages included (receipts are hashed)
        action = payload.get("action")
        body = {"action": action, "args": normalise_action(action, payload.get("args", {}))}
    expires_in = payload.get("expires_in", DEFAULT_EXPIRY_BLOCKS)
    if not isinstance(expires_in, int) or isinstance(expires_in, bool) or not 1 <= expires_in <= 10_000_000:
        raise TxRejected("expires_in must be a number of blocks (1-10,000,000)", "bad_payload")
    pid = state.get(b"gov/next", 1)
    state.put(b"gov/next", pid + 1)
    proposal = {
        "id": pid, **body, "proposer": ctx.sender,
        "votes": {ctx.member["org"]: True}, "status": "open",
        "created_height": ctx.height, "expires_height": ctx.height + expires_in,
    }
    _tally(state, ctx, proposal)
    state.put(proposal_key(pid), proposal)
    return _outcome(proposal)


def vote(state: StateView, ctx, payload: dict) -> dict:
    """`vote {proposal, approve}`: one vote per organisation, cast by one of its admins."""
    pid, approve = payload.get("proposal"), payload.get("approve")
    if not isinstance(pid, int) or isinstance(pid, bool) or not isinstance(approve, bool) or not 0 < pid < 2**64:
        raise TxRejected("vote needs proposal (positive integer id) and approve (true/false)", "bad_payload")
    proposal = get_proposal(state, pid)
    if proposal is None:
        raise TxRejected(f"no proposal {pid}", "unknown_proposal")
    if proposal["status"] != "open":
        raise TxRejected(f"proposal {pid} is {proposal['status']}", "proposal_closed")
    if ctx.height > proposal["expires_height"]:
        raise TxRejected(f"proposal {pid} expired at height {proposal['expires_height']}", "proposal_expired")
    org_id = ctx.member["org"]
    if org_id in proposal["votes"]:
        raise TxRejected(f"organisation {org_id} has already voted on proposal {pid}", "already_voted")
    proposal["votes"][org_id] = approve
    _tally(state, ctx, proposal)
    state.put(proposal_key(pid), proposal)
    return _outcome(proposal)
