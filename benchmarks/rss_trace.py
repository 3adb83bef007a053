"""Where a training run's resident memory goes: RSS over time with what every thread was doing.

    python benchmarks/rss_trace.py OUT.json -- runtime=local model=mnist_300 logging=default data.n_train=3000 ...
    python benchmarks/rss_trace.py --show OUT.json

``RSS_TRACE_MIB`` (default 3) sets the change in MiB that makes a record.

Runs ``distspike-train`` with the given overrides in this process, with a thread that reads
``/proc/self/status`` every 10 ms and, whenever ``VmRSS`` moved by more than 3 MiB, records it
(with ``RssAnon``/``RssFile``) and the top frames of every other thread's stack. ``--show``
prints one line per record: RSS, anonymous and file-backed MiB, and each busy thread's frames,
innermost first. At exit ``OUT.json`` also holds ``VmHWM`` (the peak) and whether pandas was
imported. A diagnostic, not a benchmark (the sampling thread costs little but is not free); the
peak of record is ``bench_rss.py``'s.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback

_IDLE = ("threading.py:3", "thread.py:8", "queue.py")  # frames of a thread that waits


def rss() -> dict:
    """``VmRSS``, ``VmHWM``, ``RssAnon``, ``RssFile`` of this process, MiB."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM", "RssAnon", "RssFile")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) / 1024
    return out


def frames(frame) -> list[str]:
    return [f"{os.path.basename(s.filename)}:{s.lineno}:{s.name}" for s in traceback.extract_stack(frame)[-40:]
            if "frozen" not in s.filename]


def sampler(records: list) -> None:
    last = 0.0
    while True:
        time.sleep(0.01)
        now = rss()
        if abs(now["VmRSS"] - last) > float(os.environ.get("RSS_TRACE_MIB", 3)):
            names = {t.ident: t.name for t in threading.enumerate()}
            stacks = {names.get(k, str(k)): frames(f) for k, f in sys._current_frames().items()
                      if k != threading.get_ident()}
            records.append((time.time(), now, stacks))
            last = now["VmRSS"]


def show(path: str) -> None:
    data = json.load(open(path))
    print(f"# peak {data['final']['VmHWM']:.0f} MiB, pandas imported: {data['pandas']}")
    for _, r, stacks in data["samples"]:
        busy = [f"[{name}] " + " < ".join(reversed(s))[:250] for name, s in stacks.items()
                if s and not s[-1].startswith(_IDLE)]
        print(f"{r['VmRSS']:.0f} {r['RssAnon']:.0f} {r['RssFile']:.0f} " + " || ".join(busy))


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--show":
        show(sys.argv[2])
        return 0
    if len(sys.argv) < 3 or sys.argv[2] != "--":
        raise SystemExit(__doc__.splitlines()[2].strip())
    out, overrides = sys.argv[1], sys.argv[3:]
    records: list = []
    threading.Thread(target=sampler, args=(records,), daemon=True, name="rss-sampler").start()

    def dump() -> None:
        with open(out, "w") as f:
            json.dump({"final": rss(), "pandas": "pandas" in sys.modules, "samples": records}, f)

    sys.argv = ["distspike-train", *overrides]
    from distspike.train import main as train
    try:
        rc = train()
    except SystemExit as ex:
        rc = ex.code
    dump()
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
