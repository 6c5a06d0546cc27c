"""Repackage step: FM model -> k-NN item set + user queries (separate keys) and the k to ask for."""
