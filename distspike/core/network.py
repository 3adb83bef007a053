"""Spiking MLP as a user-facing object: weights, the scheduler and a runtime backend.

``SpikingNet`` is runtime-agnostic: the in-process runtime (``runtime/local.py``)
and the Ray runtime (``runtime/ray_backend.py``) differ only in the backend they
hand it. Data enter as real vectors and are encoded here (``round(x*K)`` in
integer mode).
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from distspike.config import NetConfig
from distspike.core.modules import LayerSpec, Numerics, split_blocks
from distspike.core.scheduler import Scheduler

#: prediction samples per message on backends that batch them (Ray): ``SpikingNet.predict``
PREDICT_BATCH = 64


def init_weights(sizes, w_init: float, seed: int) -> list[np.ndarray]:
    """``W_l ~ w_init * N(0, 1)`` of shape ``(n_{l-1}, n_l)``, drawn layer by layer from one RNG.

    The ReLU twin (``relu.py``) draws the same matrices from the same seed.
    """
    rng = np.random.default_rng(seed)
    return [w_init * rng.standard_normal((a, b)) for a, b in zip(sizes[:-1], sizes[1:])]


#: normals drawn per chunk when a block is initialised by replaying the stream (16 MiB of float64)
INIT_CHUNK = 1 << 21


def init_block(sizes, w_init: float, seed: int, layer: int, rows: tuple[int, int], cols: tuple[int, int],
               encode: Callable[[np.ndarray], np.ndarray], dtype, transposed: bool = False) -> np.ndarray:
    """``encode(init_weights(sizes, w_init, seed)[layer - 1][r0:r1, c0:c1])`` without the whole matrix.

    A shard actor's own block (``transposed``: its transpose, a backward replica's layout),
    bit-identical to slicing the in-process init: it replays the one RNG stream in chunks
    of rows (numpy's ``Generator`` fills C order one normal after another, so chunked draws
    give the same numbers), drawing every earlier layer and the first ``r1`` rows of this one,
    and keeps only the block. Memory: the block plus one chunk; time: the draws of those rows.
    """
    (r0, r1), (c0, c1) = rows, cols
    out = np.empty((c1 - c0, r1 - r0) if transposed else (r1 - r0, c1 - c0), dtype)
    rng = np.random.default_rng(seed)
    for l, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), 1):
        step = max(1, INIT_CHUNK // b)
        for lo in range(0, r1 if l == layer else a, step):
            hi = min(lo + step, r1 if l == layer else a)
            z = rng.standard_normal((hi - lo, b))  # (hi - lo, b): rows lo..hi of W_l
            if l == layer and hi > r0:
                part = encode(w_init * z[max(r0 - lo, 0):, c0:c1])
                at = slice(max(lo, r0) - r0, hi - r0)
                if transposed:
                    out[:, at] = part.T
                else:
                    out[at] = part
        if l == layer:
            return out
    raise ValueError(f"layer {layer} is not a layer of sizes {list(sizes)}")


def layer_specs(cfg: NetConfig, layer: int, shards: int, backward: bool) -> list[LayerSpec]:
    """The shard specs of layer ``layer``: blocks of its units, or of layer ``l-1``'s (backward)."""
    sizes, tr = cfg.model.sizes, cfg.training
    n_in, n_out = sizes[layer - 1], sizes[layer]
    blocks = split_blocks(n_in if backward else n_out, shards)
    return [LayerSpec(layer, n_in, n_out, lo, hi, tr.fractional, tr.smooth, tr.backward_reset, cfg.seed,
                      tr.read_first, tr.regularization > 0)
            for lo, hi in blocks]


def one_hot_neg(label: int, n: int) -> np.ndarray:
    """The target quantizer's input ``-y`` for a one-hot ``y``."""
    v = np.zeros(n)  # (n,)
    v[label] = -1.0
    return v


class SpikingNet:
    """Train and evaluate a spiking MLP through a backend (in-process or Ray)."""

    def __init__(self, cfg: NetConfig, backend):
        self.cfg = cfg
        self.num = Numerics.of(cfg)
        self.backend = backend
        self.scheduler = Scheduler(backend, cfg, self.num)
        self.samples_seen = 0
        self.epoch = 0  # set by the epoch loop; labels traffic-log rows

    @property
    def stats(self):
        """Spike totals per layer so far (``SpikeStats``)."""
        return self.scheduler.stats()

    def train_sample(self, x: np.ndarray, label: int) -> None:
        """One online training iteration (paper section 3.8, Alg. 8)."""
        n_out = self.cfg.model.sizes[-1]
        self.scheduler.train_sample(self.num.encode(x), self.num.encode(one_hot_neg(int(label), n_out)),
                                    self.epoch, self.samples_seen)
        self.samples_seen += 1

    def train_epoch(self, X: np.ndarray, y: np.ndarray, progress: Callable[[int], None] | None = None) -> float:
        """Online pass over ``X`` in dataset order; returns samples per second."""
        t0 = time.perf_counter()
        for k in range(X.shape[0]):
            self.train_sample(X[k], y[k])
            if progress is not None:
                progress(1)
        return X.shape[0] / max(time.perf_counter() - t0, 1e-12)

    def predict(self, X: np.ndarray, batch: int = PREDICT_BATCH) -> np.ndarray:
        """Scores ``sum_t u_L / T`` for each row of ``X`` (shape ``(n, n_L)``).

        On Ray, ``batch`` samples travel per message (``Scheduler.predict_many``): one
        call per shard and layer for the batch instead of for each sample.
        """
        if not (isinstance(batch, (int, np.integer)) and not isinstance(batch, bool) and batch >= 1):
            raise ValueError(f"predict: batch must be a positive integer, got {batch!r}")
        X = X if getattr(X, "ndim", 0) == 2 else np.atleast_2d(X)  # a ScaledRows matrix stays one
        parts = [self.scheduler.predict_many([self.num.encode(x) for x in X[k:k + batch]])
                 for k in range(0, len(X), batch)]  # rows encoded batch by batch: no copy of all of X
        return np.concatenate(parts) if parts else np.zeros((0, self.cfg.model.sizes[-1]))

    def error(self, X: np.ndarray, y: np.ndarray) -> float:
        """Classification error in percent (argmax of the scores)."""
        return 100.0 * float(np.mean(self.predict(X).argmax(axis=1) != np.asarray(y)))

    def weights(self) -> list[np.ndarray]:
        """The forward copies of ``W_l`` as real (decoded) float64 matrices."""
        return [self.num.decode(w) for w in self.backend.weights()]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to continue training exactly (between samples): module state + counters."""
        state = dict(self.backend.state())
        state["net.samples_seen"] = np.array(self.samples_seen, np.int64)
        state["net.input_spikes"] = np.array(self.scheduler.input_spikes, np.int64)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.backend.load_state({k: v for k, v in state.items() if not k.startswith("net.")})
        self.samples_seen = int(state["net.samples_seen"])
        self.scheduler.input_spikes = int(state["net.input_spikes"])

    def close(self) -> None:
        """Release the backend (stops actors; shuts down an embedded Ray instance)."""
        self.backend.close()

    def __enter__(self) -> "SpikingNet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def raw_weights(self) -> list[np.ndarray]:
        """The forward copies of ``W_l`` in the run's own representation (ints in integer mode)."""
        return [np.array(w) for w in self.backend.weights()]
