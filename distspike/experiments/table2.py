"""Paper Table 2 and Fig. 2: spiking vs ReLU MLP on MNIST 784-300-300-10.

Protocol. Spiking SGD and spiking FSGD are ``distspike-train
experiment=table2_spiking_{sgd,fsgd}`` runs in ``<runs>/table2/<experiment>/`` (eta =
0.01, T = 10, w_init = 0.01, seed 1234, online over the official 60k training images in
file order, ``eval_train=10000``); at least ``epochs`` epochs, more if the runs were
extended with ``distspike-train resume=DIR training.epochs=N``. Every row reports its
own epoch count. Test error: official 10k MNIST test set; training error: the first
10k training images (the runs' ``eval_train``).

The ReLU MLP (``distspike.relu.ReluMLP``) is trained the same way: online, one sample at
a time in the same order, squared error on one-hot targets, every layer rectified, no
biases, eta = 0.01, ``W ~ 0.01 N(0, 1)``, for as many epochs as the longer spiking run.
With seed 1234 its initial matrices equal the spiking net's, but then output unit 6 is
dead at the start (``u_6 <= 0`` on 99.7 % of the training images) and the ReLU net never
learns class 6, while the spiking net does (its gate passes errors at ``S_j >= 0``,
including the start of every sample). So the table shows that net and a second one
with the first seed after 1234 whose every output unit is active at initialisation on
at least 10 % of the training images (:func:`first_live_seed`); the second one's
weights are used for "spiking with ReLU weights" and for Fig. 3.

Cross rows: "spiking with ReLU weights" runs the spiking net (T = 10, ``runtime=local``)
with the ReLU net's final weights; "ReLU with spiking-FSGD weights" runs the ReLU net
with the final weights of the spiking FSGD run.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from distspike.experiments.common import (ensure_run, load_run_data, net_config, plot_setup, read_csv, read_run,
                                          run_config, run_dir, run_weights, write_csv)

EPOCHS = 5
SEEDS = (1234, 1235, 1236)
RULES = ("sgd", "fsgd")  # the spiking rows, in table order
RUN_OVERRIDES = ("eval_train=10000", "checkpoint.keep=0")
PAPER = {  # row -> (test %, train %), 50 epochs, the authors' validation split
    "spiking_sgd": (3.6, 2.484), "spiking_fsgd": (2.07, 0.37), "relu_mlp": (1.63, 0.426),
    "spiking_relu_weights": (1.66, 0.426), "relu_fsgd_weights": (2.03, 0.34),
}
COLUMNS = ("row=row,weights=weights trained by,epochs=epochs,seed=seed,test_error=test %,"
           "paper_test_error=paper test % (50 ep),train_error=train % (first 10k),paper_train_error=paper train %,"
           "wall_time_s=wall s")


def first_live_seed(X: np.ndarray, sizes, w_init: float, start: int, min_active: float = 0.1) -> int:
    """First seed ``>= start`` whose initial ReLU net has every output unit active (``u > 0``)
    on at least ``min_active`` of the rows of ``X``."""
    from distspike.relu import init_weights, relu_forward
    for seed in range(start, start + 100):
        out = relu_forward(init_weights(sizes, w_init, seed), X)[-1]  # (n, n_L)
        if (out > 0).mean(axis=0).min() >= min_active:
            return seed
    raise RuntimeError(f"no seed in [{start}, {start + 100}) gives live output units")


def train_relu(ds, sizes, eta: float, w_init: float, seed: int, epochs: int, n_eval: int):
    """Online ReLU MLP; returns ``(net, curve)`` with per-epoch test / training error (first ``n_eval``)."""
    from distspike.relu import ReluMLP
    net = ReluMLP(sizes, w_init, eta, seed)
    curve = []
    for ep in range(1, epochs + 1):
        t0 = time.perf_counter()
        net.train_epoch(ds.x_train, ds.y_train)
        curve.append({"epoch": ep, "train_error": net.error(ds.x_train[:n_eval], ds.y_train[:n_eval]),
                      "test_error": net.error(ds.x_test, ds.y_test), "seconds": time.perf_counter() - t0})
    return net, curve


def spiking_errors(cfg: dict, weights, ds, n_eval: int) -> tuple[float, float]:
    """(test, train) error in % of the spiking net of run config ``cfg`` with the given weights."""
    from distspike.runtime.local import local_net
    with local_net(net_config(cfg), weights=weights) as net:
        return net.error(ds.x_test, ds.y_test), net.error(ds.x_train[:n_eval], ds.y_train[:n_eval])


def relu_errors(weights, ds, n_eval: int) -> tuple[float, float]:
    """(test, train) error in % of the ReLU net with the given weights."""
    from distspike.relu import ReluMLP
    net = ReluMLP.from_weights(weights)
    return net.error(ds.x_test, ds.y_test), net.error(ds.x_train[:n_eval], ds.y_train[:n_eval])


def _row(name: str, weights: str, epochs: int, seed: int, test: float, train: float, wall: float | str = "") -> dict:
    """One table row; ``wall``: training wall seconds of a spiking run (empty for the others)."""
    paper = PAPER[name.split(" ")[0]]
    return {"row": name, "weights": weights, "epochs": epochs, "seed": seed, "test_error": test,
            "paper_test_error": paper[0], "train_error": train, "paper_train_error": paper[1],
            "wall_time_s": wall if wall == "" else round(wall)}


def relu_weights_path(runs: Path, seed: int, epochs: int, split: str = "official") -> Path:
    """Where the ReLU net's final weights are kept for Fig. 3."""
    tag = "" if split == "official" else f"_{split}"
    return run_dir(runs, "table2", "relu_mlp") / f"weights{tag}_seed{seed}_epoch{epochs}.npz"


def spiking_run_dir(runs: Path, rule: str, seed: int, split: str = "official") -> Path:
    """``<runs>/table2/table2_spiking_<rule>[_<split>][_seed<seed>]`` (nothing added for official / 1234)."""
    name = f"table2_spiking_{rule}" + ("" if split == "official" else f"_{split}")
    return run_dir(runs, "table2", name + ("" if seed == SEEDS[0] else f"_seed{seed}"))


def curve_net(rule: str, seed: int) -> str:
    """A spiking run's name in the Fig. 2 CSV, as its run dir is named: ``spiking_sgd`` for seed
    1234, ``spiking_sgd_seed1235`` otherwise (never by the position of ``seed`` in a ``--seeds``
    list: a later ``--seeds 1235,1236`` would overwrite seed 1234's curves when merged)."""
    return f"spiking_{rule}" + ("" if seed == SEEDS[0] else f"_seed{seed}")


def csv_name(split: str, kind: str = "table2_mnist") -> str:
    """``table2_mnist.csv`` / ``fig2_learning_curves.csv``, with ``_<split>`` for another split."""
    return f"{kind}{'' if split == 'official' else '_' + split}.csv"


def table2(runs: Path, out: Path, epochs: int = EPOCHS, train: bool = True, overrides=(), seeds=SEEDS[:1],
           split: str = "official", command: str = "", rules=RULES) -> list[dict]:
    """Table 2 rows and Fig. 2 curves: ``out/table2_mnist[_<split>].csv``, ``fig2_learning_curves[_<split>].csv/.png``.

    Every seed gets its spiking SGD and FSGD runs and its ReLU net (a seed whose ReLU net
    has a dead output unit is reported as it is); the first live seed's ReLU net is added
    if no seed in ``seeds`` is live. Cross rows use the first seed's FSGD weights and the
    live ReLU net. ``split``: ``official`` (60k / 10k test set) or ``validation`` (the
    authors' protocol: first 50k training images, tested on the last 10k;
    ``data.options.split``). Every row records its command and seeds. ``rules``: a subset of
    ``RULES`` gives only those spiking rows and curves (for example SGD at 50 epochs for more
    seeds); the ReLU and cross rows, and Fig. 2, need both rules.
    """
    data_opt = () if split == "official" else (f"data.options.split={split}",)
    paths = {(r, s): spiking_run_dir(runs, r, s, split) for r in rules for s in seeds}
    for (r, seed), path in paths.items():
        if not ensure_run(path, f"table2_spiking_{r}", epochs, (*RUN_OVERRIDES, *overrides, *data_opt,
                                                                    f"seed={seed}"), train):
            print(f"table2: {path} is not complete yet")
            return []
    runs_m = {k: read_run(p) for k, p in paths.items()}
    first = paths[(rules[-1], seeds[0])]
    cfg = run_config(first)
    ds, n_eval = load_run_data(cfg), cfg["eval_train"] or 10 ** 9
    sizes, eta, w_init = cfg["model"]["sizes"], cfg["training"]["eta"], cfg["model"]["w_init"]
    e_relu = max(m["epochs"] for m in runs_m.values())
    live = first_live_seed(ds.x_train, sizes, w_init, seeds[0])
    rows = [_row(f"spiking_{r}", f"spiking {r.upper()}", m["epochs"], m["seed"], m["final_test_error"],
                 m["final_train_error"], m["wall_time_s"]) for (r, _), m in runs_m.items()]
    curves = [{"net": curve_net(r, s), "epoch": int(c["epoch"]),
               "train_error": c["train_error"], "test_error": c["test_error"]}
              for (r, s), m in runs_m.items() for c in m["curve"]]
    if tuple(rules) != RULES:
        return _write(out, split, [{**r, "split": split, "command": command} for r in rows], curves, None)
    relus = {}
    for seed in dict.fromkeys((*seeds, live)):
        t0 = time.perf_counter()
        net, curve = train_relu(ds, sizes, eta, w_init, seed, e_relu, n_eval)
        relus[seed] = net
        rows.append(_row(f"relu_mlp (seed {seed})", "ReLU", e_relu, seed, curve[-1]["test_error"],
                         curve[-1]["train_error"], time.perf_counter() - t0))
        curves += [{"net": f"relu_seed{seed}", **{k: c[k] for k in ("epoch", "train_error", "test_error")}}
                   for c in curve]
    wpath = relu_weights_path(runs, live, e_relu, split)
    wpath.parent.mkdir(parents=True, exist_ok=True)
    np.savez(wpath, *relus[live].weights)
    rows.append(_row("spiking_relu_weights", f"ReLU (seed {live})", e_relu, live,
                     *spiking_errors(cfg, relus[live].weights, ds, n_eval)))
    fsgd_w = run_weights(first)
    rows.append(_row("relu_fsgd_weights", "spiking FSGD", runs_m[("fsgd", seeds[0])]["epochs"], seeds[0],
                     *relu_errors(fsgd_w, ds, n_eval)))
    return _write(out, split, [{**r, "split": split, "command": command} for r in rows], curves, f"relu_seed{live}")


def _write(out: Path, split: str, rows: list[dict], curves: list[dict], relu_net: str | None) -> list[dict]:
    """Merge ``rows`` and ``curves`` into the split's CSVs; redraw Fig. 2 when ``relu_net`` is given."""
    write_csv(merge(out / csv_name(split), rows, ("row", "seed", "epochs")), out / csv_name(split))
    curves = merge(out / csv_name(split, "fig2_learning_curves"), curves, ("net", "epoch"))
    write_csv(curves, out / csv_name(split, "fig2_learning_curves"))
    if relu_net is not None:
        plot_fig2([{**c, "epoch": int(c["epoch"]), **{k: float(c[k]) for k in ("train_error", "test_error")}}
                   for c in curves], out / csv_name(split, "fig2_learning_curves").replace(".csv", ".png"), relu_net)
    return rows


def merge(path: Path, new: list[dict], key: tuple) -> list[dict]:
    """The rows of ``path`` whose ``key`` values no new row has, then ``new``: a run for other seeds or
    epochs adds its rows (a 50-epoch extension keeps the 20-epoch rows written before it)."""
    def k(r):
        return tuple(str(r.get(c, "")) for c in key)
    done = {k(r) for r in new}
    old = [r for r in read_csv(path) if k(r) not in done] if path.exists() else []
    return [{c: str(v) for c, v in r.items()} for r in old + new]


#: epochs Fig. 2 shows, as the paper does (the runs may be longer: the 50-epoch ones)
FIG2_EPOCHS = 20


def fig2_series(curves: list[dict], relu_net: str) -> dict:
    """What Fig. 2 draws, as the paper does: spiking SGD and FSGD of the first seed and the ReLU net
    ``relu_net``, each over its first ``FIG2_EPOCHS`` epochs: net -> (epochs, test %, train %).
    Other seeds' curves stay in the CSV."""
    series = {}
    for net in ("spiking_sgd", "spiking_fsgd", relu_net):
        pts = sorted((c for c in curves if c["net"] == net and c["epoch"] <= FIG2_EPOCHS), key=lambda c: c["epoch"])
        series[net] = ([c["epoch"] for c in pts], [c["test_error"] for c in pts], [c["train_error"] for c in pts])
    return series


def plot_fig2(curves: list[dict], path: Path, relu_net: str) -> None:
    """Fig. 2 (``fig2_series``): spiking nets red, the ReLU net blue; solid test, dashed training error."""
    plt = plot_setup()
    colors = {"spiking_sgd": "tab:red", "spiking_fsgd": "darkred", relu_net: "tab:blue"}
    labels = {"spiking_sgd": "spiking SGD", "spiking_fsgd": "spiking FSGD", relu_net: f"ReLU ({relu_net[5:]})"}
    longest = max((c["epoch"] for c in curves if c["net"] in colors), default=0)
    fig, ax = plt.subplots(figsize=(8, 4))
    for net, (ep, test, train) in fig2_series(curves, relu_net).items():
        ax.plot(ep, test, "-o", ms=3, color=colors[net], label=f"{labels[net]} test")
        ax.plot(ep, train, "--", color=colors[net], label=f"{labels[net]} train (first 10k)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set(xlabel="epoch", ylabel="% error", yscale="log",
           title=f"Fig. 2: MNIST 784-300-300-10, first {min(FIG2_EPOCHS, longest)} of {longest} epochs")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
