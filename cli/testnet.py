"""`cxl testnet init --hosts h1,h2,…`: the files of a network whose validators run on
several machines (like `cometbft testnet --hostname`): DIR/genesis.json, unencrypted dev
keys under DIR/keys, one node home DIR/nodeK per host (copy it to that machine and run
`cxl node start --home nodeK`), and DIR/testnet.json listing them.

Validator K listens at hosts[K-1] on the P2P and API ports (26601 / 26701 unless given);
a host named twice gets the next ports for its second node.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.common import CliError, parse_params, print_json, print_table
from cli.node_init import init_settings
from genesis.testnet import DEFAULT_API_PORT, DEFAULT_P2P_PORT, TestnetError, create_testnet, parse_hosts

MANIFEST_FILE = "testnet.json"


@click.group("testnet")
def testnet_group() -> None:
    """Write the files of a multi-host test network."""


@testnet_group.command("init")
@click.option("--hosts", required=True, metavar="H1,H2,…",
              help="One host (address or name) per validator, comma-separated; the others reach it there.")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False), help="Where to write the network.")
@click.option("--chain-id", default="cxl-testnet", show_default=True)
@click.option("--p2p-port", type=click.IntRange(1, 65535), default=DEFAULT_P2P_PORT, show_default=True)
@click.option("--api-port", type=click.IntRange(1, 65535), default=DEFAULT_API_PORT, show_default=True)
@click.option("--listen", metavar="ADDR", help="Listen address of every node (e.g. 0.0.0.0) [default: its host].")
@click.option("--balance", type=click.IntRange(0), default=10**12, show_default=True,
              help="Credits (minor units) for each admin and operator key.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="A chain parameter (repeatable).")
@click.option("--force", is_flag=True, help="Overwrite the keys, genesis and homes of an earlier testnet in DIR.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest (homes, hosts and keys) as JSON.")
def testnet_init(hosts, directory, chain_id, p2p_port, api_port, listen, balance, params, force, as_json):
    """Write genesis, dev keys and one node home per host, with each validator's endpoints at its host."""
    from node.config import init_home
    from node.errors import NodeError as NodeConfigError

    chain_params = parse_params(params)
    root = Path(directory).resolve()
    if (root / MANIFEST_FILE).exists() and not force:
        raise CliError(f"{root} already holds a testnet; pass --force to replace it (its chain data is kept)")
    try:
        manifest = create_testnet(root, parse_hosts(hosts), chain_id=chain_id, p2p_port=p2p_port, api_port=api_port,
                                  balance=balance, params=chain_params, overwrite=force)
        doc = json.loads(Path(manifest["genesis"]).read_text())
        for node in manifest["nodes"]:
            plan = init_settings(doc, node["node_key"]["public_key"], listen=listen)
            init_home(node["home"], manifest["genesis"], node["node_key"]["path"], overwrite=force, **plan.settings)
            node.update({k: plan.settings[k] for k in ("api_host", "api_port", "p2p_host", "p2p_port")})
    except TestnetError as exc:
        raise click.UsageError(str(exc)) from None
    except NodeConfigError as exc:
        raise CliError(exc.message) from None
    (root / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    if as_json:
        print_json(manifest)
        return
    click.echo(f"testnet {chain_id}: {len(manifest['nodes'])} validator(s) in {root}, genesis hash {manifest['genesis_hash']}")
    print_table(["NODE", "ORG", "P2P", "API", "HOME"],
                [[n["name"], n["org"], n["p2p"], n["api"], n["home"]] for n in manifest["nodes"]])
    click.echo(f"\ncopy each home to its host and run there: cxl node start --home nodeK\n"
               f"warning: {manifest['dev_keys_warning']}")
