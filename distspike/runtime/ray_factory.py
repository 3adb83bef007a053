"""Creates (and re-creates) the Ray runtime's shard actors in their placement-group bundles."""
from __future__ import annotations

import numpy as np
import ray
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from distspike.config import LoggingConfig
from distspike.core.modules import Numerics
from distspike.runtime.ray_actor import ShardActor
from distspike.runtime.ray_placement import actor_options
from distspike.runtime.shard_state import SeededInit
from distspike.runtime.storage import NodeStore, next_seq


class ActorFactory:
    """Creates the shard actors of one network in their placement-group bundles (and re-creates lost ones).

    ``plan`` rows are ``(name, kind, spec, weight shape)``; bundle ``k`` holds actor ``k``.
    ``store``: where the actors write their parts (``runtime.storage``; settled once they run).
    """

    def __init__(self, plan: list, bundles: list[dict], pg, num: Numerics, logging: LoggingConfig | None,
                 store: NodeStore):
        self.plan, self.bundles, self.pg, self.num = plan, bundles, pg, num
        self.logging, self.store = logging, store
        self.index = {row[0]: k for k, row in enumerate(plan)}
        self.remote_cls = ray.remote(ShardActor)

    def spawn(self, name: str, block=None):
        """Start actor ``name`` in its bundle; ``block`` its weights: an array, a ``SeededInit`` (the
        actor draws its own), or None (zeros, made by the actor: a state is loaded next)."""
        k = self.index[name]
        _, kind, spec, shape = self.plan[k]
        block = tuple(shape) if block is None else block if isinstance(block, SeededInit) else \
            np.ascontiguousarray(block)
        strategy = PlacementGroupSchedulingStrategy(placement_group=self.pg, placement_group_bundle_index=k)
        return self.remote_cls.options(scheduling_strategy=strategy, max_concurrency=1,
                                       **actor_options(self.bundles[k])).remote(
            name, kind, spec, self.num, block, self.logging, self.store,
            next_seq(self.store.run_dir, name) if self.store.collect else 0)
