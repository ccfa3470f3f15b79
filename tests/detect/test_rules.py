"""L0 threshold rules: parsing (with errors that name file, entry and field) and evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest

from detect.rules import RuleSet, ThresholdState, load_rules, parse_rules
from warroom.errors import InputError
from warroom.model import SeriesKey, Severity, SignalKind

EXAMPLE = Path(__file__).resolve().parents[2] / "detect" / "rules.example.toml"

GOOD = """
[[threshold]]
name = "errs"
kind = "error_ratio"
service = "checkout|payment"
op = ">"
value = 0.05
for_steps = 2
severity = "critical"
"""


def test_example_file_parses() -> None:
    rs = load_rules(EXAMPLE)
    assert [r.name for r in rs.thresholds] == [
        "checkout-payment-errors",
        "slow-cart-api",
        "frontend-traffic-gone",
        "cpu-hot",
    ]
    assert [s.name for s in rs.slos] == ["checkout-availability", "edge-services"]
    assert rs.thresholds[0].severity is Severity.CRITICAL
    assert rs.source == str(EXAMPLE)


def test_service_regex_and_labels_match() -> None:
    rs = load_rules(EXAMPLE)
    errs, slow = rs.thresholds[0], rs.thresholds[1]
    assert errs.matches(SeriesKey(SignalKind.ERROR_RATIO, "checkout"))
    assert errs.matches(SeriesKey(SignalKind.ERROR_RATIO, "payment"))
    assert not errs.matches(SeriesKey(SignalKind.ERROR_RATIO, "checkoutx"))  # whole-entity match
    assert not errs.matches(SeriesKey(SignalKind.LATENCY_P95, "checkout"))
    assert slow.matches(SeriesKey(SignalKind.LATENCY_P95, "cart", (("operation", "GET /cart/items"),)))
    assert not slow.matches(SeriesKey(SignalKind.LATENCY_P95, "cart", (("operation", "POST /cart"),)))
    assert not slow.matches(SeriesKey(SignalKind.LATENCY_P95, "cart"))  # label required


def test_for_steps_and_gaps() -> None:
    rs = parse_rules(GOOD)
    st = ThresholdState()
    key = SeriesKey(SignalKind.ERROR_RATIO, "checkout")
    fired = [bool(st.evaluate(rs, key, x)) for x in (0.01, 0.2, None, 0.2, 0.2, 0.01, 0.2)]
    # the gap neither breaks nor extends the run: 0.2, gap, 0.2 is a run of two
    assert fired == [False, False, False, True, True, False, False]
    f = st.evaluate(rs, key, 0.3)[0]
    assert (f.layer, f.detector, f.score, f.observed, f.baseline) == ("L0", "threshold:errs", 1.0, 0.3, 0.05)
    assert "for 2 step(s)" in f.detail


def test_nan_is_a_gap_and_state_round_trips() -> None:
    rs = parse_rules(GOOD)
    st = ThresholdState()
    key = SeriesKey(SignalKind.ERROR_RATIO, "payment")
    st.evaluate(rs, key, 0.5)
    st.evaluate(rs, key, float("nan"))
    st2 = ThresholdState.from_json(st.to_json())
    assert st2.runs == st.runs
    assert st2.evaluate(rs, key, 0.5) and st.evaluate(rs, key, 0.5)


def test_empty_rules() -> None:
    assert parse_rules("") == RuleSet(source="<rules>")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "[[threshold]]\nkind = 'error_ratio'\nop = '>'\nvalue = 1\nfor_step = 2\n",
            "field 'for_step': unknown field",
        ),
        (
            "[[threshold]]\nname='x'\nkind = 'error_rate'\nop = '>'\nvalue = 1\n",
            "#1 'x': field 'kind': unknown signal kind",
        ),
        ("[[threshold]]\nkind = 'error_ratio'\nop = '=>'\nvalue = 1\n", "field 'op': must be one of"),
        ("[[threshold]]\nkind = 'error_ratio'\nop = '>'\n", "field 'value': is required"),
        (
            "[[threshold]]\nkind = 'error_ratio'\nop = '>'\nvalue = 'high'\n",
            "field 'value': must be int or float",
        ),
        (
            "[[threshold]]\nkind = 'error_ratio'\nop = '>'\nvalue = true\n",
            "field 'value': must be int or float",
        ),
        ("[[threshold]]\nkind = 'error_ratio'\nop = '>'\nvalue = nan\n", "field 'value': must be a finite"),
        (
            "[[threshold]]\nkind = 'error_ratio'\nop = '>'\nvalue = 1\nfor_steps = 0\n",
            "field 'for_steps': must be >= 1",
        ),
        ("[[threshold]]\nkind = 'error_ratio'\nop = '>'\nvalue = 1\nseverity = 'loud'\n", "field 'severity'"),
        (
            "[[threshold]]\nkind = 'error_ratio'\nservice = 'a('\nop = '>'\nvalue = 1\n",
            "field 'service': invalid regular",
        ),
        (
            "[[threshold]]\nkind = 'metric'\nlabels = { metric = 3 }\nop = '>'\nvalue = 1\n",
            "field 'labels.metric'",
        ),
        (
            "[[slo]]\nservice = 'checkout'\nobjective = 99.9\n",
            "[[slo]] #1: field 'objective': must be strictly",
        ),
        ("[[slo]]\nobjective = 0.999\n", "field 'service': is required"),
        (
            "[[slo]]\nservice = 'a'\nobjective = 0.99\nkind = 'latency'\n",
            "field 'kind': must be one of availability",
        ),
        ("[[slo]]\nservice = 'a'\nobjective = 0.99\nwindow_scale = 0\n", "field 'window_scale'"),
        (
            "[[slo]]\nname='a'\nservice='a'\nobjective=0.9\n[[slo]]\nname='a'\nservice='b'\nobjective=0.9\n",
            "#2 'a': field 'name': duplicate",
        ),
        ("[[threshold]\nkind = 1\n", "not valid TOML"),
        ("[alerts]\nx = 1\n", "unknown section(s) alerts"),
        ("threshold = 3\n", "must be an array of tables"),
    ],
)
def test_malformed_rules_name_file_entry_and_field(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_rules(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: "), msg
    assert needle in msg, msg
    assert info.value.reason == "bad_rules"


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read rules file"):
        load_rules(tmp_path / "nope.toml")
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InputError, match="not UTF-8"):
        load_rules(bad)
