"""Paper Table 3: ablations of the spiking net on MNIST 784-200-200-10, 4 epochs.

Protocol: each variant is ``distspike-train experiment=table3_<variant>`` (one setting
changed from the baseline: BFS routing, SGD, no smooth updates, backward quantizers
never reset, T = 10; hold_error on unless stated), ``runtime=local``, seeds 1234, 1235 and
1236 (``seed=``: weight initialisation and random resets; same data order), online
training over the official 60k training images in file order, test error on the
official 10k test set after the last epoch, training error on the first 10k training
images (``eval_train=10000``). Runs live in ``<runs>/table3/table3_<variant>/`` (seed 1234)
and ``<runs>/table3/table3_<variant>_seed<seed>/``.
Two variants are not in the paper: ``fsgd_after_update``, FSGD with
``training.column_read=after_update`` (the order in which the authors' depth-first engine
reads a column; docs/semantics.md, "Why the authors' depth-first FSGD fails"), and ``dfs_fsgd``,
depth-first routing with FSGD in our default order (semantics.md reports 87-88 % for it
in the authors' engine).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

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
# Variants run after all others: un-held depth-first (once the slowest, ~60 samples/s event by event;
# now one compiled call per sample, kernels/depth.py, about as fast as the others)
LAST = ("dfs_unheld",)
SEEDS = (1234, 1235, 1236)
COLUMNS = ("variant=variant,setting=setting (change from baseline),epochs=epochs,seeds=seeds,"
           "test_error=test % (mean ± sd),test_per_seed=test % per seed,paper_test_error=paper test %,gap=gap,"
           "train_error=train % (first 10k; mean),wall_time_s=wall s (sum)")
SEED_COLUMNS = ("variant=variant,seed=seed,epochs=epochs,test_error=test %,train_error=train % (first 10k),"
                "wall_time_s=wall s")


def seed_run_dir(runs: Path, variant: str, seed: int) -> Path:
    """``<runs>/table3/table3_<variant>`` for seed 1234 (the earlier single-seed runs), else ``..._seed<seed>``."""
    return run_dir(runs, "table3", f"table3_{variant}" + ("" if seed == SEEDS[0] else f"_seed{seed}"))


def seed_row(variant: str, seed: int, path: Path, command: str) -> dict:
    """One (variant, seed) row from a completed run directory."""
    m = read_run(path)
    return {"variant": variant, "seed": seed, "experiment": f"table3_{variant}", "epochs": m["epochs"],
            "test_error": m["final_test_error"], "train_error": m["final_train_error"],
            "samples_per_s": round(m["samples_per_s"], 1), "wall_time_s": round(m["wall_time_s"]),
            "command": command}


def table3(runs: Path, out: Path, variants=tuple(VARIANTS), epochs: int = EPOCHS, train: bool = True,
           overrides=(), seeds=SEEDS, command: str = "") -> list[dict]:
    """Run (or reuse) every variant for every seed (one run at a time, variant by variant);
    write ``out/table3_seeds.csv`` (one row per variant and seed), ``out/table3_ablation.csv``
    (mean and sd over the seeds present) and ``out/table3_curves.csv`` (every epoch); returns
    the per-seed rows written now.

    ``train=False`` only collects completed runs (others are listed as missing). Rows of
    other (variant, seed) pairs already in the CSVs are kept, so a command for a subset
    refreshes just its rows. ``overrides`` go to every new run (e.g. a small dataset for the
    smoke test); a seed is the run's ``seed=`` (weight initialisation and the backward
    quantizers' random resets; the data order stays the official file order).
    """
    rows, curves = [], []
    for v in [v for v in variants if v not in LAST] + [v for v in variants if v in LAST]:
        for seed in seeds:
            path = seed_run_dir(runs, v, seed)
            if ensure_run(path, f"table3_{v}", epochs, (*RUN_OVERRIDES, *overrides, f"seed={seed}"), train):
                rows.append(seed_row(v, seed, path, command))
                curves += [{"variant": v, "seed": seed, "epoch": int(c["epoch"]), "train_error": c["train_error"],
                            "test_error": c["test_error"]} for c in read_run(path)["curve"]]
            else:
                print(f"table3: {path} is not complete yet; left out")
    if rows:
        per_seed = merge_rows(out / "table3_seeds.csv", rows)
        write_csv(per_seed, out / "table3_seeds.csv")
        write_csv(merge_rows(out / "table3_curves.csv", curves), out / "table3_curves.csv")
        write_csv(summarize(per_seed), out / "table3_ablation.csv")
    return rows


def summarize(per_seed: list[dict]) -> list[dict]:
    """One row per variant: mean ± sd (sample sd, n-1; no sd for one seed) of the final errors over its
    seeds, in table order.

    A seed whose run has fewer epochs than the others is not averaged with them: each
    variant's row uses the seeds at its largest epoch count.
    """
    out = []
    for v in dict.fromkeys(r["variant"] for r in per_seed):
        rs = [r for r in per_seed if r["variant"] == v]
        top = max(int(r["epochs"]) for r in rs)
        rs = [r for r in rs if int(r["epochs"]) == top]
        test = np.array([float(r["test_error"]) for r in rs])
        train = np.array([float(r["train_error"]) for r in rs])
        setting, paper = VARIANTS[v]
        mean = float(test.mean())
        out.append({"variant": v, "setting": setting, "epochs": top, "seeds": ";".join(r["seed"] for r in rs),
                    "test_error": f"{mean:.2f} ± {_sd(test):.2f}" if len(rs) > 1 else f"{mean:.2f}",
                    "test_mean": round(mean, 3), "test_sd": round(_sd(test), 3),
                    "test_per_seed": ";".join(f"{x:.2f}" for x in test), "paper_test_error": paper,
                    "gap": "" if paper == "" else round(mean - paper, 2),
                    "train_error": round(float(train.mean()), 3),
                    "wall_time_s": sum(int(float(r["wall_time_s"])) for r in rs),
                    "command": ";".join(dict.fromkeys(r["command"] for r in rs))})
    return out


def _sd(x: np.ndarray) -> float:
    return float(x.std(ddof=1)) if len(x) > 1 else 0.0


def merge_rows(path: Path, new: list[dict]) -> list[dict]:
    """``new`` rows replacing those of the same (variant, seed) in ``path``; others kept, table order.

    So a command for some variants (``--variants fsgd,smooth_fsgd``) or seeds refreshes just
    their rows. Rows of variants no longer in ``VARIANTS`` are dropped; rows without a seed
    (written before seeds were recorded) count as seed 1234.
    """
    def key(r):
        return r["variant"], str(r.get("seed") or SEEDS[0]), str(r.get("epoch", ""))
    done = {key(r) for r in new}
    old = [r for r in read_csv(path) if key(r) not in done] if path.exists() else []
    order = {v: k for k, v in enumerate(VARIANTS)}
    keep = [{k: str(v) for k, v in {**r, "seed": r.get("seed") or SEEDS[0]}.items()}
            for r in old + new if r["variant"] in order]
    return sorted(keep, key=lambda r: (order[r["variant"]], int(r["seed"]), int(r.get("epoch") or 0)))
