"""The validator node: composition root of cxl.

    node.config     home layout (config.json, genesis.json, node_key.json, data/, node.log), NodeConfig
    node.mempool    bounded, nonce-ordered transaction pool with admission checks
    node.runner     one asyncio task driving the consensus core and carrying out its effects
    node.transport  the Transport protocol (p2p implements it), NodeInbox, NullTransport
    node.api        the client HTTP API (aiohttp) and its extension points
    node.views      JSON rendering of ledger objects
    node.explorer_api  the explorer web page at /explorer/ (static files in node/explorer/static)
    node.metrics    Prometheus metrics per node
    node.app        Node (start/stop) and run_node(home); `python -m node HOME`
"""
