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
from distspike.experiments.common import (done_epochs, ensure_run, load_run_data, plot_setup, read_csv, read_run,
                                          run_config, run_dir, run_weights, write_csv)
from distspike.experiments.table2 import RUN_OVERRIDES

T_MAX = 32
EPOCHS = 20  # the Table 2 nets of the figure were trained 20 epochs
# key -> (experiment, the paper's curve name); trained into <runs>/fig3/<experiment>
VARIANTS = {"regularized": ("fig3_regularized_fsgd", "Regularized Fractional"),
            "temporal": ("fig3_temporal_fsgd", "Fractional Temporal")}
REG_GRID = (0.0, 0.1, 0.01, 0.001)  # training.regularization values tried on the validation split
VAL_EPOCHS = 1
VAL_COLUMNS = ("regularization=regularization,epochs=epochs,val_error=validation error % (last 10k),"
               "train_error_first_1k=train % (first 1k),wall_time_s=wall s")
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


def validate_regularization(runs: Path, out: Path, train: bool = True, overrides=(), split: bool = True,
                            command: str = "") -> list[dict]:
    """Choose ``training.regularization`` of "Regularized Fractional" on the validation split.

    Table 2's FSGD net for ``VAL_EPOCHS`` epoch(s) on the first 50k training images with each
    value of ``REG_GRID`` (0 = plain FSGD, for reference), error on the last 10k
    (``data.options.split=validation``; ``split=False`` only for the smoke test's digits).
    Runs in ``<runs>/fig3_val/reg_<value>``; writes ``out/fig3_regularization_validation.csv``.
    """
    rows = []
    for lam in REG_GRID:
        path = run_dir(runs, "fig3_val", f"reg_{lam:g}")
        opts = ("eval_train=1000", "checkpoint.keep=0", *(("data.options.split=validation",) if split else ()),
                f"training.regularization={lam:g}", *overrides)
        if ensure_run(path, "table2_spiking_fsgd", VAL_EPOCHS, opts, train):
            m = read_run(path)
            rows.append({"regularization": lam, "epochs": m["epochs"], "val_error": m["final_test_error"],
                         "train_error_first_1k": m["final_train_error"], "wall_time_s": round(m["wall_time_s"]),
                         "command": command})
    if rows:
        write_csv(rows, out / "fig3_regularization_validation.csv")
    return rows


def variant_label(key: str, path: Path) -> str:
    """Curve label of a Fig. 3 variant run: name, its setting and epochs."""
    m, tr = read_run(path), run_config(path)["training"]
    setting = f"lambda={tr['regularization']:g}" if key == "regularized" else "ours: g_t=2(T-t)/(T+1)"
    return f"{VARIANTS[key][1]} ({setting}, {m['epochs']} ep)"


def fig3(runs: Path, out: Path, t_max: int = T_MAX, n_test: int | None = None, epochs: int = EPOCHS,
         train: bool = True, overrides=()) -> list[dict]:
    """Write ``fig3_early_guess.csv`` (every t), ``fig3_early_guess_summary.csv``, ``fig3_relu_costs.csv``
    and ``fig3_early_guess.png``; returns the curve rows.

    The Table 2 nets are used if their runs are under ``runs`` (else their rows already in
    ``out`` are kept); the two variants (``VARIANTS``) are trained here first if missing
    (``<runs>/fig3/<experiment>``, Table 2's protocol, ``epochs`` epochs).
    """
    nets, data_cfg = {}, None
    paths = {r: run_dir(runs, "table2", f"table2_spiking_{r}") for r in ("sgd", "fsgd")}
    for r, path in paths.items():
        if done_epochs(path):
            nets[f"spiking {r.upper()} ({read_run(path)['epochs']} ep)"] = run_weights(path)
            data_cfg = data_cfg or run_config(path)
    for key, (experiment, _) in VARIANTS.items():
        path = run_dir(runs, "fig3", experiment)
        if ensure_run(path, experiment, epochs, (*RUN_OVERRIDES, *overrides), train):
            nets[variant_label(key, path)] = run_weights(path)
            data_cfg = data_cfg or run_config(path)
    if data_cfg is None:
        raise FileNotFoundError(f"no Table 2 or Fig. 3 run under {runs}: run the table2 / fig3 command first")
    ds = load_run_data(data_cfg)
    X, y = ds.x_test[:n_test], ds.y_test[:n_test]
    costs = []
    try:
        rw, rname = relu_weights(runs)
    except FileNotFoundError:
        rw = None
    if rw is not None:
        relu_tag = rname[len("weights_"):-len(".npz")].replace("_", ", ").replace("epoch", "ep ")  # "seed1236, ep 5"
        nets[f"ReLU-trained weights ({relu_tag})"] = rw
        from distspike.relu import ReluMLP
        costs = [{"net": f"ReLU MLP forward pass ({relu_tag})", "test_error": ReluMLP.from_weights(rw).error(X, y),
                  **relu_costs(rw, X)}]
    rows = [{"net": name, **r} for name, w in nets.items() for r in early_guess_curve(w, X, y, t_max)]
    rows = merge_curves(out / "fig3_early_guess.csv", rows)
    if not costs:
        costs = read_csv(out / "fig3_relu_costs.csv")
    write_csv(rows, out / "fig3_early_guess.csv")
    summary = [r for r in rows if int(r["t"]) in SUMMARY_T or int(r["t"]) == t_max]
    write_csv(summary, out / "fig3_early_guess_summary.csv")
    write_csv(costs, out / "fig3_relu_costs.csv")
    replot(out)
    return rows


def family(label: str) -> str:
    """``"spiking FSGD (20 ep)" -> "spiking FSGD"``: rows of a newer run replace its family's rows."""
    return label.split(" (")[0]


def merge_curves(path: Path, new: list[dict]) -> list[dict]:
    """``new`` rows plus the rows of ``path`` whose nets' families are not among them (Table 2 nets
    whose runs are not at hand stay as they were); families in first-seen order, old ones first."""
    fams = {family(r["net"]) for r in new}
    old = [r for r in read_csv(path) if family(r["net"]) not in fams] if path.exists() else []
    return [{k: str(v) for k, v in r.items()} for r in old + new]


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
