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
