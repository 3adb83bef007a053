#!/usr/bin/env bash
# launch/local_cluster.sh - a two-node Ray cluster on this machine, for trying the
# ray_cluster runtime and the two_nodes placement without a real cluster.
#
#   launch/local_cluster.sh start    # prints RAY_ADDRESS=127.0.0.1:<port> as its last line
#   distspike-train runtime=ray_cluster runtime.address=<ip>:<port> placement=two_nodes ...
#   launch/local_cluster.sh start --jobs   # also the dashboard's job server (needs ray[default]:
#                                          # pip install distspike[jobs]); prints
#                                          # RAY_JOB_ADDRESS=http://127.0.0.1:<port> before RAY_ADDRESS
#   RAY_AUTH_MODE=disabled RAY_JOB_ADDRESS=http://127.0.0.1:<port> JOB_PIP=0 launch/submit_job.sh ...
#   launch/local_cluster.sh status
#   launch/local_cluster.sh stop
#
# Node "a" (the head) offers the custom resource node_a, node "b" offers node_b,
# matching conf/placement/two_nodes.yaml. Every port is a free one picked at start and
# the cluster has its own temp dirs, so it coexists with other Ray instances on the host.
#
# Each node has a temp dir of its own (head: $DISTSPIKE_CLUSTER_DIR/ray, worker: .../ray-b).
# Two raylets on one host would otherwise share one session dir, hence one
# runtime_resources/working_dir_files/: Ray's working_dir plugin unpacks a job's
# --working-dir with overwrite=True on each node that first needs it, so when the job's
# driver joined the cluster, the worker's agent installing the job's runtime env (eager
# install) deleted and re-created the very directory the head's driver ran in (the driver's
# os.getcwd() then raised FileNotFoundError, inside numba). On a real cluster every node
# is its own host, so this only concerns the local one.
#
# Loopback only: the cluster runs without authentication (RAY_AUTH_MODE=disabled), so
# every server of it (GCS, raylets, object managers, workers, dashboard agents,
# runtime-env agents, metrics exporters, the Ray client server, and with --jobs the
# dashboard and its job server, which runs any command it is sent) must be unreachable
# from other hosts. Ray binds them all to the node address when that address is
# loopback, but `ray start --node-ip-address=127.0.0.1` replaces a loopback address
# by the host's routable one (services.resolve_ip_for_localhost) on Linux. So each
# node is started by `ray start` run through a small Python wrapper (ray_start) that
# keeps 127.0.0.1; tests/test_launch.py checks every listening socket of the cluster's
# processes. The processes the head spawns that join the cluster themselves (with --jobs:
# the dashboard agent's job manager, each job's supervisor and driver) resolve 127.0.0.1
# the same way, outside the wrapper: the head runs with Ray's cluster mode off
# (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0), which makes a process's own node address
# 127.0.0.1 (see start_node). Without it `ray job submit` hung: the agent's ray.init
# dialled <routable ip>:<gcs port>, where nothing listens.
#
# Each `ray start` runs in a new session (setsid); all the daemons it spawns (GCS,
# raylet, agents, and the raylet's worker processes) inherit that session id. The
# state file records the session ids and the PIDs seen at start. `stop` signals
# exactly the live processes of those sessions (SIGTERM, then SIGKILL after a grace
# period). It never runs `ray stop`, which kills every Ray process of the user on the
# machine, whoever started it. A failed `start` stops whatever it had started.
#
# Environment:
#   DISTSPIKE_CLUSTER_DIR  state + the nodes' Ray temp dirs (default /tmp/dsc-<uid>; keep it short:
#                          Ray's socket paths under it must fit in 107 bytes)
#   NUM_CPUS               logical CPUs offered by each node (default 8; actors mostly wait)
#   OBJECT_STORE_BYTES     object store size per node (default 200 MB)
#   GRACE_S                seconds between SIGTERM and SIGKILL on stop (default 5)
#   WAIT_S                 seconds start waits for node_b to join, and for the job server (default
#                          240 each: generous for a loaded machine; both are polled, so a fast start is fast)
#   KEEP_LOGS=1            keep the Ray temp dirs (logs) on stop
#   PYTHON                 the interpreter with ray installed (it runs Ray's CLI; default
#                          python3 from PATH)
set -euo pipefail

export RAY_AUTH_MODE=disabled          # no token auth for this throwaway local cluster
export RAY_USAGE_STATS_ENABLED=0

STATE_DIR=${DISTSPIKE_CLUSTER_DIR:-/tmp/dsc-$(id -u)}
STATE_FILE=$STATE_DIR/state.env
RAY_TMP=$STATE_DIR/ray              # the head's temp dir (sessions, logs, job uploads)
RAY_TMP_B=$STATE_DIR/ray-b          # the worker's own (see the header)
NUM_CPUS=${NUM_CPUS:-8}
OBJECT_STORE_BYTES=${OBJECT_STORE_BYTES:-200000000}
GRACE_S=${GRACE_S:-5}
WAIT_S=${WAIT_S:-240}
PYTHON=${PYTHON:-python3}
RAY_ADDRESS=""
HEAD_SID=-1
WORKER_SID=-1
PIDS=""
JOBS=0                 # start --jobs: the head runs the dashboard (job server) on 127.0.0.1
RAY_JOB_ADDRESS=""

die() { echo "local_cluster.sh: $*" >&2; exit 1; }
for var in GRACE_S WAIT_S; do
    [[ ${!var} =~ ^[0-9]+$ ]] || { echo "local_cluster.sh: $var=${!var} must be a whole number of seconds" >&2; exit 2; }
done

# free_ports N: N distinct free TCP ports on this host, space separated.
free_ports() {
    "$PYTHON" -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# session_pids SID: live (non-zombie) processes whose session id is SID.
session_pids() {
    ps -eo pid=,sid=,stat= | awk -v sid="$1" '$2 == sid && $3 !~ /^Z/ { print $1 }'
}

# our_pids: live processes of the recorded sessions, plus recorded PIDs still in them.
our_pids() {
    {
        session_pids "$HEAD_SID"
        session_pids "$WORKER_SID"
        local pid sid
        for pid in $PIDS; do
            sid=$(ps -o sid= -p "$pid" 2>/dev/null | tr -d ' ') || continue
            if [[ $sid == "$HEAD_SID" || $sid == "$WORKER_SID" ]]; then echo "$pid"; fi
        done
    } | sort -un
}

# write_state: record what has been started so far (stop works after a partial start).
write_state() {
    HEAD_SID=$(cat "$STATE_DIR/head.sid" 2>/dev/null || echo -1)
    WORKER_SID=$(cat "$STATE_DIR/worker.sid" 2>/dev/null || echo -1)
    PIDS=$(our_pids | tr '\n' ' ')
    cat >"$STATE_FILE" <<EOF
RAY_ADDRESS=$RAY_ADDRESS
RAY_JOB_ADDRESS=$RAY_JOB_ADDRESS
HEAD_SID=$HEAD_SID
WORKER_SID=$WORKER_SID
RAY_TMP=$RAY_TMP
RAY_TMP_B=$RAY_TMP_B
PIDS="$PIDS"
EOF
}

# Ray's CLI keeping loopback addresses (see the header): resolve_ip_for_localhost made
# the identity, for --node-ip-address=127.0.0.1 and --address=127.0.0.1:PORT alike.
RAY_LOOPBACK='
import sys
import ray._private.services as services
services.resolve_ip_for_localhost = lambda host: host  # keep 127.0.0.1
from ray.scripts.scripts import main
sys.argv[0] = "ray"
sys.exit(main())'

# start_node NAME ARGS...: `ray start ARGS` in a new session whose id goes to NAME.sid.
# The head runs with Ray's cluster mode off (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0): then
# services.get_node_ip_address() is 127.0.0.1 in every process the head spawns, so those
# that call ray.init themselves (the dashboard agent's job manager, job supervisors, job
# drivers) join 127.0.0.1:<gcs port> instead of <routable ip>:<gcs port>, where nothing
# listens (that was the `ray job submit` hang). The worker keeps it on (=1): `ray start
# --address` refuses to start a second node with cluster mode off.
start_node() {
    local name=$1; shift
    local log=$STATE_DIR/$name.log sidfile=$STATE_DIR/$name.sid cluster_mode=1
    if [[ $name == head ]]; then cluster_mode=0; fi
    # the shell that setsid runs leads the new session; it records $$ and execs ray
    if ! setsid bash -c 'echo $$ > "$0"; exec "$@"' "$sidfile" env RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=$cluster_mode \
            "$PYTHON" -c "$RAY_LOOPBACK" start "$@" >"$log" 2>&1 </dev/null; then
        cat "$log" >&2
        echo "local_cluster.sh: ray start failed for node $name (log: $log)" >&2
        return 1
    fi
}

# wait_for_node_b: until the cluster lists the worker's node_b resource (at most $WAIT_S s).
wait_for_node_b() {
    local deadline=$((SECONDS + WAIT_S))
    while ((SECONDS < deadline)); do
        if timeout 60 "$PYTHON" -c "$RAY_LOOPBACK" status --address="$RAY_ADDRESS" 2>/dev/null | grep -q node_b; then
            return 0
        fi
        sleep 2
    done
    echo "local_cluster.sh: node_b did not join $RAY_ADDRESS within $WAIT_S s (WAIT_S); see $STATE_DIR/worker.log" >&2
    return 1
}

# wait_for_job_server: until the dashboard answers on $RAY_JOB_ADDRESS (at most $WAIT_S s).
wait_for_job_server() {
    local deadline=$((SECONDS + WAIT_S))
    while ((SECONDS < deadline)); do
        if "$PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/api/version", timeout=10)' \
                "$RAY_JOB_ADDRESS" 2>/dev/null; then
            return 0
        fi
        sleep 1
    done
    echo "local_cluster.sh: the job server did not answer at $RAY_JOB_ADDRESS within $WAIT_S s (WAIT_S; is" \
         "ray[default] installed? pip install distspike[jobs]); see $STATE_DIR/head.log and $RAY_TMP/session_latest/logs/" >&2
    return 1
}

# start_cluster: the head (node_a), then a worker (node_b) joining it.
start_cluster() {
    local gcs client dash a_http a_grpc b_http b_grpc dashboard=false
    read -r gcs client dash a_http a_grpc b_http b_grpc <<<"$(free_ports 7)"
    local common=(--node-ip-address=127.0.0.1 --num-cpus="$NUM_CPUS"
                  --object-store-memory="$OBJECT_STORE_BYTES" --disable-usage-stats)
    if [[ $JOBS == 1 ]]; then dashboard=true; RAY_JOB_ADDRESS=http://127.0.0.1:$dash; fi
    start_node head --head --port="$gcs" --ray-client-server-port="$client" \
        --include-dashboard="$dashboard" --dashboard-host=127.0.0.1 --dashboard-port="$dash" --temp-dir="$RAY_TMP" \
        --dashboard-agent-listen-port="$a_http" --dashboard-agent-grpc-port="$a_grpc" \
        --resources='{"node_a": 1}' "${common[@]}" || return 1
    RAY_ADDRESS=127.0.0.1:$gcs
    write_state
    start_node worker --address="$RAY_ADDRESS" --temp-dir="$RAY_TMP_B" \
        --dashboard-agent-listen-port="$b_http" --dashboard-agent-grpc-port="$b_grpc" \
        --resources='{"node_b": 1}' "${common[@]}" || return 1
    write_state
    wait_for_node_b || return 1
    if [[ $JOBS == 1 ]]; then wait_for_job_server; fi
}

cmd_start() {
    if [[ -f $STATE_FILE ]]; then
        # shellcheck disable=SC1090
        source "$STATE_FILE"
        [[ -z $(our_pids) ]] || die "a cluster is already running at $RAY_ADDRESS (state: $STATE_FILE); stop it first"
    fi
    mkdir -p "$STATE_DIR"
    rm -rf "$RAY_TMP" "$RAY_TMP_B" "$STATE_FILE" "$STATE_DIR"/*.sid
    mkdir -p "$RAY_TMP" "$RAY_TMP_B"
    if ! start_cluster; then
        write_state
        cmd_stop
        die "start failed; the processes it had started are stopped"
    fi
    write_state
    echo "two-node Ray cluster up (node_a: head, node_b: worker); state in $STATE_FILE" >&2
    if [[ $JOBS == 1 ]]; then echo "RAY_JOB_ADDRESS=$RAY_JOB_ADDRESS"; fi
    echo "RAY_ADDRESS=$RAY_ADDRESS"
}

cmd_stop() {
    [[ -f $STATE_FILE ]] || { echo "no cluster recorded in $STATE_FILE" >&2; return 0; }
    # shellcheck disable=SC1090
    source "$STATE_FILE"
    local pids waited=0
    pids=$(our_pids)
    if [[ -n $pids ]]; then kill -TERM $pids 2>/dev/null || true; fi
    while [[ -n $(our_pids) && $waited -lt $((GRACE_S * 4)) ]]; do
        sleep 0.25; waited=$((waited + 1))
    done
    pids=$(our_pids)
    if [[ -n $pids ]]; then kill -KILL $pids 2>/dev/null || true; fi
    for _ in $(seq 20); do [[ -z $(our_pids) ]] && break; sleep 0.25; done
    [[ -z $(our_pids) ]] || die "processes still alive: $(our_pids | tr '\n' ' ')"
    rm -f "$STATE_FILE" "$STATE_DIR"/*.sid
    if [[ ${KEEP_LOGS:-0} != 1 ]]; then rm -rf "$RAY_TMP" "$RAY_TMP_B"; fi
    echo "stopped the cluster at $RAY_ADDRESS" >&2
}

cmd_status() {
    [[ -f $STATE_FILE ]] || { echo "not running (no $STATE_FILE)"; return 1; }
    # shellcheck disable=SC1090
    source "$STATE_FILE"
    echo "RAY_ADDRESS=$RAY_ADDRESS"
    if [[ -n ${RAY_JOB_ADDRESS:-} ]]; then echo "RAY_JOB_ADDRESS=$RAY_JOB_ADDRESS"; fi
    echo "head session $HEAD_SID: $(session_pids "$HEAD_SID" | wc -l) processes"
    echo "worker session $WORKER_SID: $(session_pids "$WORKER_SID" | wc -l) processes"
    timeout 30 "$PYTHON" -c "$RAY_LOOPBACK" status --address="$RAY_ADDRESS" || true
}

USAGE="usage: $0 start [--jobs]|stop|status"
case ${1:-} in
    start)
        case ${2:-} in
            "") ;;
            --jobs) JOBS=1 ;;
            *) echo "local_cluster.sh: unknown option ${2} for start; $USAGE" >&2; exit 2 ;;
        esac
        cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "$USAGE" >&2; exit 2 ;;
esac
