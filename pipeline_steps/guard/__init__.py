"""First state of the pipeline: derive the run's names and skip the run if another one is active."""
