"""Readable snapshot mismatches: which screen lines differ, as text with their styles.

pytest-textual-snapshot writes its report to an HTML file on the machine that ran the tests; a
CI log only says "mismatched". ``explain(expected_svg, actual_svg)`` turns the two SVGs into the
few lines that differ, so a failure on another machine can be read from its log alone.
"""

from __future__ import annotations

import html
import re

_TEXT = re.compile(r'<text class="([^"]+)"[^>]*clip-path="url\(#[\w-]*line-(\d+)\)"[^>]*>([^<]*)</text>')
_RULE = re.compile(r"\.([\w-]+)\s*\{\s*([^}]*)\}")


def screen_lines(svg: str) -> dict[int, str]:
    """Each screen line as its text, each run tagged with its resolved style: ``[fill: #fff]text``."""
    styles = {name.split("-", 1)[-1]: rule.strip() for name, rule in _RULE.findall(svg)}
    lines: dict[int, list[str]] = {}
    for cls, line, text in _TEXT.findall(svg):
        style = styles.get(cls.split("-", 1)[-1], cls)
        lines.setdefault(int(line), []).append(f"[{style}]{html.unescape(text)}")
    return {n: "".join(runs) for n, runs in lines.items()}


def explain(expected_svg: str, actual_svg: str, most: int = 8) -> str:
    """The lines that differ between two screenshots (at most ``most``), expected above actual."""
    want, got = screen_lines(expected_svg), screen_lines(actual_svg)
    out = []
    for n in sorted(set(want) | set(got)):
        if want.get(n) != got.get(n):
            out.append(f"line {n}:\n  expected {want.get(n)!r}\n  actual   {got.get(n)!r}")
    if not out:
        return "the screen text and styles are the same (the difference is outside the text runs)"
    return "\n".join(out[:most]) + (f"\n... and {len(out) - most} more lines" if len(out) > most else "")
