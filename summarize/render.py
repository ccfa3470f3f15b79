"""Render a :class:`~summarize.model.Summary` (one incident) or a
:class:`~summarize.period.PeriodDigest` (the SRE digest of a period) as Markdown, HTML or Slack.

The digest is always produced, with or without an LLM, so rendering is plain Jinja2 over the
deterministic model: same input, same bytes (no clock, no randomness, stable orders). One
:class:`jinja2.Environment` loads ``summarize/templates/*.j2``; what differs per format is escaping,
because every string that came from telemetry (titles, log samples, queries, service names) is
untrusted text that must stay text:

* **HTML** is autoescaped (``select_autoescape`` on ``*.html.j2``) and carries a
  Content-Security-Policy that forbids scripts, so a missed escape still cannot run anything.
* **Markdown** goes through :func:`md_text`, which neutralises what would turn telemetry into a
  link, an HTML tag, a heading, a list or a table cell; raw samples and queries go into code spans
  or fenced blocks whose fence is longer than any backtick run inside (:func:`md_code`,
  :func:`md_block`), so a query containing backticks cannot break out.
* **Slack** escapes ``&``, ``<`` and ``>`` as Slack's message-formatting docs require, which is
  what keeps ``<!channel>`` and ``<http://x|y>`` from pinging or linking. The Block Kit structure
  and its limits (50 blocks, 3000 characters per section text) are enforced here in Python; the
  wording lives in the ``*.slack.j2`` macros.

Evidence ids are cited as ``[E1]``: links to the evidence item's anchor in HTML and Markdown, so
every sentence can be traced to the exact query (with its parameters) that produced its figures.
"""

from __future__ import annotations

import functools
import json
import math
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context
from markupsafe import Markup

from summarize.charts import line_chart
from summarize.model import Claim, EvidenceItem, Hypothesis, Summary
from summarize.period import PeriodDigest
from warroom.errors import InputError

__all__ = [
    "FORMATS",
    "anchor",
    "duration_text",
    "figure_text",
    "md_block",
    "md_code",
    "md_text",
    "pct_text",
    "render",
    "render_period",
    "slack_text",
]

FORMATS = ("md", "html", "slack")
"""The formats :func:`render` and :func:`render_period` accept."""

SLACK_MAX_BLOCKS = 50  # Block Kit: blocks per message
SLACK_MAX_TEXT = 3000  # Block Kit: characters in a section's text
_SLACK_FALLBACK = 300  # the notification text: one line, not the digest
_KEY_SERIES = 6  # charts at the top of the HTML digest
_SAFE_ID = re.compile(r"[A-Za-z0-9_.-]+")


# --- escaping ------------------------------------------------------------------------------------

# Anywhere in a line: what opens emphasis, code, a link or image ("![" needs "["), a table cell,
# strikethrough, an HTML tag or an entity. "(" and ")" only matter after "]", so they stay as they are.
_MD_INLINE = {
    "\\": "\\\\",
    "`": "\\`",
    "*": "\\*",
    "_": "\\_",
    "[": "\\[",
    "]": "\\]",
    "#": "\\#",
    "|": "\\|",
    "~": "\\~",
    "&": "&amp;",
    "<": "&lt;",
}
_MD_CHARS = re.compile("[" + re.escape("".join(_MD_INLINE)) + "]")
# At the start of a line only: a list item ("1. ", "- "), a blockquote (">"), a setext underline or
# thematic break ("===", "---").
_MD_LINE_START = re.compile(r"^(\d{1,9})([.)])(?=\s|$)|^([-+=](?=[\s=-]|$)|>)")
_MD_AUTOLINK = re.compile(r"(?i)(?<=[a-z])(://)|\b(www)\.")


def md_text(value: object) -> str:
    """``value`` as inert inline Markdown: no links, tags, emphasis, headings, lists or cells.

    Newlines become spaces (inline text must not start a new block), Markdown punctuation is
    backslash-escaped, ``&`` and ``<`` become entities, a leading ``1.``/``-``/``>``/``=`` cannot
    start a list, quote or setext heading, and bare ``http://``/``www.`` are broken up so
    renderers with autolinking (GFM) do not make them clickable. Decimal numbers and ``a -> b``
    stay readable in the raw text.
    """
    text = " ".join(str(value).split())
    text = _MD_CHARS.sub(lambda m: _MD_INLINE[m.group(0)], text)
    text = _MD_AUTOLINK.sub(lambda m: "\\://" if m.group(1) else m.group(2) + "\\.", text)
    return _MD_LINE_START.sub(
        lambda m: f"{m.group(1)}\\{m.group(2)}" if m.group(1) else f"\\{m.group(3)}", text
    )


def _longest_run(text: str, char: str) -> int:
    runs = re.findall(re.escape(char) + "+", text)
    return max((len(r) for r in runs), default=0)


def md_code(value: object) -> str:
    """``value`` as one Markdown code span, whatever backticks it contains.

    The fence is one backtick longer than the longest run inside, padded with a space when the
    text starts or ends with a backtick (CommonMark strips exactly one such space).
    """
    text = " ".join(str(value).splitlines())
    if not text:
        return ""
    fence = "`" * (_longest_run(text, "`") + 1)
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_block(value: object, lang: str = "") -> str:
    """``value`` as a fenced Markdown code block that no line inside can close."""
    text = str(value).rstrip("\n")
    fence = "`" * max(3, _longest_run(text, "`") + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def slack_text(value: object) -> str:
    """``value`` escaped for Slack mrkdwn: ``&``, ``<``, ``>`` (so no mentions or links), one line."""
    text = " ".join(str(value).split())
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_code(value: object) -> str:
    """A Slack code block; a run of three backticks inside is broken with zero-width spaces."""
    text = str(value).rstrip("\n").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = re.sub(r"`{3,}", lambda m: "\u200b".join(m.group(0)), text)
    return f"```\n{text}\n```"


def _cut(value: object, limit: int) -> str:
    """Raw text shortened to ``limit`` characters (applied before escaping, so no entity is split)."""
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- values --------------------------------------------------------------------------------------


def _when(value: datetime | None) -> str:
    """A time as the Slack notifier writes it (``2026-11-01 12:00:00Z``): UTC, seconds, no micros."""
    if value is None:
        return "—"
    if value.tzinfo is None:  # trusted inputs are UTC; a naive time is read as UTC, not local
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def duration_text(value: timedelta | None) -> str:
    """``1h 23m``, ``45m 10s``, ``2d 3h``, ``9s``: the two largest units, "—" when unknown."""
    if value is None:
        return "—"
    seconds = round(value.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    units = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    first = next((i for i, (n, _) in enumerate(units) if n), len(units) - 1)
    shown = [f"{n}{u}" for n, u in units[first : first + 2] if n or first == len(units) - 1]
    return sign + " ".join(shown)


def pct_text(value: object) -> str:
    """A confidence in [0, 1] as a whole percentage; out-of-range values are clamped; NaN or
    anything that is not a number is "?%"."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "?%"
    if not math.isfinite(number):
        return "?%"
    return f"{round(min(max(number, 0.0), 1.0) * 100)}%"


def figure_text(value: object) -> str:
    """A figure as written in evidence: ints and strings as they are, floats to 6 significant digits."""
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def anchor(evidence_id: object) -> str:
    """The HTML/Markdown anchor of an evidence item, safe in an id attribute and a URL fragment."""
    return "evidence-" + re.sub(r"[^A-Za-z0-9_.-]", "_", str(evidence_id))


def _rerun(item: EvidenceItem) -> str:
    """The shell command that re-runs ``item.query`` (saved as ``<id>.sql``) with its parameters."""
    args = ["clickhouse-client"]
    args += [shlex.quote(f"--param_{name}={figure_text(value)}") for name, value in item.params.items()]
    args += ["--queries-file", shlex.quote(f"{item.id}.sql")]
    return " ".join(args)


def _known(ctx: Context) -> frozenset[str]:
    known = ctx.get("known_ids")
    return known if isinstance(known, frozenset) else frozenset()


@pass_context
def _cite_md(ctx: Context, ids: Iterable[str]) -> str:
    """``[E1] [E3]``: shortcut reference links (defined at the end of the digest), space-separated
    because ``[E1][E3]`` would be one link to E3 in CommonMark."""
    known = _known(ctx)
    return " ".join(f"[{i}]" if i in known and _SAFE_ID.fullmatch(i) else md_text(f"[{i}]") for i in ids)


@pass_context
def _cite_html(ctx: Context, ids: Iterable[str]) -> Markup:
    known = _known(ctx)
    out = []
    for evidence_id in ids:
        if evidence_id in known:
            out.append(Markup('<a class="ref" href="#{}">[{}]</a>').format(anchor(evidence_id), evidence_id))
        else:
            out.append(
                Markup('<span class="ref missing" title="not in the evidence">[{}]</span>').format(
                    evidence_id
                )
            )
    return Markup("").join(out)


def _cite_slack(ids: Iterable[str]) -> str:
    return "".join(f"[{slack_text(i)}]" for i in ids)


def _params_text(params: Mapping[str, object]) -> str:
    return " ".join(f"{name}={figure_text(value)}" for name, value in params.items())


@functools.cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("summarize", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        md=md_text,
        md_code=md_code,
        md_block=md_block,
        slack=slack_text,
        slack_code=_slack_code,
        cut=_cut,
        when=_when,
        dur=duration_text,
        pct=pct_text,
        num=figure_text,
        anchor=anchor,
        rerun=_rerun,
        params_text=_params_text,
        cite_md=_cite_md,
        cite_html=_cite_html,
        cite_slack=_cite_slack,
    )
    env.tests["safe_id"] = lambda value: _SAFE_ID.fullmatch(str(value)) is not None
    return env


# --- the incident digest -------------------------------------------------------------------------


def _ranked(hypotheses: Sequence[Hypothesis]) -> list[Hypothesis]:
    """Most confident first; ties (and NaN) keep the builder's order."""
    return sorted(hypotheses, key=lambda h: -h.confidence if math.isfinite(h.confidence) else 0.0)


def _has_points(item: EvidenceItem) -> bool:
    return any(v is not None and math.isfinite(v) for _, v in item.points)


def _incident_context(summary: Summary, fmt: str) -> dict[str, Any]:
    pack = summary.pack
    incident = pack.incident
    resolved = incident.resolved_at if incident.status == "resolved" else None
    causes = _ranked(summary.hypotheses)
    cited: list[str] = []
    claims: list[Claim | Hypothesis] = [*summary.impact, *causes]
    for claim in claims:
        cited += [i for i in claim.evidence if i not in cited]
    charts: dict[str, Markup] = {}
    if fmt == "html":
        start = int(incident.started_at.timestamp())
        end = int(resolved.timestamp()) if resolved else None
        for item in pack.items:
            if item.points:
                title = f"{item.id}: {item.title}"
                charts[item.id] = Markup(line_chart(item.points, title=title, start=start, end=end))
    key_series = [i for i in (pack.get(e) for e in cited) if i is not None and _has_points(i)]
    return {
        "s": summary,
        "inc": incident,
        "causes": causes,
        "ongoing": resolved is None,
        "duration": (resolved or pack.end) - incident.started_at,
        "items": pack.items,
        "known_ids": pack.ids,
        "cited": frozenset(cited),
        "charts": charts,
        "key_series": key_series[:_KEY_SERIES],
        "approve_cmd": f"warroom remediation list --incident {shlex.quote(incident.id)}",
        "narrative": summary.narrative,
        "show_status": summary.narrative is None and summary.llm_status != "off",
    }


def render(summary: Summary, fmt: str) -> str:
    """The incident digest of ``summary`` as ``md``, ``html`` or ``slack`` (Block Kit JSON text)."""
    _check(fmt)
    context = _incident_context(summary, fmt)
    if fmt == "slack":
        return _incident_slack(summary, context)
    return _environment().get_template(f"incident.{fmt}.j2").render(context)


# --- the period digest ---------------------------------------------------------------------------


def _period_context(digest: PeriodDigest) -> dict[str, Any]:
    return {"d": digest, "incident_count": len(digest.incidents)}


def render_period(digest: PeriodDigest, fmt: str) -> str:
    """The SRE digest of a period as ``md``, ``html`` or ``slack`` (Block Kit JSON text)."""
    _check(fmt)
    context = _period_context(digest)
    if fmt == "slack":
        return _period_slack(digest, context)
    return _environment().get_template(f"period.{fmt}.j2").render(context)


def _check(fmt: str) -> None:
    if fmt not in FORMATS:
        raise InputError(
            f"unknown digest format {fmt!r}; expected one of {', '.join(FORMATS)}", "invalid_format"
        )


# --- Slack Block Kit -----------------------------------------------------------------------------


def _split(text: str, limit: int = SLACK_MAX_TEXT) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, split between lines.

    A code block split across pieces is closed at the end of one and reopened in the next, so each
    piece renders on its own; a single line longer than a piece is cut.
    """
    text = text.strip("\n")
    if len(text) <= limit:
        return [text] if text.strip() else []
    pieces: list[str] = []
    lines: list[str] = []
    size = 0
    fenced = False
    reserve = len("\n```")
    for line in text.split("\n"):
        if len(line) > limit - 2 * reserve:
            line = line[: limit - 2 * reserve - 1] + "…"
            line = re.sub(r"&[a-z]*…$", "…", line)  # never leave half an entity
        if lines and size + len(line) + 1 > limit - reserve:
            pieces.append("\n".join(lines) + ("\n```" if fenced else ""))
            lines, size = (["```"], 3) if fenced else ([], 0)
        lines.append(line)
        size += len(line) + 1
        if line.startswith("```"):
            fenced = not fenced
    if lines:
        pieces.append("\n".join(lines))
    return pieces


def _pack(pieces: Iterable[str], sep: str = "\n\n", limit: int = SLACK_MAX_TEXT) -> list[str]:
    """Consecutive pieces joined by ``sep`` into as few texts of at most ``limit`` as fit."""
    out: list[str] = []
    for piece in pieces:
        for part in _split(piece, limit):
            if out and len(out[-1]) + len(sep) + len(part) <= limit:
                out[-1] += sep + part
            else:
                out.append(part)
    return out


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _message(fallback: str, groups: Sequence[tuple[Sequence[str], str]]) -> str:
    """The Block Kit message: one section per group of pieces joined by the group's separator (more
    sections when a group exceeds 3000 characters), dividers between groups, cut to 50 blocks
    with a note saying so."""
    blocks: list[dict[str, Any]] = []
    for group, sep in groups:
        texts = _pack(group, sep)
        if not texts:
            continue
        if blocks:
            blocks.append({"type": "divider"})
        blocks += [_section(t) for t in texts]
    if len(blocks) > SLACK_MAX_BLOCKS:
        dropped = len(blocks) - (SLACK_MAX_BLOCKS - 1)
        blocks = blocks[: SLACK_MAX_BLOCKS - 1]
        note = f"_{dropped} more blocks cut (Slack's 50-block limit): see the Markdown or HTML digest._"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]})
    return json.dumps({"text": fallback, "blocks": blocks}, ensure_ascii=False, indent=1)


def _macros(template: str, context: dict[str, Any]) -> Callable[..., str]:
    """A caller of ``template``'s macros: ``call("sec_impact")`` → that section's mrkdwn text."""
    module = _environment().get_template(template).make_module(context)

    def call(name: str, *args: object) -> str:
        return str(getattr(module, name)(*args))

    return call


def _incident_slack(summary: Summary, context: dict[str, Any]) -> str:
    call = _macros("incident.slack.j2", context)
    causes: list[Hypothesis] = context["causes"]
    incident = summary.pack.incident
    top = f"; probable cause: {causes[0].service} ({causes[0].fault_kind.label})" if causes else ""
    fallback = slack_text(
        _cut(f"{summary.title} ({incident.severity}, {incident.status}){top}", _SLACK_FALLBACK)
    )
    evidence = [call("sec_evidence_heading"), *(call("sec_evidence", item) for item in summary.pack.items)]
    paragraphs = "\n\n"
    groups = [
        ([call("sec_overview"), call("sec_impact")], paragraphs),
        ([call("sec_causes"), call("sec_llm")], paragraphs),
        ([call("sec_timeline"), call("sec_next_checks")], paragraphs),
        ([call("sec_remediations")], paragraphs),
        (evidence, paragraphs),
    ]
    return _message(fallback, groups)


def _period_slack(digest: PeriodDigest, context: dict[str, Any]) -> str:
    call = _macros("period.slack.j2", context)
    fallback = (
        f"SRE digest {_when(digest.start)} – {_when(digest.end)}: {len(digest.incidents)} incidents, "
        f"MTTA {duration_text(digest.tta.median)}, MTTR {duration_text(digest.ttr.median)}"
    )
    incidents = [call("sec_incidents_heading"), *(call("sec_incident", row) for row in digest.incidents)]
    groups = [
        ([call("sec_overview")], "\n"),
        (incidents, "\n"),
        ([call("sec_noisiest")], "\n"),
        ([call("sec_flapping")], "\n"),
    ]
    return _message(fallback, groups)
