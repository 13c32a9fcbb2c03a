"""Unified serving: in-flight batching without splitting prompts.

Each iteration carries the running decodes plus whole waiting prompts, FCFS, as many as fit in
the engine's token budget left by the decodes (the head of the queue always enters: engines
without chunked prefill raise the budget to the longest prompt). A long prompt makes its
iteration long, and every decode of the lane waits for it: the stall that chunked prefill
removes. Under an engine that runs prompts apart from decodes (SGLang's prefill-first default)
the decodes get no token during such an iteration at all.

The model is :mod:`planner.serving.lanes` with ``split=False``: see there and
docs/methodology.md ("In-flight batching").
"""

from __future__ import annotations

from planner.perf import StepModel
from planner.serving.common import (
    PERCENTILES,
    LaneResult,
    LoadShape,
    lane_budget,
    token_budget,
)
from planner.serving.lanes import IterationCurves, pool_args, whole_prompts  # noqa: F401  (re-exported)
from planner.serving.lanes import lane_metrics as _lanes


def budget(sm: StepModel, shape: LoadShape, chunk: int | None = None) -> int:
    """The token budget of a unified iteration: the engine's (or ``chunk``), raised to the
    longest prompt (the tokens its prefill computes: a prefix-cache hit is not scheduled)."""
    return int(max(lane_budget(sm, chunk) or token_budget(sm), float(shape.computed.max())))


def curves(sm: StepModel, shape: LoadShape, chunk: int | None = None) -> IterationCurves:
    return IterationCurves.cached(sm, shape, budget(sm, shape, chunk), split=False)


def lane_metrics(sm: StepModel, shape: LoadShape, lam, arrival_cv: float = 1.0, lanes=1,
                 percentiles=PERCENTILES, slo=None, curves_: IterationCurves | None = None,
                 chunk: int | None = None, at_boundary: bool = False) -> LaneResult:
    """Metrics of unified lanes at per-lane arrival rates ``lam`` (array); ``lanes`` lanes share
    the traffic (pooled prompt queue, M/G/c)."""
    cv = curves_ or curves(sm, shape, chunk)
    return _lanes(sm, shape, lam, cv.chunk, arrival_cv, cv, lanes=lanes, percentiles=percentiles,
                  slo=slo, split=False, at_boundary=at_boundary)


def evaluate(inp, dep, qps, at_boundary: bool = False, percentiles=PERCENTILES) -> LaneResult:
    """The registry's entry: ``dep`` (one unified pool) at the total rates ``qps``."""
    sm, lanes, lam, shape, slo = pool_args(inp, dep, qps)
    return lane_metrics(sm, shape, lam, arrival_cv=inp.workload.arrival_cv, lanes=lanes, slo=slo,
                        chunk=dep.chunk_size, at_boundary=at_boundary, percentiles=percentiles)

__all__ = ["budget", "curves", "evaluate", "lane_metrics", "whole_prompts"]
