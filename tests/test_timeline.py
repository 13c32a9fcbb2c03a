"""pdplan timeline: the interference pictures of the three policies, tick by tick and in ms."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from jsondoc import result_of

from planner.catalog import load_catalog
from planner.cli import cli
from planner.errors import InvalidRequestError
from planner.timeline import Request, StepClock, TokenClock, build, parse_request


def run(args):
    return CliRunner().invoke(cli, args)


def cells(tl, pool=None) -> list[str]:
    return [r.cells for r in tl.rows if pool is None or r.pool == pool]


# ---- the known pictures (abstract ticks, default scenario: 2:12@0 and 8:4@3) ----------------

# Unified: the long prompt enters whole next to the short request's decode, so its iteration
# lasts 8 prompt ticks + 1 decode tick; the chunk size is the iteration's token budget, decodes
# included, so chunk 2 next to one decode carries one prompt token and chunk 4 three.
UNIFIED = ["PPDxxxxxxxxDDDDDDDDDD",
           "...PPPPPPPP-DDD......"]
CHUNK_2 = ["PPDxDxDxDxDxDxDxDxDDD.",
           "...P-P-P-P-P-P-P-P-DDD"]
CHUNK_4 = ["PPDxxxDxxxDxxDDDDDDDD",
           "...PPP-PPP-PP-DDD...."]
DISAGG_PREFILL = ["PP............",
                  "...PPPPPPPP..."]
DISAGG_DECODE = ["..DDDDDDDDDDD.",
                 "...........DDD"]


def test_default_scenario_is_a_short_request_decoding_when_a_long_one_arrives():
    tl = build("unified")
    assert [(r.prompt, r.output, r.arrival) for r in tl.requests] == [(2, 12, 0.0), (8, 4, 3.0)]


def test_unified_stalls_the_short_request_for_the_whole_long_prefill():
    tl = build("unified")
    assert cells(tl) == UNIFIED
    short = tl.rows[0].cells
    assert short[3:11] == "x" * 8  # exactly the 8 ticks of the long prefill
    assert tl.stats[0].stalled == 8 and tl.stats[0].worst_gap == 9
    assert tl.stats[1].stalled == 0


def test_chunk_2_lets_the_short_request_decode_every_second_tick():
    tl = build("chunked", chunk_size=2)
    assert cells(tl) == CHUNK_2
    short = tl.rows[0].cells
    decodes = [i for i, c in enumerate(short) if c == "D" and i < 15]
    assert decodes == [2, 4, 6, 8, 10, 12, 14]
    assert tl.stats[0].worst_gap == 2


def test_chunk_4_lets_the_short_request_decode_every_fourth_tick():
    tl = build("chunked", chunk_size=4)
    assert cells(tl) == CHUNK_4
    decodes = [i for i, c in enumerate(tl.rows[0].cells) if c == "D" and i < 13]
    assert decodes == [2, 6, 10]
    assert tl.stats[0].worst_gap == 4


def test_disaggregated_shows_two_pools_and_never_stalls():
    tl = build("disaggregated")
    assert [r.pool for r in tl.rows] == ["prefill", "prefill", "decode", "decode"]
    assert cells(tl, "prefill") == DISAGG_PREFILL
    assert cells(tl, "decode") == DISAGG_DECODE
    assert not any("x" in c for c in cells(tl))
    assert all(s.stalled == 0 for s in tl.stats)


def test_every_request_gets_its_tokens_and_its_prompt():
    for approach, chunk in (("unified", None), ("chunked", 2), ("chunked", 3), ("disaggregated", None)):
        reqs = [Request(5, 3, 0), Request(2, 6, 1), Request(7, 1, 4)]
        tl = build(approach, reqs, chunk_size=chunk)
        for i, r in enumerate(reqs):
            row = "".join(x.cells for x in tl.rows if x.request == i)
            assert row.count("P") == r.prompt, (approach, i)
            assert row.count("D") == r.output - 1, (approach, i)
            assert len(tl.stats[i].token_times) == r.output


def test_two_requests_arriving_together_queue_fcfs():
    # The second (6 tokens) does not fit next to the first in a budget of the longest prompt.
    tl = build("unified", [Request(2, 8, 0), Request(6, 8, 0)])
    assert cells(tl) == ["PPxxxxxxDDDDDDD.", "--PPPPPP-DDDDDDD"]


def test_chunked_fills_the_chunk_with_several_prompts():
    tl = build("chunked", [Request(1, 2, 0), Request(1, 2, 0), Request(3, 2, 0)], chunk_size=4)
    first = tl.iterations[0]
    assert [(r, c) for r, c, _ in first.pieces] == [(0, 1), (1, 1), (2, 2)]


# ---- parsing -----------------------------------------------------------------------------------


def test_parse_request_forms():
    assert parse_request("2", real=False) == (2, 8, None)
    assert parse_request("2k:16@5", real=False) == (2048, 16, 5.0)
    assert parse_request("512:32@150ms", real=True) == (512, 32, pytest.approx(0.15))
    assert parse_request("512:32@0", real=True)[2] == 0.0
    for bad in ("", ":3", "2:", "2:3@", "2:3@1.5", "x", "0"):
        with pytest.raises(InvalidRequestError):
            parse_request(bad, real=False)


def test_limits():
    with pytest.raises(InvalidRequestError, match="ticks"):
        build("unified", [Request(5000, 2, 0)])
    with pytest.raises(InvalidRequestError, match="--chunk-size"):
        build("unified", chunk_size=4)
    with pytest.raises(InvalidRequestError, match="--request"):
        build("unified", [Request(1, 1, 0)] * 21)


# ---- real time ------------------------------------------------------------------------------


def _clock(model="llama-3.1-8b", gpu="h100-sxm", tp=1):
    from planner.perf import build_step_model

    cat = load_catalog(None)
    return StepClock(build_step_model(cat, cat.model(model), cat.gpu(gpu), tp, 1))


def test_real_mode_uses_step_times():
    clock = _clock()
    uni = build("unified", clock=clock)
    assert uni.real and uni.tick > 0
    short, long_ = uni.stats
    assert short.stalled > 0 and short.worst_gap >= short.stalled * 0.99
    # The stall is the iteration that carries the long prompt next to the short decode.
    ctx = uni.requests[0].prompt + 1
    d, _ = clock.iteration(((uni.requests[1].prompt, 0, True),), (ctx,))
    assert short.worst_gap == pytest.approx(d, rel=0.05)
    chunked = build("chunked", clock=clock, chunk_size=1024)
    assert 0 < chunked.stats[0].worst_gap < short.worst_gap
    dis = build("disaggregated", clock=clock)
    assert all(s.stalled == 0 for s in dis.stats)
    assert not any("x" in r.cells for r in dis.rows)


def test_real_mode_columns_follow_the_tick():
    tl = build("unified", clock=_clock(), tick=0.005)
    assert tl.tick == 0.005
    assert len(tl.ticks) == len(tl.rows[0].cells)
    assert tl.ticks[-1] < tl.end <= tl.ticks[-1] + 0.005 + 1e-12
    assert "x" in tl.rows[0].cells and "P" in tl.rows[1].cells


def test_token_clock_is_the_tick_rule():
    c = TokenClock()
    assert c.iteration(((8, 0, True),), ()) == (8.0, 0.0)
    assert c.iteration((), (5, 9, 12)) == (1.0, 1.0)
    assert c.iteration(((2, 4, False),), (5,)) == (3.0, 1.0)


# ---- the command ----------------------------------------------------------------------------


def test_cli_text_shows_the_stall_pattern():
    r = run(["timeline", "--approach", "unified"])
    assert r.exit_code == 0, r.output
    assert "r0      " + UNIFIED[0] in r.output
    assert "r1      " + UNIFIED[1] in r.output
    assert "stalled" in r.output and "P prefill" in r.output
    assert max(len(line) for line in r.output.splitlines()) <= 100
    r = run(["timeline", "--approach", "chunked", "--chunk-size", "2"])
    assert r.exit_code == 0, r.output
    assert CHUNK_2[0] in r.output and CHUNK_2[1] in r.output


def test_cli_disaggregated_text_has_both_pools():
    r = run(["timeline", "--approach", "disaggregated"])
    assert r.exit_code == 0, r.output
    assert "prefill pool" in r.output and "decode pool" in r.output
    assert DISAGG_DECODE[0] in r.output


def test_cli_json_shape():
    r = run(["timeline", "--approach", "chunked", "--chunk-size", "4", "--json"])
    assert r.exit_code == 0, r.output
    doc = result_of(r.stdout)
    for key in ("approach", "mode", "unit", "chunk_size", "requests", "column_starts_ticks", "rows",
                "stall", "iterations", "assumed"):
        assert key in doc, key
    assert doc["approach"] == "chunked" and doc["mode"] == "abstract" and doc["chunk_size"] == 4
    assert doc["column_starts_ticks"] == list(range(21))
    assert doc["iterations"][0]["start_ticks"] == 0
    assert [(r["prompt_tokens"], r["output_tokens"]) for r in doc["requests"]] == [(2, 12), (8, 4)]
    assert [row["cells"] for row in doc["rows"]] == CHUNK_4
    assert [row["request"] for row in doc["rows"]] == [0, 1]
    assert all(set(row) == {"request", "pool", "cells"} for row in doc["rows"])
    stall = doc["stall"]
    assert stall["unit"] == "tick"
    assert stall["requests"][0]["stalled_ticks"] == 8 and stall["requests"][0]["worst_gap_ticks"] == 4
    assert stall["stalled_requests"] == 1


def test_cli_requests_as_given():
    doc = result_of(run(["timeline", "--request", "2", "--request", "6", "--json"]).stdout)
    assert [r["prompt_tokens"] for r in doc["requests"]] == [2, 6]
    assert [row["cells"] for row in doc["rows"]] == ["PPxxxxxxDDDDDDD.", "--PPPPPP-DDDDDDD"]
    assert "assumed" not in doc


def test_cli_real_mode_reports_ms():
    r = run(["timeline", "--approach", "unified", "--model", "llama-3.1-8b", "--gpu", "h100-sxm",
             "--tp", "1", "--json"])
    assert r.exit_code == 0, r.output
    doc = result_of(r.stdout)
    assert doc["mode"] == "real" and doc["unit"] == "ms" and doc["tick_ms"] > 0
    assert doc["model"] == "llama-3.1-8b" and doc["gpu"] == "h100-sxm" and doc["tp"] == 1
    short = doc["stall"]["requests"][0]
    assert short["stalled_ms"] > 0 and short["worst_gap_ms"] > 0 and short["ttft_ms"] > 0
    starts = doc["column_starts_ms"]
    assert all(t >= 0 for t in starts) and starts[1] == pytest.approx(doc["tick_ms"])
    assert doc["iterations"][0]["end_ms"] > doc["iterations"][0]["start_ms"] == 0
    text = run(["timeline", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--tp", "1"])
    assert text.exit_code == 0 and " ms" in text.output and "stalled" in text.output


@pytest.mark.parametrize("args,flag", [
    (["--approach", "unified", "--chunk-size", "4"], "--chunk-size"),
    (["--request", "2:x"], "--request"),
    (["--tick", "5ms"], "--tick"),
    (["--request", "1500", "--request", "900"], "--request"),
    (["--gpu", "h100-sxm", "--tp", "3"], "--tp"),
    (["--gpu", "nope"], "--gpu"),
])
def test_cli_bad_input_is_one_error_line(args, flag):
    r = run(["timeline", *args])
    assert r.exit_code == 2, r.output
    errors = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and flag in errors[0], r.output
