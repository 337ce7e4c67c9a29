"""Every command and option of `anxin` has help text, and the README mentions every command."""

from __future__ import annotations

import argparse

from gateway.cli import build_parser
from tests.conftest import ROOT, run_cli


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield (*path, name), helps.get(name), sub
                yield from _walk(sub, (*path, name))


def test_every_command_and_option_has_help() -> None:
    missing = []
    for path, help_text, sub in _walk(build_parser()):
        if not help_text:
            missing.append(" ".join(path))
        for action in sub._actions:
            if action.option_strings and not action.help and action.dest != "help":
                missing.append(f"{' '.join(path)} {action.option_strings[0]}")
    assert not missing, f"commands or options without help: {missing}"


def test_readme_documents_every_top_level_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = {path[0] for path, _, _ in _walk(build_parser())}
    undocumented = sorted(c for c in commands if f"anxin {c}" not in readme)
    assert not undocumented, f"README does not mention: {undocumented}"


def test_version_and_help_run() -> None:
    out = run_cli("--version")
    assert out.returncode == 0
    assert out.stdout.startswith("anxin ")
    assert run_cli().returncode == 2
