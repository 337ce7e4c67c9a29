"""Regenerate the README's config reference from the code (the test in tests/test_readme.py checks it)."""

from pathlib import Path

from gateway.config import reference_markdown

START, END = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"
readme = Path(__file__).resolve().parent.parent / "README.md"
text = readme.read_text(encoding="utf-8")
a, b = text.index(START) + len(START), text.index(END)
readme.write_text(text[:a] + reference_markdown() + text[b:], encoding="utf-8")
