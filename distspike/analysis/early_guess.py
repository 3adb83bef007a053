"""Early guessing (paper section 4.3, Fig. 3): the spiking net's prediction after t steps, and its cost.

Prediction (docs/semantics.md "Prediction") runs ``T`` forward steps and returns the
argmax of the summed un-quantized output pre-activations. Steps are causal, so the
prediction after ``t < T`` steps is that of a run with ``T = t``; one run of
``t_max`` steps gives every prefix. The forward pass here calls the project's own
herding kernels (``distspike.kernels.herding``: signed herding of the input, event-
driven rectified herding after every incoming row in every layer) with one state per
sample; ``tests/experiments/test_early_guess.py`` checks that its scores equal
``SpikingNet.predict`` of the runtime.

Operation counts, per sample, cumulative over steps (one addition = one op):

- input quantizer: ``nnz(x)`` additions per step (``phi += x`` on the nonzero pixels);
- layer ``l``: ``n_l`` additions per incoming spike (``phi += s * W_l[i, :]``; the running
  sum the output is read from is the same sum, not counted twice);
- one subtraction per emitted spike (the herder's ``phi_j -= 1``).

``ops_hidden`` counts only layers ``l >= 2`` (the right panel of Fig. 3: the layers
after the input layer, "whose sparsity we do not control"). The ReLU net's costs are
``relu.dense_flops`` / ``relu.sparse_flops`` (one multiply-add = one op).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from distspike.kernels.herding import herd_rows, herd_vector

THRESH, UNIT = 0.5, 1.0


def sample_trace(weights: Sequence[np.ndarray], x: np.ndarray, t_max: int):
    """One sample, ``t_max`` steps: ``(scores, ops_all, ops_hidden)``.

    ``scores[t-1]`` (``(t_max, n_L)``) is the running output pre-activation sum after ``t``
    steps (its argmax is the prediction after ``t`` steps); ``ops_*[t-1]`` (``(t_max,)``)
    the cumulative operation counts (module docstring).
    """
    x = np.asarray(x, np.float64)  # (n0,)
    phi0 = np.zeros(x.shape[0])  # (n0,) input herder
    phis = [np.zeros(W.shape[1]) for W in weights]  # (n_l,) forward herders
    accs = [np.zeros(W.shape[1]) for W in weights]  # (n_l,) running pre-activation sums
    dummy = np.zeros(1)  # FSGD step vector, unused in prediction
    scores = np.zeros((t_max, weights[-1].shape[1]))  # (t_max, n_L)
    ops = np.zeros((t_max, 2), np.int64)  # cumulative (all layers, layers >= 2)
    nnz = int(np.count_nonzero(x))
    total = hidden = 0
    for t in range(t_max):
        idx, sign, _ = herd_vector(phi0, x, THRESH, UNIT, True, 0)
        total += nnz + len(idx)
        for l, W in enumerate(weights):
            cost = len(idx) * W.shape[1]  # one row of W_l per incoming spike
            _, idx, sign, _ = herd_rows(W, phis[l], accs[l], idx, sign, THRESH, UNIT, False, 0, True, dummy, 0)
            cost += len(idx)  # one subtraction per emitted spike
            total += cost
            hidden += cost if l >= 1 else 0
        scores[t] = accs[-1]
        ops[t] = total, hidden
    return scores, ops[:, 0], ops[:, 1]


def early_guess_curve(weights: Sequence[np.ndarray], X: np.ndarray, y: np.ndarray, t_max: int) -> list[dict]:
    """Test error and mean cumulative ops per sample after ``t = 1..t_max`` steps.

    Rows ``{t, test_error (%), ops_all, ops_hidden}`` (ops: mean over the samples of ``X``,
    rounded to whole operations).
    """
    weights = [np.ascontiguousarray(W, np.float64) for W in weights]
    wrong = np.zeros(t_max)  # (t_max,) misclassified samples after t steps
    ops = np.zeros((t_max, 2))  # (t_max, 2) summed cumulative ops
    for x, label in zip(X, y):
        scores, o_all, o_hid = sample_trace(weights, x, t_max)
        wrong += scores.argmax(axis=1) != label
        ops[:, 0] += o_all
        ops[:, 1] += o_hid
    n = max(len(y), 1)
    return [{"t": t + 1, "test_error": 100.0 * wrong[t] / n, "ops_all": round(ops[t, 0] / n),
             "ops_hidden": round(ops[t, 1] / n)} for t in range(t_max)]


def relu_costs(weights: Sequence[np.ndarray], X: np.ndarray) -> dict:
    """Ops per sample of one ReLU forward pass (sparse: mean, rounded): dense and sparse, all layers
    and layers >= 2."""
    from distspike.relu import dense_flops, sparse_flops
    sizes = [weights[0].shape[0]] + [W.shape[1] for W in weights]
    h1 = np.maximum(np.asarray(X, np.float64) @ weights[0], 0)  # (n, n1) first hidden layer
    sparse_all, sparse_hidden = np.mean(sparse_flops(weights, X)), np.mean(sparse_flops(weights[1:], h1))
    return {"dense_all": dense_flops(sizes), "sparse_all": round(float(sparse_all)),
            "dense_hidden": dense_flops(sizes[1:]), "sparse_hidden": round(float(sparse_hidden))}
