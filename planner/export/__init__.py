"""Plan -> engine configs and manifests: ``pdplan export PLAN --target T [-o DIR]``.

One module per target, each with ``files(source) -> [(file name, text)]``:

- ``vllm``: per pool a ``vllm serve --config`` YAML, and ``launch.sh`` (plans made for vLLM);
- ``sglang``: per pool the server arguments as a YAML list, and ``launch.sh`` (SGLang plans);
- ``trtllm``: per pool an extra LLM-API YAML, and ``launch.sh`` with the trtllm-serve options;
- ``dynamo``: a DynamoGraphDeployment (vLLM, SGLang or TensorRT-LLM workers);
- ``llm-d``: Helm values for llm-d-modelservice (vLLM plans);
- ``k8s``: per pool a Deployment (LeaderWorkerSet for multi-node instances) and a Service.

A target writes for the engine the plan names, at the version of its engine profile; a target
that cannot serve that engine is an error (exit 2), never a silent translation. Every file starts
with a comment naming the pdplan version, the plan (path and sha256) and what to check.
"""

from __future__ import annotations

import importlib
import os

from planner.errors import InvalidRequestError

TARGETS = {"vllm": "planner.export.vllm", "sglang": "planner.export.sglang", "trtllm": "planner.export.trtllm",
           "dynamo": "planner.export.dynamo", "llm-d": "planner.export.llmd", "k8s": "planner.export.k8s"}


def exporter(target: str):
    """The module that writes ``target``."""
    if target not in TARGETS:
        from planner.units import shown

        raise InvalidRequestError(f"--target: unknown {shown(target, 40)}; valid: {', '.join(TARGETS)}")
    return importlib.import_module(TARGETS[target])


def render(plan_path: str, target: str, catalog_dir: str | None = None) -> list[tuple[str, str]]:
    """The files ``target`` makes of the plan, as (name, text), nothing written."""
    from planner.export.common import load

    mod = exporter(target)
    src = load(plan_path, target, catalog_dir)
    return mod.files(src)


def export(plan_doc_path: str, target: str, out_dir: str = ".", force: bool = False,
           catalog_dir: str | None = None) -> list[str]:
    """Write the ``target`` files of the plan into ``out_dir`` (created if missing) and return
    their paths. Without ``force`` no existing file is replaced: every output is checked before
    anything is written, and all are written or none."""
    from planner.files import Outputs

    files = render(plan_doc_path, target, catalog_dir)
    out_dir = str(out_dir)
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise InvalidRequestError(f"-o: {out_dir} exists and is not a directory")
    paths = [os.path.join(out_dir, name) for name, _ in files]
    if not os.path.isdir(out_dir):
        try:
            os.makedirs(out_dir, exist_ok=True)
        except OSError as exc:
            raise InvalidRequestError(f"-o: cannot create directory {out_dir}: {exc.strerror or exc}") from None
    with Outputs() as outs:
        staged = [(outs.add(p, "-o", force), text) for p, (_, text) in zip(paths, files)]
        for out, text in staged:
            out.stage(text)
        outs.commit()
    return paths


__all__ = ["TARGETS", "export", "exporter", "render"]
