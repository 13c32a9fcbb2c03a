"""Docs that are tested: every `pdplan ...` command shown in README.md and docs/*.md runs with
exit code 0, and the CLI reference is not stale."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from planner.cli import cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP_DOCS = {"cli.md", "changelog.md"}


def _commands(path: Path) -> list[str]:
    out, in_block = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("```"):
            in_block = not in_block
            continue
        if not in_block:
            continue
        for part in line.split("&&"):
            part = part.strip()
            if part.startswith("pdplan ") and "pip install" not in part:
                out.append(part.split("  #")[0].strip())
    return out


DOC_COMMANDS = [(p.name, cmd) for p in DOCS if p.exists() and p.name not in SKIP_DOCS
                for cmd in _commands(p)]


def test_docs_show_commands():
    assert len(DOC_COMMANDS) >= 10


# (validation.md's commands rerun whole validation sets and day.md's simulate days: the slow
# suite runs them)
@pytest.mark.parametrize("doc", [pytest.param(d, marks=pytest.mark.slow) if d in ("validation.md", "day.md") else d
                                 for d in sorted({d for d, _ in DOC_COMMANDS})])
def test_every_command_in_the_docs_runs(doc, tmp_path):
    runner = CliRunner()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for d, cmd in DOC_COMMANDS:
            if d != doc:
                continue
            argv = shlex.split(cmd)[1:]
            argv = [a for a in argv if a not in ("|",)]
            if "--requests" in argv:  # keep simulations short in the test run
                i = argv.index("--requests")
                argv[i + 1] = str(min(int(argv[i + 1]), 2000))
            res = runner.invoke(cli, argv)
            assert res.exit_code == 0, f"{doc}: {cmd}\n{res.output[-1500:]}"
            assert "Traceback" not in res.output
    finally:
        os.chdir(cwd)


def test_cli_reference_is_current():
    from planner.clidoc import missing_help, render

    assert not missing_help()
    current = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")

    def norm(text: str) -> str:  # click versions differ in brackets and wrapping, not content
        return re.sub(r"[\[\]\s]+", " ", text).strip()

    assert norm(current) == norm(render()), \
        "docs/cli.md is stale: run python -m planner.clidoc > docs/cli.md"


def test_docs_link_each_other():
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    for name in ("tutorial.md", "methodology.md", "validation.md", "cli.md", "errors.md"):
        assert name in index, name
    assert re.search(r"pip install \. && pdplan recommend --qps 80 --ttft-slo 200ms",
                     (ROOT / "README.md").read_text(encoding="utf-8"))
