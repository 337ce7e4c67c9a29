"""The README's generated parts are current, and its first commands are the ones CI runs."""

from __future__ import annotations

import re

from gateway.config import reference_markdown
from tests.conftest import ROOT

START, END = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"


def test_config_reference_matches_code() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    current = readme[readme.index(START) + len(START) : readme.index(END)]
    assert current == reference_markdown(), (
        "README config reference is stale: run `python -m gateway config reference` and paste it"
    )


def test_readme_opens_with_demo_and_test_commands_that_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```sh\n(.*?)```", readme, re.S)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["scripts/demo.sh", "scripts/test.sh"]
    for cmd in commands:
        assert (ROOT / cmd).stat().st_mode & 0o111, f"{cmd} is not executable"
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
