"""OTLP value flattening, exactly as the Collector's ClickHouse exporter stores it.

The exporter writes every attribute value through pcommon ``Value.AsString()``:

* string → itself; bool → ``true``/``false``; int → decimal;
* double → the ES6 number-to-string form (``1`` not ``1.0``, exponent only below 1e-6 or from 1e21);
* bytes → standard base64;
* array / key-value list → JSON (Go ``encoding/json``: sorted object keys, ``<>&`` escaped,
  bytes as base64, doubles as above);
* empty value → ``""``.

Map keys are sorted before insert (contrib PR #35725) so identical attribute sets compress and
group as one. Values longer than the configured limit (in characters) are cut and end with
``…[truncated N bytes]`` so the reader knows the value was shortened and by how much.
"""

from __future__ import annotations

import base64
import json
import math
from decimal import Decimal
from typing import Any

TRUNCATION_MARK = "…[truncated {n} bytes]"


def es6_float(value: float) -> str:
    """Format a double as Go's pcommon does (ES6 number-to-string: shortest round-trip digits,
    fixed notation for 1e-6 ≤ |v| < 1e21, otherwise ``d.ddde±x``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    sign, digit_tuple, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    prefix = "-" if sign else ""
    if 1e-6 <= abs(value) < 1e21:
        point = len(digits) + exponent  # position of the decimal point within digits
        if point <= 0:
            return prefix + "0." + "0" * (-point) + digits
        if point >= len(digits):
            return prefix + digits + "0" * (point - len(digits))
        return prefix + digits[:point] + "." + digits[point:]
    sci_exp = len(digits) - 1 + exponent
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{prefix}{mantissa}e{'+' if sci_exp >= 0 else '-'}{abs(sci_exp)}"


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters, ending with a marker of how many UTF-8 bytes were removed."""
    if len(text) <= limit:
        return text
    kept = text[:limit]
    removed = len(text.encode("utf-8", "surrogatepass")) - len(kept.encode("utf-8", "surrogatepass"))
    return kept + TRUNCATION_MARK.format(n=removed)


def any_value_raw(value: Any, depth: int = 0, max_depth: int | None = None) -> Any:
    """AnyValue → a JSON-able Python value (Go ``Value.AsRaw``), bytes kept as ``bytes``.

    ``max_depth`` reproduces the ingest path's documented limit: an array or key-value list at
    nesting depth ``max_depth - 1`` or deeper becomes ``None`` (JSON ``null``).
    """
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "double_value":
        return value.double_value
    if kind == "bytes_value":
        return bytes(value.bytes_value)
    if kind in ("array_value", "kvlist_value") and max_depth is not None and depth >= max_depth - 1:
        return None
    if kind == "array_value":
        return [any_value_raw(v, depth + 1, max_depth) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value_raw(kv.value, depth + 1, max_depth) for kv in value.kvlist_value.values}
    return None


def _go_json(raw: Any) -> str:
    """Encode like Go's encoding/json: sorted keys, compact, HTML-escaped, ES6 floats, base64 bytes."""
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, float):
        if math.isnan(raw) or math.isinf(raw):
            return "null"
        return es6_float(raw)
    if isinstance(raw, bytes):
        return _go_string(base64.b64encode(raw).decode("ascii"))
    if isinstance(raw, str):
        return _go_string(raw)
    if isinstance(raw, list):
        return "[" + ",".join(_go_json(v) for v in raw) + "]"
    if isinstance(raw, dict):
        return "{" + ",".join(_go_string(k) + ":" + _go_json(raw[k]) for k in sorted(raw)) + "}"
    raise TypeError(f"unsupported attribute value {type(raw).__name__}")


def _go_string(text: str) -> str:
    encoded = json.dumps(text, ensure_ascii=False)
    return encoded.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def any_value_str(value: Any, limit: int, max_depth: int | None = None) -> str:
    """AnyValue → the exporter's string form, truncated to ``limit`` bytes."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        text = value.string_value
    elif kind == "int_value":
        return str(value.int_value)
    elif kind == "bool_value":
        return "true" if value.bool_value else "false"
    elif kind == "double_value":
        return es6_float(value.double_value)
    elif kind == "bytes_value":
        text = base64.b64encode(value.bytes_value).decode("ascii")
    elif kind is None:
        return ""
    else:
        text = _go_json(any_value_raw(value, 0, max_depth))
    return truncate(text, limit)


def attributes(kvs: Any, limit: int, max_depth: int | None = None) -> dict[str, str]:
    """Repeated KeyValue → dict with sorted keys (last duplicate key wins, as pcommon does)."""
    if not kvs:
        return {}
    out = {kv.key: any_value_str(kv.value, limit, max_depth) for kv in kvs}
    if len(out) > 1:
        return dict(sorted(out.items()))
    return out
