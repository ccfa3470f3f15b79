"""Grounding is enforced by code: citations exist, quoted figures are in the cited evidence,
subjects are in the incident, remediations are catalog actions with valid parameters."""

from __future__ import annotations

import json
from typing import Any

import pytest

from summarize.catalog import Catalog
from summarize.grounding import ANSWER_SCHEMA, check, cited_claims_share, count_cited, services_of
from summarize.model import Claim, FaultKind, Hypothesis, Remediation, numbers_in
from tests.summarize.llm_packs import TinyCatalog, good_answer, pack


def violations_of(answer: Any) -> list[str]:
    narrative, violations = check(answer, pack(), TinyCatalog())
    assert (narrative is None) == bool(violations)
    return violations


def with_summary(text: str, *evidence: str) -> dict[str, Any]:
    answer = good_answer()
    answer["summary"] = [{"text": text, "evidence": list(evidence)}]
    return answer


# --------------------------------------------------------------------------- accepted answers


def test_a_good_answer_becomes_a_narrative() -> None:
    narrative, violations = check(json.dumps(good_answer()), pack(), TinyCatalog(), model="gpt-test")
    assert violations == []
    assert narrative is not None and narrative.model == "gpt-test"
    assert narrative.summary == (
        Claim("Checkout errors rose to 35% right after the 2.4.1 deploy.", ("E1", "E2")),
    )
    assert [h.service for h in narrative.hypotheses] == ["checkout", "payments-db"]
    top = narrative.hypotheses[0]
    assert top.fault_kind is FaultKind.BAD_DEPLOY and top.confidence == 0.8 and top.evidence == ("E2", "E3")
    assert narrative.remediations == (
        Remediation(
            "rollback_deployment",
            {"service": "checkout", "to_version": "2.4.0"},
            "Roll checkout back to 2.4.0, the version before the errors started.",
            ("E2",),
            source="llm",
        ),
    )


def test_parsed_json_an_object_for_params_and_a_code_fence_are_accepted() -> None:
    answer = good_answer()
    answer["remediations"][0]["params"] = {"service": "checkout", "to_version": "2.4.0"}
    assert violations_of(answer) == []
    assert violations_of("```json\n" + json.dumps(good_answer()) + "\n```") == []


def test_empty_optional_sections_are_fine() -> None:
    answer = good_answer()
    answer["impact"] = answer["hypotheses"] = answer["remediations"] = []
    assert violations_of(answer) == []


def test_the_schema_is_strict_mode_compatible() -> None:
    """OpenAI's strict structured outputs: every object closed and every property required."""

    def objects(node: Any) -> list[dict[str, Any]]:
        found = []
        if isinstance(node, dict):
            if node.get("type") == "object":
                found.append(node)
            for value in node.values():
                found.extend(objects(value))
        elif isinstance(node, list):
            for value in node:
                found.extend(objects(value))
        return found

    for obj in objects(ANSWER_SCHEMA):
        assert obj["additionalProperties"] is False
        assert sorted(obj["required"]) == sorted(obj["properties"])
    assert ANSWER_SCHEMA["properties"]["hypotheses"]["items"]["properties"]["fault_kind"]["enum"] == [
        k.value for k in FaultKind
    ]


# --------------------------------------------------------------------------- citations


def test_citing_evidence_that_does_not_exist() -> None:
    answer = good_answer()
    answer["hypotheses"][0]["evidence"] = ["E2", "E9"]
    assert violations_of(answer) == ["hypotheses[0]: cites E9, which does not exist"]
    answer["impact"][0]["evidence"] = ["E98", "E99"]
    assert "impact[0]: cites E98, E99, which do not exist" in violations_of(answer)


def test_every_statement_must_cite_something() -> None:
    answer = good_answer()
    answer["remediations"][0]["evidence"] = []
    answer["summary"][0]["evidence"] = "E1"
    assert violations_of(answer) == [
        "summary[0]: evidence must be a list of evidence ids",
        "remediations[0]: cites no evidence; every statement must cite at least one evidence id",
    ]


# --------------------------------------------------------------------------- figures


@pytest.mark.parametrize(
    "text",
    [
        "The error rate is 35%.",  # 0.3497 as a percentage, rounded
        "The error rate is 34.97%.",  # as the title writes it
        "The error rate is 0.35.",  # the ratio, rounded
        "p95 latency is 1.2 s.",  # 1203 ms in seconds
        "p95 latency is 1203ms.",
        "About 1,200 requests failed or not.",  # 1200.4
        "About 1.2k requests.",
        "Errors started at 12:03 on 2024-05-01T12:03:07Z (inc-0042, E1, p95, v2, trace 4bf92f3577b3).",
    ],
)
def test_quoted_figures_from_the_cited_evidence_pass(text: str) -> None:
    assert violations_of(with_summary(text, "E1")) == []


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("The error rate is 47%.", "47%"),
        ("The error rate is 36%.", "36%"),
        ("p95 latency is 1.3 s.", "1.3 s"),
        ("About 1,300 requests.", "1,300"),
        ("Database p95 is 420 ms.", "420 ms"),  # true, but in E4, which this statement does not cite
        ("Latency tripled to 3x.", "3x"),  # a computed ratio is not a figure of the evidence
    ],
)
def test_figures_not_in_the_cited_evidence_are_rejected(text: str, quoted: str) -> None:
    assert violations_of(with_summary(text, "E1")) == [
        f"summary[0]: quotes {quoted}, which is not in the cited evidence (E1)"
    ]


def test_versions_must_be_written_in_the_cited_evidence() -> None:
    assert violations_of(with_summary("Deployed v2.4.1, replacing 2.4.0.", "E2")) == []
    assert violations_of(with_summary("Deployed 2.5.0.", "E2")) == [
        "summary[0]: quotes 2.5.0, which is not in the cited evidence (E2)"
    ]
    assert violations_of(with_summary("Deployed 2.4.1.", "E1")) == [
        "summary[0]: quotes 2.4.1, which is not in the cited evidence (E1)"
    ]


def test_numbers_in_skips_ids_times_versions_and_reads_units() -> None:
    text = (
        "2024-05-01T12:03:07.123Z E3 p95 db-1 INC-42 5xx v2 v2.4 2.4.1 10.0.0.7 at 12:03 "
        "uuid 3fa85f64-5717-4562-b3fc-2c963f66afa6: 35% of 1,200 took 420ms, 1.2 s, -3 and 1e3"
    )
    assert numbers_in(text) == [35.0, 1200.0, 420.0, 1.2, -3.0, 1000.0]


# --------------------------------------------------------------------------- subjects


def test_hypotheses_name_an_incident_service_a_known_fault_and_a_confidence() -> None:
    answer = good_answer()
    answer["hypotheses"][0].update(service="billing", fault_kind="cosmic_rays", confidence=1.5)
    answer["hypotheses"][1]["confidence"] = True
    found = violations_of(answer)
    assert (
        found[0] == "hypotheses[0]: service 'billing' is not in this incident (known: checkout, payments-db)"
    )
    assert found[1].startswith("hypotheses[0]: fault_kind 'cosmic_rays' is not one of bad_deploy, ")
    assert found[2:] == [
        "hypotheses[0]: confidence must be a number from 0 to 1, not 1.5",
        "hypotheses[1]: confidence must be a number from 0 to 1, not True",
    ]
    assert services_of(pack()) == {"checkout", "payments-db"}


def test_a_remediation_must_be_a_catalog_action() -> None:
    answer = good_answer()
    answer["remediations"][0]["action"] = "run_shell"
    assert violations_of(answer) == [
        "remediations[0]: unknown action 'run_shell' (catalog: rollback_deployment, restart_service, "
        "scale_replicas, failover_database)"
    ]


def test_a_remediation_needs_valid_parameters() -> None:
    answer = good_answer()
    answer["remediations"][0]["params"] = [
        {"name": "service", "value": "checkout"},
        {"name": "force", "value": True},
    ]
    answer["remediations"].append(
        {
            "action": "scale_replicas",
            "params": {"service": "checkout", "replicas": "many"},
            "text": "Add replicas to checkout.",
            "evidence": ["E1"],
        }
    )
    assert violations_of(answer) == [
        "remediations[0]: missing parameter 'to_version'",
        "remediations[0]: unknown parameter 'force'",
        "remediations[1]: parameter 'replicas' must be int",
    ]


def test_a_remediation_targets_only_services_of_the_incident() -> None:
    answer = good_answer()
    answer["remediations"] = [
        {
            "action": "failover_database",
            "params": [{"name": "database", "value": "prod"}],
            "text": "Fail the database over.",
            "evidence": ["E4"],
        },
        {"action": "restart_service", "params": "service=checkout", "text": "Restart.", "evidence": ["E1"]},
    ]
    assert violations_of(answer) == [
        "remediations[0]: database 'prod' is not a service of this incident (known: checkout, payments-db)",
        "remediations[1]: params must be a list of {name, value} pairs",
    ]


def test_with_the_real_catalog() -> None:
    catalog = Catalog.default()
    narrative, violations = check(good_answer(), pack(), catalog)
    assert violations == [] and narrative is not None
    answer = good_answer()
    answer["remediations"][0]["params"] = {"service": "checkout; rm -rf /"}
    answer["remediations"].append(
        {
            "action": "failover_database",
            "params": {"database": "prod"},
            "text": "Fail over.",
            "evidence": ["E4"],
        }
    )
    _, violations = check(answer, pack(), catalog)
    assert violations[0].startswith("remediations[0]: parameter 'service' must match")
    assert violations[1] == (
        "remediations[0]: service 'checkout; rm -rf /' is not a service of this incident "
        "(known: checkout, payments-db)"
    )
    assert violations[2] == (
        "remediations[1]: database 'prod' is not a service of this incident (known: checkout, payments-db)"
    )


# --------------------------------------------------------------------------- structure


@pytest.mark.parametrize(
    ("answer", "violation"),
    [
        ("Sure! The checkout service is down.", "the answer is not valid JSON"),
        ('{"summary": [', "the answer is not valid JSON"),
        ("[]", "the answer must be a JSON object, not a list"),
        ({"summary": []}, "summary: empty; state at least one cited sentence"),
        ({"summary": [{"text": "x", "evidence": ["E1"]}]}, "impact: missing or not a list"),
    ],
)
def test_malformed_answers_are_rejected(answer: Any, violation: str) -> None:
    assert any(v.startswith(violation) for v in violations_of(answer))


def test_statement_shape_and_size_limits() -> None:
    answer = good_answer()
    answer["summary"] = [{"text": " ", "evidence": ["E1"]}, "not an object"]
    answer["impact"] = [{"text": "x" * 1001, "evidence": ["E1"]}]
    answer["hypotheses"] = [answer["hypotheses"][1]] * 13
    found = violations_of(answer)
    assert found[:4] == [
        "hypotheses: 13 statements, at most 12 allowed",
        "summary[0]: text must be a non-empty string",
        "summary[1]: must be an object, not a string",
        "impact[0]: text is 1001 characters, at most 1000 allowed",
    ]


# --------------------------------------------------------------------------- counting


def test_count_cited_claims() -> None:
    ids = pack().ids
    claims: list[Claim | Hypothesis | Remediation] = [
        Claim("cited", ("E1",)),
        Claim("uncited", ()),
        Claim("dangling", ("E1", "E9")),
        Hypothesis("checkout", FaultKind.BAD_DEPLOY, 0.5, "h", ("E2",)),
    ]
    assert count_cited(claims, ids) == (2, 4)
    assert cited_claims_share(claims, ids) == 0.5
    assert cited_claims_share([], ids) == 0.0
