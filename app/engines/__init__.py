"""Engines: one interface (:mod:`app.engines.base`), one module per way of running a model.

Nothing outside this package imports ``llama_cpp``.
"""
