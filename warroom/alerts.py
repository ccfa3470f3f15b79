"""The ``alerts`` table: one row per alert occurrence, shared by detection (writes) and correlation (reads).

An alert is identified by its ``Fingerprint`` (stable per entity and signal) and ``StartsAt``;
updates (score, ``EndsAt`` on resolve) are new versions of the same row, collapsed by a
``ReplacingMergeTree(UpdatedAt)`` and read with ``FINAL``. Alerts warroom did not raise — Prometheus
Alertmanager webhooks — are converted to the same model and stored in the same table, so
correlation sees one stream.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from warroom.clickhouse import ClickHouse, ident
from warroom.errors import InputError
from warroom.model import Alert, Evidence, Finding, Severity
from warroom.schema import Migration, SchemaOptions, TableSpec, alter_table, create_table

ALERTS = "alerts"

COLUMNS = (
    "Fingerprint",
    "StartsAt",
    "EndsAt",
    "UpdatedAt",
    "Status",
    "Severity",
    "Source",
    "Title",
    "Service",
    "Kind",
    "Score",
    "Labels",
    "Findings",
    "Evidence",
)

_DDL = """
CREATE TABLE IF NOT EXISTS {db}.{table} {on_cluster} (
    Fingerprint String,
    StartsAt DateTime64(3),
    EndsAt Nullable(DateTime64(3)),
    UpdatedAt DateTime64(3),
    Status LowCardinality(String),
    Severity LowCardinality(String),
    Source LowCardinality(String),
    Title String,
    Service LowCardinality(String),
    Kind LowCardinality(String),
    Score Float64,
    Labels Map(LowCardinality(String), String),
    Findings String CODEC(ZSTD(1)),
    Evidence String CODEC(ZSTD(1)),
    InsertedAt DateTime64(3) DEFAULT now64(3)
) ENGINE = {engine}
PARTITION BY toYYYYMM(StartsAt)
ORDER BY (Fingerprint, StartsAt)
"""


#: Few rows, read with ``FINAL``: one shard on a cluster keeps every version of an alert together.
_SPEC = TableSpec(ALERTS, _DDL, engine="ReplacingMergeTree(UpdatedAt)")


def _create(store: ClickHouse, opts: SchemaOptions) -> None:
    create_table(store, opts, _SPEC)


MIGRATION = Migration(3, "alerts", _create)


def _add_inserted_at(store: ClickHouse, opts: SchemaOptions) -> None:
    alter_table(store, opts, ALERTS, "ADD COLUMN IF NOT EXISTS InsertedAt DateTime64(3) DEFAULT now64(3)")


INSERTED_AT_MIGRATION = Migration(
    4, "alerts.InsertedAt: when a version arrived (the correlator's cursor)", _add_inserted_at
)

_EPOCH_ZERO_YEAR = 1  # Alertmanager sends 0001-01-01T00:00:00Z for "no end"


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def write(store: ClickHouse, alerts: Sequence[Alert]) -> int:
    """Insert (or version) alerts; ``updated_at`` (default: now) decides which version wins."""
    if not alerts:
        return 0
    now = datetime.now(UTC)
    columns: list[list[Any]] = [[] for _ in COLUMNS]
    for a in alerts:
        row = (
            a.fingerprint,
            _ms(a.starts_at),
            _ms(a.ends_at) if a.ends_at else None,
            _ms(a.updated_at or now),
            "firing" if a.firing else "resolved",
            a.severity.value,
            a.source,
            a.title,
            a.service,
            a.labels.get("signal", ""),
            float(a.score),
            dict(sorted(a.labels.items())),
            json.dumps([f.to_json() for f in a.findings]),
            json.dumps(a.evidence.to_json()),
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return store.insert(ALERTS, COLUMNS, columns)


def read(
    store: ClickHouse, since: datetime, until: datetime | None = None, firing_only: bool = False
) -> list[Alert]:
    """Alerts that started in ``[since, until)`` (latest version of each), oldest first."""
    until = until or datetime.now(UTC)
    rows = store.rows(
        f"SELECT {', '.join(ident(c) for c in COLUMNS)} FROM {store.table(ALERTS)} FINAL "
        "WHERE StartsAt >= {since:DateTime64(3)} AND StartsAt < {until:DateTime64(3)} "
        + ("AND EndsAt IS NULL " if firing_only else "")
        + "ORDER BY StartsAt, Fingerprint",
        {"since": since, "until": until},
    )
    return [_from_row(dict(zip(COLUMNS, r, strict=True))) for r in rows]


def read_arrived(store: ClickHouse, after: datetime, until: datetime) -> list[tuple[datetime, Alert]]:
    """Every alert *version* that arrived in ``(after, until]``, by arrival: ``(InsertedAt, alert)``.

    The live correlator's feed: arrival time, not alert time, so late alerts (a backfill, a delayed
    webhook) are not skipped. Versions, not ``FINAL``, so a fire and its resolve are both seen.
    """
    rows = store.rows(
        f"SELECT InsertedAt, {', '.join(ident(c) for c in COLUMNS)} FROM {store.table(ALERTS)} "
        "WHERE InsertedAt > {after:DateTime64(3)} AND InsertedAt <= {until:DateTime64(3)} "
        "ORDER BY InsertedAt, StartsAt, Fingerprint, UpdatedAt",
        {"after": after, "until": until},
    )
    return [(_utc(r[0]) or until, _from_row(dict(zip(COLUMNS, r[1:], strict=True)))) for r in rows]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _from_row(row: Mapping[str, Any]) -> Alert:
    return Alert(
        fingerprint=row["Fingerprint"],
        title=row["Title"],
        severity=Severity(row["Severity"]),
        starts_at=_utc(row["StartsAt"]) or datetime.now(UTC),
        ends_at=_utc(row["EndsAt"]),
        score=float(row["Score"]),
        labels=dict(row["Labels"]),
        findings=tuple(Finding(**f) for f in json.loads(row["Findings"] or "[]")),
        evidence=Evidence.from_json(json.loads(row["Evidence"] or "{}")),
        source=row["Source"],
        updated_at=_utc(row["UpdatedAt"]),
    )


# -- Prometheus Alertmanager webhook -------------------------------------------------------------


def _parse_time(value: Any, field: str, index: int) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise InputError(f"alerts[{index}].{field}: expected an RFC 3339 time string", reason="invalid_time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(
            f"alerts[{index}].{field}: {value!r} is not an RFC 3339 time", reason="invalid_time"
        ) from exc
    if parsed.year <= _EPOCH_ZERO_YEAR:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _string_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InputError(f"{where}: expected an object of string values", reason="invalid_labels")
    return dict(value)


def from_alertmanager(payload: Any, received_at: datetime | None = None) -> list[Alert]:
    """Alertmanager webhook JSON (``version`` 4) → alerts. Every problem is an InputError naming the field.

    Labels map as: ``alertname`` → title (with the ``summary`` annotation when present),
    ``severity`` → severity (unknown spellings → info), ``service``/``job``/``app`` → service.
    The fingerprint is Alertmanager's own when given (stable per label set), else a hash of labels.
    """
    if not isinstance(payload, dict):
        raise InputError("Alertmanager payload must be a JSON object", reason="invalid_payload")
    items = payload.get("alerts")
    if not isinstance(items, list):
        raise InputError("Alertmanager payload: 'alerts' must be a list", reason="invalid_payload")
    now = received_at or datetime.now(UTC)
    common = _string_map(payload.get("commonLabels"), "commonLabels")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InputError(f"alerts[{i}] must be an object", reason="invalid_payload")
        labels = {**common, **_string_map(item.get("labels"), f"alerts[{i}].labels")}
        annotations = _string_map(item.get("annotations"), f"alerts[{i}].annotations")
        if "alertname" not in labels:
            raise InputError(f"alerts[{i}].labels: 'alertname' is required", reason="missing_field")
        starts = _parse_time(item.get("startsAt"), "startsAt", i) or now
        ends = _parse_time(item.get("endsAt"), "endsAt", i)
        status = item.get("status", "firing")
        if status not in ("firing", "resolved"):
            raise InputError(
                f"alerts[{i}].status: expected firing or resolved, got {status!r}", reason="invalid_status"
            )
        if status == "firing" and ends is not None and ends > now:
            ends = None  # Alertmanager sets a future endsAt on firing alerts: its resend timeout
        if status == "resolved" and ends is None:
            ends = now
        fingerprint = item.get("fingerprint") or _label_fingerprint(labels)
        service = labels.get("service") or labels.get("job") or labels.get("app") or ""
        title = labels["alertname"] + (f": {annotations['summary']}" if annotations.get("summary") else "")
        out.append(
            Alert(
                fingerprint=f"am:{fingerprint}",
                title=title[:500],
                severity=Severity.parse(labels.get("severity")),
                starts_at=starts,
                ends_at=ends,
                score=1.0 if status == "firing" else 0.0,
                labels={**labels, "service": service, "signal": "external"},
                evidence=Evidence(
                    log_samples=tuple(f"{k}: {v}" for k, v in sorted(annotations.items()))[:10]
                ),
                source="alertmanager",
                updated_at=now,
            )
        )
    return out


def _label_fingerprint(labels: Mapping[str, str]) -> str:
    import hashlib

    canonical = json.dumps(sorted(labels.items()), separators=(",", ":"))
    return hashlib.blake2b(canonical.encode(), digest_size=8).hexdigest()


def firing_at(alerts: Iterable[Alert], when: datetime) -> list[Alert]:
    return [a for a in alerts if a.starts_at <= when and (a.ends_at is None or a.ends_at > when)]
