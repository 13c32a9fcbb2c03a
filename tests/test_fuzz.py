"""Fuzzing the command line with hypothesis: whatever the arguments, no exception escapes, the exit
code is 0, 2 or 3, an error is one ``Error:`` line without a traceback, and ``--json`` output
always parses.

A fast subset runs by default; ``pytest -m slow`` (run by ``.ci/run``) drives 2,000+ examples.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.cli import cli

MODELS = ["llama-3.1-8b", "llama-3.1-70b", "mixtral-8x7b", "qwen3-30b-a3b", "deepseek-v3", "llama-3.1-405b"]
GPUS = ["h100-sxm", "h200", "a100-80g", "l40s", "b200", "mi300x", "h100-pcie"]
JUNK = ["", "-1", "0", "nan", "inf", "1e400", "abc", "2k", "200ms", "0.2s", "10xtp", "@", "--", "x" * 300,
        "1,2,3", "../nope.yaml", "ß", "-0", "1e-9", "99999999999"]

value = st.one_of(st.sampled_from(JUNK), st.integers(-5, 100_000).map(str),
                  st.floats(allow_nan=True, allow_infinity=True).map(str), st.text(max_size=12))
name = st.one_of(st.sampled_from(MODELS + GPUS), st.sampled_from(JUNK), st.text(max_size=10))
size = st.one_of(st.sampled_from(["128", "512", "2048", "2k", "8k"]), value)
spec = st.one_of(st.builds(lambda n, t, p: f"{n}xtp{t}" + (f"pp{p}" if p > 1 else ""),
                           st.integers(0, 6), st.sampled_from([1, 2, 3, 4, 8, 16]), st.sampled_from([1, 2, 4])),
                 value)


def _opt(flag, strategy):
    return st.tuples(st.just(flag), strategy).map(list)


def _argv(command: str, options: list, flags=()):
    return st.builds(
        lambda opts, fl, js: [command] + [x for o in opts for x in o] + list(fl) + (["--json"] if js else []),
        st.lists(st.one_of(*options), max_size=6),
        st.lists(st.sampled_from(list(flags) or ["--json"]), max_size=2, unique=True),
        st.booleans(),
    )


COMMON = [_opt("--model", name), _opt("--gpu", name), _opt("--qps", value), _opt("--isl", size),
          _opt("--osl", size), _opt("--ttft-slo", value), _opt("--tpot-slo", value),
          _opt("--percentile", st.sampled_from(["50", "90", "99", "80", "x"])),
          _opt("--dtype", st.sampled_from(["bf16", "fp8", "fp4", "int4", "fp64"])),
          _opt("--kv-dtype", st.sampled_from(["bf16", "fp8", "int8"])),
          _opt("--isl-dist", st.sampled_from(["lognormal:mean=1024,cv=0.5", "uniform:min=10,max=5",
                                              "gamma:mean=-1,cv=1", "weird:1"]))]

COMMANDS = st.one_of(
    _argv("catalog", [_opt("show", name)]),
    st.builds(lambda w, j: ["catalog", w] + (["--json"] if j else []),
              st.sampled_from(["models", "gpus", "links", "bogus"]), st.booleans()),
    _argv("kv", [_opt("--model", name), _opt("--seq-len", size), _opt("--kv-dtype", name),
                 _opt("--gpu", name), _opt("--batch", value), _opt("--tp", value)]),
    _argv("step", [_opt("--model", name), _opt("--gpu", name), _opt("--tp", value), _opt("--pp", value),
                   _opt("--prefill", size), _opt("--decode", value), _opt("--context", size)]),
    _argv("estimate", COMMON + [_opt("--approach", st.sampled_from(["unified", "chunked", "disaggregated", "x"])),
                                _opt("--replicas", spec), _opt("--prefill", spec), _opt("--decode", spec),
                                _opt("--chunk-size", size), _opt("--link", name)]),
    _argv("recommend", COMMON + [_opt("--max-gpus", st.sampled_from(["1", "8", "16", "0", "x"])),
                                 _opt("--approach", st.sampled_from(["auto", "unified", "bogus"])),
                                 _opt("--objective", st.sampled_from(["gpus", "cost", "speed"]))]),
    _argv("evaluate", [st.just(["/nonexistent/plan.yaml"]), _opt("--qps", value)]),
)


def _fast_recommend(argv):
    """Keep recommend cheap in the fuzz: a small GPU budget unless the example sets one."""
    if argv and argv[0] in ("recommend",) and "--max-gpus" not in argv:
        argv = argv + ["--max-gpus", "16"]
    return argv


def _check(argv):
    runner = CliRunner()
    res = runner.invoke(cli, _fast_recommend(argv), catch_exceptions=True)
    out = res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), (argv, repr(res.exception))
    assert res.exit_code in (0, 2, 3), (argv, res.exit_code, out[-500:])
    assert "Traceback" not in out, (argv, out[-800:])
    if res.exit_code == 2:
        lines = [ln for ln in out.splitlines() if ln.startswith("Error:")]
        assert len(lines) == 1, (argv, out[-800:])
    if res.exit_code == 0 and "--json" in argv:
        json.loads(res.stdout)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(argv=COMMANDS)
def test_cli_fuzz_fast(argv):
    _check(argv)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(argv=COMMANDS)
def test_cli_fuzz_volume(argv):
    _check(argv)
