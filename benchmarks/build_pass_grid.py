"""Build the single-pass grid: whole prefill passes and decode steps summed from silicon-measured
kernel timings, one measured kernel per operator of the pass.

Source data: AIConfigurator's per-operator silicon database (ai-dynamo/aiconfigurator, Apache-2.0),
shipped in its 0.4.0 wheel under ``aiconfigurator/systems/data/<gpu>/<engine>/<version>/``. Unzip
the wheel in a scratch directory (it is never a dependency of pdplan) and run:

    python benchmarks/build_pass_grid.py /path/to/aiconfigurator/systems/data [--write]

For every (GPU, model, TP) whose BF16 weights fit, it lists the operators one pass runs, at the
shapes pdplan's step model gives them (``planner.perf.roofline``: fused QKV and output projection,
gated FFN or routed experts with the router, FlashAttention prefill or paged decode attention,
the LM head on one row per sequence, two TP all-reduces per layer), and looks each one up in the
tables:

* GEMMs: ``gemm_perf.txt`` float16 rows at the pass's ``m`` (always on the table's grid here),
  linear interpolation in ``n`` and ``k`` between grid points, linear scaling in ``n`` above the
  grid (the LM head's vocabulary); every GEMM the model runs per layer times its layers;
* attention: ``context_attention_perf.txt`` (float16, float16 KV) and
  ``generation_attention_perf.txt`` (float16 KV, context = step + 1) at the exact batch, length,
  query heads and KV heads per GPU;
* all-reduce: ``custom_allreduce_perf.txt`` (message_size in FP16 elements), log-log interpolation;
  the vLLM tables' CUDA-graph rows;
* MoE: ``moe_perf.txt`` (float16, the model's hidden, expert width, top-k and expert count, the
  TP-sharded layout moe_tp = TP, moe_ep = 1, the ``power_law_1.01`` token distribution, the one the MoE constants are fitted on), at the
  exact token count, plus the router GEMM.

Not in the sums, because no table measures them: norms and residual adds, the embedding lookup,
sampling and the engine's per-iteration host work. ``pdplan validate --set pass-grid`` therefore
compares the step model's operator groups that the tables cover (everything but ``elementwise``
and ``overhead``).

Which rows are out of sample: the vLLM 0.11.0 tables (H100 SXM, H200) never entered any pdplan
constant. The TensorRT-LLM tables (A100, H100 SXM, H200, B200) are the ones
``benchmarks/derive_kernel_constants.py`` fits on (even rows) and holds out (odd rows), so their
rows test the composition of a pass (which operators, at which shapes, how many), not the kernel
forms. The two are reported as separate sources.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from planner.catalog import load_catalog  # noqa: E402

WHEEL = "aiconfigurator 0.4.0 wheel"
# (pdplan GPU, AIConfigurator system, engine directory, version, all-reduce kernel rows kept)
SOURCES = [
    ("a100-80g", "a100_sxm", "trtllm", "1.0.0", None),
    ("h100-sxm", "h100_sxm", "trtllm", "1.0.0rc3", None),
    ("h200", "h200_sxm", "trtllm", "1.0.0rc3", None),
    ("b200", "b200_sxm", "trtllm", "1.0.0rc6", None),
    ("h100-sxm", "h100_sxm", "vllm", "0.11.0", "vLLM_custom_graph"),
    ("h200", "h200_sxm", "vllm", "0.11.0", "vLLM_custom_graph"),
]
MODELS = ("llama-3.1-8b", "llama-3.1-70b", "mixtral-8x7b", "qwen3-30b-a3b")
SHORT = {"llama-3.1-8b": "l8b", "llama-3.1-70b": "l70b", "mixtral-8x7b": "mix", "qwen3-30b-a3b": "q30b"}
TPS = (1, 2, 4, 8)
PREFILL_ISL = (512, 1024, 2048, 4096, 8192)
DECODE_BATCH = (1, 4, 16, 64, 256)
DECODE_CONTEXT = (1024, 4096)
MOE_DISTRIBUTION = "power_law_1.01"
WEIGHT_SHARE = 0.8  # a (GPU, TP) is in the grid when BF16 weights take at most this share of memory


def read(path: Path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


class Tables:
    """One engine version's tables for one GPU, as exact-key dictionaries (latency in ms)."""

    def __init__(self, d: Path, ar_source: str | None):
        self.dir = d
        self.gemm = {}
        for r in read(d / "gemm_perf.txt"):
            if r["gemm_dtype"] == "float16":
                self.gemm[(int(r["m"]), int(r["n"]), int(r["k"]))] = float(r["latency"])
        self.ns = sorted({n for _, n, _ in self.gemm})
        self.ks = sorted({k for _, _, k in self.gemm})
        self.ctx = {}
        for r in read(d / "context_attention_perf.txt"):
            if r["attn_dtype"] == "float16" and r["kv_cache_dtype"] == "float16" and r["head_dim"] == "128":
                key = (int(r["batch_size"]), int(r["isl"]), int(r["num_heads"]), int(r["num_key_value_heads"]))
                self.ctx[key] = float(r["latency"])
        self.gen = {}
        for r in read(d / "generation_attention_perf.txt"):
            if r["kv_cache_dtype"] == "float16" and r["head_dim"] == "128":
                key = (int(r["batch_size"]), int(r["step"]) + 1, int(r["num_heads"]), int(r["num_key_value_heads"]))
                self.gen[key] = float(r["latency"])
        self.ar: dict = {}
        for r in read(d / "custom_allreduce_perf.txt"):
            if ar_source and r.get("kernel_source") != ar_source:
                continue
            self.ar.setdefault(int(r["num_gpus"]), []).append((int(r["message_size"]) * 2, float(r["latency"])))
        for v in self.ar.values():
            v.sort()
        self.moe = {}
        p = d / "moe_perf.txt"
        if p.exists():
            for r in read(p):
                if r["moe_dtype"] == "float16" and r["distribution"] == MOE_DISTRIBUTION:
                    key = (int(r["hidden_size"]), int(r["inter_size"]), int(r["topk"]), int(r["num_experts"]),
                           int(r["moe_tp_size"]), int(r["moe_ep_size"]), int(r["num_tokens"]))
                    self.moe[key] = float(r["latency"])

    # ------------------------------------------------------------------------------------
    def _gemm_nk(self, m, n, k):
        """Exact grid point or None."""
        return self.gemm.get((m, n, k))

    def gemm_ms(self, m: int, n: float, k: float) -> float:
        """One BF16 GEMM (m x k) @ (k x n): bilinear in n and k between the grid's points;
        above the largest n, scaled linearly from it; below the smallest, the smallest."""
        def bracket(grid, x):
            if x <= grid[0]:
                return grid[0], grid[0], 0.0
            if x >= grid[-1]:
                return grid[-1], grid[-1], 0.0
            i = bisect.bisect_left(grid, x)
            if grid[i] == x:
                return x, x, 0.0
            lo, hi = grid[i - 1], grid[i]
            return lo, hi, (x - lo) / (hi - lo)

        scale = 1.0
        if n > self.ns[-1]:
            scale, n = n / self.ns[-1], self.ns[-1]
        n0, n1, fn = bracket(self.ns, n)
        k0, k1, fk = bracket(self.ks, k)
        vals = [self._gemm_nk(m, a, b) for a in (n0, n1) for b in (k0, k1)]
        if any(v is None for v in vals):
            raise KeyError(f"gemm m={m} n={n} k={k}")
        a00, a01, a10, a11 = vals
        t = (1 - fn) * ((1 - fk) * a00 + fk * a01) + fn * ((1 - fk) * a10 + fk * a11)
        return t * scale

    def allreduce_ms(self, nbytes: float, n: int) -> float:
        pts = self.ar[n]
        xs = [x for x, _ in pts]
        if nbytes <= xs[0]:
            return pts[0][1]
        i = min(bisect.bisect_left(xs, nbytes), len(xs) - 1)
        (x0, t0), (x1, t1) = pts[i - 1], pts[i]
        f = (math.log(nbytes) - math.log(x0)) / (math.log(x1) - math.log(x0))
        return math.exp(math.log(t0) + f * (math.log(t1) - math.log(t0)))


def pass_components(tab: Tables, model, tp: int, *, tokens: int, seqs: int, prefill: bool,
                    context: int = 0) -> dict:
    """Measured milliseconds of each operator group of one pass (all layers)."""
    m = model
    h, L = m.hidden_size, m.num_layers
    heads, kvh = m.num_heads // tp, max(m.num_kv_heads // tp, 1)
    hd = m.head_dim
    qkv_n = (m.num_heads + 2 * m.num_kv_heads) * hd / tp if m.num_kv_heads >= tp else (heads + 2 * kvh) * hd
    out = {}
    out["attention_proj"] = L * (tab.gemm_ms(tokens, qkv_n, h) + tab.gemm_ms(tokens, h, m.num_heads * hd / tp))
    if m.is_moe:
        key = (h, m.moe_intermediate_size, m.experts_per_token, m.num_experts, tp, 1, tokens)
        if key not in tab.moe:
            raise KeyError(f"moe {key}")
        out["moe_ffn"] = L * (tab.moe[key] + tab.gemm_ms(tokens, m.num_experts, h))
    else:
        ff = m.intermediate_size / tp
        out["ffn"] = L * (tab.gemm_ms(tokens, 2 * ff, h) + tab.gemm_ms(tokens, h, ff))
    out["lm_head"] = tab.gemm_ms(seqs, m.vocab_size / tp, h)
    if prefill:
        key = (seqs, tokens // seqs, heads, kvh)
        if key not in tab.ctx:
            raise KeyError(f"context attention {key}")
        out["attention_prefill"] = L * tab.ctx[key]
    else:
        key = (seqs, context, heads, kvh)
        if key not in tab.gen:
            raise KeyError(f"generation attention {key}")
        out["attention_decode"] = L * tab.gen[key]
    out["tp_allreduce"] = 2 * L * tab.allreduce_ms(tokens * h * 2.0, tp) if tp > 1 else 0.0
    return out


def fits(model, gpu, tp: int) -> bool:
    return model.total_params * 2.0 / tp <= WEIGHT_SHARE * gpu.hbm_bytes


def kv_fits(model, gpu, tp: int, tokens: int) -> bool:
    per_token = 2.0 * model.num_layers * max(model.num_kv_heads / tp, 1.0) * model.head_dim * 2.0
    free = gpu.hbm_bytes * 0.9 - model.total_params * 2.0 / tp
    return tokens * per_token <= free


def build(data: Path) -> tuple[list, list]:
    cat = load_catalog()
    rows, missing = [], []
    for gpu_id, system, engine, version, ar_source in SOURCES:
        d = data / system / engine / version
        tab = Tables(d, ar_source)
        gpu = cat.gpus[gpu_id]
        src = f"{WHEEL}: aiconfigurator/systems/data/{system}/{engine}/{version}/"
        tag = f"{engine}-{version}"
        for mid in MODELS:
            model = cat.models[mid]
            for tp in TPS:
                if tp not in tab.ar and tp > 1 or not fits(model, gpu, tp):
                    continue
                cases = [("pass_prefill", 1, isl, 0) for isl in PREFILL_ISL]
                cases += [("pass_decode", b, 1, c) for b in DECODE_BATCH for c in DECODE_CONTEXT]
                for kind, b, isl, ctx in cases:
                    prefill = kind == "pass_prefill"
                    tokens = b * isl if prefill else b
                    if not kv_fits(model, gpu, tp, b * (isl if prefill else ctx)):
                        continue
                    try:
                        comp = pass_components(tab, model, tp, tokens=tokens, seqs=b, prefill=prefill,
                                               context=ctx)
                    except KeyError as exc:
                        missing.append(f"{gpu_id} {tag} {mid} tp{tp} {kind} b{b} isl{isl} ctx{ctx}: {exc}")
                        continue
                    shape = f"p{isl}" if prefill else f"d{b}c{ctx}"
                    rows.append({
                        "id": f"{engine[:4]}-{gpu_id.split('-')[0]}-{SHORT[mid]}-tp{tp}-{shape}",
                        "kind": kind, "gpu": gpu_id, "model": mid, "tp": tp, "batch": b,
                        "isl": isl if prefill else 0, "context": ctx, "tables": tag,
                        "measured_ms": round(sum(comp.values()), 5),
                        "components_ms": {k: round(v, 5) for k, v in comp.items()},
                        "source": src,
                    })
    return rows, missing


HEADER = """\
# Single-pass grid: whole prefill passes and decode steps summed from silicon-measured kernel
# timings (one measured kernel per operator at the pass's shape), written by
# benchmarks/build_pass_grid.py from AIConfigurator's per-operator tables (ai-dynamo/aiconfigurator,
# Apache-2.0, 0.4.0 wheel). `pdplan validate --set pass-grid` compares the step model's operator
# groups the tables cover (all but elementwise and overhead) with measured_ms.
# tables: vllm-0.11.0 rows are out of sample (no pdplan constant comes from them); trtllm rows use
# the kernel tables the efficiency constants were derived from, so they test how a pass is
# composed, not the kernel forms. BF16 weights and KV, batch-1 prefill, decode at one context.
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="aiconfigurator/systems/data directory")
    ap.add_argument("--write", action="store_true", help="write tests/data/pass_grid.yaml")
    a = ap.parse_args(argv)
    rows, missing = build(a.data)
    for m in missing:
        print("skipped (no table entry):", m)
    by = {}
    for r in rows:
        by.setdefault((r["tables"], r["kind"]), 0)
        by[(r["tables"], r["kind"])] += 1
    for k, v in sorted(by.items()):
        print(f"{k[0]:16s} {k[1]:14s} {v} rows")
    if a.write:
        import yaml

        out = ROOT / "tests" / "data" / "pass_grid.yaml"
        out.write_text(HEADER + yaml.safe_dump(rows, sort_keys=False, width=200))
        print(f"wrote {out} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
