"""Run the deployed pipeline offline: moto server + the synthesized CDK template + a small adapter.

See docs/local-mode.md. Entry point: ``python -m pipeline_steps.local demo|run``.
"""
