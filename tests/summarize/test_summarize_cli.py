"""The whole summary path on real components, as a user drives it: ``warroom bench summarize``
runs a fixture scenario through the embedded ClickHouse (generate → store → detect → correlate),
then ``warroom summarize`` / ``warroom digest`` / ``warroom remediation`` read what it kept.

The evidence queries are re-run against the store after the CLI exited: they reproduce the
figures the digest quotes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import WARROOM, run_warroom

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("bench")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARROOM_")}
    env["WARROOM_HOME"] = str(home / "home")
    args = ["bench", "summarize", "--scenario", "bad_deploy", "--duration", "2h", "--rate", "0.6"]
    done = run_warroom([*args, "--json", "--verbose", "--keep", str(home / "kept")], env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    kept = home / "kept"
    env.update(
        {
            "WARROOM_HOME": str(kept),
            "WARROOM_CLICKHOUSE_DSN": f"chdb://{kept / 'clickhouse'}",
            "WARROOM_STATE_DSN": f"sqlite:///{kept / 'bad_deploy' / 'state.db'}",
        }
    )
    truth = json.loads((kept / "bad_deploy" / "ground_truth.json").read_text())
    return {"figures": figures, "env": env, "dir": kept, "end": truth["end"], "stdout": done.stdout}


def _incidents(env: dict[str, str]) -> list[dict[str, Any]]:
    done = run_warroom(["incidents", "list", "--json"], env)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_bench_names_the_bad_deploy_and_every_claim_cites_evidence(kept: dict[str, Any]) -> None:
    figures = kept["figures"]
    assert figures["incidents_scored"] >= 1
    assert figures["root_cause_hit_rate"] == 1.0, kept["stdout"]
    assert figures["cited_claims_share"] == 1.0
    assert figures["grounded_claims_share"] == 1.0
    assert {"baseline_root_cause_hit_rate", "service_hit_rate", "statements"} <= set(figures)
    assert "baseline" in kept["stdout"]  # printed beside the baseline


def test_summarize_formats_and_proposals(kept: dict[str, Any], tmp_path: Path) -> None:
    env, end = kept["env"], kept["end"]
    incident = _incidents(env)[-1]["id"]  # the oldest: the deploy's first incident
    done = run_warroom(["summarize", incident, "--format", "json", "--at", end], env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    top = summary["hypotheses"][0]
    assert (top["service"], top["fault_kind"]) == ("checkout", "bad_deploy")
    ids = {item["id"] for item in summary["evidence"]}
    for section in ("impact", "hypotheses", "timeline", "next_checks", "remediations"):
        for claim in summary[section]:
            assert claim["evidence"] and set(claim["evidence"]) <= ids, (section, claim)
    assert all(item["query"] for item in summary["evidence"])
    assert summary["llm_status"] == "off"
    assert "proposed P-" in done.stderr and "rollback_deployment" in done.stderr

    listed = run_warroom(["remediation", "list", "--incident", incident, "--json"], env)
    assert listed.returncode == 0, listed.stderr
    proposals = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
    assert [p["action"] for p in proposals] == ["rollback_deployment"]
    assert proposals[0]["state"] == "proposed" and proposals[0]["params"]["service"] == "checkout"

    again = run_warroom(["summarize", incident, "--format", "md", "--at", end], env)
    assert again.returncode == 0, again.stderr
    assert "bad deploy" in again.stdout and "checkout" in again.stdout
    assert "proposed P-" not in again.stderr  # a standing proposal is not repeated

    page = tmp_path / "out" / "summary.html"
    html = run_warroom(["summarize", incident, "--format", "html", "--out", str(page), "--at", end], env)
    assert html.returncode == 0, html.stderr
    text = page.read_text()
    assert "<svg" in text and "checkout" in text and "E1" in text

    slack = run_warroom(["summarize", incident, "--format", "slack", "--at", end, "--no-propose"], env)
    assert slack.returncode == 0, slack.stderr
    assert json.loads(slack.stdout)["blocks"]


def test_evidence_queries_reproduce_the_quoted_figures(kept: dict[str, Any]) -> None:
    env, end = kept["env"], kept["end"]
    incident = _incidents(env)[-1]["id"]
    done = run_warroom(["summarize", incident, "--format", "json", "--at", end, "--no-propose"], env)
    items = json.loads(done.stdout)["evidence"]
    impact = next(i for i in items if i["kind"] == "impact" and i["service"] == "checkout")
    code = (
        "import json,sys\n"
        "import clickhouse_connect\n"
        "c=clickhouse_connect.get_client(dsn=sys.argv[1], database='otel')\n"
        "item=json.loads(sys.argv[2])\n"
        "rows=c.query(item['query'], parameters=item['params']).result_rows\n"
        "print(json.dumps([list(r) for r in rows], default=str))\n"
    )
    rerun = subprocess.run(
        [sys.executable, "-c", code, env["WARROOM_CLICKHOUSE_DSN"], json.dumps(impact)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    row = next(r for r in json.loads(rerun.stdout) if r[0] == "checkout")
    assert (int(row[1]), int(row[2])) == (impact["values"]["requests"], impact["values"]["errors"])


def test_sre_digest_of_the_period(kept: dict[str, Any], tmp_path: Path) -> None:
    env, end = kept["env"], kept["end"]
    out = tmp_path / "digest.html"
    done = run_warroom(["digest", "--since", "30d", "--to", end, "--format", "html", "--out", str(out)], env)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    for incident in _incidents(env):
        assert incident["id"] in text
    md = run_warroom(["digest", "--since", "30d", "--to", end], env)
    assert md.returncode == 0 and "checkout" in md.stdout


def test_bad_input_gets_one_clear_line(kept: dict[str, Any]) -> None:
    env = kept["env"]
    unknown = run_warroom(["summarize", "inc-nope'; DROP TABLE incidents; --", "--no-propose"], env)
    assert unknown.returncode == 3
    assert unknown.stderr.strip().splitlines()[-1].startswith("error: no incident")
    fmt = subprocess.run(
        [WARROOM, "summarize", "x", "--format", "pdf"], env=env, capture_output=True, text=True
    )
    assert fmt.returncode == 2 and "pdf" in fmt.stderr
    since = run_warroom(["digest", "--since", "yesterday"], env)
    assert since.returncode != 0 and "error" in since.stderr.lower()
    assert _incidents(env)  # the incidents table survived the metacharacters


def test_llm_narrative_through_the_cli_accepted_or_recorded_why_not(
    kept: dict[str, Any], tmp_path: Path
) -> None:
    """``warroom summarize`` with an OpenAI-compatible endpoint (a real server process): a grounded
    answer is rendered as the LLM's narrative beside the digest; an answer citing evidence that does
    not exist is retried once, then the digest stands alone and the reason is in the audit log."""
    from tests.summarize.fake_openai import FakeOpenAI

    env, end = dict(kept["env"]), kept["end"]
    incident = _incidents(env)[-1]["id"]
    good = {
        "summary": [{"text": "Checkout fails since its new release.", "evidence": ["E1"]}],
        "impact": [],
        "hypotheses": [
            {
                "service": "checkout",
                "fault_kind": "bad_deploy",
                "confidence": 0.8,
                "text": "The checkout release broke checkout.",
                "evidence": ["E1"],
            }
        ],
        "remediations": [],
    }
    bad = {**good, "summary": [{"text": "It is the database.", "evidence": ["E999"]}]}
    (tmp_path / "openai").mkdir()
    with FakeOpenAI(tmp_path / "openai", api_key="sk-test-123") as server:
        accepted_url = server.scenario({"json": good})
        env.update(
            {
                "WARROOM_LLM_BASE_URL": accepted_url,
                "WARROOM_LLM_MODEL": "m",
                "WARROOM_LLM_API_KEY": "sk-test-123",
            }
        )
        done = run_warroom(["summarize", incident, "--format", "md", "--at", end, "--no-propose"], env)
        assert done.returncode == 0, done.stderr
        assert "Checkout fails since its new release." in done.stdout
        assert "LLM narrative not used" not in done.stderr
        assert len(server.requests(accepted_url)) == 1

        rejected_url = server.scenario({"json": bad})
        env["WARROOM_LLM_BASE_URL"] = rejected_url
        again = run_warroom(["summarize", incident, "--format", "md", "--at", end, "--no-propose"], env)
        assert again.returncode == 0, again.stderr
        assert "LLM narrative not used: rejected" in again.stderr and "E999" in again.stderr
        assert "It is the database." not in again.stdout
        assert "bad deploy" in again.stdout  # the deterministic digest stands
        assert len(server.requests(rejected_url)) == 2  # retried once with the violations
        assert "E999" in server.requests(rejected_url)[1]["raw"]

    code = (
        "import json,sys\n"
        "from warroom import audit\n"
        "from warroom.statedb import connect\n"
        "entries = audit.entries(connect(sys.argv[1]), sys.argv[2])\n"
        "print(json.dumps([[e.action, e.reason] for e in entries]))\n"
    )
    trail = subprocess.run(
        [sys.executable, "-c", code, env["WARROOM_STATE_DSN"], incident], capture_output=True, text=True
    )
    entries = [tuple(e) for e in json.loads(trail.stdout) if e[0] == "summary.narrative"]
    assert [reason.split(":")[0] for _, reason in entries][-2:] == ["accepted", "rejected"]
