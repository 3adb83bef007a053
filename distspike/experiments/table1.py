"""Paper Table 1: 20 Newsgroups, sci.electronics vs sci.med, no hidden layer.

Protocol. Data as ``experiment=table1_newsgroups``: the bydate split (train 1185 / test
789 documents), 0/1 word presence over the training vocabulary, training documents
shuffled once with seed 1234. Three classifiers:

- spiking regressor: the spiking net ``V-2`` (``runtime=local``, T = 10, w_init = 0.01,
  seed 1234), online, ``epochs`` epochs;
- one-layer net: its ReLU twin ``V-2`` (``distspike.relu.ReluMLP``: rectified output,
  squared error, no bias), trained the same way;
- linear SVM: ``sklearn.svm.LinearSVC`` (squared hinge, with intercept).

Hyper-parameters (eta of the two nets, C of the SVM) are chosen on a validation split
carved from the training set: the last 1/8 of the shuffled training documents (the
paper's 7:1 ratio), training on the first 7/8 for the same number of epochs; the
value with the lowest validation error after the last epoch wins (ties: the earlier
grid entry; the grids start with the default). The final models are then trained on
the whole training split and evaluated once on the test split.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from distspike.experiments.common import write_csv

CONF = Path(__file__).resolve().parents[1] / "conf"
ETAS = (0.01, 0.003, 0.001, 0.0003)  # the project's default first
CS = (1.0, 0.1, 0.01, 10.0)  # sklearn's default first
EPOCHS = 20
PAPER = {"spiking_regressor": (2.278, 0.82), "one_layer_net": (2.278, 0.127), "linear_svm": (4.82, 0.0)}
COLUMNS = ("model=model,hyper=chosen on validation,epochs=epochs,test_error=test %,paper_test_error=paper test %,"
           "train_error=train %,paper_train_error=paper train %")
VAL_COLUMNS = "model=model,hyper=hyper-parameter,value=value,val_error=validation error %"


def newsgroups(root: str, shuffle_seed: int = 1234):
    """The Table 1 dataset as ``experiment=table1_newsgroups`` loads it."""
    import yaml

    from distspike.cli.convert import DataSpec
    opts = yaml.safe_load((CONF / "data" / "newsgroups.yaml").read_text())["options"]  # the loader options
    return DataSpec("newsgroups", root, False, options=opts, shuffle_seed=shuffle_seed).load()


def validation_split(ds, fraction: float = 1 / 8):
    """``ds`` with its training split cut: the first part trains, the last ``fraction`` tests."""
    n_val = int(round(ds.n_train * fraction))
    cut = ds.n_train - n_val
    return replace(ds, x_train=ds.x_train[:cut], y_train=ds.y_train[:cut],
                   x_test=ds.x_train[cut:], y_test=ds.y_train[cut:])


def spiking(ds, eta: float, epochs: int, seed: int = 1234):
    """Train the spiking regressor; returns ``(test, train)`` error in % and seconds."""
    from distspike.config import ModelConfig, NetConfig, TrainingConfig
    from distspike.runtime.local import local_net
    from distspike.runtime.loop import fit
    cfg = NetConfig(ModelConfig((ds.n_features, ds.n_classes)), TrainingConfig(eta=eta), seed=seed)
    t0 = time.perf_counter()
    with local_net(cfg) as net:
        rec = fit(net, ds.x_train, ds.y_train, ds.x_test, ds.y_test, epochs, progress=False).curve[-1]
    return rec.test_error, rec.train_error, time.perf_counter() - t0


def one_layer(ds, eta: float, epochs: int, seed: int = 1234):
    """Train the one-layer ReLU net; returns ``(test, train)`` error in % and seconds."""
    from distspike.relu import ReluMLP
    t0 = time.perf_counter()
    net = ReluMLP((ds.n_features, ds.n_classes), 0.01, eta, seed)
    for _ in range(epochs):
        net.train_epoch(ds.x_train, ds.y_train)
    return net.error(ds.x_test, ds.y_test), net.error(ds.x_train, ds.y_train), time.perf_counter() - t0


def svm(ds, C: float, epochs: int = 0):
    """Fit a linear SVM; returns ``(test, train)`` error in % and seconds (``epochs`` unused)."""
    from sklearn.svm import LinearSVC
    t0 = time.perf_counter()
    clf = LinearSVC(C=C, max_iter=20000).fit(ds.x_train, ds.y_train)
    test, train = (100.0 * float(np.mean(clf.predict(X) != y)) for X, y in ((ds.x_test, ds.y_test),
                                                                              (ds.x_train, ds.y_train)))
    return test, train, time.perf_counter() - t0


MODELS = {"spiking_regressor": (spiking, "eta", ETAS), "one_layer_net": (one_layer, "eta", ETAS),
          "linear_svm": (svm, "C", CS)}


def table1(ds, out: Path, epochs: int = EPOCHS, grids: dict | None = None) -> list[dict]:
    """Tune on the validation split, train on the full training split, write the CSVs."""
    val_ds, rows, val_rows = validation_split(ds), [], []
    for name, (fn, hyper, grid) in MODELS.items():
        grid = (grids or {}).get(name, grid)
        scores = []
        for value in grid:
            err = fn(val_ds, value, epochs)[0]
            scores.append(err)
            val_rows.append({"model": name, "hyper": hyper, "value": value, "val_error": err})
        best = grid[int(np.argmin(scores))]
        test, train, sec = fn(ds, best, epochs)
        rows.append({"model": name, "hyper": f"{hyper}={best:g}", "epochs": epochs if name != "linear_svm" else "",
                     "test_error": test, "paper_test_error": PAPER[name][0], "train_error": train,
                     "paper_train_error": PAPER[name][1], "seconds": round(sec, 1)})
    write_csv(rows, out / "table1_newsgroups.csv")
    write_csv(val_rows, out / "table1_validation.csv")
    return rows
