"""Entry-point support for ``distspike-train``: the Hydra schema, config conversion,
run-directory outputs and checkpoints, experiment tracking, and the sweep summary.

Only ``schema`` (generated from ``distspike.config``; ``argv`` and ``completion`` read
it), ``preflight`` and ``sweep`` import Hydra; the rest works on plain containers and
the typed objects of ``distspike.config``.
"""
from pathlib import Path

#: The Hydra config directory shipped inside the package (top-level ``conf`` links here).
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
