"""Speculative decoding: the acceptance chain, the verification step by hand, TPOT by hand, the
invariant that better acceptance never slows decoding, memory, the search's choice, plans, and
bad input at the command line."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from jsondoc import result_of
from test_perf import IDEAL, LINK, TOY, toy  # (tests/ is on the path: its toy model and ideal GPU)

from planner import api
from planner.cli import cli
from planner.errors import InvalidRequestError
from planner.perf import StepModel, build_step_model, speculative
from planner.serving import disaggregated
from planner.serving.common import Deployment, LoadShape, Pool, step_model

CAT = None


def _cat():
    global CAT
    if CAT is None:
        from planner.catalog import load_catalog

        CAT = load_catalog()
    return CAT


def _spec(k, acceptance, model="llama-3.1-70b", draft=None):
    cat = _cat()
    return speculative.build(k, acceptance, draft, cat.models[model], cat)


# ---- the acceptance chain ---------------------------------------------------------------------


def test_mean_accepted_is_the_sum_of_the_chain_products():
    s = _spec(3, "0.8,0.7,0.6")
    # P(a >= 1) = 0.8, P(a >= 2) = 0.8 * 0.7, P(a >= 3) = 0.8 * 0.7 * 0.6
    assert s.mean_accepted == pytest.approx(0.8 + 0.56 + 0.336)
    assert s.pmf.tolist() == pytest.approx([0.2, 0.24, 0.224, 0.336])
    assert s.tokens_per_step == pytest.approx(2.696)
    assert s.variance == pytest.approx(0.24 + 4 * 0.224 + 9 * 0.336 - 1.696**2)


def test_a_mean_is_read_as_an_equal_chain_with_leviathans_expected_tokens():
    """Given the mean A, p solves p + p^2 + p^3 = A; then 1 + A is Leviathan et al.'s expected
    tokens per step (1 - p^(K+1)) / (1 - p)."""
    s = _spec(3, "1.5")
    p = s.acceptance[0]
    assert s.acceptance == (p, p, p)
    assert p + p**2 + p**3 == pytest.approx(1.5, abs=1e-12)
    assert (1 - p**4) / (1 - p) == pytest.approx(s.tokens_per_step, abs=1e-12)
    assert _spec(1, "0.8").acceptance == pytest.approx((0.8,))
    assert _spec(2, "0").acceptance == (0.0, 0.0) and _spec(2, "2").acceptance == (1.0, 1.0)


def test_the_default_draft_is_the_mtp_head_where_the_checkpoint_has_one():
    assert _spec(1, "0.85", model="deepseek-v3").kind == "mtp"
    assert _spec(1, "0.8").kind == "eagle"
    s = _spec(2, "1.0", draft="llama-3.1-8b")
    assert s.kind == "model" and s.draft.id == "llama-3.1-8b"


# ---- the step, by hand --------------------------------------------------------------------


def test_verification_step_flops_by_hand():
    """B = 4 decodes verifying K = 1 draft token each: 8 GEMM rows and logits; attention reads
    the 400 context tokens once but computes 2 query rows against them."""
    sm = toy()
    B, ctx, q = 4, 100, 2
    h, L, V = 1024, 2, 1000
    attn = h * (8 + 16) * 128 + 8 * 128 * h
    ffn = 3 * h * 4096
    expected = (2 * B * q * (attn + ffn) * L  # linear layers on B (K + 1) rows
                + 4 * 8 * 128 * (B * ctx) * q * L  # QK and PV: 2 query rows per context token
                + 2 * B * q * h * V)  # a logit per verified position
    assert float(sm.decode(B, ctx, query=q).flops) == pytest.approx(expected, rel=1e-12)
    # A memory-bound step: verifying a second token per sequence costs little more (the weights
    # are read once either way).
    one, two = float(sm.decode_time(B, ctx)), float(sm.decode_time(B, ctx, query=q))
    assert one < two < one * 1.05


def test_speculative_iteration_is_target_at_k_plus_1_rows_plus_k_draft_passes():
    cat = _cat()
    m = cat.models["llama-3.1-70b"]
    target = build_step_model(cat, m, cat.gpus["h100-sxm"], 4, 1)
    spec = _spec(3, "0.8,0.7,0.6")
    sm = speculative.speculative_step_model(cat, target, spec)
    head = StepModel(speculative.head_model(m), target.gpu, 4, 1, intra_link=cat.links["nvlink4"],
                     overhead_s=0.0)
    B, ctx = 24, 1150.0
    expected = (float(target.decode_time(B, ctx, query=4)) + 3 * float(head.decode_time(B, ctx)))
    assert float(sm.decode_time(B, ctx)) == pytest.approx(expected, rel=1e-12)
    assert float(sm.decode(B, ctx).breakdown["draft"]) == pytest.approx(3 * float(head.decode_time(B, ctx)))


def test_tpot_at_k1_acceptance_08_is_the_verification_step_over_1_8():
    """A decode pool at a vanishing rate holds one sequence: TPOT = step(B = 1, q = 2) / 1.8,
    the step being the target's verification of 2 tokens plus one pass of the draft head."""
    inp = api.default_inputs(model="llama-3.1-70b", isl=1000, osl=300)
    inp = replace(inp, spec=_spec(1, "0.8"))
    pool = Pool("decode", "h100-sxm", 1, 4)
    sm = step_model(inp, pool)
    shape = LoadShape(np.array([1000]), np.array([300]))
    r = disaggregated.decode_pool(sm, shape, np.array([1e-6]), np.array([1]))
    cat = _cat()
    target = build_step_model(cat, inp.model, cat.gpus["h100-sxm"], 4, 1, engine=inp.engine)
    head = StepModel(speculative.head_model(inp.model), target.gpu, 4, 1,
                     intra_link=cat.links["nvlink4"], overhead_s=0.0)
    ctx = shape.decode_context
    step = float(target.decode_time(1, ctx, query=2)) + float(head.decode_time(1, ctx))
    assert float(r["tpot"]["mean"][0]) == pytest.approx(step / 1.8, rel=1e-3)
    plain = disaggregated.decode_pool(target, shape, np.array([1e-6]), np.array([1]))
    assert float(plain["tpot"]["mean"][0]) == pytest.approx(float(target.decode_time(1, ctx)), rel=1e-3)


def test_the_draft_takes_weights_and_kv_from_the_cache():
    """A one-layer head holds its layer's weights (the embedding and LM head are shared) and
    one more layer of KV per token: capacity = (budget - head weights) / (KV (L + 1) / L)."""
    cat = _cat()
    m = cat.models["llama-3.1-70b"]
    target = build_step_model(cat, m, cat.gpus["h100-sxm"], 4, 1)
    sm = speculative.speculative_step_model(cat, target, _spec(1, "0.8"))
    layer = (m.attn_params_per_layer + m.dense_ffn_params) * 2 / 4
    assert sm.draft_weight_bytes_per_gpu == pytest.approx(layer)
    expect = (target.kv_budget_bytes_per_gpu - layer) / (target.kv_bytes_per_token_per_gpu * 81 / 80)
    assert sm.kv_capacity_tokens == pytest.approx(expect)
    with_model = speculative.speculative_step_model(cat, target, _spec(1, "0.8", draft="llama-3.1-8b"))
    assert with_model.draft_weight_bytes_per_gpu > 3.9e9  # all of an 8B model, over 4 GPUs
    assert with_model.kv_capacity_tokens < sm.kv_capacity_tokens


# ---- invariants -------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(approach=st.sampled_from(["unified", "chunked", "disaggregated"]), qps=st.floats(0.5, 40.0),
       k=st.integers(1, 4), a=st.floats(0.0, 1.0), b=st.floats(0.0, 1.0))
def test_higher_acceptance_never_raises_tpot(approach, qps, k, a, b):
    lo, hi = sorted((a * k, b * k))
    inp = api.default_inputs(model="llama-3.1-8b", qps=qps, isl=1000, osl=200)
    dep = {"unified": Deployment("unified", (Pool("unified", "h100-sxm", 2, 1),)),
           "chunked": Deployment("chunked", (Pool("unified", "h100-sxm", 2, 1),), chunk_size=2048),
           "disaggregated": Deployment("disaggregated", (Pool("prefill", "h100-sxm", 2, 1),
                                                         Pool("decode", "h100-sxm", 1, 1)))}[approach]
    out = []
    for mean in (lo, hi):
        r = api.evaluate(replace(inp, spec=_spec(k, str(mean), model="llama-3.1-8b")), dep, [qps])
        out.append((float(r.tpot["mean"][0]), float(r.tpot["p90"][0])))
    (m_lo, p_lo), (m_hi, p_hi) = out
    assert m_hi <= m_lo * (1 + 1e-6) or not np.isfinite(m_lo)
    assert p_hi <= p_lo * (1 + 1e-3) or not np.isfinite(p_lo)


def test_speculation_lowers_tpot_of_a_memory_bound_decode():
    """The issue's acceptance check: --spec-tokens 1 --acceptance 0.8 lowers TPOT."""
    inp = api.default_inputs(model="llama-3.1-70b", qps=2.0, isl=1000, osl=300)
    dep = Deployment("chunked", (Pool("unified", "h100-sxm", 1, 4),), chunk_size=8192)
    off = api.estimate(inp, dep).metrics
    on = api.estimate(replace(inp, spec=_spec(1, "0.8")), dep).metrics
    assert on.tpot["p50"] < off.tpot["p50"] / 1.5
    assert on.breakdown["decode_iteration_s"] / 1.8 == pytest.approx(on.breakdown["tpot_step_s"])


# ---- the search -----------------------------------------------------------------------------


@pytest.mark.slow
def test_recommend_turns_speculation_on_where_it_saves_gpus_and_off_where_it_costs():
    from planner.optimize import recommend

    inp = api.default_inputs(model="llama-3.1-70b", qps=2.0, isl=1000, osl=300, tpot_slo=0.015)
    rec = recommend(replace(inp, spec=_spec(1, "0.8")), ["h100-sxm"])
    sp = rec.plan.speculation
    assert sp["on"] and rec.plan.inputs.spec is not None
    assert sp["tpot_on_ms"] < 15 < sp["tpot_off_ms"]
    assert sp["gpus_off"] > sp["gpus_on"] == rec.plan.total_gpus
    assert "speculative decoding on" in sp["why"] and "4 more GPUs" in sp["why"]
    plain = recommend(inp, ["h100-sxm"])  # the best plan without speculation, as the sentence says
    assert plain.plan.total_gpus == sp["gpus_off"] and plain.plan.speculation is None
    # A tie in GPUs is settled by headroom.
    busy = api.default_inputs(model="llama-3.1-70b", qps=40.0, isl=1000, osl=300, tpot_slo=0.03)
    rec1 = recommend(replace(busy, spec=_spec(3, "0.8,0.7,0.6")), ["h100-sxm"])
    assert rec1.plan.speculation["on"] and "less headroom" in rec1.plan.speculation["why"]
    # Low acceptance with many drafts: verification costs more than it yields.
    small = api.default_inputs(model="llama-3.1-8b", qps=100.0, isl=2000, osl=200, tpot_slo=0.06)
    rec2 = recommend(replace(small, spec=_spec(3, "0.3", model="llama-3.1-8b")), ["h100-sxm"])
    assert not rec2.plan.speculation["on"] and rec2.plan.inputs.spec is None
    assert "speculative decoding off" in rec2.plan.speculation["why"]


# ---- plans ----------------------------------------------------------------------------------


def test_plans_record_and_reload_the_speculation(tmp_path):
    r = CliRunner().invoke(cli, ["estimate", "--model", "llama-3.1-70b", "--approach", "chunked",
                                 "--replicas", "1xtp4", "--qps", "2", "--isl", "1000", "--osl", "300",
                                 "--spec-tokens", "2", "--acceptance", "0.8,0.6",
                                 "--draft-model", "llama-3.1-8b", "--json"])
    assert r.exit_code == 0, r.output
    doc = result_of(r.stdout)["plan"]
    spec = doc["inputs"]["speculative"]
    assert spec == {"tokens": 2, "acceptance": [0.8, 0.6], "draft": "llama-3.1-8b",
                    "mean_accepted": 1.28, "tokens_per_step": 2.28}
    assert "llama-3.1-8b" in doc["catalog"]["models"]
    assert any("--speculative-config" in f for f in doc["engine_hints"]["unified"]["flags"])
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(doc))
    r2 = CliRunner().invoke(cli, ["evaluate", str(path), "--json"])
    assert r2.exit_code == 0, r2.output
    again = result_of(r2.stdout)["plan"]
    assert again["inputs"]["speculative"] == spec
    assert again["metrics"]["tpot_ms"] == doc["metrics"]["tpot_ms"]
    doc["inputs"]["speculative"]["acceptance"] = [0.8, 1.6]
    path.write_text(yaml.safe_dump(doc))
    r3 = CliRunner().invoke(cli, ["evaluate", str(path)])
    assert r3.exit_code == 2
    assert "inputs.speculative.acceptance: position 2: must be from 0 to 1" in r3.output


# ---- bad input --------------------------------------------------------------------------------

BASE = ["estimate", "--model", "llama-3.1-70b", "--approach", "chunked", "--replicas", "1xtp4",
        "--qps", "2"]


@pytest.mark.parametrize("extra,flag,says", [
    (["--spec-tokens", "1"], "--acceptance", "missing"),
    (["--spec-tokens", "2", "--acceptance", "2.5"], "--acceptance", "from 0 to 2"),
    (["--spec-tokens", "1", "--acceptance", "-0.1"], "--acceptance", "from 0 to 1"),
    (["--spec-tokens", "3", "--acceptance", "0.8,0.7"], "--acceptance", "give 3 (each from 0 to 1)"),
    (["--spec-tokens", "2", "--acceptance", "0.8,1.2"], "--acceptance", "position 2: must be from 0 to 1"),
    (["--spec-tokens", "1", "--acceptance", "nan"], "--acceptance", "from 0 to 1"),
    (["--spec-tokens", "1", "--acceptance", "lots"], "--acceptance", "from 0 to 1"),
    (["--acceptance", "0.8"], "--acceptance", "only with --spec-tokens"),
    (["--draft-model", "llama-3.1-8b"], "--draft-model", "only with --spec-tokens"),
    (["--spec-tokens", "0", "--acceptance", "0"], "--spec-tokens", "from 1 to 16"),
    (["--spec-tokens", "17", "--acceptance", "1"], "--spec-tokens", "from 1 to 16"),
    (["--spec-tokens", "1.5", "--acceptance", "1"], "--spec-tokens", "from 1 to 16"),
    (["--spec-tokens", "1", "--acceptance", "0.8", "--draft-model", "nope"], "--draft-model", "unknown model"),
    (["--spec-tokens", "1", "--acceptance", "0.8", "--draft-model", "qwen3-32b"], "--draft-model",
     "share the target's tokenizer"),
])
@pytest.mark.parametrize("command", ["estimate", "simulate", "recommend", "whatif"])
def test_bad_speculation_flags_exit_2_with_one_error_line(command, extra, flag, says):
    args = BASE[1:] if command in ("estimate", "simulate") else ["--model", "llama-3.1-70b", "--qps", "2"]
    if command == "whatif":
        args = args + ["--vary", "osl=100,200"]
    r = CliRunner().invoke(cli, [command] + args + extra)
    assert r.exit_code == 2, r.output
    errors = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: {flag}"), r.output
    assert says in errors[0]
    assert "Traceback" not in r.output


def test_spec_build_rejects_bad_values_in_the_library_too():
    cat = _cat()
    m = cat.models["llama-3.1-70b"]
    with pytest.raises(InvalidRequestError, match="--acceptance"):
        speculative.build(2, [0.5], None, m, cat)
    assert speculative.build(None, None, None, m, cat) is None


def test_estimate_names_the_assumed_draft_head():
    r = CliRunner().invoke(cli, BASE + ["--spec-tokens", "1", "--acceptance", "0.8"])
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())  # (the terminal width wraps lines anywhere)
    assert "EAGLE-style one-layer head" in out and "speculative decoding: K=1" in out
    assert "TPOT = iteration" in out


def test_toy_model_spec_needs_no_catalog_draft():
    """A one-layer head of a toy model: the head's step is one layer of the toy plus its LM head."""
    head = speculative.head_model(TOY)
    assert head.num_layers == 1 and head.vocab_size == TOY.vocab_size
    sm = StepModel(head, IDEAL, 1, 1, intra_link=LINK, overhead_s=0.0)
    full = toy()
    one_layer = (float(full.decode_time(4, 100)) - float(full.lm_head(4)[0])) / TOY.num_layers
    assert float(sm.decode_time(4, 100)) == pytest.approx(one_layer + float(full.lm_head(4)[0]), rel=1e-9)


def test_mtp_layers_come_from_the_catalog_and_hugging_face_configs(tmp_path):
    from planner.catalog import model_from_hf_config, parse_model
    from planner.errors import CatalogError

    assert _cat().models["deepseek-v3"].mtp_layers == 1
    assert _cat().models["llama-3.1-70b"].mtp_layers == 0
    cfg = {"hidden_size": 1024, "num_attention_heads": 8, "num_hidden_layers": 4, "vocab_size": 1000,
           "num_nextn_predict_layers": 1}
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    assert model_from_hf_config(p).mtp_layers == 1
    data = dict(_cat().models["llama-3.1-8b"].raw, mtp_layers=-1)
    with pytest.raises(CatalogError, match="mtp_layers"):
        parse_model(tmp_path / "m.yaml", data)


@pytest.mark.slow
def test_verify_simulates_the_plan_as_recommended():
    """recommend --verify: a plan the search left without speculation is simulated without it."""
    from planner.optimize import recommend, verify

    small = api.default_inputs(model="llama-3.1-8b", qps=100.0, isl=2000, osl=200, tpot_slo=0.06)
    inp = replace(small, spec=_spec(3, "0.3", model="llama-3.1-8b"))
    rec = recommend(inp, ["h100-sxm"])
    assert not rec.plan.speculation["on"]
    checked = verify(inp, rec, 2000, 0, 64)
    plain = verify(small, recommend(small, ["h100-sxm"]), 2000, 0, 64)
    assert checked.plan.verification["tpot"] == plain.plan.verification["tpot"]


def test_mtp_head_under_data_parallel_attention_matches_its_tables():
    """DeepSeek-V3 on tp1dp8ep8 with its MTP head: the head is an MoE layer with the experts over
    the same 8 GPUs; the simulator's tables (decode-only iterations with low-latency all-to-alls)
    equal the step model, and speculation lowers TPOT there too."""
    from planner.perf import fast_times

    cat = _cat()
    m = cat.models["deepseek-v3"]
    target = build_step_model(cat, m, cat.gpus["h200"], 1, 1, ep=8, dp=8)
    sm = speculative.speculative_step_model(cat, target, _spec(2, "0.9,0.8", model="deepseek-v3"))
    assert sm.draft.dp == 8 and sm.draft.ep == 8 and sm.lanes == target.lanes == 1  # the ranks are one lane
    ft = fast_times(sm, 600)
    _, one, _ = ft.runs(65)
    for B, ctx in ((1, 500), (16, 2300), (64, 4000)):
        assert one(B, B * ctx) == pytest.approx(float(sm.decode_time(B, ctx)), rel=1e-9)
        assert ft.time(300, 300 * 150.0, 300.0, 1, B, float(B * ctx)) == pytest.approx(float(
            sm.iteration(prefill_tokens=300, prefill_pairs=300 * 150.0, prefill_kv=300,
                         prefill_seqs=1, decode_batch=B, decode_ctx=B * ctx).time_s), rel=1e-9)
    inp = api.default_inputs(model="deepseek-v3", gpu="h200", qps=5.0)
    dep = Deployment("chunked", (Pool("unified", "h200", 1, 1, 1, 8, 8),), chunk_size=2048)
    off = api.estimate(inp, dep, with_headroom=False).metrics
    on = api.estimate(replace(inp, spec=_spec(1, "0.85", model="deepseek-v3")), dep, with_headroom=False).metrics
    assert on.tpot["p50"] < off.tpot["p50"] / 1.4
