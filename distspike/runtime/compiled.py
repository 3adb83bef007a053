"""A training sample as a Ray Compiled Graph (``runtime.compiled: true``): the breadth-first
schedule of held-error SGD or FSGD (paper App. F, section 3.8), bound once and re-executed.

With held errors and breadth-first routing, the schedule of a sample does not depend on
the spikes. FSGD: per time step ``t`` it is always

1. the input spikes of step ``t`` -> forward ``1`` -> ... -> forward ``L``;
2. the output gate: the output spikes and the target spikes of step ``t`` go to the
   held-error counter, which launches the roots (``ErrorCounter``), and gate ``L``;
3. backward ``L`` (after counting the spikes that entered layer ``L`` in step ``t``)
   -> gate ``L-1`` -> backward ``L-1`` -> ... -> gate ``1``;

the same list of messages the central ``Scheduler`` dispatches, in the same order per
actor. SGD (``wide``): the same chain once per sample, each message holding all ``T``
steps (``Scheduler._train_sample_wide``: all forward steps, then the roots the counter
launches over all steps, gated and sent back once). ``build_sample_graph`` binds that
list (for all ``T`` steps, or the one sample-wide pass) as one DAG, with an edge
wherever a message reads another's batch, and Ray compiles it: the actors then
pass batches to each other through shared-memory channels instead of one driver round
trip per message (about 0.3 ms per hop on a 2-core machine instead of 1-1.5 ms). Ray
runs the tasks of one actor in the order they were bound, so every actor applies its
messages in the scheduler's order. Differences from the scheduler's dispatch:

- the held-error counter runs inside the output gate's actors (every shard keeps an
  identical copy), so no batch goes back to the driver within a sample;
- each count batch travels with its replica's backward message of the same step;
- every message is sent every sample; an empty one is not handed to the shell
  (``ShardActor.graph_*``), exactly as the scheduler drops empty batches. In the
  sample-wide schedule the scheduler sends every message, empty or not, once the
  counter launched any root (and none of the backward chain otherwise): there a
  message after the output gate carries ``None`` when no root was launched, and the
  shells get every other one.

``tests/runtime/test_compiled.py`` checks it bit-equal to the in-process runtime (itself
checked against the event oracle), traffic rows included.
"""
from __future__ import annotations

from collections import defaultdict

import ray
from ray.dag import InputNode, MultiOutputNode

from distspike.core.messages import Segments

#: seconds one sample may take (Ray's default of 10 s is too short for the first sample, which
#: compiles the kernels in every actor while the others busy-wait on their channels)
GET_TIMEOUT_S = 600.0


class SampleGraph:
    """The compiled graph of one training sample, and how many messages it sends each actor.

    ``run(epoch, sample, bases, inputs, targets)``: ``bases`` are the numbers of the
    next message of every actor; ``inputs`` and ``targets`` the sample's ``T`` steps, fed
    to the graph step by step, or (``wide``) whole.
    """

    def __init__(self, actors: dict, fq: dict[int, list[str]], bq: dict[int, list[str]], steps: int,
                 wide: bool = False):
        self.sent: dict[str, int] = defaultdict(int)  # messages per actor per execution
        self.wide = wide  # SGD: one sample-wide message per actor and direction (``inputs``: one Segments)
        dag = build_sample_graph(actors, fq, bq, 1 if wide else steps, self.sent, wide)
        self.dag = dag.experimental_compile()

    @property
    def messages(self) -> int:
        return sum(self.sent.values())

    def run(self, epoch: int, sample: int, bases: dict[str, int], inputs: Segments, targets: Segments) -> None:
        """Run one sample and wait for it (at most ``GET_TIMEOUT_S``); raises what any message raised."""
        args = [inputs, targets] if self.wide else [*inputs.parts, *targets.parts]
        ref = self.dag.execute((epoch, sample, bases), *args)
        ray.get(ref, timeout=GET_TIMEOUT_S)

    def teardown(self) -> None:
        self.dag.teardown()


def build_sample_graph(actors: dict, fq: dict[int, list[str]], bq: dict[int, list[str]], steps: int,
                       sent: dict[str, int], wide: bool = False):
    """Bind the ``steps``-step breadth-first schedule (module docstring); count messages in ``sent``.

    Input ``0`` is ``(epoch, sample, bases)``, inputs ``1..T`` the input spikes of each
    step, inputs ``T+1..2T`` the target spikes (``wide``: ``steps = 1``, each input holds all
    steps and the messages are the sample-wide ones: ``forward_wide``, ``root_gate_wide``,
    ``gate_wide``, ``backward_wide``). Batches between shards are described as
    in ``RayBackend``: ``("value",)``, ``("shards",)``, ``("gated", n, inner)`` and
    ``("rooted", n)`` (``ray_refs.assemble``).
    """
    L = max(fq)
    leaves = []
    with InputNode() as inp:
        ctx = inp[0]

        def send(name: str, step: int, op: str, static: tuple, parts: list):
            op = f"{op}_wide" if wide else op
            node = actors[name].node.bind(ctx, sent[name], step, op, static, *parts)
            sent[name] += 1
            return node

        for t in range(steps):
            kind, parts = ("value",), [inp[1 + t]]
            entering = {}  # layer -> (kind, parts) of the spikes entering it in this step
            for layer in range(1, L + 1):
                entering[layer] = (kind, parts)
                parts = [send(n, t, "forward", (kind,), parts) for n in fq[layer]]
                kind = ("shards",)
            roots = [send(n, t, "root_gate", (len(parts), kind), parts + [inp[1 + steps + t]]) for n in fq[L]]
            kind, parts = ("rooted", len(roots)), roots
            masks = roots
            for layer in range(L, 0, -1):
                if layer < L:
                    masks = [send(n, t, "gate", (kind,), parts) for n in fq[layer]]
                    kind, parts = ("gated", len(masks), kind), masks + parts
                if layer == 1:
                    break
                c_kind, c_parts = entering[layer]
                parts = [send(n, t, "backward", (c_kind, len(c_parts), kind), c_parts + parts) for n in bq[layer]]
                kind = ("shards",)
            leaves.extend(masks)
    return MultiOutputNode(leaves)
