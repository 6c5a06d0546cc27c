"""Public data sets used by the demo, the benchmarks and the tests (fetched at run time, never committed)."""
