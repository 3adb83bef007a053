"""Write one benchmark's figures into its own section of ``results/benchmarks.md``.

Every benchmark script takes ``--write`` and then calls ``write_section(name, text)``:
the text replaces what lies between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``
(appended at the end when the section is new), so each script refreshes only its own
figures. ``machine()`` is the header every section starts with. The file is replaced
atomically (temporary name, then rename): a crash never leaves it half written.
"""
from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results" / "benchmarks.md"
TITLE = ("# Benchmarks\n\nFigures printed by the scripts in `benchmarks/` and written here with `--write`; "
         "each section names its command. Ratios are measured side by side in one run.\n")


def machine() -> str:
    """One line: date, commit, CPU count and model, Python, numpy/numba/ray versions, load."""
    import numba
    import numpy
    try:
        import ray
        ray_v = ray.__version__
    except ImportError:
        ray_v = "-"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=RESULTS.parent).stdout.strip() or "?"
    except OSError:
        commit = "?"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{time.strftime('%Y-%m-%d %H:%M')}, commit {commit}, {os.cpu_count()} cores ({cpu}), "
            f"Python {platform.python_version()}, numpy {numpy.__version__}, numba {numba.__version__}, "
            f"ray {ray_v}, load average {load:.2f} at the start")


def write_section(name: str, text: str, path: Path = RESULTS) -> Path:
    """Replace (or append) section ``name`` of ``path`` with ``text``; atomic."""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    old = path.read_text() if path.exists() else TITLE
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    new = pattern.sub(lambda _: block, old) if pattern.search(old) else old.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new)
    os.replace(tmp, path)
    return path
