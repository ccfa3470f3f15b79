"""The console's Jinja2 environment: ``app/console/templates/*.html.j2``, always autoescaped.

Nearly everything the console shows came from telemetry or from people — incident titles, service
names, log samples, reasons typed into a form — so it is untrusted text. Autoescaping is on for
every template and ``StrictUndefined`` turns a misspelt variable into an error instead of an empty
string. The only markup passed through unescaped is built here or in :mod:`summarize.charts`,
which escapes what it embeds. Pages also carry a Content-Security-Policy (see
:mod:`app.console.web`) that allows scripts only from ``/static/``, so even a missed escape could
not run inline script.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from summarize.render import anchor, duration_text, figure_text, pct_text

__all__ = ["anchor", "environment", "when"]

_ANCHOR_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def when(value: datetime | None) -> str:
    """``2026-11-01 12:00:00Z``: UTC to the second, as the CLI and the digests write times."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _iso(value: datetime | None) -> str:
    """A machine-readable time for ``<time datetime=…>``."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def _dur(value: timedelta | None) -> str:
    return duration_text(value)


def _dom_id(value: object) -> str:
    """Any text as a fragment of an element id (service names may hold spaces or slashes)."""
    return _ANCHOR_UNSAFE.sub("_", str(value))


def _cite(ids: Iterable[str], known: Iterable[str], page: str = "") -> Markup:
    """``[E1] [E3]`` as links to the cited evidence: on this page when ``page`` is empty (an id not
    in ``known`` stays plain text, marked missing), else on ``page`` (the incident's)."""
    present = set(known)
    out = []
    for evidence_id in ids:
        if page or evidence_id in present:
            out.append(
                Markup('<a class="ref" href="{}#{}" data-evidence="{}">[{}]</a>').format(
                    page, anchor(evidence_id), evidence_id, evidence_id
                )
            )
        else:
            out.append(
                Markup('<span class="ref missing" title="not in the evidence">[{}]</span>').format(
                    evidence_id
                )
            )
    return Markup(" ").join(out)


def _params_text(params: Mapping[str, object]) -> str:
    return " ".join(f"{name}={figure_text(value)}" for name, value in params.items()) or "(none)"


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("app.console", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=when,
        iso=_iso,
        dur=_dur,
        pct=pct_text,
        num=figure_text,
        anchor=anchor,
        dom_id=_dom_id,
        cite=_cite,
        params_text=_params_text,
    )
    return env
