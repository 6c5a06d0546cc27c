"""Read path: a user's current top x (`get_recommendations`), an item's related items (`get_related`),
their CLI, and the read API's Lambda (`api.py` routes, `handler.py` the entry point)."""

from pipeline_steps.query.core import (
    NoPublishedRunError,
    QueryInputError,
    UnknownItemError,
    clear_pointer_cache,
    get_recommendations,
    get_related,
)

__all__ = [
    "NoPublishedRunError",
    "QueryInputError",
    "UnknownItemError",
    "clear_pointer_cache",
    "get_recommendations",
    "get_related",
]
