"""The agreement grid: analytic P50/P90 of TTFT and TPOT against the discrete-event simulator
over 3 approaches x 3 loads x fixed/variable lengths x a dense and an MoE model (36 cases).

Marked slow (``.ci/run`` runs it; ``pytest -m slow`` locally). Every case must agree within 10%
(or 2 ms) unless it is listed in ``KNOWN_GAPS`` with the gap measured when the grid was last run
(docs/methodology.md explains each); an unlisted failure is a finding about the model.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from planner import api
from planner.serving.common import Deployment, Pool
from planner.sim import simulate
from planner.workload import Workload, fixed, parse_length_dist

pytestmark = pytest.mark.slow

REL, ABS = 0.10, 0.002
ITL_REL = 0.30  # the worst inter-token gap, an extreme over the run
REQUESTS = {0.3: 16000, 0.6: 24000, 0.85: 40000}
MODELS = {"dense": ("llama-3.1-70b", 8, 4), "moe": ("mixtral-8x7b", 2, 2)}
DEPLOY = {
    "unified": lambda tp, tpp: Deployment("unified", (Pool("unified", "h100-sxm", 2, tp),)),
    "chunked": lambda tp, tpp: Deployment("chunked", (Pool("unified", "h100-sxm", 2, tp),), chunk_size=1024),
    "disaggregated": lambda tp, tpp: Deployment("disaggregated", (Pool("prefill", "h100-sxm", 3, tpp),
                                                                   Pool("decode", "h100-sxm", 1, tp))),
}
# (approach, util, lengths, model, metric) -> the bound the measured gap sits in (measured value
# in the comment; docs/methodology.md, "Agreement with the simulator", explains them):
# * chunked MoE at 60%: the last piece of a prompt shares a full iteration with the next prompt
#   less often than the model assumes (it is pessimistic there);
# * chunked at 85%: busy periods of full chunks are longer than the token-server model's.
KNOWN_GAPS = {
    ("chunked", 0.6, "fixed", "moe", "TTFT p90"): 0.16,  # +14.8% (+10.5% before step model v2)
    # Step model v2 (grouped-GEMM floors: a MoE chunk's cost is less linear in its tokens) widened
    # the chunked MoE TTFT gap; not yet analysed further:
    ("chunked", 0.85, "fixed", "moe", "TTFT p90"): 0.14,  # +12.9%
    ("chunked", 0.85, "fixed", "dense", "TPOT p90"): 0.16,  # +13.5%
    ("chunked", 0.85, "variable", "dense", "TTFT p90"): 0.13,  # -10.1%
    # Serving v2, unified as whole-prompt in-flight batching (two lanes):
    # * the median prompt rides alone next to the decodes; the token-server wait still charges
    #   it part of a busy iteration at 60%:
    ("unified", 0.6, "fixed", "dense", "TTFT p50"): 0.14,  # +12.6%
    # * at 85% runs of busy iterations are longer than the Poisson run model, so fewer decode
    #   steps happen in between (TPOT low) and the prompt wait is pessimistic:
    ("unified", 0.85, "fixed", "dense", "TTFT p90"): 0.13,  # +11.7%
    ("unified", 0.85, "fixed", "dense", "TPOT p50"): 0.12,  # -10.9%
    ("unified", 0.85, "variable", "dense", "TTFT p90"): 0.14,  # +12.6%
    ("unified", 0.85, "variable", "dense", "TPOT p50"): 0.15,  # -13.1%
    # * the MoE cases sit at 85% of their KV capacity (mixtral tp2: the batch cap binds). The
    #   simulator preempts (vLLM's recompute) when running sequences outgrow the cache, and each
    #   preemption adds a recompute prefill; near the cap that is metastable: 20k requests run at
    #   p50 TTFT 103 ms with 1.8% of requests preempted, but over 40k a preemption storm sets in
    #   and TTFT reaches seconds. The analytic model (a steady M/G/c admission wait, no
    #   recompute cost) does not see it and is far too optimistic there:
    # (since the MoE kernel has its own constants, Mixtral's steps cost more and the fixed-length
    # run storms too: it was -24.4% / -84.5% / ITL -88% before)
    ("unified", 0.85, "fixed", "moe", "TTFT p50"): 0.997,  # -99.6% (153 ms vs 39.7 s)
    ("unified", 0.85, "fixed", "moe", "TTFT p90"): 0.996,  # -99.5% (323 ms vs 70.4 s)
    ("unified", 0.85, "fixed", "moe", "TPOT p50"): 0.15,  # -14.5%
    ("unified", 0.85, "variable", "moe", "TTFT p50"): 0.995,  # -99.1% (87 ms vs 9.4 s)
    ("unified", 0.85, "variable", "moe", "TTFT p90"): 0.99,  # -98.6% (193 ms vs 14.0 s)
    ("unified", 0.85, "variable", "moe", "TPOT p50"): 0.15,  # -13.8%
    # ... and a preempted sequence's gap (readmission and recompute) is the run's worst:
    ("unified", 0.85, "fixed", "moe", "ITL max"): 0.97,  # -96.4% (233 ms vs 6.5 s)
    ("unified", 0.85, "variable", "moe", "ITL max"): 0.6,  # -50% to -58%
    # Data-parallel attention (DeepSeek-V3 tp1dp8ep8: one lane of 8 ranks stepping together):
    # the median prompt's wait for the iteration in progress is charged at the lane's busy
    # share, a little more often than the simulator's prompts meet a busy iteration:
    ("unified", 0.6, "fixed", "dp8", "TTFT p50"): 0.12,  # +10.1%
}
_ROWS: list = []


def _inputs(model: str, lengths: str):
    inp = api.default_inputs(model=model, qps=1.0)
    if lengths == "variable":
        wl = Workload(1.0, parse_length_dist("lognormal:mean=2048,cv=0.5", "isl"),
                      parse_length_dist("lognormal:mean=256,cv=0.5", "osl"))
    else:
        wl = Workload(1.0, fixed(2048), fixed(256))
    return replace(inp, workload=wl)


def _qps_for(inp, dep, target):
    def util(q):
        r = api.evaluate(inp, dep, [q])
        return max(float(np.asarray(v).reshape(-1)[0]) for v in r.utilization.values())

    lo, hi = 1e-3, 1.0
    while util(hi) < target:
        hi *= 2
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if util(mid) < target else (lo, mid)
    return (lo + hi) / 2


@pytest.fixture(scope="module", autouse=True)
def _table():
    yield
    if _ROWS:
        print("\nagreement grid: analytic vs simulated")
        for row in _ROWS:
            print("{:14} {:4} {:8} {:5} {:9} {:9.2f} {:9.2f} {:+7.1%}{}".format(*row))


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("lengths", ["fixed", "variable"])
@pytest.mark.parametrize("util", [0.3, 0.6, 0.85])
@pytest.mark.parametrize("approach", list(DEPLOY))
def test_agreement_grid(approach, util, lengths, model):
    name, tp, tpp = MODELS[model]
    dep = DEPLOY[approach](tp, tpp)
    base = _inputs(name, lengths)
    qps = _qps_for(base, dep, util)
    inp = replace(base, workload=base.workload.with_qps(qps))
    m = api.estimate(inp, dep, with_headroom=False).metrics
    sim = simulate(inp, dep, REQUESTS[util], seed=5)
    assert m.stable and sim.stable
    bad = []
    for metric, a_d, s_d in (("TTFT", m.ttft, sim.ttft), ("TPOT", m.tpot, sim.tpot)):
        for k in ("p50", "p90"):
            a, s = a_d[k], s_d[k]
            key = (approach, util, lengths, model, f"{metric} {k}")
            rel = KNOWN_GAPS.get(key, REL)
            ok = abs(a - s) <= max(rel * s, ABS)
            _ROWS.append((approach, util, lengths, model, f"{metric} {k}", a * 1e3, s * 1e3,
                          (a - s) / s, "" if ok else "  <-- beyond"))
            if not ok:
                bad.append(f"{metric} {k}: analytic {a * 1e3:.2f} ms vs simulated {s * 1e3:.2f} ms "
                           f"({(a - s) / s:+.1%})")
    # The worst inter-token gap (issue 11): within 30% of the simulated one.
    a, s_ = m.itl_max_s, sim.itl_max_s
    rel = KNOWN_GAPS.get((approach, util, lengths, model, "ITL max"), ITL_REL)
    ok = abs(a - s_) <= rel * s_
    _ROWS.append((approach, util, lengths, model, "ITL max", a * 1e3, s_ * 1e3, (a - s_) / s_,
                  "" if ok else "  <-- beyond"))
    if not ok:
        bad.append(f"ITL max: analytic {a * 1e3:.2f} ms vs simulated {s_ * 1e3:.2f} ms ({(a - s_) / s_:+.1%})")
    assert not bad, f"{approach} {util} {lengths} {model} (qps {qps:.3f}): " + "; ".join(bad)


# Prefix caching (planner.workload.PrefixCache): a shared prefix and a hit rate on the rest, on
# the dense model at three loads, fixed lengths (2048 / 256 behind a 1024-token prefix, a quarter
# of the rest cached: 768 tokens computed, more than half the chunked budget, so chunked splits)
# and variable ones (lognormal, CV 0.5, mean 2048 / 256 behind a 512-token prefix, a quarter of
# the rest cached). Same tolerances as the grid; measured gaps beyond them are listed:
PREFIX = {"fixed": (1024, 0.25), "variable": (512, 0.25)}
PREFIX_GAPS = {
    # Unified at 85%: the base grid's gaps at that load (runs of busy iterations longer than the
    # Poisson run model), larger with variable lengths: taking a fixed prefix off every prompt
    # widens the relative spread of the computed tokens, and the token server charges a prompt
    # its share of a busy iteration by its tokens, while a short remainder costs about an
    # iteration's fixed part (pessimistic P90):
    ("unified", 0.85, "fixed", "TTFT p90"): 0.18,  # +16.6%
    ("unified", 0.85, "fixed", "TPOT p50"): 0.14,  # -12.4%
    ("unified", 0.85, "variable", "TTFT p90"): 0.30,  # +27.8%
    # Chunked: 768 computed tokens per prompt are about one budget's room, so a prompt mostly
    # rides in one iteration with a piece of the next; at 85% busy periods of back-to-back
    # budgets are longer than the token-server model's (the base grid's chunked 85% gap, larger
    # here; not analysed further):
    ("chunked", 0.6, "fixed", "TTFT p50"): 0.13,  # +11.2%
    ("chunked", 0.85, "fixed", "TTFT p50"): 0.16,  # -14.4%
    ("chunked", 0.85, "fixed", "TTFT p90"): 0.24,  # -22.0%
    ("chunked", 0.85, "variable", "TTFT p50"): 0.18,  # -16.6%
    ("chunked", 0.85, "variable", "TTFT p90"): 0.27,  # -25.3%
    # Disaggregated at 85% (of the prefill pool): the cached prefix frees the decode pool's KV,
    # so its batch grows to ~490 where the decode step rises steeply with the batch (the fixed
    # point's gain lam * E[OSL - 1] * dt_d/dB nears 1) and the simulated batch fluctuates above
    # the analytic mean; the same decode pool behind 3, 4 or 8 prefill instances gives the
    # same gap, and at 40 req/s (batch 367) it agrees within 1.1%:
    ("disaggregated", 0.85, "fixed", "TPOT p50"): 0.13,  # -11.7%
    ("disaggregated", 0.85, "fixed", "TPOT p90"): 0.17,  # -15.2%
}


@pytest.mark.parametrize("lengths", ["fixed", "variable"])
@pytest.mark.parametrize("util", [0.3, 0.6, 0.85])
@pytest.mark.parametrize("approach", list(DEPLOY))
def test_agreement_prefix(approach, util, lengths):
    from planner.workload import PrefixCache

    name, tp, tpp = MODELS["dense"]
    dep = DEPLOY[approach](tp, tpp)
    base = _inputs(name, lengths)
    base = replace(base, workload=replace(base.workload, prefix=PrefixCache(*PREFIX[lengths])))
    qps = _qps_for(base, dep, util)
    inp = replace(base, workload=base.workload.with_qps(qps))
    m = api.estimate(inp, dep, with_headroom=False).metrics
    sim = simulate(inp, dep, REQUESTS[util], seed=5)
    assert m.stable and sim.stable
    bad = []
    for metric, a_d, s_d in (("TTFT", m.ttft, sim.ttft), ("TPOT", m.tpot, sim.tpot)):
        for k in ("p50", "p90"):
            a, s_ = a_d[k], s_d[k]
            rel = PREFIX_GAPS.get((approach, util, lengths, f"{metric} {k}"), REL)
            ok = abs(a - s_) <= max(rel * s_, ABS)
            _ROWS.append((approach, util, lengths, "prefix", f"{metric} {k}", a * 1e3, s_ * 1e3,
                          (a - s_) / s_, "" if ok else "  <-- beyond"))
            if not ok:
                bad.append(f"{metric} {k}: analytic {a * 1e3:.2f} ms vs simulated {s_ * 1e3:.2f} ms "
                           f"({(a - s_) / s_:+.1%})")
    a, s_ = m.itl_max_s, sim.itl_max_s
    rel = PREFIX_GAPS.get((approach, util, lengths, "ITL max"), ITL_REL)
    ok = abs(a - s_) <= rel * s_
    _ROWS.append((approach, util, lengths, "prefix", "ITL max", a * 1e3, s_ * 1e3, (a - s_) / s_,
                  "" if ok else "  <-- beyond"))
    if not ok:
        bad.append(f"ITL max: analytic {a * 1e3:.2f} ms vs simulated {s_ * 1e3:.2f} ms ({(a - s_) / s_:+.1%})")
    assert not bad, f"prefix {approach} {util} {lengths} (qps {qps:.3f}): " + "; ".join(bad)


# Bursty arrivals (Gamma gaps, CV 2): the approximations of docs/methodology.md ("Bursty
# arrivals are approximate"), checked at 45% load of the busiest pool (the rate is found for the
# current step model; it was a fixed 12 / 10 / 14 req/s before step model v2 moved the loads).
BURSTY_UTIL = 0.45
BURSTY = {
    "unified": Deployment("unified", (Pool("unified", "h100-sxm", 4, 8),)),
    "chunked": Deployment("chunked", (Pool("unified", "h100-sxm", 4, 8),), chunk_size=1024),
    "disaggregated": Deployment("disaggregated", (Pool("prefill", "h100-sxm", 6, 4),
                                                  Pool("decode", "h100-sxm", 4, 8))),
}
# Measured with step model v2 at 45% load; the unified P90 TTFT sits just outside 10%:
BURSTY_GAPS: dict = {("unified", "TTFT p90"): 0.12}  # -10.6% (analytic 155 ms, simulated 173 ms)


@pytest.mark.parametrize("approach", list(BURSTY))
def test_agreement_bursty(approach):
    dep = BURSTY[approach]
    base = _inputs("llama-3.1-70b", "fixed")
    qps = _qps_for(replace(base, workload=Workload(1.0, fixed(2048), fixed(256), 2.0)), dep, BURSTY_UTIL)
    inp = replace(base, workload=Workload(qps, fixed(2048), fixed(256), 2.0))
    m = api.estimate(inp, dep, with_headroom=False).metrics
    sim = simulate(inp, dep, 24000, seed=1)
    bad = []
    for metric, a_d, s_d in (("TTFT", m.ttft, sim.ttft), ("TPOT", m.tpot, sim.tpot)):
        for k in ("p50", "p90"):
            a, s = a_d[k], s_d[k]
            rel = BURSTY_GAPS.get((approach, f"{metric} {k}"), REL)
            _ROWS.append((approach, "cv2", "fixed", "dense", f"{metric} {k}", a * 1e3, s * 1e3,
                          (a - s) / s, ""))
            if abs(a - s) > max(rel * s, ABS):
                bad.append(f"{metric} {k}: analytic {a * 1e3:.2f} ms vs simulated {s * 1e3:.2f} ms")
    assert not bad, f"{approach} CV 2: " + "; ".join(bad)


# Closed loop (planner.serving.closed): N clients, no think time (each request arrives just after
# the boundary its predecessor finished at), llama-3.1-8b on one H100, fixed lengths (clients
# move in a chain of cohorts) and variable ones (lognormal, CV 0.5: they drift apart), up to
# saturation (N = 256: compute-bound with a filling budget, or the batch cap). P50 TTFT and
# TPOT and the throughput within 10% (or 2 ms), except the measured gaps below:
CLOSED_N = (4, 16, 64, 256)
CLOSED_SHAPES = ((256, 256), (1024, 128))
CLOSED_GAPS = {
    # four fixed-length clients: the cohort of four short prompts rides with the decodes; the
    # steady model still charges a little prompt wait:
    ("unified", 256, 4, "fixed", "TTFT p50"): 0.12,  # +10.4%
    # variable lengths, four clients: the renewal arrivals (CV of the output length) queue a
    # little more than the simulated clients, whose arrivals spread over the cycle:
    ("chunked", 1024, 4, "variable", "TTFT p50"): 0.14,  # +12.2%
    # a budget room of 1.94 prompts (2048 - 62 decodes, 1024-token prompts): the simulator's
    # chunking puts two prompts' last pieces in one iteration, so clients return in pairs and
    # one of each pair queues an iteration deeper (87 and 131 ms); the chain of cohorts of one
    # prompt the analytic model forms waits for one iteration ahead (54 ms):
    ("chunked", 1024, 64, "fixed", "TTFT p50"): 0.4,  # -37.7%
    # N = 256 with variable lengths near saturation: the open-loop prompt queue at the edge of
    # stability is far longer than what 256 clients can build, and unified compute saturation
    # puts the whole shortfall on TPOT where the simulator also queues prompts a little:
    ("unified", 1024, 256, "variable", "TTFT p50"): 1.9,  # +178% (362 vs 130 ms)
    ("unified", 1024, 256, "variable", "TPOT p50"): 0.12,  # -10.5%
    ("chunked", 1024, 256, "variable", "TPOT p50"): 0.2,  # -17.5%
}


@pytest.mark.parametrize("lengths", ["fixed", "variable"])
@pytest.mark.parametrize("n", CLOSED_N)
@pytest.mark.parametrize("isl,osl", CLOSED_SHAPES)
@pytest.mark.parametrize("approach", ["unified", "chunked"])
def test_agreement_closed_loop(approach, isl, osl, n, lengths):
    inp = api.default_inputs(model="llama-3.1-8b", gpu="h100-sxm", isl=isl, osl=osl)
    wl = replace(inp.workload, concurrency=n, think_s=0.0)
    if lengths == "variable":
        wl = replace(wl, isl=parse_length_dist(f"lognormal:mean={isl},cv=0.5", "--isl-dist"),
                     osl=parse_length_dist(f"lognormal:mean={osl},cv=0.5", "--osl-dist"))
    inp = replace(inp, workload=wl)
    dep = Deployment(approach, (Pool("unified", "h100-sxm", 1, 1),),
                     chunk_size=2048 if approach == "chunked" else None)
    plan = api.estimate(inp, dep, with_headroom=False)
    m = plan.metrics
    sim = simulate(inp, dep, 3000)
    assert sim.stable
    bad = []
    checks = [("TTFT p50", m.ttft["p50"], sim.ttft["p50"]), ("TPOT p50", m.tpot["p50"], sim.tpot["p50"]),
              ("throughput", plan.inputs.workload.qps * plan.inputs.workload.mean_osl, sim.throughput_out_tok_s)]
    for what, a, s in checks:
        rel = CLOSED_GAPS.get((approach, isl, n, lengths, what), REL)
        ok = abs(a - s) <= max(rel * s, ABS if what != "throughput" else 0.0)
        _ROWS.append((approach, f"N{n}", lengths, f"{isl}x{osl}", what, a * 1e3, s * 1e3, (a - s) / s,
                      "" if ok else "  <-- beyond"))
        if not ok:
            bad.append(f"{what}: analytic {a:.4g} vs simulated {s:.4g} ({(a - s) / s:+.1%})")
    assert not bad, f"{approach} {isl}x{osl} N={n} {lengths}: " + "; ".join(bad)


# Speculative decoding (issue 12): a memory-bound decode, llama-3.1-8b on one H100, at a
# moderate load (half the utilisation the deployment sustains without speculation), with
# K = 1 at acceptance 0.8 and K = 3 at per-position 0.8/0.7/0.6, for chunked, unified and a
# disaggregated decode pool. The simulator draws each sequence's accepted counts; P50 TTFT and
# TPOT within 10% (or 2 ms), and speculation must lower TPOT in both.
SPEC_CASES = {"k1": (1, "0.8"), "k3": (3, "0.8,0.7,0.6")}
SPEC_DEPLOY = {
    "chunked": Deployment("chunked", (Pool("unified", "h100-sxm", 1, 1),), chunk_size=2048),
    "unified": Deployment("unified", (Pool("unified", "h100-sxm", 1, 1),)),
    "disaggregated": Deployment("disaggregated", (Pool("prefill", "h100-sxm", 1, 1),
                                                  Pool("decode", "h100-sxm", 1, 1))),
}


# Measured gaps: chunked with variable prompts, TTFT P50 +17.6% (K = 1) and +15.0% (K = 3). The
# same case without speculation is +14.9% (53.5 vs 46.6 ms): the chunked model's prompt wait for
# lognormal prompts at a 2048 budget, not speculation (whose TPOT there agrees within 3%).
SPEC_GAPS = {("k1", "chunked", "variable", "TTFT p50"): 0.2, ("k3", "chunked", "variable", "TTFT p50"): 0.18}


@pytest.mark.parametrize("lengths", ["fixed", "variable"])
@pytest.mark.parametrize("approach", list(SPEC_DEPLOY))
@pytest.mark.parametrize("case", list(SPEC_CASES))
def test_agreement_speculative_decoding(case, approach, lengths):
    from planner.perf import speculative

    base = api.default_inputs(model="llama-3.1-8b", gpu="h100-sxm", qps=1.0)
    if lengths == "variable":
        wl = Workload(1.0, parse_length_dist("lognormal:mean=1000,cv=0.5", "isl"),
                      parse_length_dist("lognormal:mean=300,cv=0.5", "osl"))
    else:
        wl = Workload(1.0, fixed(1000), fixed(300))
    base = replace(base, workload=wl)
    dep = SPEC_DEPLOY[approach]
    qps = _qps_for(base, dep, 0.5)
    off = replace(base, workload=wl.with_qps(qps))
    k, acc = SPEC_CASES[case]
    on = replace(off, spec=speculative.build(k, acc, None, off.model, off.catalog))
    m = api.estimate(on, dep, with_headroom=False).metrics
    m_off = api.estimate(off, dep, with_headroom=False).metrics
    sim = simulate(on, dep, 16000, seed=5)
    assert m.stable and sim.stable
    assert m.tpot["p50"] < m_off.tpot["p50"] and sim.tpot["p50"] < m_off.tpot["p50"]
    bad = []
    for metric, a, s in (("TTFT p50", m.ttft["p50"], sim.ttft["p50"]),
                         ("TPOT p50", m.tpot["p50"], sim.tpot["p50"])):
        ok = abs(a - s) <= max(SPEC_GAPS.get((case, approach, lengths, metric), REL) * s, ABS)
        _ROWS.append((f"spec {case}", approach, lengths, f"{qps:.1f}qps", metric, a * 1e3, s * 1e3,
                      (a - s) / s, "" if ok else "  <-- beyond"))
        if not ok:
            bad.append(f"{metric}: analytic {a * 1e3:.2f} ms vs simulated {s * 1e3:.2f} ms ({(a - s) / s:+.1%})")
    assert not bad, f"speculative {case} {approach} {lengths} (qps {qps:.2f}): " + "; ".join(bad)


# Data-parallel attention (DeepSeek-V3, one tp1dp8ep8 instance): its 8 attention ranks step
# together, so they are one lane whose iteration lasts as long as its busiest rank's
# (docs/methodology.md, "Data-parallel attention"); the analytic lanes and the simulator at 60%.
DP_DEPLOY = {
    "unified": Deployment("unified", (Pool("unified", "h200", 1, 1, 1, 8, 8),)),
    "chunked": Deployment("chunked", (Pool("unified", "h200", 1, 1, 1, 8, 8),), chunk_size=2048),
    "disaggregated": Deployment("disaggregated", (Pool("prefill", "h200", 1, 1, 1, 8, 8),
                                                  Pool("decode", "h200", 1, 1, 1, 8, 8))),
}


@pytest.mark.parametrize("approach", list(DP_DEPLOY))
def test_agreement_data_parallel_attention(approach):
    dep = DP_DEPLOY[approach]
    base = replace(api.default_inputs(model="deepseek-v3", qps=1.0, gpu="h200"),
                   workload=Workload(1.0, fixed(2048), fixed(256)))
    qps = _qps_for(base, dep, 0.6)
    inp = replace(base, workload=base.workload.with_qps(qps))
    m = api.estimate(inp, dep, with_headroom=False).metrics
    sim = simulate(inp, dep, 16000, seed=5)
    assert m.stable and sim.stable
    bad = []
    for metric, a_d, s_d in (("TTFT", m.ttft, sim.ttft), ("TPOT", m.tpot, sim.tpot)):
        for k in ("p50", "p90"):
            a, s = a_d[k], s_d[k]
            rel = KNOWN_GAPS.get((approach, 0.6, "fixed", "dp8", f"{metric} {k}"), REL)
            _ROWS.append((approach, 0.6, "fixed", "dp8", f"{metric} {k}", a * 1e3, s * 1e3, (a - s) / s,
                          "" if abs(a - s) <= max(rel * s, ABS) else "  <-- beyond"))
            if abs(a - s) > max(rel * s, ABS):
                bad.append(f"{metric} {k}: analytic {a * 1e3:.2f} ms vs simulated {s * 1e3:.2f} ms "
                           f"({(a - s) / s:+.1%})")
    assert not bad, f"{approach} dp8 (qps {qps:.3f}): " + "; ".join(bad)


# Overlap scheduling (engine profiles' overlap_schedule: TensorRT-LLM's PyTorch backend, SGLang):
# a request arriving while iteration n runs is scheduled into n + 2. What it adds to P50 TTFT,
# the same engine with and without it (llama-3.1-8b on one H100, 20 QPS, lognormal prompts of
# mean 1024, 128 output tokens), analytic against simulated within 20%; and the closed loop
# with it (16 and 64 fixed-length clients) within 10%, except the measured gaps below.
OVERLAP_CLOSED_GAPS = {
    # the chain's extra cohort iteration is charged to the last, two-member cohort as well
    ("unified", 16): 0.4,  # +36% (321 vs 236 ms)
    # the paired-prompt case of the closed-loop grid (a room of 1.94 prompts), as without overlap
    ("chunked", 64): 0.42,  # -38% (81 vs 131 ms)
}


@pytest.mark.parametrize("approach", ["unified", "chunked"])
def test_agreement_overlap_schedule(approach):
    base = api.default_inputs(model="llama-3.1-8b", gpu="h100-sxm", engine="trtllm")
    dep = Deployment(approach, (Pool("unified", "h100-sxm", 1, 1),),
                     chunk_size=2048 if approach == "chunked" else None)
    wl = replace(base.workload, qps=20.0, isl=parse_length_dist("lognormal:mean=1024,cv=0.5", "--isl-dist"),
                 osl=fixed(128))
    shifts = []
    for overlap in (False, True):
        inp = replace(base, workload=wl, engine=replace(base.engine, overlap_schedule=overlap))
        a = api.estimate(inp, dep, with_headroom=False).metrics.ttft["p50"]
        s = simulate(inp, dep, 3000).ttft["p50"]
        shifts.append((a, s))
    da, ds = shifts[1][0] - shifts[0][0], shifts[1][1] - shifts[0][1]
    _ROWS.append((approach, "overlap", "lognormal", "8b", "TTFT p50 shift", da * 1e3, ds * 1e3, (da - ds) / ds, ""))
    assert ds > 0 and da > 0
    assert abs(da - ds) <= 0.2 * ds, f"overlap adds {da * 1e3:.1f} ms analytic vs {ds * 1e3:.1f} ms simulated"
    bad = []
    for n in (16, 64):
        inp = replace(base, workload=replace(base.workload, concurrency=n, think_s=0.0,
                                             isl=fixed(1024),
                                             osl=fixed(128)))
        a = api.estimate(inp, dep, with_headroom=False).metrics.ttft["p50"]
        s = simulate(inp, dep, 3000).ttft["p50"]
        rel = OVERLAP_CLOSED_GAPS.get((approach, n), REL)
        _ROWS.append((approach, f"N{n}", "fixed", "overlap", "TTFT p50", a * 1e3, s * 1e3, (a - s) / s, ""))
        if abs(a - s) > max(rel * s, ABS):
            bad.append(f"N={n}: analytic {a * 1e3:.1f} vs simulated {s * 1e3:.1f} ms")
    assert not bad, "; ".join(bad)
