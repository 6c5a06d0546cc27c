"""Read path: a user's current top x from DynamoDB (`get_recommendations`) and its CLI."""

from pipeline_steps.query.core import NoPublishedRunError, clear_pointer_cache, get_recommendations

__all__ = ["NoPublishedRunError", "clear_pointer_cache", "get_recommendations"]
