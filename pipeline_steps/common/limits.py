"""Constants more than one step (and infra's synth-time checks) must agree on; defined here only."""

from __future__ import annotations

# The top x stored per user. With x <= MAX_X and item ids up to ~300 UTF-8 bytes, one user's items
# string stays under `items.MAX_ITEMS_BYTES` (longer ids make `encode_items` drop the tail of the
# list, reported, rather than fail the write).
MAX_X = 1000

# k-NN `index_metric` values: INNER_PRODUCT/COSINE are similarities (higher is better), L2 a distance.
INDEX_METRICS = ("INNER_PRODUCT", "COSINE", "L2")

# The read API's item metadata (pipeline_steps/query/metadata.py; infra checks `topx:api` with them).
ITEM_METADATA_DEFAULT_MAX_MB = 50  # object size cap, `topx:api.item_metadata_max_mb`
# Peak memory per object byte while parsing: the bytes (1) + the decoded text (1 for Latin-1, up to 4:
# CPython stores a str at 1, 2 or 4 bytes per character) + the kept fields (at most ~1).
ITEM_METADATA_MEMORY_FACTOR = 6
ITEM_METADATA_RUNTIME_BASE_MB = 128  # the interpreter, boto3 and the handler before any metadata
ITEM_METADATA_RESERVED_FIELDS = ("item_id", "score")  # a response item's own keys
