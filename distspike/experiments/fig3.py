"""Paper Fig. 3 (early guessing): test error against cumulative operations as the spiking
net runs more time steps.

Protocol. Three weight sets of 784-300-300-10 (Table 2): the final weights of the spiking
SGD and spiking FSGD runs (``<runs>/table2/table2_spiking_{sgd,fsgd}``, newest checkpoint)
and of the ReLU MLP trained by ``table2`` (the live-seed net, saved under
``<runs>/table2/relu_mlp/``). Each runs as a spiking net for ``t = 1..t_max`` steps on the
first ``n_test`` official MNIST test images (the prediction after ``t`` steps is the
argmax of the summed output pre-activations); the operation counts are those of
``distspike.analysis.early_guess`` (additions of the event-driven forward pass, mean per
image, cumulative). The ReLU net's own error and its dense and sparse costs per image
(one multiply-add = one op) are the reference points. "hidden" columns count only the
layers after the first weight layer (the paper's right panel).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from distspike.analysis.early_guess import early_guess_curve, relu_costs
from distspike.experiments.common import (load_run_data, plot_setup, read_csv, read_run, run_config, run_dir,
                                          run_weights, write_csv)

T_MAX = 32
SUMMARY_T = (1, 2, 3, 4, 6, 8, 10, 16, 32)
COLUMNS = ("net=weights trained as,t=t,test_error=test %,ops_all=ops/image (all layers),"
           "ops_hidden=ops/image (layers >= 2)")
COST_COLUMNS = ("net=net,test_error=test %,dense_all=dense ops,sparse_all=sparse ops,"
                "dense_hidden=dense ops (layers >= 2),sparse_hidden=sparse ops (layers >= 2)")


def relu_weights(runs: Path) -> tuple[list[np.ndarray], str]:
    """The newest saved ReLU weights of Table 2 and their file name."""
    files = sorted(run_dir(runs, "table2", "relu_mlp").glob("weights_seed*_epoch*.npz"),
                   key=lambda p: int(p.stem.split("epoch")[1]))
    if not files:
        raise FileNotFoundError("no ReLU weights under <runs>/table2/relu_mlp: run the table2 command first")
    with np.load(files[-1]) as z:
        return [z[f"arr_{i}"] for i in range(len(z.files))], files[-1].name


def fig3(runs: Path, out: Path, t_max: int = T_MAX, n_test: int | None = None) -> list[dict]:
    """Write ``fig3_early_guess.csv`` (every t), ``fig3_early_guess_summary.csv``, ``fig3_relu_costs.csv``
    and ``fig3_early_guess.png``; returns the curve rows."""
    paths = {r: run_dir(runs, "table2", f"table2_spiking_{r}") for r in ("sgd", "fsgd")}
    cfg = run_config(paths["fsgd"])
    ds = load_run_data(cfg)
    X, y = ds.x_test[:n_test], ds.y_test[:n_test]
    rw, rname = relu_weights(runs)
    relu_tag = rname[len("weights_"):-len(".npz")].replace("_", ", ").replace("epoch", "ep ")  # "seed1236, ep 5"
    nets = {f"spiking SGD ({read_run(paths['sgd'])['epochs']} ep)": run_weights(paths["sgd"]),
            f"spiking FSGD ({read_run(paths['fsgd'])['epochs']} ep)": run_weights(paths["fsgd"]),
            f"ReLU-trained weights ({relu_tag})": rw}
    rows = [{"net": name, **r} for name, w in nets.items() for r in early_guess_curve(w, X, y, t_max)]
    from distspike.relu import ReluMLP
    relu_err = ReluMLP.from_weights(rw).error(X, y)
    costs = [{"net": f"ReLU MLP forward pass ({relu_tag})", "test_error": relu_err,
              **relu_costs(rw, X)}]
    write_csv(rows, out / "fig3_early_guess.csv")
    write_csv([r for r in rows if r["t"] in SUMMARY_T or r["t"] == t_max], out / "fig3_early_guess_summary.csv")
    write_csv(costs, out / "fig3_relu_costs.csv")
    plot_fig3(rows, costs[0], out / "fig3_early_guess.png")
    return rows


def plain_log_ticks(ax) -> None:
    """Log axes labelled as plain numbers at 1, 2, 5 x 10^k (only 10^k over more than two decades),
    minor ticks unlabelled, so that labels never overlap."""
    import math

    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        decades = math.log10(hi / lo) if lo > 0 and hi > lo else 0.0
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 2 else (1.0,)))
        axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())


def replot(out: Path) -> Path:
    """Redraw ``fig3_early_guess.png`` from the CSVs ``fig3`` wrote into ``out`` (no runs needed)."""
    rows = [{**r, "t": int(r["t"]), **{k: float(r[k]) for k in ("test_error", "ops_all", "ops_hidden")}}
            for r in read_csv(out / "fig3_early_guess.csv")]
    cost = {k: (v if k == "net" else float(v)) for k, v in read_csv(out / "fig3_relu_costs.csv")[0].items()}
    path = out / "fig3_early_guess.png"
    plot_fig3(rows, cost, path)
    return path


def plot_fig3(rows: list[dict], cost: dict, path: Path) -> None:
    """Left: all layers; right: layers >= 2. Lines: spiking nets over t; dots: ReLU dense / sparse."""
    plt = plot_setup()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, part in zip(axes, ("all", "hidden")):
        for net in dict.fromkeys(r["net"] for r in rows):
            pts = [r for r in rows if r["net"] == net]
            ax.plot([r[f"ops_{part}"] / 1e6 for r in pts], [r["test_error"] for r in pts], "-", label=net,
                    color="black" if net.startswith("ReLU") else None)  # the paper's black line
        for kind, marker in (("dense", "o"), ("sparse", "s")):
            ax.plot(cost[f"{kind}_{part}"] / 1e6, cost["test_error"], marker, color="tab:blue", ms=7,
                    label=f"ReLU net, {kind} forward pass")
        ax.set(xscale="log", yscale="log", xlabel="operations per image (millions)", ylabel="% test error",
               title="all layers" if part == "all" else "layers after the first weight layer")
        plain_log_ticks(ax)
        ax.legend(fontsize=7)
    fig.suptitle("Fig. 3: early guessing, MNIST 784-300-300-10 (spiking net run for t = 1..%d steps)"
                 % max(r["t"] for r in rows), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
