"""Log template mining: turn raw log lines into stable template ids, counts per bucket, and signals.

A *template* is a log line with its variable parts replaced by placeholders, e.g.
``Received block <NUM> of size <NUM> from <PATH>``. Grouping lines by template turns an unbounded
stream of text into a small set of counters that the rest of detection can watch: a template that
has never been seen before (:meth:`TemplateMiner.new_templates`) and a template whose rate jumps
(:meth:`TemplateMiner.rate_spikes`) are two of the cheapest, most useful log signals.

How a line becomes a template
-----------------------------
1. **Input rules** (:func:`prepare_line`). ``None`` and non-text values raise
   :class:`~warroom.errors.InputError`. ``bytes`` are decoded as UTF-8 and invalid byte sequences
   (and lone surrogates in a ``str``) become U+FFFD, so one corrupt record never stops a stream.
   Lines longer than :data:`MAX_LINE_BYTES` (1 MiB of UTF-8) are cut to that length on a character
   boundary; the kept prefix is mined normally and :attr:`Match.truncated` says it happened. A line
   that is empty or only whitespace maps to the single *empty template* ``""`` (it is counted, not
   rejected, because empty bodies are legal in OTel log records). Lines are split on whitespace, so
   a multi-line record becomes one template whose tokens are joined by single spaces.
2. **Masking** (:class:`Masker`). Variables that can be recognised without context are replaced by
   typed placeholders, most specific first: ``<URL>``, ``<URI>`` (the target and protocol of an HTTP
   request line such as ``GET /v2/x HTTP/1.1``), ``<DATETIME>`` (``Fri Jun 17 07:07:00 2005``,
   ``2017-05-16 05:00:00``, ISO 8601), ``<EMAIL>``, ``<PATH>``, ``<UUID>``, ``<MAC>``, ``<IP>`` (v4
   and v6; a ``:port`` stays a separate ``<NUM>``), ``<HOST>`` (a dotted name of three or more labels
   that contains a digit), ``<HEX>`` (``0x…``, or 8+ hex digits mixing digits and letters),
   ``<DURATION>`` (``87ms``, ``1h30m``), ``<SIZE>`` (``64MB``, ``256K``), ``<VERSION>`` (``v1.2``,
   ``2.6.5-1.358``) and ``<NUM>`` (a number that is not glued to a letter or digit, so key=value
   numbers such as ``uid=0`` become ``uid=<NUM>`` and ``blk_-42`` becomes ``blk_<NUM>``, while
   ``L3``, ``eth0`` and ``jk2_init`` stay constant: numbers inside identifiers are left to Drain on
   purpose, because in real logs they are as often part of a name as they are data). A list of one
   kind of variable is one variable: ``<IP>,<IP>`` becomes ``<IP>`` and three or more identical
   variable tokens in a row (``blk_<NUM> blk_<NUM> blk_<NUM>``) collapse into one, so a list's
   length does not split its template. A literal ``<NUM>`` in the input is indistinguishable from a
   masked number; that is accepted.
3. **Limits.** Only the first ``max_tokens`` (512) words of a line are mined; a longer line keeps
   them plus one trailing ``<*>``. A word longer than :data:`MAX_TOKEN_CHARS` (1024, a blob or
   serialised payload) becomes ``<*>`` without being masked. Together with the 1 MiB cut this bounds
   the time (all masking regexes are linear) and the memory a single hostile line can cost.
4. **Drain** groups the masked token lists and replaces positions that differ within a group by
   ``<*>``: a prefix tree on the token count and the first ``depth - 2`` tokens, then the most similar
   template whose similarity is at least ``sim_th``. See :class:`_Drain` for the three changes made
   to drain3's algorithm.

Template ids
------------
``template_id`` is the first 16 hex digits of the BLAKE2b hash of the template text, so the same
template gets the same id on every replica and after every restart, with no coordination. When
Drain generalises a template (``a <NUM> b`` → ``a <*> b``) its id changes with the text; the old id
is kept as an **alias** of the same cluster and :meth:`TemplateMiner.resolve` maps any id ever
returned to the cluster's current id, so ids stored on rows earlier stay resolvable. Rules: a live
template's own id always wins over an alias; an alias points at the first cluster that carried it;
two clusters whose texts become identical share one public id (their counts are summed), which is
also how the Loghub evaluators group by template text.

State
-----
:meth:`TemplateMiner.dumps` writes versioned JSON (``{"format": 1, "kind": "log_templates", ...}``)
holding the configuration, the prefix tree, the clusters, aliases and bucket counters; never pickle
(drain3's own persistence uses jsonpickle, which executes code on load). ``loads(dumps(m))``
continues with exactly the matches and ids ``m`` would have produced.

Why ``drain3``, subclassed: drain3's prefix tree, cluster insertion and search are sound and reused
as they are. Three rules of its similarity and generalisation limited accuracy and are overridden
(:class:`_Drain`): agreeing masked variables no longer count as similarity, generalisation keeps a
shared ``key=``/punctuation affix (``rhost=<*>`` rather than ``<*>``), and masked tokens route like
numbers. Measured on Loghub-2k with Loghub's per-system settings and this masking, stock drain3
scores GA 0.894 / PA 0.792 and the subclass GA 0.899 / PA 0.838 (``detect.log_templates_bench``);
with one setting for all systems (``sim_th`` 0.5, ``depth`` 5, the defaults) the subclass scores
GA 0.901 / PA 0.839. drain3's tokenisation, its jsonpickle persistence and its ``TemplateMiner``
wrapper are not used: this module owns tokenisation (masking, limits), JSON state, ids and counters.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from drain3.drain import Drain, LogCluster, Node

from warroom.errors import InputError

__all__ = [
    "DEFAULT_MASKS",
    "MAX_LINE_BYTES",
    "MAX_TOKEN_CHARS",
    "PARAM",
    "STATE_FORMAT",
    "Mask",
    "Masker",
    "Match",
    "Spike",
    "TemplateInfo",
    "TemplateMiner",
    "prepare_line",
    "template_id",
]

STATE_FORMAT = 1
"""Version of the JSON state written by :meth:`TemplateMiner.dumps`."""

MASKING_VERSION = 1
"""Bumped whenever :data:`DEFAULT_MASKS` changes in a way that changes templates (kept in state)."""

MAX_LINE_BYTES = 1 << 20
"""Lines longer than this many UTF-8 bytes are truncated to it (on a character boundary)."""

MAX_TOKEN_CHARS = 1024
"""A token longer than this after masking (a blob, a serialised payload) is replaced by ``<*>``."""

PARAM = "<*>"
"""Drain's wildcard: a position that varied between lines of the same template."""


# --------------------------------------------------------------------------------------------------
# Input rules
# --------------------------------------------------------------------------------------------------


def _cut_utf8(data: bytes, limit: int) -> bytes:
    """Cut ``data`` to at most ``limit`` bytes without splitting a UTF-8 sequence."""
    if len(data) <= limit:
        return data
    end = limit
    # Step back over continuation bytes (0b10xxxxxx) so the cut lands on a character start.
    while end > 0 and limit - end < 4 and (data[end] & 0xC0) == 0x80:
        end -= 1
    return data[:end]


def prepare_line(line: object, max_bytes: int = MAX_LINE_BYTES) -> tuple[str, bool]:
    """Apply the input rules of the module docstring; return ``(text, truncated)``.

    Raises :class:`InputError` with reason ``log_line_none`` for ``None`` and ``log_line_type`` for
    anything that is not ``str``/``bytes``/``bytearray``/``memoryview``.
    """
    if line is None:
        raise InputError("log line is None; pass the record body as str or bytes", reason="log_line_none")
    if isinstance(line, bytes | bytearray | memoryview):
        raw = bytes(line)
        truncated = len(raw) > max_bytes
        return _cut_utf8(raw, max_bytes).decode("utf-8", "replace"), truncated
    if not isinstance(line, str):
        raise InputError(f"log line must be str or bytes, not {type(line).__name__}", reason="log_line_type")
    if line.isascii():
        if len(line) <= max_bytes:
            return line, False
        return line[:max_bytes], True
    try:
        raw = line.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, e.g. from a surrogateescape decode
        raw = line.encode("utf-8", "surrogatepass")
        return _cut_utf8(raw, max_bytes).decode("utf-8", "replace"), len(raw) > max_bytes
    if len(raw) <= max_bytes:
        return line, False
    return _cut_utf8(raw, max_bytes).decode("utf-8", "replace"), True


# --------------------------------------------------------------------------------------------------
# Masking
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mask:
    """One masking rule: every match of ``pattern`` becomes ``<NAME>`` (or what ``replace`` returns).

    ``replace`` receives the match and returns the replacement text; returning the matched text
    unchanged rejects a candidate (used where a regex alone cannot validate, e.g. IPv6).
    """

    name: str
    pattern: str
    replace: Callable[[re.Match[str]], str] | None = None
    requires: tuple[str, ...] = ()
    """Fast pre-check: the rule only runs if one of these substrings is in the text (empty: always)."""
    digit: bool = False
    """Fast pre-check: the rule only runs if the line holds a digit."""

    @property
    def placeholder(self) -> str:
        return f"<{self.name}>"


_A = "A-Za-z0-9"  # "glued to" class: a number next to one of these is part of an identifier


def _ipv6(m: re.Match[str]) -> str:
    text = m.group(0)
    try:
        ipaddress.IPv6Address(text.split("%", 1)[0])
    except ValueError:
        return text
    return "<IP>"


def _http_request(m: re.Match[str]) -> str:
    return f"{m.group(1)} <URI>"


_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]{0,6}"
_WEEKDAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]{0,6}"
_CLOCK = r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
_ZONE = r"(?:Z|[+\-]\d{2}:?\d{2}|\s+(?:[A-Z]{2,5}|[+\-]\d{4}))"

DEFAULT_MASKS: tuple[Mask, ...] = (
    Mask("URL", r"\b[A-Za-z][A-Za-z0-9+.\-]{0,30}://[^\s\"'<>()\[\]{}]+", requires=("://",)),
    # HTTP request line: the target and the protocol version are one variable (as in access logs).
    Mask(
        "URI",
        r"\b(GET|HEAD|POST|PUT|DELETE|PATCH|OPTIONS|CONNECT|TRACE) (?:/\S*|\*) HTTP/\d(?:\.\d)?(?![\w.])",
        _http_request,
        requires=(" HTTP/",),
    ),
    # Dates with words or separators that Drain would otherwise split over several tokens.
    Mask(
        "DATETIME",
        rf"\b(?:{_WEEKDAY},?\s+)?(?:{_MONTH}\s+\d{{1,2}}(?:,?\s+\d{{4}})?|\d{{1,2}}\s+{_MONTH}\s+\d{{4}})"
        rf"\s+{_CLOCK}{_ZONE}?(?:\s+\d{{4}})?(?![\w:])"
        rf"|\b\d{{4}}-\d{{2}}-\d{{2}}[T ]{_CLOCK}{_ZONE}?(?![\w:])",
        requires=(":",),
        digit=True,
    ),
    Mask(
        "EMAIL",
        r"(?<![\w.+\-])[\w.+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b",
        requires=("@",),
    ),
    Mask(
        "PATH",
        r"(?<![\w.~/\-])(?:~|\.{1,2})?(?:/[\w.@%+~\-]+)+/?|\b[A-Za-z]:\\(?:[\w.@%+~\-]+\\)*[\w.@%+~\-]*",
        requires=("/", ":\\"),
    ),
    Mask(
        "UUID",
        r"\b[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\b",
        requires=("-",),
        digit=True,
    ),
    Mask(
        "MAC",
        r"(?<![\w:\-])[0-9A-Fa-f]{2}([:\-])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4,}(?![\w:\-])",
        requires=(":", "-"),
    ),
    Mask(
        "IP",
        r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?:%\w+)?(?![\w:])",
        _ipv6,
        requires=(":",),
    ),
    Mask(
        "IP",
        r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?!\w|\.\w)",
        requires=(".",),
        digit=True,
    ),
    Mask(
        "HOST",
        r"(?<![\w.\-])(?=[\w\-.]*\d)(?:[A-Za-z0-9](?:[\w\-]*[A-Za-z0-9])?\.){2,}[A-Za-z]{2,24}\b(?!\.\w)",
        requires=(".",),
        digit=True,
    ),
    Mask(
        "HEX",
        rf"(?<![{_A}])(?:0[xX][0-9A-Fa-f]+|(?=[0-9A-Fa-f]*\d)(?=[0-9A-Fa-f]*[A-Fa-f])[0-9A-Fa-f]{{8,}})(?![{_A}])",
        digit=True,
    ),
    Mask(
        "DURATION",
        rf"(?<![{_A}.])(?:(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h|d)){{1,4}}|\d+(?:\.\d+)?(?:secs?|mins?|hrs?))(?![{_A}])",
        digit=True,
    ),
    Mask("SIZE", rf"(?<![{_A}.])\d+(?:\.\d+)?(?:[KMGTPE]i?B|[kKMGTPE]|B|bytes)(?![{_A}])", digit=True),
    Mask(
        "VERSION",
        rf"(?<![{_A}.])(?:v\d+(?:\.\d+)+[A-Za-z0-9]*|\d+(?:\.\d+){{2,}}(?:[\-.][A-Za-z0-9]+)*|\d+\.\d+[a-z]+\w*)"
        rf"(?![{_A}])",
        requires=(".",),
        digit=True,
    ),
    Mask("NUM", rf"(?:(?<![{_A}])-)?(?<![{_A}])\d+(?:\.\d+)?(?![{_A}])", digit=True),
)
"""The built-in masking rules, applied in order (most specific first)."""

_PLACEHOLDER_RE = re.compile(r"<([A-Z][A-Z0-9_]*)>")
_HAS_VARIABLE = re.compile(r"<(?:\*|[A-Z][A-Z0-9_]*)>")
_DIGIT = re.compile(r"\d")
_WORD = re.compile(r"\S+")
_LONG_LINE = 4096  # lines up to this many characters skip the token-cap scan
_COMMA_LIST = re.compile(r"(<[A-Z][A-Z0-9_]*>)(?:,\1)+")


class Masker:
    """Replace variable substrings by typed placeholders; see the module docstring for the rules."""

    __slots__ = ("masks", "_compiled", "names")

    def __init__(self, masks: Sequence[Mask] = DEFAULT_MASKS, extra: Sequence[Mask] = ()) -> None:
        # Extra (caller-supplied) rules run first: they are the most specific knowledge available.
        self.masks: tuple[Mask, ...] = tuple(extra) + tuple(masks)
        compiled: list[
            tuple[re.Pattern[str], str | Callable[[re.Match[str]], str], tuple[str, ...], bool]
        ] = []
        for mask in self.masks:
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", mask.name):
                raise InputError(f"mask name {mask.name!r} must be UPPER_CASE", reason="bad_mask")
            try:
                pattern = re.compile(mask.pattern)
            except re.error as exc:
                raise InputError(f"mask {mask.name}: bad regex: {exc}", reason="bad_mask") from exc
            compiled.append((pattern, mask.replace or mask.placeholder, mask.requires, mask.digit))
        self._compiled = tuple(compiled)
        self.names = frozenset(m.name for m in self.masks)

    def mask(self, text: str) -> str:
        """Return ``text`` with every recognised variable replaced by its placeholder."""
        digits = _DIGIT.search(text) is not None
        for pattern, repl, requires, digit in self._compiled:
            if (digit and not digits) or (requires and not any(r in text for r in requires)):
                continue
            text = pattern.sub(repl, text)
        # A comma-joined list of one kind of variable is one variable, whatever its length.
        return _COMMA_LIST.sub(r"\1", text)

    def is_placeholder(self, token: str) -> bool:
        """True if ``token`` is exactly one of this masker's placeholders or Drain's ``<*>``."""
        if token == PARAM:
            return True
        m = _PLACEHOLDER_RE.fullmatch(token)
        return m is not None and m.group(1) in self.names


# --------------------------------------------------------------------------------------------------
# Public value types
# --------------------------------------------------------------------------------------------------


def template_id(template: str) -> str:
    """The stable id of a template text: 16 hex digits of its BLAKE2b hash (see module docstring)."""
    return hashlib.blake2b(template.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class Match:
    """The template a line belongs to, as returned by :meth:`TemplateMiner.add` and ``match``.

    ``template_id`` is the id *after* this line was absorbed; ``is_new`` is True when the line
    created the template; ``changed`` when it generalised an existing one (the previous id became
    an alias); ``truncated`` when the line was cut to :data:`MAX_LINE_BYTES`.
    """

    template_id: str
    template: str
    is_new: bool = False
    changed: bool = False
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    """A template with its totals: ``first_seen``/``last_seen`` are the caller's timestamps."""

    template_id: str
    template: str
    count: int
    first_seen: float
    last_seen: float
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Spike:
    """A template whose count in ``bucket_start`` is far above its recent history.

    ``score`` is ``(count - median) / scale`` with ``scale = max(1.4826·MAD, sqrt(median), 1)``:
    the MAD makes it robust to past spikes, the Poisson floor stops a perfectly steady template
    (MAD 0) from firing on a one-line wobble.
    """

    template_id: str
    template: str
    bucket_start: float
    count: int
    median: float
    mad: float
    score: float


@dataclass(slots=True)
class _Meta:
    """Per-cluster bookkeeping that drain3 does not keep."""

    first_seen: float
    last_seen: float
    count: int = 0
    buckets: dict[int, int] = field(default_factory=dict)
    old_ids: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# Drain, with variable-aware similarity and affix-preserving generalisation
# --------------------------------------------------------------------------------------------------


def _is_variable(token: str) -> bool:
    return "<" in token and _HAS_VARIABLE.search(token) is not None


def _collapse_runs(tokens: list[str]) -> list[str]:
    """Collapse 3+ consecutive identical tokens that hold a variable into one.

    A space-separated list (``delete blk_<NUM> blk_<NUM> blk_<NUM>``) then has one template
    whatever its length, which Drain's fixed-length grouping cannot give on its own.
    """
    out: list[str] = []
    run = 0
    for token in tokens:
        if out and token == out[-1] and _is_variable(token):
            run += 1
            if run == 2:  # third copy: drop the second one too
                out.pop()
            if run >= 2:
                continue
        else:
            run = 0
        out.append(token)
    return out


_ATOM = re.compile(r"<(?:\*|[A-Z][A-Z0-9_]*)>|.", re.S)


def _wildcard_match(pattern: str, token: str) -> bool:
    """True if ``token`` matches ``pattern`` where each ``<*>`` stands for any (possibly empty) text."""
    parts = pattern.split(PARAM)
    if not token.startswith(parts[0]) or not token.endswith(parts[-1]):
        return False
    pos, end = len(parts[0]), len(token) - len(parts[-1])
    if pos > end:
        return False
    for part in parts[1:-1]:
        found = token.find(part, pos, end)
        if found < 0:
            return False
        pos = found + len(part)
    return True


def _is_delimiter(atom: str) -> bool:
    return len(atom) == 1 and not atom.isalnum() and atom not in "<>*"


def _merge_tokens(a: str, b: str) -> str:
    """Generalise two differing tokens, keeping a shared prefix/suffix that ends/starts at a delimiter.

    ``user=root``/``user=guest`` → ``user=<*>``, ``(<IP>)``/``(<HOST>)`` → ``(<*>)``,
    ``<IP>:<NUM>``/``<HOST>:<NUM>`` → ``<*>:<NUM>``: the key or punctuation is part of the
    template, only the value varies. Without a delimiter boundary the whole token becomes ``<*>``.
    """
    xa, xb = _ATOM.findall(a), _ATOM.findall(b)
    limit = min(len(xa), len(xb))
    head = 0
    for i in range(limit):
        if xa[i] != xb[i]:
            break
        if _is_delimiter(xa[i]):
            head = i + 1
    tail = 0
    for i in range(1, limit - head + 1):
        if xa[-i] != xb[-i]:
            break
        if _is_delimiter(xa[-i]):
            tail = i
    return "".join(xa[:head]) + PARAM + ("".join(xa[len(xa) - tail :]) if tail else "")


class _Drain(Drain):
    """drain3's Drain with two changes that the Loghub benchmark showed to matter.

    * **Similarity ignores agreeing variables.** Two lines that share ``<UUID>`` or ``<NUM>`` in a
      position are not more alike for it, so such positions count neither as similar nor in the
      length; only constant words decide. Otherwise short messages behind a masked prefix
      (``[instance: <UUID>] Claim successful`` / ``… Creating image``) merge at ``sim_th`` 0.5.
    * **Generalisation keeps keys and punctuation** (:func:`_merge_tokens`), and a template token
      such as ``user=<*>`` matches any token of that shape, as ``<*>`` matches any token.
    * **Masked tokens route like numbers**: in the prefix tree a token holding a placeholder goes
      down the ``<*>`` branch, exactly as drain3 already does for tokens with digits, so a value
      masked as ``<HEX>`` in one line and ``<NUM>`` in the next still meets the same templates.
    """

    @staticmethod
    def has_numbers(s: str) -> bool:
        return any(ch.isdigit() for ch in s) or ("<" in s and _is_variable(s))

    def get_seq_distance(
        self, seq1: Sequence[str], seq2: Sequence[str], include_params: bool
    ) -> tuple[float, int]:
        similar = params = total = 0
        for tmpl, tok in zip(seq1, seq2, strict=True):
            if tmpl == tok:
                if "<" in tmpl and _is_variable(tmpl):
                    continue
                similar += 1
            elif tmpl == PARAM or (PARAM in tmpl and _wildcard_match(tmpl, tok)):
                params += 1
            total += 1
        if include_params:
            similar += params
        return (1.0 if total == 0 else similar / total), params

    def create_template(self, seq1: Sequence[str], seq2: Sequence[str]) -> list[str]:
        out = list(seq2)
        for i, (tok, tmpl) in enumerate(zip(seq1, seq2, strict=True)):
            if tok == tmpl or tmpl == PARAM or (PARAM in tmpl and _wildcard_match(tmpl, tok)):
                continue
            out[i] = _merge_tokens(tmpl, tok)
        return out


# --------------------------------------------------------------------------------------------------
# The miner
# --------------------------------------------------------------------------------------------------


class TemplateMiner:
    """Streaming template miner with stable ids, per-bucket counts and two signals.

    Parameters are Drain's (``sim_th``, ``depth``, ``max_children``), the masking (``masks``,
    ``extra_masks``), limits (``max_tokens``, ``max_line_bytes``) and the counters' ``bucket_seconds``
    and ``retention_buckets`` (older buckets are dropped; totals are kept). ``clock`` supplies the
    timestamp when :meth:`add` is called without one. Not thread-safe: use one miner per consumer.
    """

    def __init__(
        self,
        *,
        sim_th: float = 0.5,
        depth: int = 5,
        max_children: int = 100,
        masks: Sequence[Mask] = DEFAULT_MASKS,
        extra_masks: Sequence[Mask] = (),
        max_tokens: int = 512,
        max_line_bytes: int = MAX_LINE_BYTES,
        bucket_seconds: float = 60.0,
        retention_buckets: int = 1440,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0.0 < sim_th <= 1.0:
            raise InputError(f"sim_th must be in (0, 1], got {sim_th!r}", reason="bad_param")
        if depth < 3:
            raise InputError(f"depth must be at least 3, got {depth!r}", reason="bad_param")
        if max_children < 2 or max_tokens < 1 or max_line_bytes < 1:
            raise InputError("max_children ≥ 2, max_tokens ≥ 1, max_line_bytes ≥ 1", reason="bad_param")
        if not (bucket_seconds > 0 and math.isfinite(bucket_seconds)) or retention_buckets < 1:
            raise InputError("bucket_seconds must be > 0 and retention_buckets ≥ 1", reason="bad_param")
        self.config: dict[str, Any] = {
            "sim_th": float(sim_th),
            "depth": int(depth),
            "max_children": int(max_children),
            "max_tokens": int(max_tokens),
            "max_line_bytes": int(max_line_bytes),
            "bucket_seconds": float(bucket_seconds),
            "retention_buckets": int(retention_buckets),
        }
        self._width = float(bucket_seconds)
        self._default_masks = tuple(masks) == DEFAULT_MASKS
        self._extra_masks = tuple(extra_masks)
        if any(m.replace is not None for m in self._extra_masks):
            raise InputError(
                "extra masks must be plain regexes (they are stored in state)", reason="bad_mask"
            )
        self.masker = Masker(masks, self._extra_masks)
        self._clock = clock
        self._drain = _Drain(
            depth=depth,
            sim_th=sim_th,
            max_children=max_children,
            param_str=PARAM,
            parametrize_numeric_tokens=True,
        )
        self._meta: dict[int, _Meta] = {}
        self._cid_to_id: dict[int, str] = {}
        self._id_to_cids: dict[str, list[int]] = {}
        self._aliases: dict[str, int] = {}
        self._latest_bucket: int | None = None

    # -- mining -----------------------------------------------------------------------------------

    def _tokens(self, line: object) -> tuple[list[str], bool]:
        text, truncated = prepare_line(line, self.config["max_line_bytes"])
        limit = self.config["max_tokens"]
        cut = False
        if len(text) > _LONG_LINE:
            # Bound the regex work on very long lines: keep the first `limit` words and replace
            # blobs (words longer than MAX_TOKEN_CHARS) by <*> before masking.
            words = []
            for i, m in enumerate(_WORD.finditer(text)):
                if i == limit:
                    cut = True
                    break
                words.append(PARAM if m.end() - m.start() > MAX_TOKEN_CHARS else m.group())
            text = " ".join(words)
        tokens = _collapse_runs(self.masker.mask(text).split())
        if any(len(t) > MAX_TOKEN_CHARS for t in tokens):
            tokens = [PARAM if len(t) > MAX_TOKEN_CHARS else t for t in tokens]
        if cut or len(tokens) > limit:
            tokens = tokens[:limit]
            tokens.append(PARAM)
        return tokens, truncated

    def add(self, line: str | bytes | bytearray, ts: float | None = None) -> Match:
        """Absorb one line (learning) and count it in the bucket of ``ts`` (default: the clock).

        Raises :class:`InputError` for ``None``/non-text lines and non-finite timestamps; the
        miner is unchanged in that case.
        """
        tokens, truncated = self._tokens(line)
        now = self._check_ts(ts)
        drain = self._drain
        cluster = drain.tree_search(drain.root_node, tokens, drain.sim_th, False)
        is_new = changed = False
        if cluster is None:
            drain.clusters_counter += 1
            cluster = LogCluster(tokens, drain.clusters_counter)
            drain.id_to_cluster[cluster.cluster_id] = cluster
            drain.add_seq_to_prefix_tree(drain.root_node, cluster)
            self._meta[cluster.cluster_id] = _Meta(first_seen=now, last_seen=now)
            self._index(cluster)
            is_new = True
        else:
            new_tokens = tuple(drain.create_template(tokens, cluster.log_template_tokens))
            if new_tokens != cluster.log_template_tokens:
                cluster.log_template_tokens = new_tokens
                self._reindex(cluster)
                changed = True
            cluster.size += 1
        self._count(cluster.cluster_id, now)
        tid = self._cid_to_id[cluster.cluster_id]
        return Match(tid, cluster.get_template(), is_new, changed, truncated)

    def match(self, line: str | bytes | bytearray) -> Match | None:
        """Find the template ``line`` belongs to without learning or counting; None if none fits.

        A match needs every constant token of the template to be equal (``sim_th`` 1.0, wildcards
        match anything), searched across all templates of the same length.
        """
        tokens, truncated = self._tokens(line)
        drain = self._drain
        cluster = drain.tree_search(drain.root_node, tokens, 1.0, True)
        if cluster is None:
            candidates = drain.get_clusters_ids_for_seq_len(len(tokens))
            cluster = drain.fast_match(candidates, tokens, 1.0, True)
        if cluster is None:
            return None
        return Match(self._cid_to_id[cluster.cluster_id], cluster.get_template(), truncated=truncated)

    def _check_ts(self, ts: float | None) -> float:
        if ts is None:
            ts = self._clock()
        try:
            value = float(ts)
        except (TypeError, ValueError) as exc:
            raise InputError(f"timestamp {ts!r} is not a number", reason="bad_timestamp") from exc
        if not math.isfinite(value):
            raise InputError(f"timestamp {ts!r} is not finite", reason="bad_timestamp")
        return value

    # -- ids --------------------------------------------------------------------------------------

    def _index(self, cluster: LogCluster) -> None:
        tid = template_id(cluster.get_template())
        self._cid_to_id[cluster.cluster_id] = tid
        self._id_to_cids.setdefault(tid, []).append(cluster.cluster_id)

    def _reindex(self, cluster: LogCluster) -> None:
        cid = cluster.cluster_id
        old = self._cid_to_id.pop(cid)
        cids = self._id_to_cids[old]
        cids.remove(cid)
        if not cids:
            del self._id_to_cids[old]
        self._aliases.setdefault(old, cid)
        self._meta[cid].old_ids.append(old)
        self._index(cluster)

    def resolve(self, tid: str) -> str | None:
        """Map any id this miner ever returned to the template's current id (None if unknown)."""
        if tid in self._id_to_cids:
            return tid
        cid = self._aliases.get(tid)
        return None if cid is None else self._cid_to_id.get(cid)

    def template(self, tid: str) -> str | None:
        """The current template text for ``tid`` (an id or an alias), or None."""
        current = self.resolve(tid)
        if current is None:
            return None
        return str(self._drain.id_to_cluster[self._id_to_cids[current][0]].get_template())

    # -- counters ---------------------------------------------------------------------------------

    def _bucket(self, ts: float) -> int:
        return math.floor(ts / self._width)

    def _count(self, cid: int, ts: float) -> None:
        meta = self._meta[cid]
        meta.count += 1
        meta.first_seen = min(meta.first_seen, ts)
        meta.last_seen = max(meta.last_seen, ts)
        bucket = self._bucket(ts)
        latest = self._latest_bucket
        if latest is None or bucket > latest:
            self._latest_bucket = latest = bucket
            self._prune(latest)
        if bucket > latest - self.config["retention_buckets"]:
            meta.buckets[bucket] = meta.buckets.get(bucket, 0) + 1

    def _prune(self, latest: int) -> None:
        horizon = latest - self.config["retention_buckets"]
        for meta in self._meta.values():
            if meta.buckets and min(meta.buckets) <= horizon:
                meta.buckets = {b: n for b, n in meta.buckets.items() if b > horizon}

    def _merged_buckets(self, tid: str) -> Mapping[int, int]:
        """Bucket counts of ``tid`` summed over its clusters (read-only; usually one cluster)."""
        cids = self._id_to_cids.get(tid, ())
        if len(cids) == 1:
            return self._meta[cids[0]].buckets
        out: dict[int, int] = {}
        for cid in cids:
            for b, n in self._meta[cid].buckets.items():
                out[b] = out.get(b, 0) + n
        return out

    def counts(self, tid: str, start: float | None = None, end: float | None = None) -> dict[float, int]:
        """Lines per bucket for a template: ``{bucket_start_ts: count}`` for buckets in [start, end).

        Buckets without lines are absent. ``tid`` may be an alias.
        """
        current = self.resolve(tid)
        if current is None:
            return {}
        width = self._width
        lo = -math.inf if start is None else self._bucket(start)
        hi = math.inf if end is None else math.ceil(end / width)
        merged = self._merged_buckets(current)
        return {b * width: n for b, n in sorted(merged.items()) if lo <= b < hi}

    def rate(self, tid: str, at: float) -> float:
        """Lines per second of a template in the bucket containing ``at``."""
        current = self.resolve(tid)
        if current is None:
            return 0.0
        return self._merged_buckets(current).get(self._bucket(at), 0) / self._width

    # -- listing and signals ----------------------------------------------------------------------

    def _info(self, tid: str) -> TemplateInfo:
        cids = self._id_to_cids[tid]
        metas = [self._meta[c] for c in cids]
        return TemplateInfo(
            template_id=tid,
            template=self._drain.id_to_cluster[cids[0]].get_template(),
            count=sum(m.count for m in metas),
            first_seen=min(m.first_seen for m in metas),
            last_seen=max(m.last_seen for m in metas),
            aliases=tuple(a for m in metas for a in m.old_ids),
        )

    def templates(self) -> list[TemplateInfo]:
        """Every current template, most frequent first."""
        infos = [self._info(tid) for tid in self._id_to_cids]
        return sorted(infos, key=lambda i: (-i.count, i.template_id))

    def __len__(self) -> int:
        return len(self._id_to_cids)

    def new_templates(self, since: float) -> list[TemplateInfo]:
        """Templates first seen at or after ``since`` (caller's timestamps), oldest first.

        A template that was generalised after ``since`` but existed before is *not* new: the
        signal is "a kind of line we have not seen before", not "a text we have not printed".
        """
        infos = [self._info(tid) for tid in self._id_to_cids]
        return sorted(
            (i for i in infos if i.first_seen >= since), key=lambda i: (i.first_seen, i.template_id)
        )

    def rate_spikes(
        self,
        at: float | None = None,
        *,
        window: int = 30,
        min_history: int = 8,
        threshold: float = 5.0,
        min_count: int = 10,
    ) -> list[Spike]:
        """Templates whose count in the bucket of ``at`` (default: the latest bucket) is a spike.

        Streaming and without look-ahead: the bucket is compared with the ``window`` buckets
        *before* it (empty buckets count as 0, buckets before the template existed are skipped).
        It is flagged when ``count ≥ min_count`` and ``score ≥ threshold`` (see :class:`Spike`);
        templates with fewer than ``min_history`` buckets of history are left to
        :meth:`new_templates`. The current bucket may still be filling, which only delays a flag.
        """
        if window < 1 or min_history < 1 or min_history > window:
            raise InputError("need 1 ≤ min_history ≤ window", reason="bad_param")
        if at is None:
            if self._latest_bucket is None:
                return []
            current = self._latest_bucket
        else:
            current = self._bucket(self._check_ts(at))
        width = self._width
        latest = current if self._latest_bucket is None else max(current, self._latest_bucket)
        kept_from = latest - self.config["retention_buckets"] + 1  # older buckets were pruned
        spikes: list[Spike] = []
        for tid, cids in self._id_to_cids.items():
            merged = self._merged_buckets(tid)
            count = merged.get(current, 0)
            if count < min_count:
                continue
            born = min(self._bucket(self._meta[c].first_seen) for c in cids)
            lo = max(current - window, born, kept_from)
            history = [merged.get(b, 0) for b in range(lo, current)]
            if len(history) < min_history:
                continue
            med = statistics.median(history)
            mad = statistics.median(abs(h - med) for h in history)
            scale = max(1.4826 * mad, math.sqrt(med), 1.0)
            score = (count - med) / scale
            if score >= threshold:
                template = self._drain.id_to_cluster[cids[0]].get_template()
                spikes.append(Spike(tid, template, current * width, count, med, mad, score))
        return sorted(spikes, key=lambda s: -s.score)

    # -- state ------------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """The whole miner as a JSON-ready dict (see :meth:`dumps`)."""
        drain = self._drain

        def node(n: Node) -> dict[str, Any]:
            out: dict[str, Any] = {}
            if n.key_to_child_node:
                out["k"] = {tok: node(child) for tok, child in n.key_to_child_node.items()}
            if n.cluster_ids:
                out["c"] = list(n.cluster_ids)
            return out

        clusters = []
        for cid, cluster in drain.id_to_cluster.items():
            meta = self._meta[cid]
            clusters.append(
                {
                    "id": cid,
                    "tokens": list(cluster.log_template_tokens),
                    "size": cluster.size,
                    "count": meta.count,
                    "first_seen": meta.first_seen,
                    "last_seen": meta.last_seen,
                    "buckets": [[b, n] for b, n in sorted(meta.buckets.items())],
                    "old_ids": list(meta.old_ids),
                }
            )
        return {
            "format": STATE_FORMAT,
            "kind": "log_templates",
            "masking": MASKING_VERSION if self._default_masks else None,
            "config": dict(self.config),
            "extra_masks": [[m.name, m.pattern] for m in self._extra_masks],
            "state": {
                "clusters_counter": drain.clusters_counter,
                "latest_bucket": self._latest_bucket,
                "clusters": clusters,
                "aliases": dict(self._aliases),
                "tree": node(drain.root_node),
            },
        }

    def dumps(self) -> bytes:
        """Serialise to versioned JSON bytes (for a ``StateStore``); never pickle."""
        return json.dumps(self.to_state(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_state(
        cls,
        state: Mapping[str, Any],
        *,
        masks: Sequence[Mask] = DEFAULT_MASKS,
        clock: Callable[[], float] = time.time,
    ) -> TemplateMiner:
        """Rebuild a miner from :meth:`to_state` output; raises :class:`InputError` if malformed."""
        try:
            if state.get("format") != STATE_FORMAT or state.get("kind") != "log_templates":
                raise InputError(
                    f"unsupported log-template state (format={state.get('format')!r}, "
                    f"kind={state.get('kind')!r}); expected format {STATE_FORMAT}",
                    reason="state_format",
                )
            extra = [Mask(str(name), str(pattern)) for name, pattern in state.get("extra_masks", [])]
            miner = cls(**state["config"], masks=masks, extra_masks=extra, clock=clock)
            body = state["state"]
            drain = miner._drain
            drain.clusters_counter = int(body["clusters_counter"])
            latest = body["latest_bucket"]
            miner._latest_bucket = None if latest is None else int(latest)
            for c in body["clusters"]:
                cid = int(c["id"])
                cluster = LogCluster([str(t) for t in c["tokens"]], cid)
                cluster.size = int(c["size"])
                drain.id_to_cluster[cid] = cluster
                miner._meta[cid] = _Meta(
                    first_seen=float(c["first_seen"]),
                    last_seen=float(c["last_seen"]),
                    count=int(c["count"]),
                    buckets={int(b): int(n) for b, n in c["buckets"]},
                    old_ids=[str(o) for o in c["old_ids"]],
                )
                miner._index(cluster)
            miner._aliases = {str(k): int(v) for k, v in body["aliases"].items()}

            def node(data: Mapping[str, Any]) -> Node:
                n = Node()
                n.key_to_child_node = {str(tok): node(child) for tok, child in data.get("k", {}).items()}
                n.cluster_ids = [int(c) for c in data.get("c", [])]
                return n

            drain.root_node = node(body["tree"])
        except InputError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"malformed log-template state: {exc!r}", reason="state_malformed") from exc
        return miner

    @classmethod
    def loads(
        cls,
        data: bytes | str,
        *,
        masks: Sequence[Mask] = DEFAULT_MASKS,
        clock: Callable[[], float] = time.time,
    ) -> TemplateMiner:
        """Inverse of :meth:`dumps`."""
        try:
            state = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"log-template state is not JSON: {exc}", reason="state_malformed") from exc
        if not isinstance(state, dict):
            raise InputError("log-template state must be a JSON object", reason="state_malformed")
        return cls.from_state(state, masks=masks, clock=clock)

    def add_many(self, lines: Iterable[str | bytes | bytearray], ts: float | None = None) -> list[Match]:
        """Convenience: :meth:`add` every line with the same timestamp."""
        return [self.add(line, ts) for line in lines]
