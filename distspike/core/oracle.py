"""The event-by-event oracle: the spiking MLP as the module graph of semantics.md.

Every module of the paper's network diagram (Fig. 5) is a separate object written as
literally as the algorithms: herders run the ``argmax`` loop of Alg. 1/2/6/7, one
event at a time, in pure Python/numpy. An ``EventRouter`` moves single events between
them in breadth-first or depth-first order. It is slow on purpose; the batched
runtimes (in-process and Ray) are tested against it.

Graph of layer ``l`` (consumer order as bound):

    spikes of layer l-1 -> updater_l.count, fwdweights_l
    fwdweights_l (row s*W[i]) -> presum_l, herder_l
    herder_l (spike) -> [layer l+1 as above] | counter (held) | gate_L (un-held)
                     -> updater_l.penalty after the step's forward pass (training.regularization)
    target (spike) -> counter (held) | gate_L (un-held)
    gate_l (passed error) -> bwdweights_l (l >= 2), updater_l.error   (column_read=before_update)
                          -> updater_l.error, bwdweights_l (l >= 2)   (column_read=after_update)
    bwdweights_l (column s*W[:, j]) -> bwdherder_l
    bwdherder_l (error spike of layer l-1) -> gate_{l-1}

One matrix ``W_l`` is shared by forward weights, updater and backward weights, as
in the authors' engine.
"""
from __future__ import annotations

import numpy as np

from distspike.config import NetConfig
from distspike.core.modules import Numerics
from distspike.core.network import init_weights, one_hot_neg
from distspike.core.router import EventRouter


def argmax_herd(phi: np.ndarray, thresh, unit, signed: bool):
    """Fire while ``max|phi| > thresh`` (``max phi`` if rectified): the paper's argmax loop."""
    while True:
        mag = np.abs(phi) if signed else phi
        i = int(np.argmax(mag))
        if not mag[i] > thresh:
            return
        s = 1 if phi[i] > 0 else -1
        phi[i] = phi[i] - unit if s > 0 else phi[i] + unit
        yield (i, s)


class Herder:
    """Signed or rectified stream herder (Alg. 6/7); consumes vectors ``(s, v)``."""

    def __init__(self, n, num: Numerics, signed: bool):
        self.num, self.signed = num, signed
        self.phi = np.zeros(n, num.dtype)

    def consume(self, sv):
        s, v = sv
        if s > 0:
            self.phi += v
        else:
            self.phi -= v
        yield from argmax_herd(self.phi, self.num.thresh, self.num.unit, self.signed)


class InputNode:
    """Turns a fed vector into a herder input ``(+1, v)``; keeps the running input sum."""

    def __init__(self, n, num: Numerics):
        self.total = np.zeros(n, num.dtype)

    def consume(self, v):
        self.total += v
        yield (1, v)


class FwdWeights:
    """Spike ``(i, s)`` -> row event ``(s, W[i, :])``."""

    def __init__(self, W):
        self.W = W

    def consume(self, ev):
        i, s = ev
        yield (s, self.W[i].copy())


class PreSum:
    """Running pre-activation sum ``S += s * W[i, :]``."""

    def __init__(self, n, num):
        self.S = np.zeros(n, num.dtype)

    def consume(self, sv):
        s, v = sv
        if s > 0:
            self.S += v
        else:
            self.S -= v


class Gate:
    """Passes an error spike ``(j, s)`` iff ``S_j >= 0`` at that moment."""

    def __init__(self, presum: PreSum):
        self.presum = presum

    def consume(self, ev):
        if self.presum.S[ev[0]] >= 0:
            yield ev


class Updater:
    """Counts input spikes ``c``; SGD counts errors ``e`` (eq. 6), FSGD updates a column (eq. 7)."""

    def __init__(self, W, num: Numerics, fractional: bool, smooth_source=None):
        self.W, self.num, self.fractional = W, num, fractional
        self.smooth_source = smooth_source  # object with the running sum feeding this layer
        self.c = np.zeros(W.shape[0], np.int64)
        self.e = np.zeros(W.shape[1], np.int64)
        self.lr = num.lr  # step size of the current time step: lr * g_t (training.step_lr)

    def count(self, ev):
        self.c[ev[0]] += ev[1]

    def delta(self):
        src = self.c if self.smooth_source is None else _running_sum(self.smooth_source)
        r = np.maximum(src, 0).astype(self.num.dtype)
        return r if self.num.is_int else r * self.lr

    def penalty(self, ev):
        """Regularization (authors' ``SpikeWeighterModule``): ``W[:, j] -= s * regularization * lr * relu(c)``."""
        j, s = ev
        p = np.maximum(self.c, 0).astype(self.num.dtype) * self.num.penalty_lr
        if s > 0:
            self.W[:, j] -= p
        else:
            self.W[:, j] += p

    def error(self, ev):
        """SGD: ``e_j += s``. FSGD: ``W[:, j] -= s * delta`` (eq. 7), on the rows where ``delta_i != 0``
        (the others are unchanged by the step; left alone, a weight of -0.0 keeps its sign)."""
        j, s = ev
        if not self.fractional:
            self.e[j] += s
            return
        d = self.delta()
        rows = np.flatnonzero(d)
        if s > 0:
            self.W[rows, j] -= d[rows]
        else:
            self.W[rows, j] += d[rows]

    def end_sample(self):
        if not self.fractional and self.e.any():
            self.W -= np.outer(self.delta(), self.e.astype(self.W.dtype))


def _running_sum(src) -> np.ndarray:
    return src.total if isinstance(src, InputNode) else src.S


class BwdWeights:
    """Passed error ``(j, s)`` -> column event ``(s, W[:, j])`` read at that moment."""

    def __init__(self, W):
        self.W = W

    def consume(self, ev):
        j, s = ev
        yield (s, self.W[:, j].copy())


class Counter:
    """Held errors: ``count_j += s``; ``launch`` lists ``|count_j|`` spikes per unit in index order."""

    def __init__(self, n):
        self.counts = np.zeros(n, np.int64)

    def consume(self, ev):
        self.counts[ev[0]] += ev[1]

    def launch(self):
        out = [(int(j), 1 if self.counts[j] > 0 else -1) for j in range(self.counts.shape[0])
               for _ in range(abs(int(self.counts[j])))]
        self.counts[:] = 0
        return out


class OracleNet:
    """The spiking MLP of ``cfg`` as an event graph driven by an ``EventRouter``."""

    def __init__(self, cfg: NetConfig, weights: list[np.ndarray] | None = None):
        self.cfg, self.num = cfg, Numerics.of(cfg)
        if weights is None:
            weights = init_weights(cfg.model.sizes, cfg.model.w_init, cfg.seed)
        self.W = [self.num.encode(w).copy() for w in weights]
        self.L = len(self.W)
        self.bwd_rngs = {l: np.random.default_rng([cfg.seed, l]) for l in range(2, self.L + 1)}
        self.trace: list[tuple] = []
        self.step = 0
        self.fwd_spikes: dict[int, list] = {}  # layer -> its forward spikes of the current step (regularization)
        self._build()

    # -- graph ---------------------------------------------------------------------
    def _build(self) -> None:
        cfg, num, sizes = self.cfg, self.num, self.cfg.model.sizes
        r = self.router = EventRouter(cfg.routing)
        self.input_node = InputNode(sizes[0], num)
        r.add("input_node", self.input_node)
        r.add("input", _Traced(self, "input", 0, Herder(sizes[0], num, signed=True)))
        r.bind("input_node", "input")
        r.add("target", Herder(sizes[-1], num, signed=True))
        r.add("counter", Counter(sizes[-1]))
        prev, prev_sum = "input", self.input_node
        for l in range(1, self.L + 1):
            self._build_layer(l, prev, prev_sum)
            prev, prev_sum = f"herder{l}", r.modules[f"presum{l}"]
        errors_to = ("counter", "consume") if cfg.training.hold_error else (f"gate{self.L}", "consume")
        r.bind(prev, *errors_to)
        r.bind("target", *errors_to)

    def _build_layer(self, l: int, prev: str, prev_sum) -> None:
        r, num, tr, W = self.router, self.num, self.cfg.training, self.W[l - 1]
        presum = PreSum(W.shape[1], num)
        smooth = prev_sum if tr.smooth else None
        r.add(f"updater{l}", Updater(W, num, tr.fractional, smooth))
        r.add(f"fwdweights{l}", FwdWeights(W))
        r.add(f"presum{l}", presum)
        r.add(f"herder{l}", _Traced(self, "fwd", l, Herder(W.shape[1], num, signed=False)))
        r.add(f"gate{l}", _Traced(self, "gate", l, Gate(presum)))
        r.bind(prev, f"updater{l}", "count")
        r.bind(prev, f"fwdweights{l}")
        r.bind(f"fwdweights{l}", f"presum{l}")
        r.bind(f"fwdweights{l}", f"herder{l}")
        if l >= 2:
            r.add(f"bwdweights{l}", BwdWeights(W))
            r.add(f"bwdherder{l}", _Traced(self, "bwd", l, Herder(W.shape[0], num, signed=True)))
            r.bind(f"bwdweights{l}", f"bwdherder{l}")
            r.bind(f"bwdherder{l}", f"gate{l - 1}")
        # FSGD column_read: which consumer of a passed error comes first (TrainingConfig.read_first)
        gate_consumers = [(f"updater{l}", "error")] + ([(f"bwdweights{l}", "consume")] if l >= 2 else [])
        for dst, method in (gate_consumers[::-1] if tr.read_first else gate_consumers):
            r.bind(f"gate{l}", dst, method)

    # -- one sample ------------------------------------------------------------------
    def _reset_sample(self) -> None:
        m = self.router.modules
        for name, mod in m.items():
            inner = getattr(mod, "inner", mod)
            if name.startswith("bwdherder"):
                self._reset_backward(int(name[len("bwdherder"):]), inner)
            elif isinstance(inner, (Herder, PreSum, InputNode)):
                for a in ("phi", "S", "total"):
                    if hasattr(inner, a):
                        getattr(inner, a)[:] = 0
            elif isinstance(inner, Updater):
                inner.c[:] = 0
                inner.e[:] = 0
            elif isinstance(inner, Counter):
                inner.counts[:] = 0

    def _reset_backward(self, l: int, herder: Herder) -> None:
        policy = self.cfg.training.backward_reset
        if policy == "zero":
            herder.phi[:] = 0
        elif policy == "random":
            u = self.bwd_rngs[l].uniform(-0.5, 0.5, herder.phi.shape[0])
            herder.phi[:] = self.num.encode(u) if self.num.is_int else u

    def train_sample(self, x: np.ndarray, label: int) -> None:
        """``T`` steps: input root, target root, each held error spike a root; then SGD."""
        r, m = self.router, self.router.modules
        xe = self.num.encode(x)
        ne = self.num.encode(one_hot_neg(int(label), self.cfg.model.sizes[-1]))
        self._reset_sample()
        for t in range(self.cfg.training.steps):
            self.step = t
            for l in range(1, self.L + 1):
                m[f"updater{l}"].lr = self.num.lr_at(t)
            self.fwd_spikes = {l: [] for l in range(1, self.L + 1)}
            r.feed("input_node", "consume", xe)
            self._penalize()
            r.feed("target", "consume", (1, ne))
            if self.cfg.training.hold_error:
                for ev in m["counter"].launch():
                    r.feed(f"gate{self.L}", "consume", ev)
        for l in range(1, self.L + 1):
            m[f"updater{l}"].end_sample()

    def _penalize(self) -> None:
        """Regularization: after a step's forward pass (nothing reads ``W_l`` in between), each
        layer's spikes of the step, in firing order, go to its updater's ``penalty``."""
        if not self.cfg.training.regularization:
            return
        for l, spikes in self.fwd_spikes.items():
            for ev in spikes:
                self.router.modules[f"updater{l}"].penalty(ev)

    def predict_scores(self, x: np.ndarray) -> np.ndarray:
        """``T`` forward steps with fresh forward state; ``sum_t u_L / T``."""
        xe = self.num.encode(x)
        phi, presums, herders = self._fresh_forward()
        for _ in range(self.cfg.training.steps):
            batch = list(argmax_herd(_add(phi, xe), self.num.thresh, self.num.unit, True))
            for l in range(1, self.L + 1):
                batch = self._forward_layer(l, batch, presums[l - 1], herders[l - 1])
        return self.num.decode(presums[-1].S) / self.cfg.training.steps

    def _fresh_forward(self):
        sizes = self.cfg.model.sizes
        phi = np.zeros(sizes[0], self.num.dtype)
        presums = [PreSum(n, self.num) for n in sizes[1:]]
        herders = [Herder(n, self.num, signed=False) for n in sizes[1:]]
        return phi, presums, herders

    def _forward_layer(self, l, batch, presum, herder):
        out = []
        for i, s in batch:
            row = (s, self.W[l - 1][i].copy())
            presum.consume(row)
            out.extend(herder.consume(row))
        return out


def _add(phi, v):
    phi += v
    return phi


class _Traced:
    """Wraps a module to record ``(step, kind, layer, n_emitted)`` per consumed event."""

    def __init__(self, net: OracleNet, kind: str, layer: int, inner):
        self.net, self.kind, self.layer, self.inner = net, kind, layer, inner

    def consume(self, ev):
        n = 0
        for out in self.inner.consume(ev):
            n += 1
            if self.kind == "fwd" and self.net.cfg.training.regularization:
                self.net.fwd_spikes[self.layer].append(out)
            yield out
        self.net.trace.append((self.net.step, self.kind, self.layer, n))
