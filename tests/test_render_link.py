"""The estimate table's KV-transfer line when a plan's per-request bytes are not a finite
number (a hand-edited or foreign plan document): a dash, not a TypeError (mypy found
``finite(...) / 1e6`` dividing None)."""

import io
import math

import pytest
from rich.console import Console

from planner import api, render


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_kv_line_with_no_finite_bytes_shows_a_dash(value):
    inp = api.default_inputs(model="llama-3.1-8b", qps=4.0)
    dep = api.Deployment("disaggregated", (api.Pool("prefill", "h100-sxm", 1, 1),
                                           api.Pool("decode", "h100-sxm", 1, 1)))
    plan = api.estimate(inp, dep, with_headroom=False)
    assert plan.link is not None and math.isfinite(plan.link["bytes_per_request"])
    plan.link = {**plan.link, "bytes_per_request": value}
    out = io.StringIO()
    render.show_plan(Console(file=out, width=120, highlight=False), plan)
    assert "- MB per request" in out.getvalue()


def test_kv_line_with_finite_bytes_shows_megabytes():
    inp = api.default_inputs(model="llama-3.1-8b", qps=4.0)
    dep = api.Deployment("disaggregated", (api.Pool("prefill", "h100-sxm", 1, 1),
                                           api.Pool("decode", "h100-sxm", 1, 1)))
    plan = api.estimate(inp, dep, with_headroom=False)
    out = io.StringIO()
    render.show_plan(Console(file=out, width=120, highlight=False), plan)
    mb = plan.link["bytes_per_request"] / 1e6
    assert f"{mb:,.1f} MB per request" in out.getvalue()
