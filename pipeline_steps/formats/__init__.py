"""SageMaker wire and artifact formats, numpy only (no sagemaker SDK, no MXNet)."""
