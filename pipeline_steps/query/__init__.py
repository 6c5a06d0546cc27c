"""Read path: a user's current top x (`get_recommendations`), an item's related items (`get_related`),
item metadata fields for their items (`metadata.py`), their CLI, and the read API's Lambda (`api.py`
routes, `handler.py` the entry point)."""

from pipeline_steps.query.core import (
    NoPublishedRunError,
    QueryInputError,
    UnknownItemError,
    clear_pointer_cache,
    get_recommendations,
    get_related,
)
from pipeline_steps.query.metadata import ItemMetadata, ItemMetadataError, MetadataSource, parse_item_metadata

__all__ = [
    "ItemMetadata",
    "ItemMetadataError",
    "MetadataSource",
    "NoPublishedRunError",
    "QueryInputError",
    "UnknownItemError",
    "clear_pointer_cache",
    "get_recommendations",
    "get_related",
    "parse_item_metadata",
]
