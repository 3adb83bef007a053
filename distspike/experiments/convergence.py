"""Paper Fig. 1 (herding vs stochastic sampling) and Fig. 4 (spiking net -> ReLU net).

    python -m distspike.experiments.convergence [--out results] [--quick]

Writes ``fig1_reconstruction.csv/.png`` and ``fig4_mlp_convergence.csv/.png`` and prints
the fitted log-log slopes. ``--quick`` uses small sizes (the CI smoke run).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from distspike.analysis.convergence import herding_error, loglog_slope, relative_errors, sampling_error
from distspike.experiments.common import write_csv

FIG1_T = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]
FIG4_T = [1, 3, 10, 30, 100, 300, 1000]


def fig1(n_vectors: int, dim: int, steps: list[int], seed: int = 0) -> list[dict]:
    """Mean L1 reconstruction error of ``n_vectors`` vectors ``v ~ U(-1, 1)^dim`` for each T."""
    rng = np.random.default_rng(seed)
    vs = rng.uniform(-1, 1, (n_vectors, dim))  # (n, d)
    return [{"T": T, "herding": float(np.mean([herding_error(v, T) for v in vs])),
             "sampling": float(np.mean([sampling_error(v, T, rng) for v in vs]))} for T in steps]


def fig4(sizes: tuple[int, ...], steps: list[int], seed: int = 1) -> list[dict]:
    """Relative error per layer of spike counts/T against the ReLU net (weights ~ N(0, 0.1^2))."""
    rng = np.random.default_rng(seed)
    weights = [rng.normal(0, 0.1, (a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    x = rng.uniform(0, 1, sizes[0])  # (n0,) a random input vector
    rows = []
    for T in steps:
        errs = relative_errors(weights, x, T)
        rows.append({"T": T, **{f"layer{l + 1}": e for l, e in enumerate(errs)}})
    return rows


def plot(rows: list[dict], path: Path, title: str, ylabel: str) -> dict[str, float]:
    """Log-log plot of every column against T; returns the fitted slopes (T >= 10)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    T = np.array([r["T"] for r in rows])
    slopes = {}
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for key in (k for k in rows[0] if k != "T"):
        y = np.array([r[key] for r in rows])
        slopes[key] = loglog_slope(T[T >= 10], y[T >= 10])
        ax.loglog(T, y, "o-", ms=3, label=f"{key} (slope {slopes[key]:.2f})")
    ax.set(xlabel="T (time steps)", ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return slopes


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Reproduce paper Fig. 1 and Fig. 4")
    ap.add_argument("--out", type=Path, default=Path("results"))
    ap.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.quick:
        r1, r4 = fig1(5, 20, [1, 10, 100]), fig4((50, 30, 20, 10), [10, 100])
    else:
        r1, r4 = fig1(100, 100, FIG1_T), fig4((784, 500, 500, 10), FIG4_T)
    write_csv(r1, args.out / "fig1_reconstruction.csv")
    write_csv(r4, args.out / "fig4_mlp_convergence.csv")
    s1 = plot(r1, args.out / "fig1_reconstruction.png", "Fig. 1: L1 error of v vs spike counts / T",
              "mean ||v - counts/T||_1")
    s4 = plot(r4, args.out / "fig4_mlp_convergence.png", "Fig. 4: spiking 784-500-500-10 vs ReLU",
              "||counts/T - relu|| / ||relu||")
    print("Fig. 1 slopes:", {k: round(v, 3) for k, v in s1.items()})
    print("Fig. 4 slopes:", {k: round(v, 3) for k, v in s4.items()})


if __name__ == "__main__":
    main()
