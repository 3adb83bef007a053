#!/usr/bin/env bash
# launch/submit_job.sh - submit one distspike-train run to a running Ray cluster as a
# Ray job (Ray Jobs API, served by the head node's dashboard, default port 8265).
#
#   RAY_JOB_ADDRESS=http://head:8265 launch/submit_job.sh experiment=table3_fsgd
#
# Run it from the repository root: `--working-dir .` uploads the checkout (without
# virtual environments (.venv*, venv/, env/), run outputs (outputs/, multirun/), results/,
# build artefacts, caches and .git: the runtime env's "excludes") and the job runs in
# that directory, so `python -m distspike.train` works without installing the package on
# the cluster; the runtime env's "pip" list installs the dependencies Ray does not
# already bring (for real clusters; JOB_PIP=0 leaves it out, so the job uses the Python
# environment the cluster runs in, e.g. launch/local_cluster.sh started from a venv
# that has distspike's dependencies: tests/test_launch.py does that). Inside
# the job `runtime.address=auto` joins the cluster the job runs on. Arguments are
# distspike-train overrides. Set ENTRYPOINT=distspike-train if the cluster's image has
# distspike installed. The data must be readable on the head node (data.root=...).
#
# There is no default address: a guessed one could reach someone else's cluster, so
# RAY_JOB_ADDRESS must be given. The cluster is expected to run with Ray token auth
# (launch/README.md, "Token authentication"): `ray job submit` sends the token it finds
# in RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token.
set -euo pipefail

ADDRESS=${RAY_JOB_ADDRESS:?"submit_job.sh: set RAY_JOB_ADDRESS=http://<head>:8265 (the cluster's job server); there is no default"}
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}
ENTRYPOINT=${ENTRYPOINT:-python -m distspike.train}
JOB_PIP=${JOB_PIP:-1}
[[ $JOB_PIP == 0 || $JOB_PIP == 1 ]] || { echo "submit_job.sh: JOB_PIP=$JOB_PIP must be 0 or 1" >&2; exit 2; }
PIP='"pip": ["numpy>=1.24", "numba>=0.59", "pyarrow>=14", "hydra-core>=1.3,<1.4", "omegaconf>=2.3,<2.4",
         "scikit-learn>=1.3", "matplotlib>=3.7", "tqdm>=4.60", "snowballstemmer>=2.2"],'
if [[ $JOB_PIP == 0 ]]; then PIP=""; fi
# gitignore-style patterns, relative to the working dir: never upload environments or outputs
RUNTIME_ENV=$(cat <<EOF
{
  $PIP
  "excludes": [".venv*", "venv/", "env/", "outputs/", "multirun/", "results/", ".git/", "*.egg-info/", "build/",
               "dist/", "__pycache__/", ".pytest_cache/", "ray_tmp"],
  "env_vars": {"HYDRA_FULL_ERROR": "0"}
}
EOF
)

# shellcheck disable=SC2086  # ENTRYPOINT is a command line
exec ray job submit --address "$ADDRESS" --working-dir . --runtime-env-json "$RUNTIME_ENV" \
    -- $ENTRYPOINT runtime=ray_cluster runtime.address=auto "$@"
