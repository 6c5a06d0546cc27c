"""Publish step: each user's top x into DynamoDB under the run, then an atomic pointer flip."""
