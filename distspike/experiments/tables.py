"""One command per paper table / figure (the runs and files behind results/README.md).

    python -m distspike.experiments.tables table1 --data "$DISTSPIKE_DATA" --out results [--protocol authors,...]
    python -m distspike.experiments.tables table2 --runs "$RUNS" --data "$DISTSPIKE_DATA" --out results
        [--seeds S,..] [--split validation]  # (options of the line above)
    python -m distspike.experiments.tables table3 --runs "$RUNS" --data "$DISTSPIKE_DATA" --out results [--seeds S,..]
    python -m distspike.experiments.tables fig3   --runs "$RUNS" --out results
    python -m distspike.experiments.tables fig3-plot --out results   # redraw the figure from its CSVs
    python -m distspike.experiments.tables fig3-validation --runs "$RUNS" --data "$DISTSPIKE_DATA" --out results

``table2`` / ``table3`` start the missing ``distspike-train`` runs under
``<runs>/table2/`` and ``<runs>/table3/`` one after another, resume interrupted ones from
their checkpoints and reuse completed ones (``--no-train``: only collect what is
complete). ``fig3`` needs the Table 2 runs and the ReLU weights ``table2`` saves.
``readme`` re-renders the marked tables of ``<out>/README.md`` from the CSVs.
``--smoke``: tiny sizes on scikit-learn's digits (seconds; the CI test). Each command
prints the README table(s) of its CSVs.
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

from distspike.experiments import fig3, table1, table2, table3
from distspike.experiments.common import print_table, refresh_readme

SMOKE = ("data=digits", "model=digits_small", "data.n_train=120", "data.n_test=60")


def run_table1(args) -> None:
    seeds = _seeds(args, table1.SEEDS)
    models = args.models.split(",") if args.models else None
    if args.smoke:
        grids = {name: grid[:2] for name, (_, _, grid) in table1.MODELS.items()}
        protocols = ("smoke",)
        table1.table1(_smoke_binary(), args.out, "smoke", 2, grids, seeds[:2], models, args.command)
    else:
        protocols = args.protocol.split(",")
        for protocol in protocols:
            if protocol not in table1.PROTOCOLS:
                raise SystemExit(f"--protocol {protocol!r} is not one of {sorted(table1.PROTOCOLS)}")
        grids = table1.DEFAULT_GRIDS if args.hyper == "defaults" else None
        split_seeds = [int(s) for s in args.split_seed.split(",")] if args.split_seed else [None]
        vocabs = _vocabs(args.vocab)
        names = []
        for protocol, split_seed, vocab in itertools.product(protocols, split_seeds, vocabs):
            ds = table1.load(args.data, protocol, split_seed, vocab)
            name = (protocol + ("" if split_seed is None else f"_split{split_seed}")
                    + ("" if vocab is None else f"_vocab{vocab}"))
            if args.curves:
                eta = args.curve_eta or table1.DEFAULT_GRIDS["one_layer_net"][0]
                table1.curves(ds, args.out, name + ("" if args.curve_eta is None else f"_eta{eta:g}"), args.curves,
                              seeds, eta)
                continue
            names.append(name + table1.HYPERS[args.hyper])
            table1.table1(ds, args.out, names[-1], args.epochs or table1.EPOCHS, grids, seeds, models,
                          args.command)
        if args.curves:
            return
        table1.collect(args.out)
        protocols = names
    for protocol in protocols:
        print_table(args.out, f"table1_{protocol}.csv", table1.COLUMNS)
        if (args.out / f"table1_{protocol}_validation.csv").exists():
            print_table(args.out, f"table1_{protocol}_validation.csv", table1.VAL_COLUMNS)


def _vocabs(text: str | None) -> list:
    """``--vocab``'s sizes (positive integers), or ``[None]`` (the protocol's 2000)."""
    if not text:
        return [None]
    sizes = [v.strip() for v in text.split(",")]
    if not all(v.isdigit() and int(v) > 0 for v in sizes):
        raise SystemExit(f"--vocab {text!r}: expected comma-separated positive integers")
    return [int(v) for v in sizes]


def _smoke_binary():
    """Digits 0 vs 1, binarized: a tiny two-class stand-in for 20 Newsgroups."""
    from dataclasses import replace

    from distspike.data import load_dataset
    ds = load_dataset("digits")
    tr, te = ds.y_train < 2, ds.y_test < 2
    return replace(ds, x_train=(ds.x_train[tr] > 0.5) * 1.0, y_train=ds.y_train[tr], x_test=(ds.x_test[te] > 0.5) * 1.0,
                   y_test=ds.y_test[te], n_classes=2)


def _overrides(args) -> tuple:
    return (*(SMOKE if args.smoke else ()), *(() if args.data is None else (f"data.root={args.data}",)))


def run_table2(args) -> None:
    table2.table2(args.runs, args.out, 1 if args.smoke else (args.epochs or table2.EPOCHS), not args.no_train,
                  _overrides(args), _seeds(args, table2.SEEDS[:1]), args.split, args.command, _rules(args))
    print_table(args.out, table2.csv_name(args.split), table2.COLUMNS)


def _rules(args) -> tuple:
    """``--rules sgd`` -> ``("sgd",)``, in ``table2.RULES`` order; default both."""
    rules = tuple(r.strip() for r in args.rules.split(",")) if args.rules else table2.RULES
    bad = [r for r in rules if r not in table2.RULES]
    if bad or not rules:
        raise SystemExit(f"--rules {args.rules!r}: each must be one of {list(table2.RULES)}")
    return tuple(r for r in table2.RULES if r in rules)


def _seeds(args, default) -> tuple:
    return tuple(int(s) for s in args.seeds.split(",")) if args.seeds else default


def run_table3(args) -> None:
    variants = args.variants.split(",") if args.variants else tuple(table3.VARIANTS)
    variants = ("baseline", "fsgd") if args.smoke else variants
    seeds = _seeds(args, table3.SEEDS[:1] if args.smoke else table3.SEEDS)
    table3.table3(args.runs, args.out, variants, 1 if args.smoke else (args.epochs or table3.EPOCHS),
                  not args.no_train, _overrides(args), seeds, args.command)
    print_table(args.out, "table3_ablation.csv", table3.COLUMNS)
    print_table(args.out, "table3_seeds.csv", table3.SEED_COLUMNS)


def run_fig3(args) -> None:
    fig3.fig3(args.runs, args.out, 3 if args.smoke else (args.t_max or fig3.T_MAX), 20 if args.smoke else args.n_test,
              1 if args.smoke else (args.epochs or fig3.EPOCHS), not args.no_train, _overrides(args))
    print_table(args.out, "fig3_early_guess_summary.csv", fig3.COLUMNS)
    print_table(args.out, "fig3_relu_costs.csv", fig3.COST_COLUMNS)


def run_fig3_validation(args) -> None:
    fig3.validate_regularization(args.runs, args.out, not args.no_train, _overrides(args), not args.smoke,
                                 args.command)
    print_table(args.out, "fig3_regularization_validation.csv", fig3.VAL_COLUMNS)


def run_fig3_plot(args) -> None:
    print(f"wrote {fig3.replot(args.out)}")


def run_readme(args) -> None:
    n = refresh_readme(args.out / "README.md", args.out)
    print(f"re-rendered {n} tables of {args.out / 'README.md'} from their CSVs")


COMMANDS = {"readme": run_readme, "table1": run_table1, "table2": run_table2, "table3": run_table3, "fig3": run_fig3,
            "fig3-plot": run_fig3_plot, "fig3-validation": run_fig3_validation}


def recorded_command(argv) -> str:
    """The command recorded in the CSVs: the one that regenerates their rows, with this machine's
    runs and data directories written as ``"$RUNS"`` and ``"$DISTSPIKE_DATA"`` (``--no-train``
    only collects, so it is left out)."""
    names = {"--runs": '"$RUNS"', "--data": '"$DISTSPIKE_DATA"'}
    out, argv = [], list(argv)
    for k, a in enumerate(argv):
        if a == "--no-train":
            continue
        out.append(names[argv[k - 1]] if k and argv[k - 1] in names else a)
    return " ".join(["python -m distspike.experiments.tables", *out])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Reproduce paper Tables 1-3 and Figs. 2-3 into results/")
    ap.add_argument("item", choices=sorted(COMMANDS))
    ap.add_argument("--runs", type=Path, default=Path("runs"), help="root of the training run directories")
    ap.add_argument("--data", default=None, help="data root (holds mnist/ and 20news-bydate/)")
    ap.add_argument("--out", type=Path, default=Path("results"))
    ap.add_argument("--epochs", type=int, default=None, help="(minimum) epochs; default: the item's protocol")
    ap.add_argument("--t-max", type=int, default=None, help="fig3: time steps of the early-guess curves")
    ap.add_argument("--n-test", type=int, default=None, help="fig3: first n test images (default: all)")
    ap.add_argument("--variants", default=None, help="table3: comma-separated subset (default: all)")
    ap.add_argument("--no-train", action="store_true", help="only collect completed runs")
    ap.add_argument("--protocol", default="authors", help="table1: comma-separated data protocols (table1.PROTOCOLS)")
    ap.add_argument("--seeds", default=None,
                    help="table1 / table2 / table3: comma-separated seeds (default 1234,1235,1236)")
    ap.add_argument("--hyper", choices=("validation", "defaults"), default="validation",
                    help="table1: eta / C chosen on a validation split, or the authors' defaults (no tuning)")
    ap.add_argument("--vocab", default=None,
                    help="table1: comma-separated vocabulary sizes in place of 2000 (<protocol>_vocab<N>)")
    ap.add_argument("--split-seed", default=None,
                    help="table1: comma-separated seeds of other draws of a pooled split (<protocol>_split<seed>)")
    ap.add_argument("--curves", type=int, default=None, metavar="EPOCHS",
                    help="table1: only the per-epoch test / train curves of the nets (a diagnostic)")
    ap.add_argument("--curve-eta", type=float, default=None, help="table1 --curves: eta of the nets (default 0.01)")
    ap.add_argument("--models", default=None, help="table1: comma-separated subset of the three models")
    ap.add_argument("--split", choices=("official", "validation"), default="official",
                    help="table2: MNIST official test set, or the authors' validation split (first 50k / last 10k)")
    ap.add_argument("--rules", default=None,
                    help="table2: comma-separated spiking rules (sgd,fsgd); a subset gives only their rows, "
                         "no ReLU / cross rows and no Fig. 2")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on sklearn's digits (CI)")
    args = ap.parse_args(argv)
    args.command = recorded_command(sys.argv[1:] if argv is None else argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    COMMANDS[args.item](args)
    print(f"{args.item}: {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
