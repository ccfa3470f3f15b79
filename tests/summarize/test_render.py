"""The incident digest in every format: complete (every cause, id and query), escaped (telemetry
stays text), within Slack's limits, and byte-for-byte deterministic."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest

from summarize.model import (
    Claim,
    EvidenceItem,
    EvidenceKind,
    EvidencePack,
    FaultKind,
    Hypothesis,
    Narrative,
    Remediation,
    Summary,
)
from summarize.render import FORMATS, duration_text, md_block, md_code, md_text, render, slack_text
from warroom.errors import InputError
from warroom.incident import Incident

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
EVIL = "<script>alert(1)</script> [click](http://evil.example) `rm -rf` <!channel> # heading"


def _series(start: datetime, values: Sequence[float | None]) -> tuple[tuple[int, float | None], ...]:
    base = int(start.timestamp())
    return tuple((base + 60 * i, v) for i, v in enumerate(values))


def _incident(**changes: object) -> Incident:
    incident = Incident(
        id="INC-42",
        title="checkout errors after deploy 2.4.0",
        severity="critical",
        status="open",
        started_at=T0,
        updated_at=T0 + timedelta(minutes=20),
        resolved_at=None,
        acknowledged_by="",
        alert_count=7,
        services=("checkout", "frontend"),
        fingerprints=("fp-checkout-err", "fp-frontend-lat"),
        flapping=(),
        root_causes=({"service": "checkout", "score": 0.9, "confidence": 0.82, "reasons": ["deploy"]},),
        merged_into=None,
    )
    return replace(incident, **changes)  # type: ignore[arg-type]


def _items() -> tuple[EvidenceItem, ...]:
    window = (T0 - timedelta(minutes=30), T0 + timedelta(minutes=20))
    error_points = _series(window[0], [0.01] * 30 + [0.31, 0.35, None, 0.36] + [0.35] * 16)
    return (
        EvidenceItem(
            id="E1",
            kind=EvidenceKind.IMPACT,
            service="checkout",
            title="checkout error ratio 0.35 (baseline 0.01) on POST /api/checkout",
            start=window[0],
            end=window[1],
            values={"observed": 0.35, "baseline": 0.01, "requests": 1200},
            points=error_points,
            query=(
                "SELECT toStartOfMinute(Timestamp) AS t, countIf(StatusCode = 'Error') / count() AS ratio\n"
                "FROM otel_traces WHERE ServiceName = {service:String}\n"
                "  AND Timestamp BETWEEN {start:DateTime64(9)} AND {end:DateTime64(9)}\nGROUP BY t ORDER BY t"
            ),
            params={"service": "checkout", "start": "2026-11-01 11:30:00", "end": "2026-11-01 12:20:00"},
        ),
        EvidenceItem(
            id="E2",
            kind=EvidenceKind.IMPACT,
            service="frontend",
            title="frontend p95 latency 2400 ms (baseline 310 ms)",
            start=window[0],
            end=window[1],
            values={"p95_ms": 2400, "baseline_ms": 310},
            points=_series(window[0], [310.0] * 30 + [2400.0] * 20),
            query="SELECT quantile(0.95)(Duration) FROM otel_traces WHERE ServiceName = {service:String}",
            params={"service": "frontend"},
        ),
        EvidenceItem(
            id="E3",
            kind=EvidenceKind.CHANGE,
            service="checkout",
            title="checkout service.version 2.3.9 -> 2.4.0 at 11:58",
            start=T0 - timedelta(minutes=2),
            end=T0 - timedelta(minutes=2),
            values={"from": "2.3.9", "to": "2.4.0"},
            query=(
                "SELECT min(Timestamp), ResourceAttributes['service.version'] AS v FROM otel_traces "
                "WHERE ServiceName = {service:String} GROUP BY v"
            ),
            params={"service": "checkout"},
        ),
        EvidenceItem(
            id="E4",
            kind=EvidenceKind.LOG_TEMPLATE,
            service="checkout",
            title="new error template: NullPointerException in PriceCalculator <*>",
            start=T0,
            end=window[1],
            values={"count": 5400},
            samples=(
                "java.lang.NullPointerException at PriceCalculator.apply(PriceCalculator.java:88)",
                "```DROP TABLE``` `x` ``y``",
            ),
            query=(
                "SELECT count() FROM otel_logs WHERE ServiceName = {service:String} AND Body LIKE {p:String}"
            ),
            params={"service": "checkout", "p": "%NullPointerException%"},
        ),
        EvidenceItem(
            id="E5",
            kind=EvidenceKind.TOPOLOGY,
            service="checkout",
            title="frontend -> checkout carries 98% of the failing requests",
            start=window[0],
            end=window[1],
            values={"share": 0.98},
            query=(
                "SELECT ParentService, ServiceName, count() FROM edges WHERE ServiceName = {service:String}"
            ),
            params={"service": "checkout"},
        ),
        EvidenceItem(
            id="E6",
            kind=EvidenceKind.SATURATION,
            service="payments",
            title="payments CPU flat at 35%",
            start=window[0],
            end=window[1],
            values={"cpu": 0.35},
            points=_series(window[0], [0.35] * 50),
            query="SELECT avg(Value) FROM otel_metrics_gauge WHERE ServiceName = {service:String}",
            params={"service": "payments"},
        ),
    )


def _summary(**changes: object) -> Summary:
    pack = EvidencePack(
        incident=_incident(),
        start=T0 - timedelta(minutes=30),
        end=T0 + timedelta(minutes=20),
        items=_items(),
        timeline=(
            {
                "at": "2026-11-01T12:00:00Z",
                "recorded_at": "2026-11-01T12:00:01Z",
                "kind": "opened",
                "actor": "warroom",
                "notify": True,
                "reasons": ["checkout error ratio high"],
            },
        ),
    )
    summary = Summary(
        pack=pack,
        title="checkout failing after deploy 2.4.0",
        impact=(
            Claim("checkout error ratio 0.35 against a baseline of 0.01 (1200 requests)", ("E1",)),
            Claim("frontend p95 latency 2400 ms against 310 ms", ("E2", "E5")),
        ),
        hypotheses=(
            Hypothesis("payments", FaultKind.CPU_SATURATION, 0.12, "payments CPU is flat at 35%", ("E6",)),
            Hypothesis(
                "checkout",
                FaultKind.BAD_DEPLOY,
                0.82,
                "checkout 2.4.0 deployed at 11:58, errors began at 12:00 with a new NullPointerException",
                ("E3", "E4", "E1"),
            ),
        ),
        timeline=(
            Claim("11:58 checkout deployed 2.4.0", ("E3",)),
            Claim("12:00 checkout error ratio rose to 0.35", ("E1",)),
        ),
        next_checks=(Claim("Compare PriceCalculator changes between 2.3.9 and 2.4.0", ("E3", "E4")),),
        remediations=(
            Remediation(
                "rollback_deployment",
                {"service": "checkout", "to_version": "2.3.9"},
                "errors began with 2.4.0",
                ("E3", "E1"),
            ),
        ),
    )
    return replace(summary, **changes)  # type: ignore[arg-type]


def _narrative() -> Narrative:
    return Narrative(
        summary=(Claim("The 2.4.0 deploy of checkout broke price calculation.", ("E3", "E4")),),
        impact=(Claim("About a third of checkout requests fail.", ("E1",)),),
        hypotheses=(Hypothesis("checkout", FaultKind.BAD_DEPLOY, 0.9, "bad deploy", ("E3",)),),
        remediations=(),
        model="llama-3.1-8b-instruct",
    )


def _evil_summary() -> Summary:
    """Every telemetry-borne string carries markup that must stay text."""
    base = _summary()
    items = tuple(
        replace(
            item, title=f"{item.title} {EVIL}", samples=(*item.samples, EVIL), query=f"{item.query} -- {EVIL}"
        )
        for item in base.pack.items
    )
    pack = replace(base.pack, items=items, incident=_incident(title=EVIL, services=("checkout", EVIL)))
    return replace(
        base,
        pack=pack,
        title=f"checkout {EVIL}",
        impact=(Claim(f"impact {EVIL}", ("E1",)),),
        hypotheses=(Hypothesis(f"svc {EVIL}", FaultKind.BAD_DEPLOY, 0.5, f"text {EVIL}", ("E3",)),),
        timeline=(Claim(EVIL, ("E1",)),),
        next_checks=(Claim(EVIL, ("E4",)),),
        remediations=(Remediation("restart", {"service": EVIL}, EVIL, ("E1",)),),
        llm_status=f"rejected: {EVIL}",
    )


def _slack(summary: Summary) -> dict[str, object]:
    data = json.loads(render(summary, "slack"))
    assert isinstance(data, dict)
    return data


def _slack_texts(data: dict[str, object]) -> list[str]:
    out = [str(data["text"])]
    for block in data["blocks"]:  # type: ignore[attr-defined]
        if "text" in block:
            out.append(block["text"]["text"])
        out += [e["text"] for e in block.get("elements", ())]
    return out


class _Balance(HTMLParser):
    """Fails on an end tag that does not close the innermost open element."""

    VOID = {"meta", "br", "hr", "img", "input", "link", "area", "base", "col", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(html: str) -> _Balance:
    parser = _Balance()
    parser.feed(html)
    parser.close()
    assert parser.stack == [], parser.stack
    return parser


# --- completeness ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_names_title_causes_ids_and_queries(fmt: str) -> None:
    summary = _summary()
    out = render(summary, fmt)
    text = "\n".join(_slack_texts(json.loads(out))) if fmt == "slack" else out
    assert "checkout failing after deploy 2.4.0" in text
    for h in summary.hypotheses:
        assert h.service in text
        assert h.fault_kind.label in text
    assert "82%" in text and "12%" in text
    for item in summary.pack.items:
        assert f"[{item.id}]" in text or f"{item.id}</strong>" in text
        query = item.query
        if fmt == "slack":
            query = query.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        if fmt == "html":
            query = (
                query.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#39;")
            )
        assert query in text, (fmt, item.id)
    for claim in summary.claims():
        for evidence_id in claim.evidence:
            assert f"[{evidence_id}]" in text
    assert "warroom remediation list --incident INC-42" in text


def test_causes_are_ranked_by_confidence() -> None:
    md = render(_summary(), "md")
    assert md.index("bad deploy (82% confidence)") < md.index("CPU saturation (12% confidence)")
    assert "1. **checkout**" in md


def test_markdown_evidence_has_sql_block_rerun_hint_and_links() -> None:
    md = render(_summary(), "md")
    assert "```sql\nSELECT toStartOfMinute" in md
    assert "clickhouse-client --param_service=checkout '--param_start=2026-11-01 11:30:00'" in md
    assert "--queries-file E1.sql" in md
    assert '<a id="evidence-E1"></a>' in md
    assert "[E1]: #evidence-E1" in md
    # [E1][E3] would be one CommonMark link; the digest separates them.
    assert "[E3] [E4] [E1]" in md
    assert "ongoing (20m as of 2026-11-01 12:20:00Z)" in md


def test_html_is_balanced_links_ids_and_charts_cited_series() -> None:
    html = render(_summary(), "html")
    parser = _parse(html)
    assert "svg" in parser.tags and "details" in parser.tags
    assert '<a class="ref" href="#evidence-E1">[E1]</a>' in html
    assert 'id="evidence-E6"' in html
    # Key series: the cited items with points (E1, E2, E6), each charted at the top.
    key = html[html.index('id="key-series"') : html.index('id="causes"')]
    assert key.count("<svg") == 3
    assert "default-src 'none'" in html


def test_resolved_incident_shows_duration() -> None:
    summary = _summary()
    incident = _incident(status="resolved", resolved_at=T0 + timedelta(hours=1, minutes=23, seconds=5))
    summary = replace(summary, pack=replace(summary.pack, incident=incident))
    for fmt in ("md", "html"):
        assert "1h 23m" in render(summary, fmt)
    assert "ongoing" not in render(summary, "md")


# --- the LLM narrative -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_narrative_is_marked_as_llm_written_with_citations(fmt: str) -> None:
    out = render(_summary(narrative=_narrative(), llm_status="ok"), fmt)
    assert "LLM narrative" in out
    assert "llama-3.1-8b-instruct" in out
    assert "broke price calculation" in out
    assert "not shown" not in out


@pytest.mark.parametrize("fmt", FORMATS)
def test_llm_status_line_when_no_narrative(fmt: str) -> None:
    assert "LLM narrative" not in render(_summary(), fmt)  # llm_status "off": nothing to say
    out = render(_summary(llm_status="rejected: uncited number 0.5"), fmt)
    assert "LLM narrative not shown: rejected: uncited number 0.5" in out


# --- escaping ------------------------------------------------------------------------------------


def test_html_escapes_telemetry() -> None:
    html = render(_evil_summary(), "html")
    _parse(html)
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'href="http://evil' not in html


def _md_prose(md: str) -> str:
    """The Markdown without its fenced blocks and code spans: what a renderer interprets."""
    md = re.sub(r"^(`{3,})[a-z]*\n.*?\n\1$", "", md, flags=re.S | re.M)
    return re.sub(r"(?<![\\`])(`+)(?!`).*?(?<!`)\1(?!`)", "", md)


def test_markdown_escapes_telemetry() -> None:
    md = render(_evil_summary(), "md")
    prose = _md_prose(md)
    assert "<script" not in prose
    assert "<!channel>" not in prose
    assert not re.search(r"(?<!\\)\]\(", prose)  # no "](" that is not escaped
    assert "\\[click\\](http\\://evil.example)" in prose
    assert "&lt;script>alert(1)&lt;/script>" in prose
    assert "\\`rm -rf\\`" in prose
    # No telemetry text opens a heading; raw "<" only in the anchors the digest writes itself.
    assert not re.search(r"^#+ heading", md, re.M)
    assert set(re.findall(r"<[a-z/!]+", prose)) <= {"<a", "</a"}


def test_markdown_code_blocks_survive_backticks() -> None:
    md = render(_summary(), "md")
    # The sample with triple backticks sits in a longer fence, which it cannot close.
    assert "````text\n" in md
    assert md_block("a ``` b\n```", "sql").startswith("````sql\n")
    assert md_code("x ` y") == "``x ` y``"
    assert md_code("`edge`") == "`` `edge` ``"
    assert md_code("") == ""


def test_md_text_neutralises_blocks_and_links() -> None:
    assert md_text("# title") == "\\# title"
    assert md_text("1. one") == "1\\. one"
    assert md_text("- item") == "\\- item"
    assert md_text("[a](b)") == "\\[a\\](b)"
    assert md_text("> quote") == "\\> quote"
    assert md_text("0.35 and 2.3.9 -> 2.4.0") == "0.35 and 2.3.9 -> 2.4.0"
    assert md_text("see https://x.io and www.y.io") == "see https\\://x.io and www\\.y.io"
    assert md_text("a\nb\r\n# c") == "a b \\# c"
    assert md_text("WWW.Example.com") == "WWW\\.Example.com"
    assert md_text("<b>&") == "&lt;b>&amp;"


def test_slack_escapes_telemetry() -> None:
    raw = render(_evil_summary(), "slack")
    assert "<!channel>" not in raw
    assert "<script" not in raw
    assert "<http" not in raw
    assert "&lt;!channel&gt;" in raw
    assert slack_text("a & <b> <!here>") == "a &amp; &lt;b&gt; &lt;!here&gt;"


# --- Slack limits --------------------------------------------------------------------------------


def _check_slack_limits(data: dict[str, object]) -> None:
    blocks = data["blocks"]
    assert isinstance(blocks, list) and 0 < len(blocks) <= 50
    for block in blocks:
        if "text" in block:
            assert block["text"]["type"] == "mrkdwn"
            assert 0 < len(block["text"]["text"]) <= 3000
        for element in block.get("elements", ()):
            assert len(element["text"]) <= 3000
        # A code block split across sections is closed in each one.
        if "text" in block:
            assert block["text"]["text"].count("```") % 2 == 0


def test_slack_is_valid_block_kit_within_limits() -> None:
    data = _slack(_summary(narrative=_narrative()))
    _check_slack_limits(data)
    assert "checkout failing after deploy 2.4.0" in str(data["text"])
    assert "probable cause: checkout (bad deploy)" in str(data["text"])


def test_slack_stays_within_limits_for_a_huge_summary() -> None:
    base = _summary()
    item = base.pack.items[0]
    items = tuple(
        replace(
            item, id=f"E{i}", title="t" * 5000, query="SELECT 1 -- " + "x " * 3000, samples=("s" * 4000,) * 9
        )
        for i in range(1, 120)
    )
    many = tuple(Claim("c" * 4000 + " <&>", (f"E{i}",)) for i in range(1, 80))
    summary = replace(
        base, pack=replace(base.pack, items=items), impact=many, timeline=many, next_checks=many
    )
    data = _slack(summary)
    _check_slack_limits(data)
    assert data["blocks"][-1]["type"] == "context"  # type: ignore[index]
    assert "50-block limit" in data["blocks"][-1]["elements"][0]["text"]  # type: ignore[index]


# --- misc ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_rendering_is_deterministic(fmt: str) -> None:
    assert render(_summary(narrative=_narrative()), fmt) == render(_summary(narrative=_narrative()), fmt)


def test_unknown_ids_and_empty_sections_render() -> None:
    summary = _summary(
        impact=(Claim("orphan", ("E99",)),), hypotheses=(), timeline=(), next_checks=(), remediations=()
    )
    html = render(summary, "html")
    _parse(html)
    assert 'class="ref missing"' in html
    md = render(summary, "md")
    assert "\\[E99\\]" in md and "[E99]:" not in md
    assert "No probable cause" in md
    _check_slack_limits(_slack(summary))


def test_unknown_format_is_an_input_error() -> None:
    with pytest.raises(InputError, match="expected one of md, html, slack"):
        render(_summary(), "pdf")


def test_public_surface() -> None:
    import summarize.charts
    import summarize.period
    import summarize.render

    assert set(summarize.render.__all__) == {
        "FORMATS",
        "anchor",
        "figure_text",
        "pct_text",
        "duration_text",
        "md_block",
        "md_code",
        "md_text",
        "render",
        "render_period",
        "slack_text",
    }
    assert set(summarize.charts.__all__) == {"HEIGHT", "WIDTH", "line_chart", "value_label"}
    assert set(summarize.period.__all__) == {
        "DurationStats",
        "FlappingSignal",
        "IncidentRow",
        "NoisyAlert",
        "PeriodDigest",
        "build_period",
    }
    for module in (summarize.render, summarize.charts, summarize.period):
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)


def test_duration_text() -> None:
    assert duration_text(None) == "—"
    assert duration_text(timedelta(0)) == "0s"
    assert duration_text(timedelta(seconds=59)) == "59s"
    assert duration_text(timedelta(minutes=45, seconds=10)) == "45m 10s"
    assert duration_text(timedelta(hours=1, minutes=23, seconds=5)) == "1h 23m"
    assert duration_text(timedelta(days=2, hours=3)) == "2d 3h"
    assert duration_text(timedelta(hours=2)) == "2h"
    assert duration_text(timedelta(seconds=-90)) == "-1m 30s"
