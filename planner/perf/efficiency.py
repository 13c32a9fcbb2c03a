"""Achieved-throughput models of the kernels one engine iteration runs.

Each function takes the shape of one kernel (numpy arrays broadcast together) and the GPU's
constants (:class:`planner.catalog.Efficiency`, derived from silicon-measured kernel tables by
``benchmarks/derive_kernel_constants.py``) and returns seconds. None of them knows about layers,
models or queues: :mod:`planner.perf.roofline` composes them.

The forms, and why (the constants are in the GPU's catalog entry, each with its source):

* GEMM ``(m x k) @ (k x n)``, ``groups`` independent problems of the same shape (a grouped MoE
  GEMM): ``floor + smax(t_c, t_m) [+ activation quantisation for FP8]``.
  ``t_c = 2 m n k g / (peak * mamf * q^wave)`` with ``q`` the wave-quantisation utilisation of
  128 x 128 output tiles over the SMs; ``t_m = (bytes + half) / (HBM_BW * mem)``, i.e. the achieved
  bandwidth ``mem * bytes / (bytes + half)`` grows with the transfer; ``smax`` is the p-norm
  ``(t_c^p + t_m^p)^(1/p)`` (``p = blend``), a smooth roofline corner.
* Prefill attention (FlashAttention-style, causal): ``floor + FLOPs / (peak * mamf * s / (s + half)
  * q^wave)`` with ``s`` the mean query length and ``q`` the wave utilisation of
  ``batch * heads * ceil(s / 128)`` thread blocks.
* Decode attention (paged, split-K): ``floor + per_seq * B + per_read * B * r + KV bytes * r /
  kv_heads / (HBM_BW * eta)`` with ``eta = mem * x^a / (x^a + half^a)``, ``x = B * r`` (occupancy)
  and ``r`` the KV heads *read* per sequence: the KV heads when the kernel packs the query heads
  sharing one (GQA packing, up to ``group_max`` of them), else one read per query head (the
  kernel falls back to one thread block per query head, as the source tables show for ratios
  above ``group_max``). MLA's absorbed kernel reads its latent once for all heads. FP8 KV is
  scaled by its own factor.
* Routed experts of one MoE layer (a fused grouped-GEMM MoE kernel): ``floor + per_expert *
  experts + up + down + permutation``, the two grouped GEMMs in the GEMM form above with the
  compute and memory efficiencies scaled by the GPU's ``moe`` factors (small per-expert problems
  run below dense efficiency, the more so the fewer rows each expert gets), ``experts`` the ones this GPU runs that the batch touches, and the
  gather/scatter of the token copies as HBM traffic.
* All-reduce: a measured latency table by message size where the GPU has one (log-log
  interpolation), else ``oneshot + 2 (n - 1) / n * bytes / (link_bw * busbw)``.
"""

from __future__ import annotations

import numpy as np

TILE = 128.0  # output tile edge of the dense tensor-core GEMM kernels (CUTLASS / cuBLAS default)


def _as(x):
    return np.asarray(x, dtype=float)


def wave_utilisation(blocks, sms: int):
    """Fraction of SM slots busy when ``blocks`` equal thread blocks run in waves over ``sms``."""
    b = np.maximum(_as(blocks), 1.0)
    return b / (np.ceil(b / sms) * sms)


def gemm_time(m, n, k, *, peak: float, hbm: float, sms: int, g: dict, w_bytes: float,
              a_bytes: float = 2.0, out_bytes: float = 2.0, groups=1.0, quantise: bool = False,
              scale_c: float = 1.0, scale_m: float = 1.0):
    """Seconds for ``groups`` GEMMs ``(m x k) @ (k x n)``; ``g`` holds the dtype's constants
    (``mamf floor_s mem mem_half_bytes blend wave`` and ``quant`` for FP8).

    ``m`` may be fractional (mean rows per expert); shapes with ``m == 0`` cost nothing."""
    m, n, k, groups = _as(m), _as(n), _as(k), _as(groups)
    live = (m > 0) & (groups > 0)
    mm = np.maximum(m, 1e-9)
    tiles = np.ceil(mm / TILE) * np.ceil(n / TILE) * np.maximum(groups, 1.0)
    q = (mm * n * np.maximum(groups, 1.0) / (TILE * TILE)) / (np.ceil(tiles / sms) * sms)
    q = np.minimum(q, 1.0) ** g["wave"]
    t_c = 2.0 * mm * n * k * groups / (peak * g["mamf"] * scale_c * q)
    nbytes = groups * (n * k * w_bytes + mm * k * a_bytes + mm * n * out_bytes)
    t_m = (nbytes + g["mem_half_bytes"]) / (hbm * g["mem"] * scale_m)
    p = g["blend"]
    t = g["floor_s"] + (t_c ** p + t_m ** p) ** (1.0 / p)
    if quantise:  # per-tensor FP8 quantisation of the activations: reads BF16, writes FP8
        t = t + g["quant"] * groups * mm * k * 3.0 / (hbm * scale_m)
    return np.where(live, t, 0.0)


def moe_layout(tokens, experts: int, topk: int, ep: int = 1):
    """(experts a GPU runs, rows each) for ``tokens`` tokens routed uniformly at random to
    ``topk`` of ``experts`` experts: the batch touches ``E (1 - (1 - k / E)^T)`` distinct experts
    with ``T k / touched`` rows each; under expert parallelism over ``ep`` GPUs each runs
    ``touched / ep`` of them and the busiest GPU's rows are :func:`ep_imbalance` times the mean."""
    T = _as(tokens)
    E, k = float(experts), float(topk)
    touched = E * -np.expm1(T * np.log1p(-k / E)) if k < E else np.full_like(T, E)
    rows = np.where(T > 0, T * k / np.maximum(touched, 1.0), 0.0)
    if ep > 1:
        return touched / ep, rows * ep_imbalance(T * k, ep)
    return touched, rows


def moe_experts_time(rows, groups, up_n, width, hidden, *, peak: float, hbm: float, sms: int,
                     g: dict, moe: dict, w_bytes: float, a_bytes: float = 2.0,
                     quantise: bool = False, perm_bytes=0.0, scale_c: float = 1.0,
                     scale_m: float = 1.0):
    """Seconds of the routed experts of one MoE layer: ``groups`` experts with ``rows`` rows
    each, gate+up ``(rows x hidden) @ (hidden x up_n)`` and down ``(rows x width) @ (width x
    hidden)`` as grouped GEMMs at the dense constants ``g`` scaled by ``moe['mamf'] rows / (rows +
    moe['half_rows'])`` (compute: few rows per expert run far below dense efficiency) and
    ``moe['mem']`` (bandwidth), FP8 experts (``quantise``) by ``moe['fp8']`` more, plus ``moe['floor_s']`` per layer, ``moe['per_expert_s']``
    per expert and ``perm_bytes`` of token gather/scatter at the dense GEMM's bandwidth.
    ``scale_c``/``scale_m``: a calibration's compute/memory factors on top."""
    rows, groups = _as(rows), _as(groups)
    live = np.maximum(rows, 1e-9)
    sc = scale_c * moe["mamf"] * live / (live + moe["half_rows"]) * (moe["fp8"] if quantise else 1.0)
    kw = dict(peak=peak, hbm=hbm, sms=sms, g=g, w_bytes=w_bytes, a_bytes=a_bytes, groups=groups,
              quantise=quantise, scale_c=sc, scale_m=scale_m * moe["mem"])
    t = gemm_time(rows, up_n, hidden, **kw) + gemm_time(rows, hidden, width, **kw)
    t = t + moe["floor_s"] + moe["per_expert_s"] * groups + _as(perm_bytes) / (hbm * g["mem"] * scale_m)
    return np.where((rows > 0) & (groups > 0), t, 0.0)


def prefill_attention_time(flops, q_len, blocks, *, peak: float, sms: int, a: dict,
                           scale_c: float = 1.0):
    """Seconds for one prefill-attention kernel doing ``flops`` (causal FLOPs) over queries of
    mean length ``q_len`` in ``blocks`` thread blocks (``batch * heads * ceil(q_len / 128)``)."""
    fl, s = _as(flops), np.maximum(_as(q_len), 1e-9)
    eta = a["mamf"] * scale_c * s / (s + a["half_tokens"]) * wave_utilisation(blocks, sms) ** a["wave"]
    return np.where(fl > 0, a["floor_s"] + fl / (peak * eta), 0.0)


def decode_kv_reads(heads, kv_heads, *, d: dict, latent: bool = False) -> float:
    """KV heads a decode-attention kernel reads per sequence on one GPU: ``kv_heads`` when the
    ``heads / kv_heads`` query heads sharing each fit one thread block (``<= group_max``), else
    one read per query head; an MLA latent (``latent``) is read once for all heads."""
    if latent:
        return 1.0
    return float(kv_heads) if heads / kv_heads <= d["group_max"] + 1e-9 else float(heads)


def decode_attention_eta(batch, reads, *, d: dict, fp8: bool, scale_m: float = 1.0):
    """Achieved fraction of HBM bandwidth of a paged decode-attention kernel at ``batch``
    sequences of ``reads`` KV heads read each (occupancy-bound when their product is small)."""
    x = np.maximum(_as(batch) * reads, 1e-9) ** d["shape"]
    eta = d["mem"] * scale_m * x / (x + d["half_occupancy"] ** d["shape"])
    return eta * np.where(fp8, d["fp8"], 1.0)


def decode_attention_floor(batch, reads, *, d: dict):
    """Fixed part of one decode-attention kernel: launch, per-sequence work and per (sequence,
    KV head read) work (seconds)."""
    B = _as(batch)
    return np.where(B > 0, d["floor_s"] + (d["per_seq_s"] + d["per_read_s"] * reads) * B, 0.0)


def decode_attention_time(batch, ctx_tokens, heads, kv_heads, *, d: dict, hbm: float, fp8: bool,
                          head_dim: int = 128, kv_bytes: float = 2.0):
    """Seconds of one decode-attention kernel over ``batch`` sequences holding ``ctx_tokens``
    tokens each, ``heads`` query and ``kv_heads`` KV heads of ``head_dim``: the memory-bound form
    the kernel tables measure (the step model adds a compute bound)."""
    h, kvh = _as(heads), _as(kv_heads)
    r = np.where(h / kvh <= d["group_max"] + 1e-9, kvh, h)  # decode_kv_reads, elementwise
    nbytes = _as(batch) * _as(ctx_tokens) * r * head_dim * 2 * kv_bytes
    return decode_attention_floor(batch, r, d=d) + nbytes / (
        hbm * decode_attention_eta(batch, r, d=d, fp8=fp8))


def allreduce_time(msg_bytes, n: int, *, table=None, link_bw: float, oneshot_s: float,
                   busbw: float):
    """Seconds for one all-reduce of ``msg_bytes`` bytes per rank among ``n`` GPUs.

    ``table``: ``{n: (bytes array, seconds array)}`` measured by message size (the engine's custom
    one-/two-shot kernels up to its limit, NCCL above), interpolated in log-log and extrapolated
    linearly in bytes beyond its largest size. Without a row for ``n``:
    ``oneshot + 2 (n - 1) / n * bytes / (link_bw * busbw)``."""
    msg = _as(msg_bytes)
    if n <= 1:
        return np.zeros_like(msg)
    if table and n in table:
        xs, ts = table[n]
        lx = np.log(np.clip(msg, xs[0], xs[-1]))
        t = np.exp(np.interp(lx, np.log(xs), np.log(ts)))
        slope = (ts[-1] - ts[-2]) / (xs[-1] - xs[-2])
        t = t + np.maximum(msg - xs[-1], 0.0) * slope
        return np.where(msg > 0, t, 0.0)
    return np.where(msg > 0, oneshot_s + 2.0 * (n - 1) / n * msg / (link_bw * busbw), 0.0)


# Expert-parallel dispatch/combine (DeepEP-style kernels, as SGLang, vLLM and TensorRT-LLM use for
# wide EP). Source: deepseek-ai/DeepEP@0297fc80 docs/legacy.md, "Performance" (H800, ~160 GB/s
# NVLink, one CX7 400 Gb/s NIC (~50 GB/s) per GPU; DeepSeek-V3 shapes, FP8 dispatch, BF16 combine):
# * normal kernels (prefill): intranode EP8 153/158 GB/s over NVLink, i.e. 0.77 of the H800's
#   200 GB/s per-direction NVLink; internode EP16-64 43-58 GB/s "bottleneck" RDMA bandwidth;
# * low-latency kernels (decode, 128 tokens per rank): combine 39-46 GB/s at EP32-256 (0.78-0.92
#   of the NIC), dispatch latency 155-194 us, whose line over the remote bytes at EP32-256 has an
#   intercept of about 20 us (the fixed cost of one call).
# The shares below are the lower ends (0.77 of NVLink, 0.80 of the NIC for low latency, 0.86 for
# normal kernels), the fixed cost is that intercept. Checked in tests/test_perf.py against the
# table's EP16-EP256 low-latency rows.
EP_NVLINK_SHARE = 0.77
EP_NIC_SHARE = {"low_latency": 0.80, "normal": 0.86}
EP_CALL_S = 20e-6


def ep_alltoall_time(msg_bytes, ranks: int, *, gpus_per_node: int, nvlink_bw: float, nic_bw: float,
                     mode: str = "normal", topk: int = 8):
    """Seconds for one expert-parallel dispatch or combine in which each of ``ranks`` GPUs sends
    ``msg_bytes`` (its tokens times ``topk`` times hidden, in the wire dtype), spread evenly over
    the ranks: the share for GPUs of its own node (``(min(ranks, gpus_per_node) - 1) / ranks``)
    moves over NVLink, the share for other nodes over the GPU's NIC, both at the DeepEP-measured
    shares of their bandwidth, in parallel:
    ``EP_CALL_S + max(local / (nvlink * 0.77), remote / (nic * share[mode]))``.
    ``mode``: ``low_latency`` (decode: every top-k copy travels on its own, the remote share is
    ``(ranks - gpus_per_node) / ranks``) or ``normal`` (prefill and mixed iterations: a token
    crosses the network once per destination node and is forwarded inside it over NVLink, so
    the remote bytes are ``hidden`` times the expected number of other nodes its ``topk``
    experts fall on, ``(N - 1)(1 - (1 - 1/N)^topk)`` over ``N`` nodes with uniform routing)."""
    msg = _as(msg_bytes)
    if ranks <= 1:
        return np.zeros_like(msg)
    local = (min(ranks, gpus_per_node) - 1) / ranks
    nodes = -(-ranks // gpus_per_node)
    if mode == "normal" and nodes > 1:
        remote = (nodes - 1) * (1.0 - (1.0 - 1.0 / nodes) ** topk) / topk
    else:
        remote = max(ranks - gpus_per_node, 0) / ranks
    t = msg * local / (nvlink_bw * EP_NVLINK_SHARE)
    if remote > 0:
        t = np.maximum(t, msg * remote / (nic_bw * EP_NIC_SHARE[mode]))
    return np.where(msg > 0, EP_CALL_S + t, 0.0)


def ep_imbalance(rows, ranks: int):
    """Expected load of the busiest of ``ranks`` expert-parallel GPUs over the mean, when
    ``rows`` token-expert assignments are routed uniformly at random: the mean ``rows / ranks``
    plus the expected maximum of ``ranks`` roughly normal counts, ``sqrt(2 ln ranks)`` standard
    deviations of ``sqrt(rows / ranks)``. Real routing is skewed beyond this (EPLB's redundant
    experts exist because of it); this is the floor any placement pays."""
    r = _as(rows)
    if ranks <= 1:
        return np.ones_like(r)
    mean = np.maximum(r / ranks, 1e-9)
    return 1.0 + np.sqrt(2.0 * np.log(ranks) * mean * (1.0 - 1.0 / ranks)) / mean
