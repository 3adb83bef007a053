"""Runtimes: where the modules of a spiking MLP live (this process, or Ray actors)."""
from __future__ import annotations

import numpy as np

from distspike.config import LoggingConfig, NetConfig, RuntimeConfig


def make_net(cfg: NetConfig, runtime: RuntimeConfig, weights: list[np.ndarray] | None = None,
             logging: LoggingConfig | None = None, run_dir: str | None = None):
    """Build a ``SpikingNet`` on the configured runtime. Close it (or use ``with``) when done.

    ``logging``/``run_dir``: per-actor spike traffic logs under ``run_dir/traffic``.
    """
    runtime.check_against(cfg.model)
    if runtime.kind == "local":
        from distspike.runtime.local import local_net
        return local_net(cfg, weights, runtime.shards, logging=logging, run_dir=run_dir)
    from distspike.runtime.ray_backend import ray_net
    return ray_net(cfg, runtime, weights, logging=logging, run_dir=run_dir)
