"""Auditing a cxl chain: replay from genesis, offline transaction receipts, node comparison.

Nothing here is imported by a running node. The modules read a chain (a node's LevelDB
read-only, or a node's HTTP API) and rebuild it in a fresh in-memory store with the
ledger's own validation code (`Chain.validate_block`, `Certificate.verify`,
`execute_block`), adding only the checks the ledger does not make on its own.
"""
