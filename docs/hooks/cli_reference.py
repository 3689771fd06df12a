"""mkdocs hook: the CLI reference page is the argument parser's own help, made at build time (never copied)."""

from __future__ import annotations

import argparse
import os

MARKER = "<!-- cli-reference -->"


def _commands(parser: argparse.ArgumentParser, prefix: str) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(prefix, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, f"{prefix} {name}")
    return found


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    from nasiam_bench.cli import build_parser

    os.environ.setdefault("COLUMNS", "110")
    sections = []
    for command, parser in _commands(build_parser(), "nasiam-bench"):
        parser.prog = command
        sections.append(f"## `{command}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
    return markdown.replace(MARKER, "\n".join(sections))
