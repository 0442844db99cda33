"""Execution engines: ``local`` (the default, :mod:`euds.pipeline`) and ``ray``
(:mod:`euds.engines.ray_engine`), which write the same score directories."""
