"""summarize: evidence packs, deterministic digests, LLM narratives and the remediation approval workflow.

Imports only the warroom core. Built in issue #5.
"""
