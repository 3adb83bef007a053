#!/usr/bin/env bash
# launch/submit_job.sh - submit one distspike-train run to a running Ray cluster as a
# Ray job (Ray Jobs API, served by the head node's dashboard, default port 8265).
#
#   RAY_JOB_ADDRESS=http://head:8265 launch/submit_job.sh experiment=table3_fsgd
#
# Run it from the repository root: `--working-dir .` uploads the checkout (without
# outputs, multiruns, results and .git) and the job runs in that directory, so
# `python -m distspike.train` works without installing the package on the cluster; the
# runtime env's "pip" list installs the dependencies Ray does not already bring. Inside
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
RUNTIME_ENV=$(cat <<'EOF'
{
  "pip": ["numpy>=1.24", "numba>=0.59", "pyarrow>=14", "hydra-core>=1.3,<1.4",
          "omegaconf>=2.3,<2.4", "scikit-learn>=1.3", "tqdm>=4.60"],
  "excludes": ["outputs/", "multirun/", "results/", ".git/", "*.egg-info/"],
  "env_vars": {"HYDRA_FULL_ERROR": "0"}
}
EOF
)

# shellcheck disable=SC2086  # ENTRYPOINT is a command line
exec ray job submit --address "$ADDRESS" --working-dir . --runtime-env-json "$RUNTIME_ENV" \
    -- $ENTRYPOINT runtime=ray_cluster runtime.address=auto "$@"
