"""Node home layout and configuration.

A node home is a directory::

    HOME/config.json     node settings (this module; every field optional)
    HOME/genesis.json    the chain's genesis file (genesis.schema)
    HOME/node_key.json   the validator's Ed25519 key file (ledger.keystore, mode 0600)
    HOME/data/           LevelDB: chain, state, indexes and the consensus WAL
    HOME/node.log        structured log (JSON lines)

`load_config(home)` reads config.json into a frozen `NodeConfig`; an unknown field or a
value of the wrong type is a `ConfigError` that names the field and says what fits.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from genesis import schema as genesis_schema
from ledger.crypto import Signer
from ledger.errors import GenesisError, KeystoreError
from ledger.statetree import DEFAULT_VERSIONS_KEPT
from ledger import keystore

from node.errors import ConfigError

CONFIG_FILE = "config.json"
GENESIS_FILE = "genesis.json"
NODE_KEY_FILE = "node_key.json"
DATA_DIR = "data"
LOG_FILE = "node.log"
LOG_LEVELS = ("debug", "info", "warning", "error")
ROLES = ("validator", "full")


@dataclass(frozen=True, slots=True)
class NodeConfig:
    api_host: str = "127.0.0.1"
    api_port: int = 26701
    p2p_host: str = "127.0.0.1"
    p2p_port: int = 26601
    mempool_max_txs: int = 20_000
    mempool_max_bytes: int = 64 * 1024 * 1024
    mempool_max_per_sender: int = 1_000      # per-sender quota (429 when exceeded)
    mempool_max_nonce_ahead: int = 1_000     # how far past the account's next nonce a tx may wait
    max_body_bytes: int = 4 * 1024 * 1024     # client API request body limit (413 above it)
    max_batch_txs: int = 1_000                # transactions in one POST /v1/txs
    max_connections: int = 512                # concurrent client API connections
    max_wait_s: int = 30                      # cap on ?wait= long polls
    sig_check_threads: int = 2                # thread pool for transaction signature checks
    block_interval_ms: int | None = None      # None: the chain parameter
    max_block_txs: int | None = None          # None: the chain parameter
    max_block_bytes: int = 3 * 1024 * 1024    # transaction bytes per proposed block (fits one p2p frame)
    sync_interval_ms: int = 5_000             # how often to ask peers for blocks we lack (0: only when behind)
    log_level: str = "info"
    p2p_tls: bool = False                     # mutual TLS between validators, pinned to node keys
    tls_cert: str | None = None               # PEM files for the p2p transport (optional; default: derived)
    tls_key: str | None = None
    tls_ca: str | None = None
    # operations (issue 12): metrics listener, log file rotation
    metrics_host: str = "127.0.0.1"           # the metrics/admin listener: keep it private
    metrics_port: int | None = None           # None: api_port + 100 (0: any free port)
    log_max_bytes: int = 50 * 1024 * 1024     # node.log is rotated above this size
    log_backups: int = 5                      # rotated files kept (node.log.1 …)
    # client API limits against idle, slow and flooding clients (node/api_limits.py)
    api_max_connections_per_ip: int = 64     # concurrent API connections from one IP address
    api_header_timeout_s: int = 10           # request line + headers must arrive within this (408)
    api_idle_timeout_s: int = 30             # a keep-alive connection with no request is closed after this
    api_body_timeout_s: int = 30             # a request body must arrive within this (408)
    api_max_long_polls: int = 256            # ?wait= long polls held at once (429 above it)
    api_max_long_polls_per_ip: int = 32      # ... from one IP address
    state_versions_kept: int = DEFAULT_VERSIONS_KEPT  # recent heights of the state tree kept provable
    mempool_max_sender_bytes: int | None = None  # None: 1/16 of mempool_max_bytes (429 sender_quota above)
    mempool_max_org_bytes: int | None = None     # None: 1/4 of mempool_max_bytes (429 org_quota above)
    mempool_gapped_ttl_s: int = 600              # a nonce-gapped tx waits at most this long
    state_sync: str | None = None                # "URL[,URL...]": an empty data dir starts from a peer's snapshot
    # full nodes (issue 10): what this node starts as; the live role follows the validator
    # set (a "full" node whose key governance adds starts voting at its activation height,
    # a validator removed from the set goes on as a full node)
    role: str = "validator"
    # hex node keys of full nodes this node accepts sessions from, besides the governance
    # node registry and former validators
    full_node_keys: tuple[str, ...] = field(default_factory=tuple)
    # extra peers a full node dials besides the validators: "KEYHEX@http://host:port"
    peers: tuple[str, ...] = field(default_factory=tuple)
    follow_interval_ms: int = 200             # how often a caught-up full node asks for new blocks

    def to_json(self) -> dict:
        doc = asdict(self)
        doc["full_node_keys"] = list(self.full_node_keys)
        doc["peers"] = list(self.peers)
        return doc


_PORT = (1, 65535)
_RANGES: dict[str, tuple[int, int]] = {
    "api_port": _PORT,
    "p2p_port": _PORT,
    "mempool_max_txs": (1, 10_000_000),
    "mempool_max_bytes": (1024, 2**40),
    "mempool_max_per_sender": (1, 10_000_000),
    "mempool_max_nonce_ahead": (0, 10_000_000),
    "max_body_bytes": (1024, 2**31),
    "max_batch_txs": (1, 100_000),
    "max_connections": (1, 100_000),
    "max_wait_s": (0, 3600),
    "sig_check_threads": (1, 256),
    "block_interval_ms": (1, 3_600_000),
    "max_block_txs": (1, 1_000_000),
    "sync_interval_ms": (0, 3_600_000),
    "max_block_bytes": (64 * 1024, 60 * 1024 * 1024),
    "metrics_port": (0, 65535),
    "log_max_bytes": (64 * 1024, 2**40),
    "log_backups": (0, 1000),
    "api_max_connections_per_ip": (1, 100_000),
    "api_header_timeout_s": (1, 3600),
    "api_idle_timeout_s": (1, 3600),
    "api_body_timeout_s": (1, 3600),
    "api_max_long_polls": (0, 100_000),
    "api_max_long_polls_per_ip": (0, 100_000),
    "state_versions_kept": (1, 10_000_000),
    "mempool_max_sender_bytes": (1024, 2**40),
    "mempool_max_org_bytes": (1024, 2**40),
    "mempool_gapped_ttl_s": (1, 7 * 86_400),
    "follow_interval_ms": (10, 3_600_000),
}
_OPTIONAL = {"block_interval_ms", "max_block_txs", "tls_cert", "tls_key", "tls_ca", "metrics_port",
             "mempool_max_sender_bytes", "mempool_max_org_bytes", "state_sync"}


def _check_field(name: str, value, where: str):
    if value is None and name in _OPTIONAL:
        return None
    if name in _RANGES:
        lo, hi = _RANGES[name]
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise ConfigError(f"{where}: {name}: must be an integer in [{lo}, {hi}], got {value!r}")
        return value
    if name == "p2p_tls":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: p2p_tls: must be true or false, got {value!r}")
        return value
    if name == "role":
        if value not in ROLES:
            raise ConfigError(f"{where}: role: must be one of {', '.join(ROLES)}, got {value!r}")
        return value
    if name == "full_node_keys":
        return tuple(_hex_key(item, f"{where}: full_node_keys") for item in _str_list(value, where, name))
    if name == "peers":
        return tuple(_peer(item, f"{where}: peers") for item in _str_list(value, where, name))
    if name == "log_level":
        if value not in LOG_LEVELS:
            raise ConfigError(f"{where}: log_level: must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
        return value
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {name}: must be a non-empty string, got {value!r}")
    return value


def _str_list(value, where: str, name: str) -> list[str]:
    if isinstance(value, str):  # an environment variable: comma-separated
        return [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {name}: must be a list of strings, got {value!r}")
    return list(value)


def _hex_key(value: str, where: str) -> str:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigError(f"{where}: {value!r} is not a node public key (64 hex digits, as `cxl keys show` prints)")
    return raw.hex()


def _peer(value: str, where: str) -> str:
    key, sep, url = value.partition("@")
    if not sep or not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: {value!r} must be KEYHEX@http://host:port (the peer's node key and p2p URL)")
    return f"{_hex_key(key, where)}@{url}"


def parse_peer(value: str) -> dict:
    """A checked `peers` entry as a transport peer: {key: bytes, p2p: url, org: ""}."""
    key, _, url = value.partition("@")
    return {"key": bytes.fromhex(key), "p2p": url, "org": ""}


def config_from_dict(doc, where: str = CONFIG_FILE) -> NodeConfig:
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: must be a JSON object")
    known = {f.name for f in fields(NodeConfig)}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ConfigError(f"{where}: {unknown[0]}: unknown field (known: {', '.join(sorted(known))})")
    values = {name: _check_field(name, value, where) for name, value in doc.items()}
    cfg = NodeConfig(**values)
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        raise ConfigError(f"{where}: tls_cert and tls_key: give both or neither")
    return cfg


@dataclass(frozen=True, slots=True)
class NodeHome:
    path: Path

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def genesis_file(self) -> Path:
        return self.path / GENESIS_FILE

    @property
    def key_file(self) -> Path:
        return self.path / NODE_KEY_FILE

    @property
    def data_dir(self) -> Path:
        return self.path / DATA_DIR

    @property
    def log_file(self) -> Path:
        return self.path / LOG_FILE


ENV_PREFIX = "CXL_"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def env_name(field_name: str) -> str:
    """The environment variable that overrides a config field: CXL_<FIELD>."""
    return ENV_PREFIX + field_name.upper()


def _parse_env(name: str, kind: str, text: str):
    """One environment value as the field's type (from its annotation), so that the
    field's own check then applies; a value that cannot be one is an error naming it."""
    var = env_name(name)
    optional = kind.endswith("| None")
    base = kind.replace("| None", "").strip()
    if optional and text.strip().lower() in ("", "null", "none"):
        return None
    if base == "int":
        try:
            return int(text.strip(), 10)
        except ValueError:
            raise ConfigError(f"environment variable {var}: {name}: must be an integer, got {text!r}") from None
    if base == "bool":
        low = text.strip().lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise ConfigError(f"environment variable {var}: {name}: must be true or false, got {text!r}")
    return text


def env_overrides(environ=None) -> dict:
    """Config values from CXL_<FIELD> environment variables, typed by each NodeConfig
    field's annotation. Every field is covered, including ones added later; CXL_
    variables that name no field (CXL_NODE, CXL_PASSPHRASE of the CLI) are not config."""
    env = os.environ if environ is None else environ
    out = {}
    for f in fields(NodeConfig):
        var = env_name(f.name)
        if var in env:
            out[f.name] = _parse_env(f.name, str(f.type), env[var])
    return out


def load_config(home: str | Path, environ=None) -> NodeConfig:
    """Read HOME/config.json (a missing file means all defaults), then apply CXL_<FIELD>
    environment overrides (for containers); both are checked the same way."""
    path = NodeHome(Path(home)).config_file
    doc: dict = {}
    if path.exists():
        try:
            doc = json.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from exc
    cfg = config_from_dict(doc, str(path))
    overrides = env_overrides(environ)
    for name, value in overrides.items():
        _check_field(name, value, f"environment variable {env_name(name)}")
    if not overrides:
        return cfg
    return config_from_dict(cfg.to_json() | overrides, "environment (CXL_* variables)")


def save_config(home: str | Path, cfg: NodeConfig) -> None:
    path = NodeHome(Path(home)).config_file
    path.write_text(json.dumps(cfg.to_json(), indent=2) + "\n")


def load_genesis(home: str | Path) -> tuple[dict, bytes]:
    path = NodeHome(Path(home)).genesis_file
    try:
        return genesis_schema.load(path)
    except GenesisError as exc:
        raise ConfigError(f"genesis: {exc}") from exc


def load_node_key(home: str | Path, passphrase: str | None = None) -> Signer:
    try:
        return keystore.load_key(NodeHome(Path(home)).key_file, passphrase)
    except KeystoreError as exc:
        raise ConfigError(f"node key: {exc}", exc.code) from exc


def init_home(
    home: str | Path,
    genesis_path: str | Path,
    node_key_path: str | Path | None = None,
    *,
    passphrase: str | None = None,
    overwrite: bool = False,
    **settings,
) -> NodeHome:
    """Create a node home: copy and validate the genesis, install or create the node key,
    write config.json with `settings` (NodeConfig field names) over the defaults.

    Without `node_key_path` a fresh key is generated: encrypted when `passphrase` is given,
    otherwise an unencrypted dev key (its file says so)."""
    nh = NodeHome(Path(home))
    if nh.config_file.exists() and not overwrite:
        raise ConfigError(f"{nh.path} is already a node home (config.json exists); use another directory")
    try:
        doc, _ = genesis_schema.load(genesis_path)
    except GenesisError as exc:
        raise ConfigError(f"genesis: {exc}") from exc
    cfg = config_from_dict(settings, "settings")
    nh.path.mkdir(parents=True, exist_ok=True)
    nh.data_dir.mkdir(exist_ok=True)
    genesis_schema.save(doc, nh.genesis_file)
    if node_key_path is not None:
        if Path(node_key_path).resolve() != nh.key_file.resolve():
            try:
                keystore.read_key_document(node_key_path)
            except KeystoreError as exc:
                raise ConfigError(f"node key: {exc}", exc.code) from exc
            data = Path(node_key_path).read_bytes()
            fd = os.open(nh.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never world-readable
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            nh.key_file.chmod(0o600)
    elif not nh.key_file.exists():
        try:
            keystore.write_key(nh.key_file, Signer.generate(), name="node", passphrase=passphrase)
        except KeystoreError as exc:
            raise ConfigError(f"node key: {exc}", exc.code) from exc
    save_config(nh.path, cfg)
    return nh


def metrics_port_of(cfg: NodeConfig, api_port: int | None = None) -> int:
    """The metrics listener's port: metrics_port, else the API port + 100 (a free port
    when the API port is itself chosen freely, 0)."""
    if cfg.metrics_port is not None:
        return cfg.metrics_port
    api = cfg.api_port if api_port is None else api_port
    return 0 if api == 0 or api + 100 > 65535 else api + 100


def with_overrides(cfg: NodeConfig, **changes) -> NodeConfig:
    """A copy of `cfg` with checked changes (tests, CLI flags)."""
    merged = cfg.to_json()
    merged.update(changes)
    return config_from_dict(merged, "overrides")


__all__ = [
    "NodeConfig", "NodeHome", "ConfigError", "config_from_dict", "load_config", "save_config",
    "load_genesis", "load_node_key", "init_home", "with_overrides", "env_overrides", "env_name",
    "metrics_port_of",
]
