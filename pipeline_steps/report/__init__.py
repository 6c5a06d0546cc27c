"""Report step: one self-contained HTML page per run (metrics, history, drift, coverage, timings)."""
