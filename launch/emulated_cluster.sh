#!/usr/bin/env bash
# launch/emulated_cluster.sh - an emulated multi-node Ray cluster on this machine (root):
# one network namespace and one memory cgroup per Ray node, a bridge in a namespace of
# its own, nothing in (or listening on) the host's root namespace.
#
#   launch/emulated_cluster.sh start 3 [--mem-mb 1024]  # prints RAY_ADDRESS=<ip>:<port> last
#   launch/emulated_cluster.sh run -- distspike-train runtime=ray_cluster \
#       runtime.address=<ip>:<port> placement=one_per_node runtime.shards=3 ...
#   launch/emulated_cluster.sh status
#   launch/emulated_cluster.sh kill 2 | restart 2       # SIGKILL every process of worker node 2 / start it again
#   launch/emulated_cluster.sh partition 2 25           # worker node 2's link down for 25 s
#   launch/emulated_cluster.sh stop                     # also after a failed or crashed start
#
# Options go before the command: --dir DIR (default $DISTSPIKE_RIG_DIR or /tmp/dsr-<uid>).
# The work is done by distspike/cluster/emulated.py (see its docstring and docs/cluster.md).
# PYTHON: the interpreter with distspike and Ray installed (default python3 from PATH).
set -euo pipefail
exec "${PYTHON:-python3}" -m distspike.cluster.emulated "$@"
