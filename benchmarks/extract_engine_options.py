"""Extract an engine's command-line options (and the config keys and values pdplan export writes)
from the engine's own source, into ``tests/data/engine_options/<engine>-<version>.txt``.

    python benchmarks/extract_engine_options.py vllm  /tmp/vllm-0.11.0  0.11.0
    python benchmarks/extract_engine_options.py sglang /tmp/sglang-0.5.3 0.5.3

The source directory is an unpacked wheel (``pip download --no-deps vllm==0.11.0`` then
``unzip``) or a repository checkout (``python/`` for SGLang). Nothing is imported: the files are
parsed with :mod:`ast`, so the engines' heavy dependencies (torch, CUDA) are not needed.

What is read:

- vLLM: every option string of every ``add_argument`` call in ``vllm/engine/arg_utils.py``
  (``EngineArgs.add_cli_args``, ``AsyncEngineArgs.add_cli_args``) and
  ``vllm/entrypoints/openai/cli_args.py`` (``make_arg_parser``), plus ``--<field>`` for every
  field of ``FrontendArgs`` (added in a loop there). A field typed ``bool`` gets argparse's
  ``BooleanOptionalAction`` (``get_kwargs`` in arg_utils.py), hence also ``--no-<flag>``.
  Values: ``--kv-cache-dtype=`` from ``CacheDType`` (vllm/config/cache.py), ``--quantization=``
  from ``QuantizationMethods`` (vllm/model_executor/layers/quantization/__init__.py),
  ``--distributed-executor-backend=`` from ``DistributedExecutorBackend`` (vllm/config/parallel.py);
  the ``kv-transfer-config`` JSON keys from ``KVTransferConfig`` (vllm/config/kv_transfer.py) as
  ``kv_transfer_config.<key>``, its roles (``KVRole``) as ``kv_role=<role>`` and the registered
  connectors (``KVConnectorFactory.register_connector`` in
  vllm/distributed/kv_transfer/kv_connector/factory.py) as ``kv_connector=<name>``.
- SGLang: every option string of ``ServerArgs.add_cli_args`` in ``sglang/srt/server_args.py``,
  and ``--flag=value`` for each value of a ``choices=`` list (inline or a module-level list).

TensorRT-LLM is not on the public package index as a real wheel; its option file was written
from the source files named in its header (see that file) and is checked the same way.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "engine_options"


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _option_strings(call: ast.Call) -> list[str]:
    return [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
            and a.value.startswith("-")]


def _is_add_argument(node) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_argument")


def _literal_aliases(tree: ast.Module) -> dict[str, list[str]]:
    """Module-level ``Name = Literal[...]`` (nested aliases resolved) -> their string values."""
    raw: dict[str, ast.AST] = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else (
            node.target if isinstance(node, ast.AnnAssign) else None)
        if isinstance(target, ast.Name) and isinstance(node.value, ast.Subscript):
            v = node.value
            if isinstance(v.value, ast.Name) and v.value.id == "Literal":
                raw[target.id] = v.slice

    def values(sl, seen=()) -> list[str]:
        items = sl.elts if isinstance(sl, ast.Tuple) else [sl]
        out = []
        for it in items:
            if isinstance(it, ast.Constant) and isinstance(it.value, str):
                out.append(it.value)
            elif isinstance(it, ast.Name) and it.id in raw and it.id not in seen:
                out += values(raw[it.id], seen + (it.id,))
        return out

    return {k: values(v) for k, v in raw.items()}


def _class_fields(tree: ast.Module, name: str) -> dict[str, str]:
    """Annotated fields of class ``name`` -> the annotation's source text."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == name:
            return {st.target.id: ast.unparse(st.annotation) for st in node.body
                    if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name)}
    raise SystemExit(f"class {name} not found")


def _bool_field(annotation: str) -> bool:
    import re

    return re.search(r"\bbool\b", annotation) is not None


def vllm_options(root: Path) -> tuple[list[str], list[str]]:
    arg_utils = root / "vllm/engine/arg_utils.py"
    cli_args = root / "vllm/entrypoints/openai/cli_args.py"
    config = root / "vllm/config"
    # the dataclasses whose fields become flags through get_kwargs(Cls)["field"]
    classes: dict[str, dict[str, str]] = {}
    for f in sorted(config.glob("*.py")):
        t = _tree(f)
        for node in t.body:
            if isinstance(node, ast.ClassDef):
                classes[node.name] = {st.target.id: ast.unparse(st.annotation) for st in node.body
                                      if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name)}
    opts: set[str] = set()
    for path in (arg_utils, cli_args):
        tree = _tree(path)
        kw_class: dict[str, str] = {}  # model_kwargs -> ModelConfig
        for node in ast.walk(tree):
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                    and isinstance(node.value.func, ast.Name) and node.value.func.id == "get_kwargs"
                    and isinstance(node.targets[0], ast.Name) and isinstance(node.value.args[0], ast.Name)):
                kw_class[node.targets[0].id] = node.value.args[0].id
        for node in ast.walk(tree):
            if not _is_add_argument(node):
                continue
            names = _option_strings(node)
            opts.update(names)
            boolean = any(isinstance(k.value, ast.Attribute) and k.value.attr == "BooleanOptionalAction"
                          for k in node.keywords if k.arg == "action")
            for k in node.keywords:  # **model_kwargs["field"]
                if k.arg is None and isinstance(k.value, ast.Subscript) and isinstance(k.value.value, ast.Name):
                    cls = kw_class.get(k.value.value.id)
                    field = k.value.slice.value if isinstance(k.value.slice, ast.Constant) else None
                    if cls in classes and field in classes[cls] and _bool_field(classes[cls][field]):
                        boolean = True
            if boolean:
                opts.update("--no-" + n[2:] for n in names if n.startswith("--"))
    for field, ann in _class_fields(_tree(cli_args), "FrontendArgs").items():  # the loop in add_cli_args
        flag = "--" + field.replace("_", "-")
        opts.add(flag)
        if _bool_field(ann):
            opts.add("--no-" + flag[2:])
    lits = _literal_aliases(_tree(config / "cache.py"))
    values = [f"--kv-cache-dtype={v}" for v in lits["CacheDType"]]
    q = _literal_aliases(_tree(root / "vllm/model_executor/layers/quantization/__init__.py"))
    values += [f"--quantization={v}" for v in q["QuantizationMethods"]]
    par = _literal_aliases(_tree(config / "parallel.py"))
    values += [f"--distributed-executor-backend={v}" for v in par["DistributedExecutorBackend"]]
    kvt = _tree(config / "kv_transfer.py")
    values += [f"kv_transfer_config.{k}" for k in _class_fields(kvt, "KVTransferConfig")]
    values += [f"kv_role={v}" for v in _literal_aliases(kvt)["KVRole"]]
    factory = _tree(root / "vllm/distributed/kv_transfer/kv_connector/factory.py")
    for node in ast.walk(factory):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "register_connector" and node.args
                and isinstance(node.args[0], ast.Constant)):
            values.append(f"kv_connector={node.args[0].value}")
    sources = ["vllm/engine/arg_utils.py (EngineArgs.add_cli_args, AsyncEngineArgs.add_cli_args)",
               "vllm/entrypoints/openai/cli_args.py (make_arg_parser, FrontendArgs)",
               "vllm/config/*.py (field types: bool -> --no-<flag>; CacheDType, DistributedExecutorBackend, "
               "KVTransferConfig, KVRole)",
               "vllm/model_executor/layers/quantization/__init__.py (QuantizationMethods)",
               "vllm/distributed/kv_transfer/kv_connector/factory.py (registered connectors)"]
    return sorted(opts) + sorted(set(values)), sources


def sglang_options(root: Path) -> tuple[list[str], list[str]]:
    path = root / "sglang/srt/server_args.py"
    tree = _tree(path)
    lists: dict[str, list[str]] = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.List)):
            lists[node.targets[0].id] = [e.value for e in node.value.elts
                                         if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "add_cli_args")
    opts: set[str] = set()
    values: set[str] = set()
    for node in ast.walk(fn):
        if not _is_add_argument(node):
            continue
        names = _option_strings(node)
        opts.update(names)
        for k in node.keywords:
            if k.arg != "choices":
                continue
            if isinstance(k.value, ast.List):
                choices = [e.value for e in k.value.elts if isinstance(e, ast.Constant)]
            elif isinstance(k.value, ast.Name):
                choices = lists.get(k.value.id, [])
            else:
                choices = []
            for n in names:
                if n.startswith("--"):
                    values.update(f"{n}={c}" for c in choices if isinstance(c, str))
    sources = ["sglang/srt/server_args.py (ServerArgs.add_cli_args; choices= lists)"]
    return sorted(opts) + sorted(values), sources


EXTRACTORS = {"vllm": vllm_options, "sglang": sglang_options}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] not in EXTRACTORS:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    engine, root, version = argv[0], Path(argv[1]), argv[2]
    options, sources = EXTRACTORS[engine](root)
    lines = [f"# {engine} {version}: command-line options (and the values/config keys pdplan export checks),",
             f"# extracted by benchmarks/extract_engine_options.py from the {engine} {version} source:"]
    lines += [f"#   {s}" for s in sources]
    lines += ["# One option per line: --flag, --flag=value (an allowed value), key paths of JSON configs."]
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"{engine}-{version}.txt"
    out.write_text("\n".join(lines + options) + "\n", encoding="utf-8")
    print(f"{out}: {len(options)} options")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
