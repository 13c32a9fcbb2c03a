"""docs/api.md's worked example runs as written: every ```python block, in order, in one
namespace, from the repository root (its paths are relative to it)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "api.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_the_doc_has_a_worked_example():
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    assert blocks, "docs/api.md has no ```python block"
    code = "\n".join(blocks)
    for call in ("api.estimate(", "recommend(", "api.calibrate(", "tests/data/calibration/"):
        assert call in code


def test_the_worked_example_runs(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    namespace: dict = {"__name__": "api_doc"}
    for i, block in enumerate(python_blocks(DOC.read_text(encoding="utf-8"))):
        exec(compile(block, f"docs/api.md (python block {i + 1})", "exec"), namespace)
    out = capsys.readouterr().out
    assert "recommended:" in out and "fitted " in out and "calibrated:" in out
