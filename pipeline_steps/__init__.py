"""Runtime code of the pipeline steps (Lambda handlers, pure cores, formats, local mode)."""
