"""Seeded secrets and personal data never survive redaction; ordinary text does."""

from __future__ import annotations

import json

import pytest

from summarize.redact import Redaction, Redactor
from warroom.errors import ConfigError

SECRETS = {
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "github": "ghp_1234567890abcdefghijklmnopqrstuvwxyzAB",
    "slack": "xoxb-123456789012-abcdefghijkl",
    "bearer": "c2VjcmV0LXRva2VuLXZhbHVl",
    "db_password": "hunter2!x",
    "api_key": "sk_live_51Habcdef",
    "email": "jane.doe@example.com",
    "card": "4111 1111 1111 1111",
}

LOG = (
    f"GET /api/orders Authorization: Bearer {SECRETS['bearer']} jwt={SECRETS['jwt']}\n"
    f"connect postgres://app:{SECRETS['db_password']}@db-1:5432/shop failed\n"
    f"aws key {SECRETS['aws']} github {SECRETS['github']} slack {SECRETS['slack']}\n"
    f'config {{"api_key": "{SECRETS["api_key"]}"}} user {SECRETS["email"]} paid with {SECRETS["card"]}\n'
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n"
)


def test_every_seeded_secret_is_removed_and_counted() -> None:
    report = Redaction()
    out = Redactor().text(LOG, report)
    for name, secret in SECRETS.items():
        assert secret not in out, name
    assert "MIIEowIBAAKCAQEA" not in out
    assert report.total >= len(SECRETS) + 1
    for kind in ("jwt", "aws_access_key", "github_token", "slack_token", "bearer_token", "email"):
        assert report.counts[kind] >= 1, kind
    # What is not sensitive stays readable.
    assert "GET /api/orders" in out and "db-1:5432/shop failed" in out and "[REDACTED:url_password]" in out


def test_ordinary_numbers_and_ids_are_kept() -> None:
    text = "order 1234567890123 (not a card: Luhn fails) took 812 ms; trace 4bf92f3577b34da6a3ce929d0e0e4736"
    report = Redaction()
    assert Redactor().text(text, report) == text
    assert report.total == 0


def test_nested_evidence_is_redacted_keys_and_values() -> None:
    evidence = {
        "log_samples": [f"login failed for {SECRETS['email']}", "password=letmein123 rejected"],
        "attributes": {"http.request.header.authorization": f"Bearer {SECRETS['bearer']}"},
        f"user {SECRETS['email']}": 3,
    }
    out = json.dumps(Redactor().value(evidence))
    assert SECRETS["email"] not in out and "letmein123" not in out and SECRETS["bearer"] not in out
    assert "login failed for [REDACTED:email]" in out


def test_operator_patterns_and_bad_pattern() -> None:
    redactor = Redactor({"customer_id": r"\bCUST-\d{6}\b"})
    assert redactor.text("refund CUST-123456 now") == "refund [REDACTED:customer_id] now"
    with pytest.raises(ConfigError, match="redact.broken"):
        Redactor({"broken": "([a-z"})


def test_redaction_is_idempotent() -> None:
    once = Redactor().text(LOG)
    assert Redactor().text(once) == once
