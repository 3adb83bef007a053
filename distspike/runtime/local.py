"""In-process runtime (``runtime=local``): the scheduler calls module objects directly.

This is the fast path for small networks and the reference that the Ray runtime
must match. Sharding works here too (several module objects per layer), which is
how tests show that sharding never changes the math without starting Ray.
"""
from __future__ import annotations

import numpy as np

from distspike.config import NetConfig
from distspike.core.messages import SpikeBatch, merge_shards
from distspike.core.modules import BackwardQuantizer, ForwardQuantizer, Numerics
from distspike.core.network import SpikingNet, init_weights, layer_specs


class LocalBackend:
    """Dispatches batches to in-process module objects: ``fq[l]`` and ``bq[l]`` shard lists."""

    def __init__(self, fq: dict[int, list[ForwardQuantizer]], bq: dict[int, list[BackwardQuantizer]]):
        self.fq, self.bq = fq, bq
        self.calls = 0  # module calls dispatched (the Ray runtime's figure is actor calls)

    def reset_sample(self, train: bool) -> None:
        """Reset forward state; at a training sample also the backward herders' policy."""
        for shards in (*self.fq.values(), *(self.bq.values() if train else ())):
            for m in shards:
                m.reset_sample()

    def forward(self, layer: int, batch: SpikeBatch, train: bool) -> SpikeBatch:
        if train:
            for m in self.bq.get(layer, ()):
                m.count(batch)
        self.calls += len(self.fq[layer]) + (len(self.bq.get(layer, ())) if train else 0)
        return merge_shards([m.forward(batch, train) for m in self.fq[layer]])

    def gate(self, layer: int, batch: SpikeBatch, smooth=None) -> SpikeBatch:
        self.calls += len(self.fq[layer])
        mask = np.zeros(len(batch), bool)
        for m in self.fq[layer]:
            mask |= m.gate(batch, smooth)
        return batch.select(mask)

    def backward(self, layer: int, batch: SpikeBatch, interleave: bool, smooth=None) -> SpikeBatch:
        self.calls += len(self.bq[layer])
        return merge_shards([m.backward(batch, interleave, smooth) for m in self.bq[layer]])

    def preact(self, layer: int) -> np.ndarray:
        return np.concatenate([m.S for m in self.fq[layer]])

    def end_sample(self, smooth_inputs: list) -> None:
        for layer, shards in self.fq.items():
            for m in shards:
                m.end_sample(smooth_inputs[layer - 1])
        for layer, shards in self.bq.items():
            for m in shards:
                m.end_sample(smooth_inputs[layer - 1])

    def weights(self) -> list[np.ndarray]:
        return [np.concatenate([m.W for m in self.fq[l]], axis=1) for l in sorted(self.fq)]

    def backward_weights(self) -> dict[int, np.ndarray]:
        """Each layer's backward replica ``W_l`` (``l >= 2``), assembled from its shards."""
        return {l: np.concatenate([m.weights() for m in self.bq[l]], axis=0) for l in sorted(self.bq)}


def build_backend(cfg: NetConfig, weights: list[np.ndarray], shards: int = 1) -> LocalBackend:
    """Module objects of every layer, ``shards`` per layer (capped at the layer size)."""
    num = Numerics.of(cfg)
    enc = [num.encode(w) for w in weights]
    fq, bq = {}, {}
    for layer in range(1, cfg.model.n_layers + 1):
        w = enc[layer - 1]
        fq[layer] = [ForwardQuantizer(s, num, w[:, s.lo:s.hi])
                     for s in layer_specs(cfg, layer, min(shards, w.shape[1]), backward=False)]
        if layer >= 2:
            bq[layer] = [BackwardQuantizer(s, num, w[s.lo:s.hi, :])
                         for s in layer_specs(cfg, layer, min(shards, w.shape[0]), backward=True)]
    return LocalBackend(fq, bq)


def local_net(cfg: NetConfig, weights: list[np.ndarray] | None = None, shards: int = 1) -> SpikingNet:
    """A spiking MLP in this process, initialised from ``cfg.seed`` unless ``weights`` are given."""
    if weights is None:
        weights = init_weights(cfg.model.sizes, cfg.model.w_init, cfg.seed)
    return SpikingNet(cfg, build_backend(cfg, weights, shards))
