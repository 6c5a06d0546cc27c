"""Evaluate step (the gate): top-x ranking metrics of the model and of the most-popular baseline."""
