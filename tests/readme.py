"""What the README shows, taken from the README itself, and its usage lines generated from the CLI.

- `usage_line(...)`: a command's usage as `--help` defines it (names, metavars, what is optional or repeated).
- `walk_through()`: the commands of the fenced block that follows `<!-- walk-through -->` in README.md.

`.venv/bin/python -m tests.readme` rewrites the README's generated usage lines (the commands in GENERATED)
from the CLI; tests/service/test_readme.py fails while they differ.
"""

import sys
from pathlib import Path

import typer

README = Path(__file__).resolve().parents[1] / "README.md"
# The commands whose usage lines are generated: those that make, score and hand out headshots.
GENERATED = ("score", "models", "train", "generate", "pack", "keys")
WALK_THROUGH_MARK = "<!-- walk-through -->"


def cli():
    """The `headshot` command as Typer builds it (Typer's own click classes)."""
    from service.cli import app

    return typer.main.get_command(app)


def _parameter(parameter, context) -> str | None:
    """A parameter as `--help` shows it: `--top-k K`, `[--json]`, `--reference PHOTO...`, `[--licensed PHOTO]...`."""
    if getattr(parameter, "hidden", False):
        return None
    if parameter.param_type_name == "argument":  # Typer writes `{NAME}...`; the README `NAME...`
        return " ".join(parameter.get_usage_pieces(context)).replace("{", "").replace("}", "")
    text = parameter.get_help_record(context)[0].replace("<", "").replace(">", "")  # choices: `a|b`
    if parameter.multiple:
        return f"{text}..." if parameter.required else f"[{text}]..."
    return text if parameter.required else f"[{text}]"


def _command_usage(command, context) -> str:
    if hasattr(command, "commands"):  # a group
        return " | ".join(
            _command_usage(sub, type(context)(sub, parent=context, info_name=name))
            for name, sub in command.commands.items()
        )
    parts = [context.info_name] + [
        text for parameter in command.params if (text := _parameter(parameter, context)) is not None
    ]
    return " ".join(parts)


def usage_line(name: str) -> str:
    """`headshot NAME ...`: a command's usage, or a group's subcommands joined by ` | `."""
    root = cli()
    command = root.commands[name]
    context_type = type(root.make_context("headshot", ["--help"], resilient_parsing=True))
    context = context_type(command, parent=context_type(root, info_name="headshot"), info_name=name)
    usage = _command_usage(command, context)
    if hasattr(command, "commands"):
        usage = f"{name} {usage}"
    return f"headshot {usage}"


def usage_block(text: str) -> tuple[int, int]:
    """Where the `## Command line` section's first fenced block starts and ends (line indexes, fences excluded)."""
    lines = text.splitlines()
    start = lines.index("## Command line")
    opening = next(i for i in range(start, len(lines)) if lines[i].startswith("```"))
    closing = next(i for i in range(opening + 1, len(lines)) if lines[i].startswith("```"))
    return opening + 1, closing


def readme_usage_lines(text: str) -> list[str]:
    first, end = usage_block(text)
    return text.splitlines()[first:end]


def line_for(lines: list[str], name: str) -> int:
    """The index of command NAME's line in the usage block."""
    matches = [i for i, line in enumerate(lines) if line == f"headshot {name}" or line.startswith(f"headshot {name} ")]
    if len(matches) != 1:
        raise LookupError(f"README's usage block has {len(matches)} lines for `headshot {name}`")
    return matches[0]


def with_generated_usage(text: str) -> str:
    lines = text.splitlines()
    first, _ = usage_block(text)
    block = readme_usage_lines(text)
    for name in GENERATED:
        lines[first + line_for(block, name)] = usage_line(name)
    return "\n".join(lines) + "\n"


def walk_through(text: str) -> str:
    """The shell commands of the walk-through block, as written (prompts `$ ` removed, output lines dropped)."""
    lines = text.splitlines()
    mark = lines.index(WALK_THROUGH_MARK)
    opening = next(i for i in range(mark, len(lines)) if lines[i].startswith("```"))
    closing = next(i for i in range(opening + 1, len(lines)) if lines[i].startswith("```"))
    commands: list[str] = []
    current: list[str] = []  # the lines of the command being read
    for line in lines[opening + 1 : closing]:
        if current and (current[-1].endswith("\\") or "\n".join(current).count("'") % 2 == 1):
            current.append(line)  # a continued line, or inside a quoted JSON body
        elif line.startswith("$ "):
            commands += current
            current = [line[2:]]
        else:
            commands += current  # output shown after the command
            current = []
    return "\n".join(commands + current) + "\n"


if __name__ == "__main__":
    README.write_text(with_generated_usage(README.read_text()))
    sys.stdout.write("\n".join(usage_line(name) for name in GENERATED) + "\n")
