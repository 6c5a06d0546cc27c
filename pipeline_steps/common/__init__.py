"""The run contract every step shares and no step owns (docs/contracts.md).

`layout` (S3 keys of a run and their IAM wildcards), `manifest` (prepare's manifest.json),
`events` (step payloads), `table` (DynamoDB key scheme), `items` (the items attribute), `runio` and
`ranking` (a run's inputs; top x from k-NN output), `config` and `errors` (the one way a step
config is built; ConfigError, InputError), `limits` (constants several steps check), `batches`
(publish's Map ranges: repackage writes them, publish's children read them).
Steps import `common` and `formats`, never another step (tests/test_import_graph.py).
"""
