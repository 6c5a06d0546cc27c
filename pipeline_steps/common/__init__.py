"""The run contract every step shares and no step owns (docs/contracts.md).

`layout`: the S3 keys of a run and their IAM wildcards.
"""
