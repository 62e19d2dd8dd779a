"""The capacity marketplace: listings, leases, escrow, usage, settlement, attestations.

`TX_TYPES` maps each market transaction type to (roles allowed, handler);
`BEGIN_BLOCK_HOOKS` run at the start of each block for time-driven transitions.
"""

from __future__ import annotations

TX_TYPES: dict = {}
BEGIN_BLOCK_HOOKS: list = []
