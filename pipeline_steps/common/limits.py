"""Constants more than one step (and infra's synth-time checks) must agree on; defined here only."""

from __future__ import annotations

# The top x stored per user. With x <= MAX_X and item ids up to ~300 UTF-8 bytes, one user's items
# string stays under `items.MAX_ITEMS_BYTES` (longer ids make `encode_items` drop the tail of the
# list, reported, rather than fail the write).
MAX_X = 1000

# k-NN `index_metric` values: INNER_PRODUCT/COSINE are similarities (higher is better), L2 a distance.
INDEX_METRICS = ("INNER_PRODUCT", "COSINE", "L2")
