"""Adapters that put euds inside other data-processing frameworks.

Each submodule needs its framework installed (an optional extra) and is imported on its own:
``euds.integrations.datatrove`` (``pip install 'euds[datatrove]'``). Hugging Face datasets,
Arrow, pandas and Ray need no adapter: see :mod:`euds.api` and ``docs/integrations.md``.
"""
