"""Tests for detect.log_templates (mining, ids, state, signals, input rules) and its Loghub bench."""

from __future__ import annotations

import io
import json
import random
import time
from pathlib import Path

import pytest

import detect.log_templates as lt
import detect.log_templates_bench as bench
from detect.log_templates import (
    MAX_LINE_BYTES,
    PARAM,
    Mask,
    Masker,
    TemplateMiner,
    prepare_line,
    template_id,
)
from detect.log_templates_bench import (
    grouping_accuracy,
    log_format_regex,
    normalise_template,
    parsing_accuracy,
    to_loghub,
)
from warroom.errors import InputError

MASKER = Masker()


# --------------------------------------------------------------------------------------------------
# Masking
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        # numbers, including key=value numbers and signed numbers after a separator
        (
            "PacketResponder 1 for block blk_-42 terminating",
            "PacketResponder <NUM> for block blk_<NUM> terminating",
        ),
        ("uid=0 euid=500 count=-3 ratio=0.25", "uid=<NUM> euid=<NUM> count=<NUM> ratio=<NUM>"),
        ("mod_jk child init 1 -2", "mod_jk child init <NUM> <NUM>"),
        # IPv4 (port stays a number), IPv6 (with zone), lists of IPs
        ("from 10.251.73.220:50010 ok", "from <IP>:<NUM> ok"),
        ("peer fe80::1%eth0 and 2001:db8::8a2e:370:7334 up", "peer <IP> and <IP> up"),
        ("forwarded 10.0.0.1,10.0.0.2,10.0.0.3", "forwarded <IP>"),
        # UUID and hex ids
        ("[instance: b9000564-fe1a-409b-b8cc-1e88b294cd1d] spawned", "[instance: <UUID>] spawned"),
        ("iar 003a90fc dear 0x1feaa260 mask 0x05", "iar <HEX> dear <HEX> mask <HEX>"),
        ("req 113d3a99c3da401fbd62cc2caa5b96d2 done", "req <HEX> done"),
        # paths (unix and windows), URLs, HTTP request targets, e-mail
        ("workerEnv.init() ok /etc/httpd/conf/workers2.properties", "workerEnv.init() ok <PATH>"),
        (r"open C:\Users\bob\x.txt failed", "open <PATH> failed"),
        ("GET https://example.com/a/b?q=1 ok", "GET <URL> ok"),
        ('"GET /v2/abc/servers/detail HTTP/1.1" status: 200', '"GET <URI>" status: <NUM>'),
        ("mail to bob.smith+ops@example.co.uk bounced", "mail to <EMAIL> bounced"),
        # durations, sizes, versions, dates, MACs, hosts
        ("took 87ms then 1h30m and 2.5s", "took <DURATION> then <DURATION> and <DURATION>"),
        ("cache 256K of 64MB", "cache <SIZE> of <SIZE>"),
        ("klogd 1.4.1, sdpd v1.5, driver 1.16ac", "klogd <VERSION>, sdpd <VERSION>, driver <VERSION>"),
        ("at Fri Jun 17 07:07:00 2005 done", "at <DATETIME> done"),
        ("from 2017-05-16 05:00:00 to 2017-05-16T06:00:00Z", "from <DATETIME> to <DATETIME>"),
        ("chip FF:F2:9F:16:E2:23 up", "chip <MAC> up"),
        ("node cp-1.slowvm1.tcloud-pg0.utah.cloudlab.us ok", "node <HOST> ok"),
    ],
)
def test_masking_of_each_kind(line: str, masked: str) -> None:
    assert MASKER.mask(line) == masked


@pytest.mark.parametrize(
    "line",
    [
        "L3 EDRAM error on eth0 in jk2_init()",  # digits inside identifiers stay constant
        "IdoTransportMgr::SendPacket failed",  # C++ scope is not IPv6
        "rpc.statd startup succeeded",  # a two-label dotted name without digits is not a host
        "tree/torus link training failed",
    ],
)
def test_masking_leaves_constants(line: str) -> None:
    assert MASKER.mask(line) == line


def test_time_of_day_is_numbers_not_ipv6() -> None:
    assert MASKER.mask("at 07:07:00 ok") == "at <NUM>:<NUM>:<NUM> ok"


def test_extra_mask_runs_first_and_is_validated() -> None:
    masker = Masker(extra=(Mask("TICKET", r"\bJIRA-\d+\b"),))
    assert masker.mask("see JIRA-1234 now") == "see <TICKET> now"
    with pytest.raises(InputError):
        Masker(extra=(Mask("bad name", "x"),))
    with pytest.raises(InputError):
        Masker(extra=(Mask("BAD", "("),))


def test_space_separated_list_collapses_to_one_token() -> None:
    miner = TemplateMiner()
    short = miner.add("ask 10.0.0.1:50010 to delete blk_1 blk_2 blk_3", ts=0)
    long = miner.add("ask 10.0.0.2:50010 to delete blk_4 blk_5 blk_6 blk_7 blk_8", ts=0)
    assert short.template_id == long.template_id
    assert short.template == "ask <IP>:<NUM> to delete blk_<NUM>"


# --------------------------------------------------------------------------------------------------
# Mining, ids, generalisation
# --------------------------------------------------------------------------------------------------


def test_add_and_generalise_keep_old_ids_resolvable() -> None:
    miner = TemplateMiner()
    first = miner.add("session opened for user alice by sshd", ts=0)
    assert first.is_new and not first.changed
    assert first.template == "session opened for user alice by sshd"
    assert first.template_id == template_id(first.template)
    second = miner.add("session opened for user bob by sshd", ts=1)
    assert not second.is_new and second.changed
    assert second.template == "session opened for user <*> by sshd"
    assert second.template_id != first.template_id
    # the id returned for the first line still resolves to the (now generalised) template
    assert miner.resolve(first.template_id) == second.template_id
    assert miner.template(first.template_id) == second.template
    assert miner.resolve("0000000000000000") is None
    (info,) = miner.templates()
    assert info.count == 2 and info.aliases == (first.template_id,)


def test_generalisation_keeps_keys_and_punctuation() -> None:
    miner = TemplateMiner()
    miner.add("auth failure; logname= uid=0 rhost=10.0.0.1 user=root", ts=0)
    m = miner.add("auth failure; logname= uid=0 rhost=host-1.example.com user=guest", ts=0)
    assert m.template == "auth failure; logname= uid=<NUM> rhost=<*> user=<*>"
    # a wildcard token with a key matches any value of that key without changing the template
    assert not miner.add("auth failure; logname= uid=0 rhost=10.9.9.9 user=carol", ts=0).changed


def test_short_messages_behind_a_masked_prefix_do_not_merge() -> None:
    # Agreeing masked variables are no evidence of similarity (the _Drain similarity rule).
    miner = TemplateMiner(sim_th=0.5, depth=4)
    a = miner.add("[instance: b9000564-fe1a-409b-b8cc-1e88b294cd1d] Claim successful", ts=0)
    b = miner.add("[instance: 96abccce-8d1f-4e07-b6d1-4b2ab87e23b4] Creating image", ts=0)
    assert a.template_id != b.template_id and b.is_new


def test_same_lines_give_same_ids_in_independent_miners() -> None:
    lines = [f"job {i} finished in {i * 7}ms on worker-{i % 3}" for i in range(50)]
    ids_a = [TemplateMiner().add(line, ts=0).template_id for line in lines[:1]]
    one, two = TemplateMiner(), TemplateMiner()
    ids_one = [one.add(line, ts=0).template_id for line in lines]
    ids_two = [two.add(line, ts=0).template_id for line in lines]
    assert ids_one == ids_two and ids_a[0] == ids_one[0]


def test_match_does_not_learn() -> None:
    miner = TemplateMiner()
    miner.add("disk sda1 is 91% full", ts=0)
    miner.add("disk sdb2 is 95% full", ts=0)
    before = miner.dumps()
    hit = miner.match("disk sdc3 is 99% full")
    assert hit is not None and hit.template == "disk <*> is <NUM>% full" and not hit.is_new
    assert miner.match("completely different words here") is None
    assert miner.dumps() == before


# --------------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------------


def _corpus(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    kinds = [
        "Received block blk_{a} of size {b} from /10.0.{c}.{d}",
        "session opened for user {u} by (uid={c})",
        "GET /api/v1/items/{a} took {c}ms status {s}",
        "worker {c} heartbeat ok",
        "connection from 10.1.{c}.{d} ({u}.example.net) at Fri Jun 17 07:0{c}:00 2005",
        "rhost={u} user={u} tty=ssh",
    ]
    users = ["alice", "bob", "carol", "root", "dave"]
    out = []
    for _ in range(n):
        kind = rng.choice(kinds)
        out.append(
            kind.format(
                a=rng.randrange(10**12),
                b=rng.randrange(10**6),
                c=rng.randrange(10),
                d=rng.randrange(256),
                u=rng.choice(users),
                s=rng.choice([200, 404, 500]),
            )
        )
    return out


def test_state_round_trip_gives_same_results() -> None:
    head, tail = _corpus(1, 300), _corpus(2, 300)
    miner = TemplateMiner(bucket_seconds=10)
    early_ids = [miner.add(line, ts=i).template_id for i, line in enumerate(head)]
    blob = miner.dumps()
    state = json.loads(blob)
    assert state["format"] == 1 and state["kind"] == "log_templates"
    assert "py/object" not in blob.decode()  # not jsonpickle
    clone = TemplateMiner.loads(blob)
    assert clone.dumps() == blob
    for i, line in enumerate(tail, start=len(head)):
        assert miner.add(line, ts=i) == clone.add(line, ts=i)
    assert clone.dumps() == miner.dumps()
    assert [clone.resolve(t) for t in early_ids] == [miner.resolve(t) for t in early_ids]
    assert clone.templates() == miner.templates()
    tid = miner.templates()[0].template_id
    assert clone.counts(tid) == miner.counts(tid)
    for line in _corpus(3, 50):
        assert clone.match(line) == miner.match(line)


def test_state_rejects_wrong_format_and_garbage() -> None:
    blob = json.loads(TemplateMiner().dumps())
    with pytest.raises(InputError) as err:
        TemplateMiner.from_state({**blob, "format": 99})
    assert err.value.reason == "state_format"
    with pytest.raises(InputError):
        TemplateMiner.loads(b"not json")
    with pytest.raises(InputError):
        TemplateMiner.loads(b"[1, 2]")
    with pytest.raises(InputError) as err:
        TemplateMiner.from_state({**blob, "state": {"clusters": "nope"}})
    assert err.value.reason == "state_malformed"


def test_extra_masks_survive_state() -> None:
    miner = TemplateMiner(extra_masks=(Mask("TICKET", r"\bJIRA-\d+\b"),))
    miner.add("closed JIRA-12 today", ts=0)
    clone = TemplateMiner.loads(miner.dumps())
    assert clone.add("closed JIRA-99 today", ts=0).template == "closed <TICKET> today"


# --------------------------------------------------------------------------------------------------
# Counters and signals
# --------------------------------------------------------------------------------------------------


def test_counts_rate_and_new_templates() -> None:
    miner = TemplateMiner(bucket_seconds=60)
    for minute in range(10):
        for _ in range(5):
            miner.add("heartbeat from worker 3 ok", ts=minute * 60 + 1)
    assert miner.new_templates(since=0)[0].template == "heartbeat from worker <NUM> ok"
    assert miner.new_templates(since=60) == []
    new = miner.add("disk /dev/sda1 failed: I/O error", ts=600)
    assert new.is_new
    fresh = miner.new_templates(since=600)
    assert [i.template_id for i in fresh] == [new.template_id]
    hb = miner.match("heartbeat from worker 7 ok")
    assert hb is not None
    assert miner.counts(hb.template_id) == {m * 60.0: 5 for m in range(10)}
    assert miner.counts(hb.template_id, start=120, end=240) == {120.0: 5, 180.0: 5}
    assert miner.rate(hb.template_id, at=130) == pytest.approx(5 / 60)


def test_retention_drops_old_buckets_but_keeps_totals() -> None:
    miner = TemplateMiner(bucket_seconds=1, retention_buckets=5)
    for t in range(20):
        m = miner.add("tick", ts=t)
    assert sorted(miner.counts(m.template_id)) == [15.0, 16.0, 17.0, 18.0, 19.0]
    assert miner.templates()[0].count == 20


def _feed(miner: TemplateMiner, bucket: int, line: str, n: int) -> None:
    for i in range(n):
        miner.add(line.format(i=i), ts=bucket * 60 + (i % 60))


def test_rate_spike_is_flagged_and_steady_rate_is_not() -> None:
    rng = random.Random(5)
    miner = TemplateMiner(bucket_seconds=60)
    for bucket in range(40):
        _feed(miner, bucket, "steady request {i} served", 20 + rng.randint(-3, 3))
        _feed(miner, bucket, "payment {i} declined", 10 + rng.randint(-2, 2))
    assert miner.rate_spikes() == []  # noisy but steady
    _feed(miner, 40, "steady request {i} served", 21)
    _feed(miner, 40, "payment {i} declined", 120)
    spikes = miner.rate_spikes()
    assert [s.template for s in spikes] == ["payment <NUM> declined"]
    spike = spikes[0]
    assert spike.count == 120 and spike.bucket_start == 40 * 60.0 and spike.score >= 5
    assert 8 <= spike.median <= 12


def test_perfectly_constant_rate_does_not_fire_on_a_small_wobble() -> None:
    miner = TemplateMiner(bucket_seconds=60)
    for bucket in range(30):
        _feed(miner, bucket, "poll {i} ok", 100)
    _feed(miner, 30, "poll {i} ok", 110)  # MAD is 0; the Poisson floor keeps this quiet
    assert miner.rate_spikes() == []


def test_rate_spikes_have_no_look_ahead() -> None:
    miner = TemplateMiner(bucket_seconds=60)
    for bucket in range(20):
        _feed(miner, bucket, "queue depth {i}", 10)
    _feed(miner, 20, "queue depth {i}", 80)
    at = 20 * 60.0 + 1
    before = miner.rate_spikes(at=at)
    for bucket in range(21, 30):  # the future must not change the verdict for bucket 20
        _feed(miner, bucket, "queue depth {i}", 500)
    assert miner.rate_spikes(at=at) == before and len(before) == 1
    with pytest.raises(InputError):
        miner.rate_spikes(window=3, min_history=5)


def test_new_template_has_no_spike_history() -> None:
    miner = TemplateMiner(bucket_seconds=60)
    _feed(miner, 0, "brand new error {i}", 500)
    assert miner.rate_spikes() == []  # too little history: that is new_templates' job
    assert len(miner.new_templates(since=0)) == 1


# --------------------------------------------------------------------------------------------------
# Input rules
# --------------------------------------------------------------------------------------------------


def test_none_and_non_text_raise_input_error() -> None:
    miner = TemplateMiner()
    with pytest.raises(InputError) as err:
        miner.add(None, ts=0)  # type: ignore[arg-type]
    assert err.value.reason == "log_line_none"
    with pytest.raises(InputError) as err:
        miner.add(42, ts=0)  # type: ignore[arg-type]
    assert err.value.reason == "log_line_type"
    with pytest.raises(InputError) as err:
        miner.add("ok", ts=float("nan"))
    assert err.value.reason == "bad_timestamp"
    with pytest.raises(InputError):
        miner.match(None)  # type: ignore[arg-type]
    assert len(miner) == 0  # nothing was learnt from rejected input


def test_empty_and_blank_lines_map_to_the_empty_template() -> None:
    miner = TemplateMiner()
    a = miner.add("", ts=0)
    b = miner.add("   \t \n", ts=0)
    assert a.template == b.template == "" and a.template_id == b.template_id == template_id("")
    assert miner.match("") == lt.Match(a.template_id, "")


def test_invalid_utf8_and_lone_surrogates_are_replaced() -> None:
    miner = TemplateMiner()
    m = miner.add(b"disk \xff\xfe sda failed \xc3", ts=0)
    assert "\ufffd" in m.template
    s = miner.add("user \udcff logged in", ts=0)
    assert "\udcff" not in s.template
    TemplateMiner.loads(miner.dumps())  # the state stays valid UTF-8 JSON
    assert miner.add(bytearray(b"abc 1"), ts=0).template == "abc <NUM>"


def test_huge_line_is_truncated_quickly_with_bounded_template() -> None:
    miner = TemplateMiner()
    line = " ".join(f"w{i}" for i in range(300_000))  # ~2 MB of distinct words
    started = time.perf_counter()
    m = miner.add(line, ts=0)
    assert m.truncated
    assert len(m.template.split()) == miner.config["max_tokens"] + 1
    assert m.template.startswith("w0 w1 w2 ") and m.template.endswith(PARAM)
    assert miner.add("payload " + "x=1 " * (MAX_LINE_BYTES // 2), ts=0).template == "payload x=<NUM> <*>"
    assert not miner.add("short line 1", ts=0).truncated
    raw = "é" * MAX_LINE_BYTES  # 2 MiB of UTF-8: cut on a character boundary
    text, truncated = prepare_line(raw)
    assert truncated and len(text.encode()) <= MAX_LINE_BYTES and "\ufffd" not in text
    text, truncated = prepare_line(raw.encode())
    assert truncated and "\ufffd" not in text
    assert time.perf_counter() - started < 5.0


@pytest.mark.parametrize("unit", ["1.", "0:", "1-", "a1.", "/a", "a@", "Jan 1 "])
def test_hostile_megabyte_lines_stay_fast(unit: str) -> None:
    miner = TemplateMiner()
    started = time.perf_counter()
    m = miner.add(unit * (MAX_LINE_BYTES // len(unit) + 10), ts=0)
    assert time.perf_counter() - started < 2.0
    assert m.truncated and len(m.template) <= 600 * lt.MAX_TOKEN_CHARS


def test_bad_parameters_raise() -> None:
    for kwargs in ({"sim_th": 0}, {"depth": 2}, {"bucket_seconds": 0}, {"max_tokens": 0}):
        with pytest.raises(InputError):
            TemplateMiner(**kwargs)  # type: ignore[arg-type]


def test_public_surface() -> None:
    assert set(lt.__all__) == {
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
    }
    assert all(hasattr(lt, name) for name in lt.__all__)
    assert all(hasattr(bench, name) for name in bench.__all__)


# --------------------------------------------------------------------------------------------------
# Loghub evaluator
# --------------------------------------------------------------------------------------------------


def test_grouping_accuracy_on_a_hand_made_example() -> None:
    truth = ["A", "A", "B", "B", "C", "D"]
    pred = [1, 1, 2, 3, 3, 4]
    # A: both in 1 and 1 holds only them -> correct (2). B: split over 2 and 3 -> wrong.
    # C: in 3 but 3 also holds a B message -> wrong. D: alone in 4 -> correct (1).
    ga, fga = grouping_accuracy(truth, pred)
    assert ga == pytest.approx(3 / 6)
    assert fga == pytest.approx(2 * (2 / 4) * (2 / 4) / (2 / 4 + 2 / 4))
    assert grouping_accuracy(["x", None, "x"], [1, 2, 1]) == (1.0, 1.0)  # missing truth is ignored
    with pytest.raises(InputError):
        grouping_accuracy(["x"], [])


def test_parsing_accuracy_on_a_hand_made_example() -> None:
    truth = ["Received block <*> of size <*>", "user <*> logged in", "disk <*> full", "a b"]
    pred = ["Received block blk_<*> of size <*>", "user <*> logged in", "disk sda full", "a  b "]
    assert parsing_accuracy(truth, pred) == pytest.approx(3 / 4)  # blk_<*> ≡ <*>; "a  b " ≡ "a b"
    assert parsing_accuracy(truth, pred, normalise=False) == pytest.approx(1 / 4)


@pytest.mark.parametrize(
    ("template", "normal"),
    [
        ("a   b\tc ", "a b c"),  # DS
        ("open /var/log/x.log failed", "open <*> failed"),  # PS
        ("flag true for root", "flag <*> for <*>"),  # BL, US
        ("code 42 at 7", "code <*> at <*>"),  # DG
        ("block blk_<*> ok", "block <*> ok"),  # WV
        ("ver <*>.<*>.<*>", "ver <*>"),  # DV
        ("id <*><*> ok", "id <*> ok"),  # CV
        ("to <*>:<*> and PS/<*>", "to <*>:<*> and PS/<*>"),  # kept
    ],
)
def test_normalise_template_rules(template: str, normal: str) -> None:
    assert normalise_template(template) == normal
    assert normalise_template(normal) == normal  # idempotent


def test_to_loghub_converts_only_known_placeholders() -> None:
    assert to_loghub("at <IP>:<NUM> in <Foo> <init> <*>") == "at <*>:<*> in <Foo> <init> <*>"


def test_log_format_regex_extracts_content() -> None:
    regex = log_format_regex(bench.SYSTEMS["Linux"].log_format)
    m = regex.search("Jun 14 15:16:02 combo sshd(pam_unix)[19937]: check pass; user unknown")
    assert m is not None and m.group("Content") == "check pass; user unknown"
    assert m.group("Component") == "sshd(pam_unix)" and m.group("PID") == "19937"


# --------------------------------------------------------------------------------------------------
# The benchmark on the real data (skipped when the data set is absent)
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loghub_dir() -> Path:
    path = bench.default_data_dir()
    if not (path / "HDFS" / "HDFS_2k.log").is_file():
        pytest.skip(f"Loghub-2k not found at {path} (set WARROOM_LOGHUB_DIR)")
    return path


def test_bench_run_beats_drain(loghub_dir: Path) -> None:
    out = io.StringIO()
    result = bench.run(loghub_dir, as_json=True, out=out)
    last = json.loads(out.getvalue().strip().splitlines()[-1])
    assert last == json.loads(json.dumps(result, sort_keys=True))
    assert set(last["systems"]) == {"HDFS", "BGL", "OpenStack", "Apache", "Linux"}
    assert last["ga"] >= 0.877 and last["pa"] >= 0.7
    assert all(s["content_mismatches"] == 0 and s["lines"] == 2000 for s in last["systems"].values())


def test_bench_main_reports_missing_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--data", str(tmp_path)]) == InputError.exit_code
    assert "error:" in capsys.readouterr().err
