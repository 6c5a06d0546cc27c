"""Local stand-ins for SageMaker's built-in Factorization Machines and k-NN algorithms.

``run_training_job`` / ``run_transform_job`` take the CreateTrainingJob / CreateTransformJob
request dicts and return Describe*-shaped dicts (docs/contracts.md, "Local SageMaker jobs").
"""

from .jobs import run_training_job
from .transform import run_transform_job

__all__ = ["run_training_job", "run_transform_job"]
