"""In-process runtime (``runtime=local``): the scheduler calls module shells directly.

This is the fast path for small networks and the reference that the Ray runtime
must match. Sharding works here too (several shells per layer), which is how tests
show that sharding never changes the math without starting Ray.
"""
from __future__ import annotations

import time

import numpy as np

from distspike.config import LoggingConfig, NetConfig
from distspike.core.messages import Segments, SpikeBatch, merge_parts
from distspike.core.modules import Numerics
from distspike.core.network import SpikingNet, init_weights, layer_specs
from distspike.runtime.memplan import available_bytes, check_driver, driver_bytes
from distspike.runtime.shell import Shell, make_module


class LocalBackend:
    """Dispatches batches to in-process shells: ``fq[l]`` and ``bq[l]`` are shard lists."""

    def __init__(self, fq: dict[int, list[Shell]], bq: dict[int, list[Shell]]):
        self.fq, self.bq = fq, bq
        self.calls = 0  # module calls dispatched (the Ray runtime counts actor calls)
        self._fused_state = None  # tuples of the modules' arrays for ``train_fused``
        self._no_log = np.zeros((0, 7), np.int32)  # the fused kernel's traffic table when it logs nothing
        self._fused_actors = None  # the shells of the kernel's actor indices (``train_fused``)
        # ``(name, shell)`` of every shard in ``shells()`` order: listed once, not sorted at every sample
        self._shells = [(sh.name, sh) for groups in (fq, bq) for _, shards in sorted(groups.items()) for sh in shards]

    def can_fuse(self) -> bool:
        """Whether ``train_fused`` applies: one shard per layer, recorders (if any) take whole samples."""
        shells = [sh for _, sh in self.shells()]
        return all(len(s) == 1 for s in (*self.fq.values(), *self.bq.values())) and \
            all(sh.recorder is None or hasattr(sh.recorder, "take") for sh in shells)

    def can_fuse_depth(self) -> bool:
        """Whether ``train_depth`` applies: one shard per layer and no traffic recorders (the
        per-message path logs one row per single-event message; the kernel tables none)."""
        return all(len(s) == 1 for s in (*self.fq.values(), *self.bq.values())) and \
            all(sh.recorder is None for _, sh in self.shells())

    def train_depth(self, x: np.ndarray, neg_y: np.ndarray, inp, tgt, steps: int, num,
                    fractional: bool, read_first: bool) -> np.ndarray:
        """A whole un-held depth-first SGD/FSGD training sample in one compiled call (``kernels/depth.py``).

        As ``train_fused``: the call runs the input and target quantizers too, every shell
        enters the sample first, and the per-step spike totals ``(T, 4, L+1)`` are returned
        and added to the shells' counters. No traffic rows (``can_fuse_depth``).
        """
        from distspike.kernels import depth
        self._enter_all(num)
        L = len(self.fq)
        stats = np.zeros((steps, 4, L + 1), np.int64)
        try:
            depth.herd_and_train_depth(x, inp.phi, inp.total, neg_y, tgt.phi, tgt.total, steps, *self._fused_state,
                                       num.thresh, num.unit, fractional, read_first, stats, self._step_lr)
        except OverflowError as err:
            raise OverflowError(f"fused in-process sample at {self.fq[1][0].position}: {err}") from None
        self._add_counters(stats)
        return stats

    def _enter_all(self, num) -> None:
        """Every shell enters the sample; the kernels' typed state lists are built on first use."""
        for _, shell in self._shells:
            shell._enter()
        if self._fused_state is None:
            self._fused_state = self._fused_lists()
            self._step_lr = np.array(num.step_lr, num.dtype)
            # actor ``a`` of the kernel's traffic rows: forward quantizers of layers 1..L, backward ones of 2..L
            self._fused_actors = [self.fq[l][0] for l in sorted(self.fq)] + [self.bq[l][0] for l in sorted(self.bq)]
            self._counter_rows()

    def _counter_rows(self) -> None:
        """The shells' counters become rows of two ``(L+1, 4)`` arrays (their values kept; row 0, and row 1
        of the backward one, unused), so a fused sample's totals are added in two numpy operations."""
        L = len(self.fq)
        self._fcounts, self._bcounts = np.zeros((L + 1, 4), np.int64), np.zeros((L + 1, 4), np.int64)
        for rows, group in ((self._fcounts, self.fq), (self._bcounts, self.bq)):
            for l, shards in group.items():
                rows[l] = shards[0].counters
                shards[0].counters = rows[l]  # a view: the shell's in-place updates and loads land here

    def _add_counters(self, stats: np.ndarray) -> None:
        """A fused sample's spike totals into the shells' counters; it counts as one call."""
        totals = stats.sum(axis=0)  # (4, L+1)
        self._fcounts[1:, :3] += totals[:3, 1:].T
        self._bcounts[2:, 3] += totals[3, 2:]
        self.calls += 1

    def train_fused(self, x: np.ndarray, neg_y: np.ndarray, inp, tgt, steps: int, counts: np.ndarray, num,
                    fractional: bool, read_first: bool) -> np.ndarray:
        """A whole SGD/FSGD training sample in one compiled call (``kernels/fused.py``).

        The call also runs the input and target quantizers ``inp`` and ``tgt``
        (``VectorQuantizer``: reset, then ``steps`` steps of ``x`` and ``neg_y``,
        ``fused.herd_and_train``). Every shell enters the sample first (a shard may
        enter earlier than its first message would make it; entering is idempotent and
        order-free between shards). With traffic recorders the kernel also fills the
        sample's message table, whose rows are appended for all actors at once (``SampleRows``).
        Returns the per-step spike totals ``(T, 4, L+1)`` (``[:, 0, 0]``: input spikes) and
        adds them to the shells' counters.
        """
        from distspike.kernels import fused
        self._enter_all(num)
        L = len(self.fq)
        stats = np.zeros((steps, 4, L + 1), np.int64)
        first = self.fq[1][0]
        logging = first.recorder is not None and first.recorder.keeps(first.position[1])
        # SGD's per-message path sends a whole sample per message (``Scheduler._train_sample_wide``)
        mode = fused.LOG_OFF if not logging else fused.LOG_LIVE if fractional else fused.LOG_DEAD
        if logging:  # the kernel appends the sample's rows for all actors to one table (``SampleRows``)
            sample_rows = first.recorder.sample_rows
            if sample_rows is None:
                from distspike.logs.traffic import SampleRows
                sample_rows = SampleRows([sh.recorder for sh in self._fused_actors])
            log, start = sample_rows.begin()
        else:
            log, start = self._no_log, 0
        t0 = time.perf_counter_ns()
        try:
            log, rows = fused.herd_and_train(
                x, inp.phi, inp.total, neg_y, tgt.phi, tgt.total, steps, *self._fused_state, counts, num.thresh,
                num.unit, num.lr, fractional, read_first, stats, log, start, mode, self._step_lr,
                num.penalty_lr, first.module.spec.penalized)
        except OverflowError as err:
            raise OverflowError(f"fused in-process sample at {first.position}: {err}") from None
        for _, shell in self._shells:  # the kernel applied SGD's end-of-sample update (eq. 6)
            shell.ended()
        if logging:  # the sample's compute time is split evenly over its rows, of all actors
            sample_rows.added(log, rows, first.position, not fractional, time.perf_counter_ns() - t0)
        self._add_counters(stats)
        return stats

    def _fused_lists(self):
        """Tuples referencing (not copying) the modules' state arrays, layer by layer.

        Tuples, not ``numba.typed.List``: a typed list's methods are compiled in every
        process that builds one (not cached: 0.9 CPU s and 18 MiB at the first sample even
        with a warm cache), while a tuple of same-typed arrays is a plain argument of the
        cached kernel (indexed by layer inside it).
        """
        fw = [self.fq[l][0].module for l in sorted(self.fq)]
        bw = [self.bq[l][0].module if l in self.bq else None for l in sorted(self.fq)]
        dummy_w = np.zeros((0, 0), fw[0].W.dtype)
        lists = ([m.W for m in fw], [m.S for m in fw], [m.phi for m in fw], [m.c for m in fw], [m.e for m in fw],
                 [dummy_w if m is None else m.WT for m in bw],
                 [np.zeros(0, fw[0].W.dtype) if m is None else m.phi for m in bw],
                 [np.zeros(0, np.int64) if m is None else m.c for m in bw],
                 [np.zeros(0, np.int64) if m is None else m.e for m in bw])
        return [tuple(arrays) for arrays in lists]

    def set_position(self, epoch: int, sample: int, step: int, training: bool = True) -> None:
        """Label the coming messages; each shell starts a new sample on its first message of it."""
        for _, shell in self.shells():
            shell.set_position(epoch, sample, step, training)

    def forward(self, layer: int, batch: SpikeBatch, train: bool) -> SpikeBatch:
        if train:
            for m in self.bq.get(layer, ()):
                m.count(batch)
        self.calls += len(self.fq[layer]) + (len(self.bq.get(layer, ())) if train else 0)
        out = merge_parts([m.forward(batch, train) for m in self.fq[layer]]).plain()
        if train and self.fq[layer][0].module.spec.penalized:  # regularization: the replicas follow
            for m in self.bq.get(layer, ()):
                m.penalize(out)
        return out

    def gate(self, layer: int, batch, smooth=None):
        """Every shard gates the events of its own block; the passed events keep their order."""
        self.calls += len(self.fq[layer])
        mask = np.zeros(len(batch), bool)
        for m in self.fq[layer]:
            mask |= m.gate(batch, smooth)
        return batch.select(mask)

    def backward(self, layer: int, batch, interleave: bool, smooth=None):
        self.calls += len(self.bq[layer])
        return merge_parts([m.backward(batch, interleave, smooth) for m in self.bq[layer]]).plain()

    def fetch(self, batch):
        """Batches are already concrete in-process."""
        return batch

    def spike_counts(self) -> np.ndarray:
        """``(4, L+1)`` totals: forward out, error in, passed (forward shells), backward out."""
        counts = np.zeros((4, len(self.fq) + 1), np.int64)
        for _, shell in self.shells():
            counts[:, shell.layer] += shell.counters
        return counts

    def preact(self, layer: int) -> np.ndarray:
        return np.concatenate([m.preact() for m in self.fq[layer]])

    preact_values = preact

    def end_sample(self, smooth_inputs: list) -> None:
        for name, shell in self.shells():
            shell.end_sample(smooth_inputs[shell.layer - 1])

    def weights(self) -> list[np.ndarray]:
        return [np.concatenate([m.weights() for m in self.fq[l]], axis=1) for l in sorted(self.fq)]

    def backward_weights(self) -> dict[int, np.ndarray]:
        """Each layer's backward replica ``W_l`` (``l >= 2``), assembled from its shards."""
        return {l: np.concatenate([m.weights() for m in self.bq[l]], axis=0) for l in sorted(self.bq)}

    def shells(self):
        """``(name, shell)`` of every shard, e.g. ``("forward.2.0", shell)``: forward layers, then backward ones."""
        return iter(self._shells)

    def state(self) -> dict[str, np.ndarray]:
        return {f"{name}.{key}": np.array(a) for name, m in self.shells() for key, a in m.state().items()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        for name, m in self.shells():
            m.load_state({key: state[f"{name}.{key}"] for key in m.state()})

    def flush(self) -> None:
        first = self._write_side_by_side()
        if first is not None:
            raise first
        for _, shell in self.shells():
            shell.flush()

    def close(self) -> None:
        """Write the last parts and close every shell, all of them even if one fails (a full disk):
        no writer thread is left running; the first error is raised at the end."""
        first = self._write_side_by_side()
        for _, shell in self.shells():
            try:
                shell.close()  # waits for the parts, writes nothing more
            except Exception as err:  # noqa: BLE001 - re-raised below, after the other shells are closed
                first = first or err
        if first is not None:
            raise first

    def _write_side_by_side(self) -> Exception | None:
        """Hand every recorder's last rows to its writer thread, so the parts are written at once (Parquet
        writing releases the GIL); ``flush``/``close`` then wait for them. Returns the first error, if any."""
        first = None
        for _, shell in self.shells():
            if shell.recorder is not None:
                try:
                    shell.recorder.flush(wait=False)
                except Exception as err:  # noqa: BLE001 - handed to the caller
                    first = first or err
        return first


def plan_specs(cfg: NetConfig, shards: int) -> list[tuple]:
    """``(name, kind, spec)`` of every shard actor of the network (no weights: ``memplan`` sizes them)."""
    plan, sizes = [], cfg.model.sizes
    for layer in range(1, cfg.model.n_layers + 1):
        for k, s in enumerate(layer_specs(cfg, layer, min(shards, sizes[layer]), backward=False)):
            plan.append((f"forward.{layer}.{k}", "forward", s))
        if layer >= 2:
            for k, s in enumerate(layer_specs(cfg, layer, min(shards, sizes[layer - 1]), backward=True)):
                plan.append((f"backward.{layer}.{k}", "backward", s))
    return plan


def block_shape(kind: str, spec) -> tuple[int, int]:
    """The weight block a shard is handed: ``(n_in, nb)`` forward, ``(nb, n_out)`` rows backward."""
    return (spec.n_in, spec.hi - spec.lo) if kind == "forward" else (spec.hi - spec.lo, spec.n_out)


def shard_plan(cfg: NetConfig, weights: list[np.ndarray], shards: int):
    """``(name, kind, spec, weight block)`` of every shard actor of the network."""
    return [(name, kind, s, weights[s.layer - 1][:, s.lo:s.hi] if kind == "forward" else
             weights[s.layer - 1][s.lo:s.hi, :]) for name, kind, s in plan_specs(cfg, shards)]


def make_recorder(logging: LoggingConfig | None, run_dir: str | None, name: str):
    """The traffic recorder of one shell, or None when logging is off."""
    if logging is None or not logging.traffic or run_dir is None:
        return None
    from distspike.logs.traffic import TrafficRecorder
    kind, layer, shard = name.split(".")
    return TrafficRecorder(run_dir, name, kind, int(layer), int(shard), logging)


def build_backend(cfg: NetConfig, weights: list[np.ndarray], shards: int = 1,
                  logging: LoggingConfig | None = None, run_dir: str | None = None) -> LocalBackend:
    """Shells of every layer, ``shards`` per layer (capped at the layer size)."""
    num = Numerics.of(cfg)
    logging = logging.for_net(cfg) if logging is not None else None  # the rows' routing, rule and run id
    fq, bq = {}, {}
    for name, kind, spec, block in shard_plan(cfg, [num.encode(w) for w in weights], shards):
        # batches never leave this process, so they are not re-validated at every call
        shell = Shell(name, make_module(kind, spec, num, block), make_recorder(logging, run_dir, name),
                      validate=False)
        (fq if kind == "forward" else bq).setdefault(spec.layer, []).append(shell)
    return LocalBackend(fq, bq)


def local_net(cfg: NetConfig, weights: list[np.ndarray] | None = None, shards: int = 1,
              logging: LoggingConfig | None = None, run_dir: str | None = None) -> SpikingNet:
    """A spiking MLP in this process, initialised from ``cfg.seed`` unless ``weights`` are given."""
    if weights is None:
        check_driver(driver_bytes(cfg.model.sizes, cfg.model.dtype, in_process=True), available_bytes(),
                     f"runtime=local ({cfg.model.n_layers} layers, {shards} shard(s) each, in this process)")
        weights = init_weights(cfg.model.sizes, cfg.model.w_init, cfg.seed)
    return SpikingNet(cfg, build_backend(cfg, weights, shards, logging, run_dir))
