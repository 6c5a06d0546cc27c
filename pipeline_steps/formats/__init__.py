"""SageMaker wire and artifact formats, numpy only (no sagemaker SDK, no MXNet).

* ``recordio``: RecordIO-protobuf writers (byte-identical to sagemaker 2.257.7) and readers.
* ``mxnet_params``: MXNet NDArray list files (``params``, K-Means ``model_algo-1``).
* ``artifact``: ``model.tar.gz`` (ustar + gzip) and stored ZIP, byte-exact like SageMaker's.
* ``fm_model``: the Factorization Machines model artifact (read both layouts, write SageMaker's).
* ``knn_output``: k-NN verbose JSON-lines output, best-first reader (the local emulator's
  writer is ``pipeline_steps.local_algorithms.knn_lines``).

See docs/formats.md and docs/decisions/0001-wire-formats-without-sdk.md.
"""

__all__ = ["artifact", "fm_model", "knn_output", "mxnet_params", "recordio"]
