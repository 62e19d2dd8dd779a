"""`cxl node init|start` (a validator's home directory and process) and `cxl status`."""

from __future__ import annotations

import errno
from pathlib import Path

import click

from cli.client import NodeError
from cli.common import CliError, client_for, json_option, node_option, print_fields, print_json, print_table
from genesis.schema import load as load_genesis
from cli.keys import read_passphrase
from cli.node_init import NotInGenesis, init_settings
from cli.timeparse import format_time
from ledger.keystore import is_encrypted, read_key_document


def _node_errors():
    """node.errors.NodeError (config problems and the like), imported only when needed."""
    from node.errors import NodeError

    return NodeError


@click.group("node")
def node_group() -> None:
    """Set up and run a node: a validator, or a full node (--full) that follows the chain."""


@node_group.command("init")
@click.option("--home", required=True, type=click.Path(file_okay=False), help="Directory for the node's files.")
@click.option("--genesis", "genesis_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The chain's genesis file (copied into the home).")
@click.option("--node-key", type=click.Path(exists=True, dir_okay=False),
              help="The validator's key file [default: generate a new unencrypted dev key].")
@click.option("--api-port", type=click.IntRange(1, 65535),
              help="Client API port [default: the genesis entry of --node-key, else 26701].")
@click.option("--p2p-port", type=click.IntRange(1, 65535),
              help="Peer port [default: the genesis entry of --node-key, else 26601].")
@click.option("--api-host", metavar="ADDR",
              help="Client API listen address [default: --listen, else the genesis entry's host, else 127.0.0.1].")
@click.option("--p2p-host", metavar="ADDR",
              help="Peer listen address [default: --listen, else the genesis entry's host, else 127.0.0.1].")
@click.option("--listen", metavar="ADDR",
              help="Listen address of both the API and the peer port, e.g. 0.0.0.0 behind NAT "
                   "[default: the genesis entry's hosts].")
@click.option("--allow-not-in-genesis", is_flag=True,
              help="Accept a --node-key that is not a genesis validator (one governance will add later).")
@click.option("--full", is_flag=True,
              help="Run a full node (config role \"full\"): it follows the chain by certified block sync, "
                   "never signs, and starts voting only if governance adds its key as a validator.")
@click.option("--full-node-key", "full_node_keys", multiple=True, metavar="HEX",
              help="Accept p2p sessions from this full node's key (config full_node_keys; repeatable).")
@click.option("--peer", "peers", multiple=True, metavar="KEY@URL",
              help="An extra peer a full node dials besides the validators, e.g. another full node "
                   "(config peers; repeatable).")
@click.option("--encrypt-key", is_flag=True,
              help="Encrypt the generated node key (passphrase from --passphrase-file, $CXL_PASSPHRASE or a prompt).")
@click.option("--passphrase-file", type=click.Path(dir_okay=False), help="Passphrase for --encrypt-key.")
@click.option("--force", is_flag=True, help="Re-initialise an existing home (keeps its data directory).")
@json_option
def node_init(home, genesis_path, node_key, api_port, p2p_port, api_host, p2p_host, listen, allow_not_in_genesis,
              full, full_node_keys, peers, encrypt_key, passphrase_file, force, as_json):
    """Create a node home: genesis, node key and config.json."""
    from node.config import init_home, load_config

    if (Path(home) / "config.json").exists() and not force:
        raise CliError(f"{home} is already a node home; use another directory, or pass --force to re-initialise "
                       "it (its chain data and, without --node-key, its node key are kept)")
    genesis, _ = load_genesis(genesis_path)
    try:
        plan = init_settings(genesis, read_key_document(node_key).get("public_key") if node_key else None,
                             api_port=api_port, p2p_port=p2p_port, api_host=api_host, p2p_host=p2p_host,
                             listen=listen, allow_not_in_genesis=allow_not_in_genesis, full=full,
                             full_node_keys=full_node_keys, peers=peers)
    except NotInGenesis as exc:
        raise CliError(f"{exc.message} (nothing written)") from None
    passphrase = None
    if encrypt_key:
        if node_key:
            raise click.UsageError("--encrypt-key applies to a generated key; --node-key files keep their own encryption")
        passphrase = read_passphrase(passphrase_file, prompt="Passphrase for the new node key", confirm=True)
    try:
        nh = init_home(home, genesis_path, node_key, passphrase=passphrase, overwrite=force, **plan.settings)
    except _node_errors() as exc:
        raise CliError(f"{exc.message}") from None
    key = read_key_document(nh.key_file)
    doc, h = load_genesis(nh.genesis_file)
    cfg = load_config(nh.path)
    is_validator = any(v["key"] == key.get("public_key") for v in doc["validators"])
    if as_json:
        print_json({"home": str(nh.path), "chain_id": doc["chain_id"], "genesis_hash": h.hex(),
                    "node_key": key.get("public_key"), "node_key_encrypted": bool(key.get("encrypted")),
                    "api_host": cfg.api_host, "api_port": cfg.api_port, "p2p_host": cfg.p2p_host,
                    "p2p_port": cfg.p2p_port, "validator": is_validator, "role": cfg.role})
        return
    click.echo(f"initialised node home {nh.path}")
    print_fields([("chain id", doc["chain_id"]), ("genesis hash", h.hex()), ("node key", key.get("public_key")),
                  ("api", f"{cfg.api_host}:{cfg.api_port}"), ("p2p", f"{cfg.p2p_host}:{cfg.p2p_port}")])
    if cfg.role == "full":
        click.echo(f"this is a full node: it follows the chain from the validators once they accept its key "
                   f"(a governance add_node, or their operators' full_node_keys); public key {key.get('public_key')}",
                   err=True)
    elif not is_validator:
        click.echo(f"note: this node key is not a validator in the genesis: it votes only once a governance "
                   f"proposal adds it (public key {key.get('public_key')})", err=True)
    click.echo(f"start it with: cxl node start --home {home}")


@node_group.command("start")
@click.option("--home", required=True, type=click.Path(file_okay=False), help="The node's home directory.")
@click.option("--passphrase-file", type=click.Path(dir_okay=False),
              help="Passphrase of an encrypted node key [default: $CXL_PASSPHRASE or prompt].")
@click.option("--state-sync", "state_sync", metavar="URL[,URL...]",
              help="On an empty data directory, start from the latest snapshot of these nodes' client APIs "
                   "(its certificate checked against the validator set followed from the genesis) instead of replaying "
                   "from genesis; ignored once "
                   "the node holds a chain [default: config state_sync, else replay].")
def node_start(home, passphrase_file, state_sync):
    """Run the node in the foreground until SIGINT/SIGTERM (logs to stderr and HOME/node.log)."""
    if not (Path(home) / "config.json").exists():
        raise CliError(f"{home} is not a node home (no config.json); create it with "
                       f"`cxl node init --home {home} --genesis FILE`")
    if state_sync:
        from node.statesync import StateSyncError, parse_urls
        try:
            parse_urls(state_sync)
        except StateSyncError as exc:
            raise CliError(f"--state-sync: {exc}") from None
    try:
        from node.app import run_node
    except ImportError as exc:
        raise CliError(f"this installation has no runnable node ({exc}); is the node package complete?") from None
    passphrase = None
    key_file = Path(home) / "node_key.json"
    if key_file.exists() and is_encrypted(key_file):
        passphrase = read_passphrase(passphrase_file, prompt=f"Passphrase for {key_file}")
    try:
        run_node(home, passphrase=passphrase, state_sync=state_sync)
    except _node_errors() as exc:
        raise CliError(f"node did not start: {exc.message}") from None
    except OSError as exc:  # typically a port in use or a home it may not write
        hint = ""
        if exc.errno == errno.EADDRINUSE:
            hint = (f"; another process (another node?) holds that port: stop it, or change api_port/p2p_port "
                    f"in {Path(home) / 'config.json'}")
        raise CliError(f"node did not start: {exc.strerror or exc}{hint}") from None


def _age(ms) -> str | None:
    if not isinstance(ms, int):
        return None
    return f"{ms / 1000:.1f} s ago" if ms < 120_000 else f"{ms // 60_000} min ago"


def _behind(st: dict) -> str | None:
    """How far behind the best peer a node is (a full node's main question)."""
    if "blocks_behind" not in st:
        return None  # an older node
    behind, best = st.get("blocks_behind"), st.get("best_peer_height")
    if behind is None:
        return "unknown (no peer has answered yet)"
    return f"{behind} blocks (best peer at {best})" if behind else f"0 blocks (up to date with the best peer, {best})"


def status_rows(node_url: str, st: dict) -> list[tuple[str, object]]:
    """The human lines of `cxl status` (fields an older node lacks are left out)."""
    mem = st.get("mempool") or {}
    vals = st.get("validators")
    n = len(vals) if isinstance(vals, list) else None
    peers = st.get("peers")
    connected = st.get("peers_connected")
    full = st.get("role") == "full"
    if connected is not None and full:  # a full node follows validators and listed full nodes
        peers_line = f"{connected} connected of {len(peers) if isinstance(peers, list) else '?'} it follows"
    elif connected is not None:
        others = (n - 1) if n and st.get("role") == "validator" else n
        peers_line = f"{connected} connected of {others if others is not None else '?'}"
    else:
        peers_line = len(peers) if isinstance(peers, list) else peers
    rows = [
        ("node", node_url), ("version", st.get("version")), ("role", st.get("role")),
        ("chain id", st.get("chain_id")), ("genesis hash", st.get("genesis_hash")),
        ("node key", st.get("node_key")), ("height", st.get("height")),
        ("behind", _behind(st)),
        ("head hash", st.get("head_hash")),
        ("head time", format_time(st.get("time_ms"))),
        ("last commit", _age(st.get("last_commit_age_ms"))),
        ("catching up", None if "catching_up" not in st else ("yes" if st["catching_up"] else "no")),
        ("state root", st.get("state_root")), ("view", st.get("view")), ("primary", st.get("primary")),
        ("validators", n if n is not None else vals),
        ("mempool", f"{mem.get('txs', '?')} txs, {mem.get('bytes', '?')} bytes" if isinstance(mem, dict) else mem),
        ("peers", peers_line),
    ]
    if "stalled_reason" in st:
        from node.health import assess, describe

        reason = st.get("stalled_reason")
        rows.append(("stalled", f"yes: {describe(reason)}" if reason else "no"))
        verdict = assess(st)
        codes = ", ".join(r["code"] for r in verdict["reasons"])
        rows.append(("health", verdict["status"] + (f" ({codes})" if codes else "")))
    full_nodes = st.get("full_nodes")
    if isinstance(full_nodes, list) and full_nodes:
        rows.append(("full nodes", f"{len(full_nodes)} following this node"))
    if st.get("duplicate_key"):
        rows.append(("duplicate key", "YES: another process runs with this node's key; this node stopped "
                                      "signing (stop one, restart the other)"))
    return rows


@click.command("status")
@node_option
@json_option
def status_cmd(node_url, as_json):
    """Show a node's version, role, chain, height, health, peers, validators and mempool."""
    st = client_for(node_url).status()
    if as_json:
        print_json(st)
        return
    print_fields(status_rows(node_url, st))
    vals = st.get("validators")
    if isinstance(vals, list) and vals and isinstance(vals[0], dict):
        connected = set(st.get("connected_peers") or [])
        own = st.get("node_key")
        click.echo("")
        headers = ["VALIDATOR", "ORG", "API", "P2P"] + (["SESSION"] if "connected_peers" in st else [])
        rows = []
        for v in vals:
            row = [str(v.get("key", ""))[:16], v.get("org"), v.get("api"), v.get("p2p")]
            if "connected_peers" in st:
                row.append("self" if v.get("key") == own else ("up" if v.get("key") in connected else "down"))
            rows.append(row)
        print_table(headers, rows)


@click.group("block")
def block_group() -> None:
    """Look up committed blocks."""


@block_group.command("show")
@click.argument("height", default="latest", metavar="[HEIGHT|latest]")
@node_option
@json_option
def block_show(height, node_url, as_json):
    """A block's header, transactions and commit certificate (default: the latest)."""
    if height != "latest" and not height.isdigit():
        raise click.BadParameter("a block height (0, 1, …) or 'latest'", param_hint="HEIGHT")
    client = client_for(node_url)
    try:
        block = client.block(height)
    except NodeError as exc:
        if exc.status == 404 and height.isdigit() and int(height) == 0:
            raise CliError("height 0 is the genesis state, not a block: blocks start at 1 "
                           "(see the genesis with `cxl genesis validate FILE`)") from None
        if exc.status == 404:
            raise CliError(f"the node at {client.url} has no block {height} yet") from None
        raise
    if as_json:
        print_json(block)
        return
    header = block.get("header") or {}
    cert = block.get("certificate") or {}
    print_fields([("height", block.get("height")), ("hash", block.get("hash")), ("time", format_time(header.get("time_ms"))),
                  ("view", header.get("view")), ("parent", header.get("parent_hash")),
                  ("proposer", header.get("proposer")), ("state root", header.get("state_root")),
                  ("signatures", len(cert.get("signatures") or []) if cert else "none (not certified yet)"),
                  ("txs", len(block.get("txs") or []))])
    for i, h in enumerate(block.get("txs") or []):
        click.echo(f"  {i:>4}  {h}")
