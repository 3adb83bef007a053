"""A warning for a network that never learns: no output unit has fired yet.

With too small initial weights (``model.w_init``) the hidden potentials never reach
threshold, no spike reaches the output layer, no error is ever gated through, and
the error stays at chance for good. ``watch_outputs`` checks once, after the first
``after`` samples a run trains, and logs one warning with the spike totals per layer.
"""
from __future__ import annotations

import logging

log = logging.getLogger("distspike.train")

SAMPLES = 300  # the check comes after this many training samples of the run


def silent_output_warning(fwd: list[int], w_init: float, samples: int) -> str | None:
    """The warning if the output layer (last entry of ``fwd``, forward spikes per layer) never fired."""
    if fwd[-1]:
        return None
    counts = ", ".join(f"layer {l}: {n}" for l, n in enumerate(fwd))
    return (f"no output spike in the first {samples} training samples (forward spikes per layer: {counts}): "
            f"the network cannot learn; raise model.w_init (now {w_init!r})")


def watch_outputs(net, after: int = SAMPLES) -> None:
    """Have ``net`` warn once if no output unit has fired when it has trained ``after`` samples.

    Wraps ``net.train_sample`` (the one call the epoch loop makes per sample); a run
    resumed past that point is not checked again.
    """
    train_sample = net.train_sample

    def checked(x, label) -> None:
        train_sample(x, label)
        if net.samples_seen < after:
            return
        net.train_sample = train_sample  # checked once: later samples go straight to the net
        if net.samples_seen == after:
            msg = silent_output_warning(net.stats.as_dict()["fwd"], net.cfg.model.w_init, after)
            if msg:
                log.warning(msg)

    net.train_sample = checked
