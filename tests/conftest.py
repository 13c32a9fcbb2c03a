"""Shared test fixtures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from planner.catalog import load_catalog

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _clean_catalog(monkeypatch):
    """Every test sees the built-in catalog only, loaded afresh."""
    monkeypatch.delenv("PDPLAN_CATALOG", raising=False)
    load_catalog.cache_clear()
    yield
    load_catalog.cache_clear()


@pytest.fixture
def help_imports():
    """Run ``pdplan <argv> --help`` for each argv in a fresh interpreter and return (the modules
    among ``watch`` that got imported, the printed help)."""

    def check(argvs, watch):
        code = ("import sys, planner.cli\n"
                f"for argv in {argvs!r}:\n"
                "    try:\n        planner.cli.main(argv)\n    except SystemExit:\n        pass\n"
                f"print('LOADED=' + ','.join(m for m in {tuple(watch)!r} if m in sys.modules))\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                             env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=60)
        assert out.returncode == 0, out.stderr
        line = next(ln for ln in out.stdout.splitlines() if ln.startswith("LOADED="))
        return {m for m in line[len("LOADED="):].split(",") if m}, out.stdout

    return check
