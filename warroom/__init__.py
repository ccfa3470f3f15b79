"""warroom core: the shared vocabulary of every stage.

Dependencies point one way: ``app`` composes the stages (``ingest``, ``detect``, ``correlate``,
``summarize``) and the ``fixtures`` generator; each of those imports only this package, never a
sibling. ``lint-imports`` enforces the rule in CI.
"""

__version__ = "0.1.0"
