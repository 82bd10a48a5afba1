"""The house rules a newcomer relies on: small modules, a short top level (import contracts
are `lint-imports`' job, run by the test command)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 700
ALLOWED_LONGER = {"stockctl/exchange/engine.py"}  # the engine's matching loop
MAX_TOP_LEVEL = 8


def test_no_module_is_over_700_lines_but_the_engine() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for d in ("stockctl", "daemons", "tui")
        for p in (ROOT / d).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert set(long) <= ALLOWED_LONGER, {k: v for k, v in long.items() if k not in ALLOWED_LONGER}


def test_the_stockctl_top_level_holds_at_most_8_modules() -> None:
    modules = sorted(p.name for p in (ROOT / "stockctl").glob("*.py"))
    assert len(modules) <= MAX_TOP_LEVEL, modules


def test_every_module_opens_with_a_docstring() -> None:
    import ast

    bare = [
        str(p.relative_to(ROOT))
        for d in ("stockctl", "daemons", "tui")
        for p in (ROOT / d).rglob("*.py")
        if p.name != "__main__.py" and ast.get_docstring(ast.parse(p.read_text())) is None
    ]
    assert not bare, bare
