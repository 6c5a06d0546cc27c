"""Prepare step: raw interaction files -> FM RecordIO channels, id maps, seen/holdout, manifest."""
