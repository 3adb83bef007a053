"""Paper Table 3: ablations of the spiking net on MNIST 784-200-200-10, 4 epochs.

Protocol: each variant is ``distspike-train experiment=table3_<variant>`` (one setting
changed from the baseline: BFS routing, SGD, no smooth updates, backward quantizers
never reset, T = 10; hold_error on unless stated), ``runtime=local``, seed 1234, online
training over the official 60k training images in file order, test error on the
official 10k test set after the last epoch, training error on the first 10k training
images (``eval_train=10000``). Runs live in ``<runs>/table3/table3_<variant>/``.
Two variants are not in the paper: ``fsgd_after_update``, FSGD with
``training.column_read=after_update`` (the order in which the authors' depth-first engine
reads a column; docs/semantics.md, "Why the authors' depth-first FSGD fails"), and ``dfs_fsgd``,
depth-first routing with FSGD in our default order (semantics.md reports 87-88 % for it
in the authors' engine).
"""
from __future__ import annotations

from pathlib import Path

from distspike.experiments.common import ensure_run, read_csv, read_run, run_dir, write_csv

EPOCHS = 4
RUN_OVERRIDES = ("eval_train=10000",)
# variant -> (what changes from the baseline, published test error %)
VARIANTS = {
    "baseline": ("BFS, SGD, no smooth, no-reset, T=10, hold_error on", 3.38),
    "fsgd": ("fractional updates (FSGD)", 3.10),
    "dfs": ("depth-first routing, hold_error on", 81.47),
    "dfs_unheld": ("depth-first routing, hold_error off", 81.47),
    "smooth": ("smooth gradients", 2.85),
    "smooth_fsgd": ("smooth gradients + FSGD", 3.07),
    "fsgd_after_update": ("not in the paper: FSGD, column read after its own update", ""),
    "dfs_fsgd": ("not in the paper: depth-first + FSGD, hold_error on", ""),
    "zero_reset": ("backward quantizers reset to 0", 87.87),
    "random_reset": ("backward quantizers reset to U(-1/2, 1/2)", 3.15),
    "t5": ("T = 5 time steps", 4.41),
    "t20": ("T = 20 time steps", 2.65),
}
# Variants run for fewer epochs than the table's 4, and why (their rows say so in "epochs").
SHORT = {"dfs_unheld": 1}  # event-by-event depth-first: ~30 samples/s, 4 epochs would take ~9 h here
COLUMNS = ("variant=variant,setting=setting (change from baseline),epochs=epochs,test_error=test %,"
           "paper_test_error=paper test %,train_error=train % (first 10k),wall_time_s=wall s")


def row(variant: str, path: Path) -> dict:
    """One table row from a completed run directory."""
    m = read_run(path)
    setting, paper = VARIANTS[variant]
    return {"variant": variant, "experiment": f"table3_{variant}", "setting": setting, "epochs": m["epochs"],
            "test_error": m["final_test_error"], "paper_test_error": paper,
            "train_error": m["final_train_error"], "samples_per_s": round(m["samples_per_s"], 1),
            "wall_time_s": round(m["wall_time_s"])}


def table3(runs: Path, out: Path, variants=tuple(VARIANTS), epochs: int = EPOCHS, train: bool = True,
           overrides=()) -> list[dict]:
    """Run (or reuse) every variant; write ``out/table3_ablation.csv`` (final epoch) and
    ``out/table3_curves.csv`` (every epoch); returns the table rows.

    ``train=False`` only collects completed runs (others are listed as missing).
    ``overrides`` go to every new run (e.g. a small dataset for the smoke test).
    """
    rows, curves = [], []
    for v in variants:
        path = run_dir(runs, "table3", f"table3_{v}")
        n = min(epochs, SHORT.get(v, epochs))
        if ensure_run(path, f"table3_{v}", n, (*RUN_OVERRIDES, *overrides), train):
            rows.append(row(v, path))
            curves += [{"variant": v, "epoch": int(c["epoch"]), "train_error": c["train_error"],
                        "test_error": c["test_error"]} for c in read_run(path)["curve"]]
        else:
            print(f"table3: {path} is not complete yet; left out")
    if rows:
        write_csv(merge_rows(out / "table3_ablation.csv", rows), out / "table3_ablation.csv")
        write_csv(merge_rows(out / "table3_curves.csv", curves), out / "table3_curves.csv")
    return rows


def merge_rows(path: Path, new: list[dict]) -> list[dict]:
    """``new`` rows replacing those of the same variants in ``path``; others kept, table order.

    So a command for some variants (``--variants fsgd,smooth_fsgd``) refreshes just
    their rows. Rows of variants no longer in ``VARIANTS`` are dropped.
    """
    done = {r["variant"] for r in new}
    old = [r for r in read_csv(path) if r["variant"] not in done] if path.exists() else []
    order = {v: k for k, v in enumerate(VARIANTS)}
    keep = [r for r in old + new if r["variant"] in order]
    return sorted(keep, key=lambda r: (order[r["variant"]], int(r.get("epoch", 0))))
