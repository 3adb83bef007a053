#!/usr/bin/env python3
"""Print the README's quick-start commands, one per line, exactly as the README gives them.

The quick start is the first fenced ``bash`` block of README.md. ``.ci/run`` runs these
lines one after the other in a fresh virtual environment, so CI and the README cannot
drift apart (``tests/test_ci.py`` checks what the block holds).

    python3 .ci/readme_commands.py [README.md]
"""
from __future__ import annotations

import sys
from pathlib import Path


def quick_start(text: str) -> list[str]:
    """The non-empty lines of the first ```bash block of ``text``; ValueError if there is none."""
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "```bash")
        end = next(i for i in range(start + 1, len(lines)) if lines[i].strip() == "```")
    except StopIteration:
        raise ValueError("README.md has no complete ```bash block") from None
    return [line.strip() for line in lines[start + 1:end] if line.strip()]


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent / "README.md"
    try:
        commands = quick_start(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as ex:
        print(f"readme_commands.py: {path}: {ex}", file=sys.stderr)
        return 2
    print("\n".join(commands))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
