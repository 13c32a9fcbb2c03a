"""Generate docs/cli.md from the commands' own ``--help`` (``python -m planner.clidoc``).

A test compares the file with this output, so the reference cannot go stale and every command
must have help text.
"""

from __future__ import annotations

import click

from planner.cli import cli

HEADER = """# CLI reference

Generated from `pdplan --help` by `python -m planner.clidoc > docs/cli.md`; a test fails when it
is stale. Durations accept `200ms`, `0.2s` or `200` (milliseconds); sizes accept `2048` or `2k`.
Exit codes: 0 success, 2 bad input, 3 no deployment meets the SLO, 1 a bug.

Shell completion (click's built-in): add one line to your shell's start-up file.

```
eval "$(_PDPLAN_COMPLETE=bash_source pdplan)"      # ~/.bashrc
eval "$(_PDPLAN_COMPLETE=zsh_source pdplan)"       # ~/.zshrc
_PDPLAN_COMPLETE=fish_source pdplan | source       # ~/.config/fish/completions/pdplan.fish
```

It completes commands and options, and the catalog ids of `--model`, `--gpu` (the last id of
`--gpu a,b`), `--engine`, `--link`, `--kv-transfer`, `--draft-model` and `catalog show NAME`,
including a `--catalog DIR`'s own entries.

Output: tables for people, laid out for the terminal's width (80 columns and up: cells that do not
fit fold onto the next line, never cut short; `validate` and `kv` leave out their least needed
columns under 100). `--format json` (= `--json`) or `--format yaml` prints one document on stdout
and nothing else there (see Documents below). `calibrate` takes `--json` only: its `--format`
names the result files' format. `recommend -o -` and `estimate -o -` print the plan's YAML
alone on stdout; `-o FILE` writes it with the mode a new file gets under your umask (0644 under
the usual 022). Progress bars (simulate, recommend --verify, whatif, calibrate, validate) go to
stderr, only on a terminal, never with a document format, and only after a second.

Documents: every command's `--json` / `--format json|yaml` document has the same shape,

```
{"pdplan_version": "0.1.0", "command": "recommend", "schema_version": 1, "result": {...}}
```

where `result` is the command's own document: `plan`, `alternatives` and `search` (recommend);
`plan` (estimate, evaluate); `plan` and `simulation` (simulate); `axes` and `rows` (whatif);
`target` and `files` (export); `models`, `gpus`, `links` or the one entry shown (catalog); the
report of kv, step, timeline, validate and calibrate. A `plan` is the plan file's document, with
its own `schema_version` (the plan schema, unchanged by this envelope); a saved document of
estimate, recommend, evaluate or simulate loads as a plan file. An error has `"error":
{"message", "exit_code", ...}` in place of `result` (`evaluate --check` that misses has both;
`command` is null when no command was chosen; see docs/errors.md). Quantities carry their unit in
their key (`ttft_ms` with `p50`..`p99`, `throughput_tokens_per_s`, `bytes_per_s`, `seq_len_tokens`,
`breakdown_ms`, `column_starts_ms`); rows whose unit varies say it in `unit` (validate,
calibrate). `schema_version` (now 1) changes when this shape or a result's keys change.
"""


def _help(cmd: click.Command, path: list[str]) -> str:
    ctx = click.Context(cmd, info_name=" ".join(path), terminal_width=100, max_content_width=100,
                        help_option_names=["-h", "--help"])
    return cmd.get_help(ctx)


def render() -> str:
    parts = [HEADER, "## pdplan\n", "```", _help(cli, ["pdplan"]), "```\n"]
    for name in sorted(cli.commands):
        cmd = cli.commands[name]
        parts += [f"## pdplan {name}\n", "```", _help(cmd, ["pdplan", name]), "```\n"]
    return "\n".join(parts)


def missing_help() -> list[str]:
    return [n for n, c in cli.commands.items() if not (c.help or "").strip()]


if __name__ == "__main__":
    print(render(), end="")
