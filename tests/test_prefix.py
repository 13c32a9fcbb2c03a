"""Prefix caching (planner.workload.PrefixCache): the per-request rule, the load shape every
analytic approach reads, KV memory held once for the shared prefix, the disaggregated transfer,
invariants, traces with a cached_tokens column, plans and the CLI's bad-input contract.

The simulator's twin is held to the reference scheduler in tests/test_simulate.py
(test_prefix_cache_matches_the_reference) and to the analytic models in tests/test_agreement.py
(test_agreement_prefix, slow)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import example, given, settings
from hypothesis import strategies as st
from jsondoc import result_of

from planner import api
from planner.cli import cli
from planner.serving.common import (
    DEFAULT_KV_BLOCK,
    Deployment,
    LoadShape,
    Pool,
    batch_cap,
    kv_tokens_per_sequence,
    sequence_kv_capacity,
    shape_of,
)
from planner.workload import LengthDist, PrefixCache, Workload, fixed, load_trace

GPU = "h100-sxm"
UNIFIED = Deployment("unified", (Pool("unified", GPU, 1, 4),))
CHUNKED = Deployment("chunked", (Pool("unified", GPU, 1, 4),), chunk_size=1024)
DISAGG = Deployment("disaggregated", (Pool("prefill", GPU, 2, 4), Pool("decode", GPU, 1, 4)))
DEPLOY = {"unified": UNIFIED, "chunked": CHUNKED, "disaggregated": DISAGG}


def _inputs(qps=1.0, isl=2000, osl=201, tokens=0, hit_rate=0.0, isl_dist=None):
    inp = api.default_inputs(qps=qps, isl=isl, osl=osl)
    wl = Workload(qps, isl_dist or fixed(isl), fixed(osl), prefix=PrefixCache(tokens, hit_rate))
    return replace(inp, workload=wl)


# --------------------------------------------------------------------------------------------
# The per-request rule
# --------------------------------------------------------------------------------------------


def test_cached_tokens_rule():
    """shared = min(P, L); cached = shared + floor(h (L - shared)), at most L - 1; a trace's
    count is raised to the shared prefix."""
    p = PrefixCache(1500, 0.5)
    isl = np.array([2000, 1501, 1500, 800, 1])
    assert p.shared(isl).tolist() == [1500, 1500, 1500, 800, 1]
    # 1500 + 250; 1500 + floor(0.5); prompts no longer than the prefix: all but the last token
    assert p.cached(isl).tolist() == [1750, 1500, 1499, 799, 0]
    assert PrefixCache(0, 0.3).cached([1000, 7]).tolist() == [300, 2]
    assert PrefixCache(0, 1.0).cached([1000]).tolist() == [999]  # the last token is computed
    assert PrefixCache(100, 0.0).cached([1000, 1000], given=[0, 600]).tolist() == [100, 600]
    assert PrefixCache(100, 0.0).cached([1000], given=[1000]).tolist() == [999]
    assert not PrefixCache().on and PrefixCache(1).on and PrefixCache(0, 0.1).on


def test_load_shape_of_a_prefix():
    """The analytic models' view: a 2000-token prompt behind a 1500-token prefix and half the
    rest cached computes 250 tokens after 1750 cached ones; its sequence holds 500 prompt
    tokens of KV itself (the shared 1500 once per instance)."""
    sh = shape_of(_inputs(tokens=1500, hit_rate=0.5).workload)
    assert sh.computed.tolist() == [250.0]
    assert sh.prefill_pairs.tolist() == [250 * (1750 + 125)]
    assert sh.prefix_tokens == 1500
    assert sh.decode_context == 2000 + 100  # attention still reads the whole context
    assert sh.kv_context == 500 + 100
    assert sh.longest_computed == 250


def test_kv_held_once_per_instance_hand_values():
    """vLLM-style paged KV (16-token blocks): a sequence holds its own 500 prompt tokens and on
    average half its 200 decode tokens, plus half a block: 608 tokens instead of 2108; the
    instance sets the 1500 prefix tokens aside once."""
    inp = _inputs(tokens=1500)
    sm = api.step_model(inp, UNIFIED.pool("unified"))
    sh = shape_of(inp.workload)
    assert kv_tokens_per_sequence(sm, sh) == 500 + 100 + DEFAULT_KV_BLOCK / 2
    base = shape_of(_inputs().workload)
    assert kv_tokens_per_sequence(sm, base) == 2000 + 100 + DEFAULT_KV_BLOCK / 2
    assert sequence_kv_capacity(sm, sh) == sm.kv_capacity_tokens - 1500
    cap, by = batch_cap(sm, sh)
    assert by == "kv-memory" and cap == pytest.approx((sm.kv_capacity_tokens - 1500) / 608)
    # a hit-rate share is the sequence's own history: it still holds it
    hr = shape_of(_inputs(hit_rate=0.5).workload)
    assert kv_tokens_per_sequence(sm, hr) == kv_tokens_per_sequence(sm, base)
    # TensorRT-LLM reserves ISL + OSL at admission, less the shared prefix, in whole blocks
    trt = replace(inp, engine=api.load_catalog().engine("trtllm"))
    smt = api.step_model(trt, UNIFIED.pool("unified"))
    block = trt.engine.kv_block_tokens
    assert kv_tokens_per_sequence(smt, sh) == np.ceil((2000 + 201 - 1500) / block) * block


def test_kv_in_use_and_ttft_of_the_analytic_lanes():
    """At one rate: the prefill lane's prompt work (and so its utilisation) falls with the
    computed share; the KV in use is the batch times its own context plus the prefix while a
    sequence runs."""
    qps = 2.0
    base = api.evaluate(_inputs(qps), CHUNKED, [qps])
    pre = api.evaluate(_inputs(qps, tokens=1500), CHUNKED, [qps])
    assert float(pre.ttft["p90"][0]) < 0.6 * float(base.ttft["p90"][0])
    assert float(pre.utilization["unified"][0]) < float(base.utilization["unified"][0])
    n = float(pre.batch[0])
    assert float(pre.kv_used[0]) == pytest.approx(n * 600 + 1500 * -np.expm1(-n))


def test_disaggregated_transfer_skips_the_shared_prefix_only():
    """The decode instance caches the shared prefix too: the link carries the other 500 tokens;
    a hit-rate share found in the prefill instance's cache still crosses it (2000 tokens),
    while its prefill computes only the 1000 uncached ones."""
    kvb = api.default_inputs().model.kv_bytes_per_token("bf16")
    full = api.estimate(_inputs(), DISAGG, with_headroom=False)
    pre = api.estimate(_inputs(tokens=1500), DISAGG, with_headroom=False)
    hr = api.estimate(_inputs(hit_rate=0.5), DISAGG, with_headroom=False)
    assert full.link["bytes_per_request"] == pytest.approx(2000 * kvb)
    assert pre.link["bytes_per_request"] == pytest.approx(500 * kvb)
    assert hr.link["bytes_per_request"] == pytest.approx(2000 * kvb)
    smp = api.step_model(_inputs(), DISAGG.pool("prefill"))
    assert hr.metrics.breakdown["ttft_compute_s"] == pytest.approx(float(smp.prefill_time(1000, 1000)))
    assert pre.metrics.breakdown["ttft_compute_s"] == pytest.approx(float(smp.prefill_time(500, 1500)))
    assert pre.metrics.breakdown["ttft_transfer_s"] < full.metrics.breakdown["ttft_transfer_s"]


def test_unified_budget_is_raised_to_the_computed_tokens_only():
    from planner.serving import unified

    sm = api.step_model(_inputs(), UNIFIED.pool("unified"))
    isl = np.array([20000])
    assert unified.budget(sm, LoadShape(isl, np.array([10]))) == 20000
    assert unified.budget(sm, LoadShape(isl, np.array([10]), cached=np.array([18000]))) == 8192


# --------------------------------------------------------------------------------------------
# Invariant: more cache hits never increase TTFT or the KV in use
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(isl=st.integers(256, 8192), osl=st.integers(16, 512), a=st.floats(0, 1), b=st.floats(0, 1),
       ha=st.floats(0, 1), hb=st.floats(0, 1), qps=st.floats(0.1, 6.0),
       approach=st.sampled_from(sorted(DEPLOY)))
@example(isl=1737, osl=16, a=0.0, b=0.0, ha=0.125, hb=0.1875, qps=0.5, approach="chunked")
def test_more_cache_hits_never_raise_ttft_or_kv(isl, osl, a, b, ha, hb, qps, approach):
    """For fixed lengths, a longer cached prefix and a higher hit rate (every request's cached
    count at least as large) never raise the mean TTFT, nor the KV in use, and never turn a
    stable deployment unstable; the P90 rises by at most 0.1%. (A prompt's wait includes the
    rest of the iteration in progress, a mixture of prefill and decode iterations: shorter
    prefills shift the mixture's weights, and its 90th percentile can move up by a hair while
    the mean falls. The example above: P90 142.44 -> 142.53 ms, +0.06%, found by hypothesis.)"""
    p1, p2 = sorted((int(a * (isl - 1)), int(b * (isl - 1))))
    h1, h2 = sorted((ha, hb))
    dep = DEPLOY[approach]
    out = []
    for p, h in ((p1, h1), (p2, h2)):
        r = api.evaluate(_inputs(qps, isl, osl, p, h), dep, [qps])
        out.append((bool(r.stable[0]), float(r.ttft["mean"][0]), float(r.ttft["p90"][0]),
                    float(r.kv_used[0])))
    (s1, m1, q1, k1), (s2, m2, q2, k2) = out
    if s1:
        assert s2
        assert m2 <= m1 * (1 + 1e-9) and q2 <= q1 * (1 + 1e-3)
        assert k2 <= k1 * (1 + 1e-9)


# --------------------------------------------------------------------------------------------
# Traces with a cached_tokens column
# --------------------------------------------------------------------------------------------


def test_trace_cached_tokens_column(tmp_path):
    csv_ = tmp_path / "t.csv"
    csv_.write_text("input_tokens,output_tokens,cached_tokens\n3000,100,2048\n1000,50,0\n2000,80,2000\n")
    t = load_trace(str(csv_))
    assert t.isl.tolist() == [1000, 2000, 3000] and t.cached.tolist() == [0, 2000, 2048]
    jl = tmp_path / "t.jsonl"
    jl.write_text('{"isl": 3000, "osl": 100, "num_cached_tokens": 2048}\n{"isl": 1000, "osl": 50, "num_cached_tokens": 0}\n')
    assert load_trace(str(jl)).cached.tolist() == [0, 2048]
    wl = Workload(1.0, fixed(1), fixed(1), trace=t)
    cached, shared = wl.prefix_grid()
    assert cached.tolist() == [0, 1999, 2048] and shared.tolist() == [0, 0, 0]
    # with a shared prefix, every request has it cached at least
    wl2 = replace(wl, prefix=PrefixCache(500))
    assert wl2.prefix_grid()[0].tolist() == [500, 1999, 2048]
    # the simulator draws the rows' own counts
    _, isl, _, c = wl.sample_requests(50, np.random.default_rng(1))
    lookup = {1000: 0, 2000: 1999, 3000: 2048}
    assert c.tolist() == [lookup[int(i)] for i in isl]
    # plans embed the column and read it back
    from planner.workload import trace_from_document

    back = trace_from_document(t.document(), "plan")
    assert back.cached.tolist() == t.cached.tolist() and back.sha256 == t.sha256


def test_trace_cached_tokens_bad_values(tmp_path):
    from planner.errors import InvalidRequestError

    for body, what in (("3000,100,3001", "from 0 to the row's input tokens (3,000)"),
                       ("3000,100,-1", "from 0 to"), ("3000,100,x", "not a number")):
        f = tmp_path / "bad.csv"
        f.write_text(f"isl,osl,cached_tokens\n1000,10,5\n{body}\n")
        with pytest.raises(InvalidRequestError, match="cached_tokens") as exc:
            load_trace(str(f))
        assert what in str(exc.value) and "row 3" in str(exc.value)


# --------------------------------------------------------------------------------------------
# CLI: flags, assumptions, plans, bad input
# --------------------------------------------------------------------------------------------

EST = ["estimate", "--approach", "chunked", "--replicas", "2xtp4", "--qps", "10", "--isl", "4000",
       "--osl", "200"]


def _run(args):
    return CliRunner().invoke(cli, args)


def test_estimate_with_a_prefix_text_and_json():
    r = _run(EST + ["--prefix-tokens", "3000"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())  # (the terminal wraps the assumptions line)
    assert text.startswith("assumed: ") and "prefix cache: a 3,000-token shared prefix cached once per instance" in text
    assert text.index("prefix cache") < text.index("estimate:")
    j = _run(EST + ["--prefix-tokens", "3k", "--prefix-hit-rate", "0.25", "--json"])
    assert j.exit_code == 0, j.output
    doc = result_of(j.output)["plan"]
    assert doc["inputs"]["prefix_tokens"] == 3072 and doc["inputs"]["prefix_hit_rate"] == 0.25
    none = result_of(_run(EST + ["--json"]).output)["plan"]
    assert "prefix_tokens" not in none["inputs"]
    # 40k prompt tokens/s overload two tp4 instances; with 3k of each 4k prompt cached they cope
    assert none["metrics"]["ttft_ms"]["p90"] is None and not none["meets_slo"]
    assert doc["meets_slo"] and doc["metrics"]["ttft_ms"]["p90"] < 500


def test_plan_records_and_reloads_the_prefix(tmp_path):
    out = tmp_path / "plan.yaml"
    r = _run(["recommend", "--qps", "10", "--isl", "4000", "--osl", "200", "--prefix-tokens", "3000",
              "--prefix-hit-rate", "0.5", "--ttft-slo", "500ms", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "prefix cache:" in r.output
    from planner.plans import load_plan

    inp, dep, doc = load_plan(str(out))
    assert inp.workload.prefix == PrefixCache(3000, 0.5)
    assert doc["inputs"]["prefix_tokens"] == 3000
    ev = _run(["evaluate", str(out), "--json"])
    assert ev.exit_code == 0, ev.output
    assert result_of(ev.output)["plan"]["metrics"]["ttft_ms"] == doc["metrics"]["ttft_ms"]
    # a hand-edited plan whose prefix is longer than its prompt is refused, naming the key
    text = out.read_text().replace("prefix_tokens: 3000", "prefix_tokens: 5000")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    ev = _run(["evaluate", str(bad)])
    assert ev.exit_code == 2 and "inputs.prefix_tokens: must be from 0 to 3,999" in ev.output


def test_whatif_over_the_prefix():
    r = _run(["whatif", "--qps", "10", "--isl", "4000", "--osl", "200", "--vary",
              "prefix-tokens=0,2000,3500", "--json"])
    assert r.exit_code == 0, r.output
    rows = result_of(r.output)["rows"]
    gpus = [row["plan"]["total_gpus"] for row in rows]
    assert gpus == sorted(gpus, reverse=True) and gpus[-1] < gpus[0]
    assert rows[-1]["plan"]["inputs"]["prefix_tokens"] == 3500


@pytest.mark.parametrize("args,message", [
    (["--prefix-tokens", "4000"], "--prefix-tokens: must be from 0 to 3,999 (shorter than the prompt, --isl: 4,000 tokens), got 4,000"),
    (["--prefix-tokens", "9000"], "--prefix-tokens: must be from 0 to 3,999"),
    (["--prefix-tokens", "-5"], "--prefix-tokens: must be a whole number of tokens from 0 to 3,999"),
    (["--prefix-tokens", "1.5k5"], "--prefix-tokens: must be a whole number of tokens from 0 to 3,999"),
    (["--prefix-hit-rate", "1.5"], "--prefix-hit-rate: must be from 0 to 1, got '1.5'"),
    (["--prefix-hit-rate", "-0.1"], "--prefix-hit-rate: must be from 0 to 1"),
    (["--prefix-hit-rate", "nan"], "--prefix-hit-rate:"),
    (["--prefix-hit-rate", "half"], "--prefix-hit-rate: 'half' is not a share; give one from 0 to 1"),
])
def test_bad_prefix_input_exits_2_with_one_error_line(args, message):
    for cmd in (EST, ["simulate"] + EST[1:] + ["--requests", "100"],
                ["recommend", "--qps", "10", "--isl", "4000"]):
        r = _run(cmd + args)
        assert r.exit_code == 2, r.output
        errors = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
        assert len(errors) == 1 and message in errors[0], r.output
        assert "Traceback" not in r.output


def test_prefix_against_a_distribution_and_a_trace(tmp_path):
    """For a distribution the prefix must be shorter than the mean prompt; for a trace, than
    its mean prompt; a hit rate does not combine with a trace's own cached counts."""
    dist = ["estimate", "--approach", "unified", "--replicas", "1xtp4", "--qps", "1",
            "--isl-dist", "lognormal:mean=2000,cv=0.5"]
    ok = _run(dist + ["--prefix-tokens", "1500"])
    assert ok.exit_code == 0, ok.output
    r = _run(dist + ["--prefix-tokens", "2500"])
    assert r.exit_code == 2 and "Error: --prefix-tokens: must be from 0 to" in r.output
    assert "mean prompt of --isl-dist" in r.output
    f = tmp_path / "t.csv"
    f.write_text("isl,osl,cached_tokens\n1000,10,500\n3000,10,0\n")
    tr = ["estimate", "--approach", "unified", "--replicas", "1xtp4", "--qps", "1", "--trace", str(f)]
    assert _run(tr).exit_code == 0
    r = _run(tr + ["--prefix-hit-rate", "0.5"])
    assert r.exit_code == 2 and "Error: --prefix-hit-rate: not with a trace that carries cached_tokens" in r.output
    r = _run(tr + ["--prefix-tokens", "2000"])
    assert r.exit_code == 2 and "shorter than the trace's mean prompt: 2,000 tokens" in r.output
    assert _run(tr + ["--prefix-tokens", "800"]).exit_code == 0


def test_prefix_zero_changes_nothing():
    a = _run(EST + ["--json"])
    b = _run(EST + ["--prefix-tokens", "0", "--prefix-hit-rate", "0", "--json"])
    assert result_of(a.output)["plan"]["metrics"] == result_of(b.output)["plan"]["metrics"]


def test_prompts_shorter_than_the_prefix_are_its_first_tokens():
    """A lognormal draws prompts shorter than a prefix below its mean: they are all cached but
    their last token, and hold no KV of their own."""
    wl = _inputs(tokens=1500, isl_dist=LengthDist("lognormal", 2000.0, cv=0.5)).workload
    sh = shape_of(wl)
    short = sh.isl <= 1500
    assert short.any()
    assert (sh.computed[short] == 1).all() and (sh.isl - sh.shared)[short].max() == 0
    assert (sh.computed[~short] == sh.isl[~short] - 1500).all()
