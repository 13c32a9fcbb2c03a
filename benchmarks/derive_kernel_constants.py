"""Derive every kernel-efficiency constant in the GPU catalog from silicon-measured kernel tables.

Source data: AIConfigurator's per-operator silicon database (ai-dynamo/aiconfigurator, Apache-2.0),
shipped in its 0.4.0 wheel under ``aiconfigurator/systems/data/<gpu>/trtllm/<version>/``. Install
or unzip that wheel in a scratch directory (it is never a dependency of pdplan) and run:

    python benchmarks/derive_kernel_constants.py /path/to/aiconfigurator/systems/data [--write]

For each GPU it fits the forms of ``planner.perf.efficiency`` (the same functions the planner runs)
by least squares on log(predicted / measured) over the even-numbered rows of each table:
GEMM (BF16 and FP8 rows, n and k >= 1024), prefill attention (FP16 rows), decode attention (all
rows), and stores the custom all-reduce latency table (monotone envelope). The odd-numbered rows
are held out; a deterministic sample of them is written to ``tests/data/kernels.yaml`` for
``pdplan validate --set kernels``. ``--write`` rewrites the ``efficiency:`` block of each GPU file
and ``hardware/kernels/<gpu>.yaml``; without it the script prints what it would write.
AIConfigurator's end-to-end measured runs are not read here (they are an independent check).
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from planner.catalog import DTYPE_BYTES, EFFICIENCY_FIELDS, load_catalog  # noqa: E402
from planner.perf import efficiency as eff  # noqa: E402

WHEEL = "aiconfigurator 0.4.0 wheel"
# pdplan GPU -> (AIConfigurator system, TensorRT-LLM table version)
GPUS = {
    "a100-80g": ("a100_sxm", "1.0.0"),
    "h100-sxm": ("h100_sxm", "1.0.0rc3"),
    "h200": ("h200_sxm", "1.0.0rc3"),
    "l40s": ("l40s", "1.0.0"),
    "b200": ("b200_sxm", "1.0.0rc6"),
}
HEAD_DIM = 128  # every attention table row has head_dim 128
SAMPLE = 60  # held-out rows kept per kind and GPU


def read(path: Path, keep=lambda r: True):
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if keep(r)]
    return rows


def col(rows, key):
    return np.array([float(r[key]) for r in rows])


def split(n):
    idx = np.arange(n)
    return idx % 2 == 0, idx % 2 == 1


def fit(fun, x0, lo, hi):
    r = least_squares(fun, x0, bounds=(lo, hi), loss="soft_l1", f_scale=0.2)
    return r.x


def gemm_fit(rows, dtype, gpu):
    peak = gpu.peak_flops[dtype]
    m, n, k, t = col(rows, "m"), col(rows, "n"), col(rows, "k"), col(rows, "latency") * 1e-3
    b = {"bf16": 2.0, "fp8": 1.0}.get(dtype, DTYPE_BYTES[dtype])  # (NVFP4: W4A4 with block scales)
    tr, _ = split(len(t))

    def model(p, s=slice(None)):
        g = {"mamf": p[0], "floor_s": p[1] * 1e-6, "mem": p[2], "mem_half_bytes": p[3] * 1e6,
             "blend": p[4], "wave": p[5], "quant": p[6]}
        return eff.gemm_time(m[s], n[s], k[s], peak=peak, hbm=gpu.hbm_bytes_per_s, sms=gpu.sm_count,
                             g=g, w_bytes=b, a_bytes=b, quantise=dtype != "bf16")

    lowp = dtype != "bf16"
    x0 = [0.8, 3.0, 0.85, 2.0, 4.0, 0.4, 4.0 if lowp else 0.0]
    lo = [0.3, 0.0, 0.3, 0.0, 1.0, 0.0, 0.0]
    hi = [1.0, 50.0, 1.0, 200.0, 20.0, 1.0, 50.0 if lowp else 1e-9]
    p = fit(lambda p: np.log(model(p, tr) / t[tr]), x0, lo, hi)
    out = dict(zip(("mamf", "floor_us", "mem", "mem_half_mb", "blend", "wave"), p[:6]))
    if lowp:
        out["quant"] = p[6]
    return out


def prefill_fit(rows, gpu):
    b, s, h, t = col(rows, "batch_size"), col(rows, "isl"), col(rows, "num_heads"), col(rows, "latency") * 1e-3
    flops = 4.0 * b * h * HEAD_DIM * s * s / 2.0
    blocks = b * h * np.ceil(s / 128.0)
    tr, _ = split(len(t))

    def model(p, sl=slice(None)):
        a = {"mamf": p[0], "floor_s": p[1] * 1e-6, "half_tokens": p[2], "wave": p[3]}
        return eff.prefill_attention_time(flops[sl], s[sl], blocks[sl], peak=gpu.peak_flops["bf16"],
                                          sms=gpu.sm_count, a=a)

    p = fit(lambda p: np.log(model(p, tr) / t[tr]), [0.6, 10, 500, 0.3], [0.1, 0, 0, 0], [1, 200, 1e5, 1])
    return dict(zip(("mamf", "floor_us", "half_tokens", "wave"), p))


def decode_fit(rows, gpu):
    """Decode attention: the packing limit ``group_max`` is chosen among the query-head ratios
    where the tables could switch kernels (8, 16, 32) by training loss; the other constants are
    fitted for each candidate."""
    b, h, kvh, ctx, t = (col(rows, "batch_size"), col(rows, "num_heads"), col(rows, "num_key_value_heads"),
                         col(rows, "step"), col(rows, "latency") * 1e-3)
    fp8 = np.array([r["kv_cache_dtype"] == "fp8" for r in rows])
    tr, _ = split(len(t))
    names = ("mem", "floor_us", "per_seq_us", "per_read_ns", "half_occupancy", "shape", "fp8")
    best = None
    for group in (8.0, 16.0, 32.0):

        def model(p, sl=slice(None), group=group):
            d = {"mem": p[0], "floor_s": p[1] * 1e-6, "per_seq_s": p[2] * 1e-6, "per_read_s": p[3] * 1e-9,
                 "group_max": group, "half_occupancy": p[4], "shape": p[5], "fp8": p[6]}
            return eff.decode_attention_time(b[sl], ctx[sl], h[sl], kvh[sl], d=d, hbm=gpu.hbm_bytes_per_s,
                                             fp8=fp8[sl], head_dim=HEAD_DIM, kv_bytes=np.where(fp8[sl], 1.0, 2.0))

        r = least_squares(lambda p, model=model: np.log(model(p, tr) / t[tr]), [0.8, 8, 0.05, 10, 4, 1, 1],
                          bounds=([0.1, 0, 0, 0, 0, 0.1, 0.2], [1, 200, 5, 1e3, 1e5, 3, 1.5]),
                          loss="soft_l1", f_scale=0.2)
        if best is None or r.cost < best[0]:
            best = (r.cost, group, r.x)
    _, group, p = best
    out = dict(zip(names, p))
    out["group_max"] = group
    return out


# The MoE table's token distribution fitted and held out: the closer to uniform routing (what the
# step model assumes) of the two the table measures (power_law_1.01 and power_law_1.2).
MOE_DISTRIBUTION = "power_law_1.01"
MOE_MAX_GPUS = 8  # layouts up to one node (the uniform-routing imbalance of larger expert-parallel
#                   groups under a power-law distribution is not what the kernel form describes)


def moe_keep(r):
    """Rows of the layouts pdplan runs: experts TP-sharded (moe_ep 1) or whole experts over
    expert-parallel GPUs (moe_tp 1), up to one node, BF16 or FP8."""
    tp, ep = int(r["moe_tp_size"]), int(r["moe_ep_size"])
    return (r["distribution"] == MOE_DISTRIBUTION and r["moe_dtype"] in ("float16", "fp8")
            and (tp == 1 or ep == 1) and tp * ep <= MOE_MAX_GPUS)


def moe_shape(r):
    """(groups, rows, up_n, width, hidden, perm bytes, fp8) of one MoE table row, as the step
    model lays the routed experts out (planner.perf.efficiency.moe_layout; gated experts)."""
    T, h, fe = int(r["num_tokens"]), int(r["hidden_size"]), int(r["inter_size"])
    k, E = int(r["topk"]), int(r["num_experts"])
    tp, ep = int(r["moe_tp_size"]), int(r["moe_ep_size"])
    groups, rows = eff.moe_layout(float(T), E, k, ep)
    width = fe / tp
    perm = 2.0 * 2.0 * T * k * h * 2.0 / ep
    return float(groups), float(rows), 2 * width, width, h, perm, r["moe_dtype"] == "fp8"


def moe_predict(shapes, gpu, consts, moe):
    out = []
    for groups, rows, up_n, width, h, perm, fp8 in shapes:
        g = consts["gemm_fp8" if fp8 else "gemm_bf16"]
        gd = {"mamf": g["mamf"], "floor_s": g["floor_us"] * 1e-6, "mem": g["mem"],
              "mem_half_bytes": g["mem_half_mb"] * 1e6, "blend": g["blend"], "wave": g["wave"],
              "quant": g.get("quant", 0.0)}
        peak = gpu.peak_flops["fp8" if fp8 and "fp8" in gpu.peak_flops else "bf16"]
        out.append(float(eff.moe_experts_time(rows, groups, up_n, width, h, peak=peak, hbm=gpu.hbm_bytes_per_s,
                                              sms=gpu.sm_count, g=gd, moe=moe, w_bytes=1.0 if fp8 else 2.0,
                                              a_bytes=1.0 if fp8 else 2.0, quantise=fp8, perm_bytes=perm)))
    return np.array(out)


def moe_fit(rows, gpu, consts):
    """The six MoE constants on the even rows, the GEMM constants already fitted."""
    shapes = [moe_shape(r) for r in rows]
    t = col(rows, "latency") * 1e-3
    tr, _ = split(len(t))
    sh = [s for s, keep in zip(shapes, tr) if keep]

    def model(p):
        return moe_predict(sh, gpu, consts, {"floor_s": p[0] * 1e-6, "per_expert_s": p[1] * 1e-6,
                                             "mamf": p[2], "half_rows": p[4], "mem": p[3], "fp8": p[5]})

    # The experts' weights cannot stream faster than HBM: the bandwidth factor is capped so that
    # dense efficiency x factor <= 1 (the tables' skewed routing touches fewer experts than the
    # uniform layout assumes, which alone would push it above).
    cap = 1.0 / consts["gemm_bf16"]["mem"]
    p = fit(lambda p: np.log(model(p) / t[tr]), [20.0, 0.5, 0.9, 0.8, 64.0, 1.0], [0, 0, 0.1, 0.1, 0, 0.3],
            [500, 20, 1.5, cap, 1e5, 3.0])
    out = dict(zip(("floor_us", "per_expert_us", "mamf", "mem", "half_rows", "fp8"), p))
    if not any(s[-1] for s in sh):  # no FP8 rows: the factor is not identified, keep it neutral
        out["fp8"] = 1.0
    return out


def allreduce_table(rows):
    """{n: [[bytes, us], ...]}: message_size is in FP16 elements; the latency envelope is made
    monotone (a larger message never reported faster than a smaller one)."""
    out = {}
    for n in sorted({int(r["num_gpus"]) for r in rows}):
        pts = sorted((int(r["message_size"]) * 2, float(r["latency"]) * 1e3) for r in rows
                     if int(r["num_gpus"]) == n)
        env, best = [], 0.0
        for x, us in pts:
            best = max(best, us)
            env.append([x, round(best, 3)])
        out[n] = env
    return out


def comm_fallback(table, link_bw):
    """Analytic all-reduce constants for the same GPU: the smallest measured latency (one-shot
    floor) and the bus-bandwidth share reached by the largest message at the largest GPU count."""
    n = max(table)
    oneshot = min(us for _, us in table[n])
    x, us = table[n][-1]
    busbw = 2 * (n - 1) / n * x / (us * 1e-6) / link_bw
    return {"oneshot_us": oneshot, "busbw": min(busbw, 1.0)}


def held_out(rows, keys, kind, gpu_id, src, to_row):
    _, te = split(len(rows))
    te_rows = [r for r, keep in zip(rows, te) if keep]
    step = max(len(te_rows) // SAMPLE, 1)
    return [dict(kind=kind, gpu=gpu_id, source=src, **to_row(r)) for r in te_rows[::step][:SAMPLE]]


def fmt(v):
    return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"


def efficiency_block(consts, src):
    lines = ["efficiency:  # derived by benchmarks/derive_kernel_constants.py (see sources.efficiency)"]
    groups = {}
    for group, key, *_ in EFFICIENCY_FIELDS:
        groups.setdefault(group, []).append(key)
    for group, keys in groups.items():
        inner = ", ".join(f"{k}: {fmt(float(consts[group][k]))}" for k in keys)
        lines.append(f"  {group}: {{{inner}}}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path, help="aiconfigurator/systems/data directory")
    ap.add_argument("--write", action="store_true", help="rewrite the catalog files")
    args = ap.parse_args(argv)
    cat = load_catalog()
    kernel_rows = []
    for gid, (system, ver) in GPUS.items():
        gpu = cat.gpus[gid]
        d = args.data / system / "trtllm" / ver
        src = f"{WHEEL} systems/data/{system}/trtllm/{ver}"
        consts = {}
        for dtype, tag in (("bf16", "float16"), ("fp8", "fp8"), ("fp4", "nvfp4")):
            if dtype == "fp4":
                # FP4 runs on the FP8 constants at the FP4 peak (a GEMM fit of this form on the
                # NVFP4 rows is 17-37% slow on the largest shapes, docs/validation.md): the rows
                # are only held out, to measure that approximation.
                if "fp4" in gpu.peak_flops:
                    rows = read(d / "gemm_perf.txt", lambda r, tag=tag: r["gemm_dtype"] == tag
                                and 1024 <= int(r["n"]) < 65536 and 1024 <= int(r["k"]) < 65536)
                    kernel_rows += held_out(rows, None, "kernel_gemm_fp4", gid, src + "/gemm_perf.txt",
                                            lambda r: {"m": int(r["m"]), "n": int(r["n"]), "k": int(r["k"]),
                                                       "measured_us": round(float(r["latency"]) * 1e3, 3)})
                continue
            if dtype not in gpu.peak_flops:  # no FP8 tensor cores: FP8 weights run as BF16 GEMMs
                consts["gemm_fp8"] = dict(consts["gemm_bf16"], quant=0.0)
                continue
            rows = read(d / "gemm_perf.txt", lambda r, tag=tag: r["gemm_dtype"] == tag
                        and 1024 <= int(r["n"]) < 65536 and 1024 <= int(r["k"]) < 65536)
            consts[f"gemm_{dtype}"] = gemm_fit(rows, dtype, gpu)
            kernel_rows += held_out(rows, None, f"kernel_gemm_{dtype}", gid, src + "/gemm_perf.txt",
                                    lambda r: {"m": int(r["m"]), "n": int(r["n"]), "k": int(r["k"]),
                                               "measured_us": round(float(r["latency"]) * 1e3, 3)})
        rows = read(d / "context_attention_perf.txt",
                    lambda r: r["attn_dtype"] == "float16" and r["kv_cache_dtype"] == "float16")
        consts["attn_prefill"] = prefill_fit(rows, gpu)
        kernel_rows += held_out(rows, None, "kernel_prefill_attention", gid, src + "/context_attention_perf.txt",
                                lambda r: {"batch": int(r["batch_size"]), "isl": int(r["isl"]),
                                           "heads": int(r["num_heads"]), "kv_heads": int(r["num_key_value_heads"]),
                                           "measured_us": round(float(r["latency"]) * 1e3, 3)})
        rows = read(d / "generation_attention_perf.txt")
        consts["attn_decode"] = decode_fit(rows, gpu)
        kernel_rows += held_out(rows, None, "kernel_decode_attention", gid, src + "/generation_attention_perf.txt",
                                lambda r: {"batch": int(r["batch_size"]), "context": int(r["step"]),
                                           "heads": int(r["num_heads"]), "kv_heads": int(r["num_key_value_heads"]),
                                           "kv_dtype": "fp8" if r["kv_cache_dtype"] == "fp8" else "bf16",
                                           "measured_us": round(float(r["latency"]) * 1e3, 3)})
        rows = read(d / "moe_perf.txt", moe_keep)
        consts["moe"] = moe_fit(rows, gpu, consts)
        kernel_rows += held_out(rows, None, "kernel_moe", gid, src + "/moe_perf.txt",
                                lambda r: {"tokens": int(r["num_tokens"]), "hidden": int(r["hidden_size"]),
                                           "width": int(r["inter_size"]), "topk": int(r["topk"]),
                                           "experts": int(r["num_experts"]), "moe_tp": int(r["moe_tp_size"]),
                                           "moe_ep": int(r["moe_ep_size"]),
                                           "dtype": "fp8" if r["moe_dtype"] == "fp8" else "bf16",
                                           "measured_us": round(float(r["latency"]) * 1e3, 3)})
        ar = allreduce_table(read(d / "custom_allreduce_perf.txt"))
        link = cat.links[gpu.intra_node_link]
        consts["comm"] = comm_fallback(ar, link.bytes_per_s)
        block = efficiency_block(consts, src)
        kern = [f"kind: kernels\ngpu: {gid}\n# Custom all-reduce latency by message size (bytes per rank, us), "
                "monotone envelope of the measured table.\nallreduce_us:"]
        for n, pts in ar.items():
            kern.append(f"  {n}: [{', '.join(f'[{x}, {us}]' for x, us in pts)}]")
        kern.append(f"sources:\n  allreduce_us: \"{src}/custom_allreduce_perf.txt (TensorRT-LLM custom "
                    "all-reduce under CUDA graphs; message_size in FP16 elements, x2 for bytes)\"\n")
        kern_text = "\n".join(kern)
        print(f"# {gid}\n{block}")
        if args.write:
            p = ROOT / "hardware" / "gpus" / f"{gid}.yaml"
            text = p.read_text()
            text = re.sub(r"efficiency:.*?\n(?=sources:)", block, text, flags=re.S)
            p.write_text(text)
            (ROOT / "hardware" / "kernels" / f"{gid}.yaml").write_text(kern_text)
    if args.write:
        import yaml

        head = ("# Held-out silicon kernel timings (the odd-numbered rows of each table, sampled), written by\n"
                "# benchmarks/derive_kernel_constants.py; the constants were fitted on the even-numbered rows.\n")
        (ROOT / "tests" / "data" / "kernels.yaml").write_text(
            head + yaml.safe_dump(kernel_rows, sort_keys=False, width=120))
        print(f"wrote {len(kernel_rows)} held-out kernel rows")


if __name__ == "__main__":
    main()
