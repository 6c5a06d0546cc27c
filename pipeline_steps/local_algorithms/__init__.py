"""Local stand-ins for SageMaker's built-in Factorization Machines and k-NN algorithms."""
