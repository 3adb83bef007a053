"""launch/: cluster templates parse and agree with the placement config; scripts are valid
bash; the local two-node cluster starts, trains with placement=two_nodes and stops
exactly the processes it started."""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch"
SCRIPTS = ["local_cluster.sh", "emulated_cluster.sh", "slurm.sbatch", "submit_job.sh"]
BUILTIN_RESOURCES = {"CPU", "GPU", "memory", "object_store_memory"}


def placement_resources() -> set[str]:
    two = yaml.safe_load((ROOT / "conf" / "placement" / "two_nodes.yaml").read_text())
    return set(two["forward"]["resources"]) | set(two["backward"]["resources"])


def logical_lines(text: str) -> list[str]:
    """Shell lines with backslash continuations joined."""
    return [ln.strip() for ln in text.replace("\\\n", " ").splitlines()]


def test_every_launch_file_has_a_header_comment():
    for name in [*SCRIPTS, "cluster.yaml"]:
        lines = (LAUNCH / name).read_text().splitlines()
        body = lines[1:] if lines[0].startswith("#!") else lines
        assert body[0].startswith(f"# launch/{name}"), name
    assert all(f"`{name}" in (LAUNCH / "README.md").read_text() for name in [*SCRIPTS, "cluster.yaml"])


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_are_valid_bash(name):
    res = subprocess.run(["bash", "-n", str(LAUNCH / name)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert os.access(LAUNCH / name, os.X_OK), f"{name} is not executable"


def test_cluster_yaml_offers_the_placement_resources():
    cluster = yaml.safe_load((LAUNCH / "cluster.yaml").read_text())
    offered = {key for node in cluster["available_node_types"].values()
               for key in node.get("resources", {}) if key not in BUILTIN_RESOURCES}
    assert offered == placement_resources() == {"node_a", "node_b"}
    assert cluster["head_node_type"] in cluster["available_node_types"]


def test_slurm_script_trains_on_its_ray_cluster():
    lines = logical_lines((LAUNCH / "slurm.sbatch").read_text())
    train = [ln for ln in lines if ln.startswith("distspike-train ")]
    assert len(train) == 1
    assert "runtime=ray_cluster" in train[0] and "runtime.address=" in train[0]
    starts = [ln for ln in lines if "ray start" in ln]
    offered = {r for ln in starts for r in re.findall(r'"(node_[a-z])"', ln)}
    assert offered == placement_resources()
    assert not any(re.search(r"\bray stop\b", ln) for ln in lines if not ln.startswith("#"))


def test_submit_job_uses_ray_job_submit():
    text = " ".join(logical_lines((LAUNCH / "submit_job.sh").read_text()))
    assert "ray job submit" in text and "--working-dir ." in text and "--runtime-env-json" in text
    assert "runtime=ray_cluster" in text


def test_submit_job_needs_an_explicit_address(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_JOB_ADDRESS"}
    env["PATH"] = f"{tmp_path}:{env['PATH']}"
    fake = tmp_path / "ray"  # would record a submission, if the script got that far
    fake.write_text(f"#!/bin/sh\necho submitted >{tmp_path / 'called'}\n")
    fake.chmod(0o755)
    res = subprocess.run(["bash", str(LAUNCH / "submit_job.sh")], env=env, capture_output=True, text=True)
    assert res.returncode != 0 and "RAY_JOB_ADDRESS" in res.stderr and not (tmp_path / "called").exists()


def test_shared_cluster_templates_keep_token_auth_on():
    slurm = [ln for ln in logical_lines((LAUNCH / "slurm.sbatch").read_text()) if not ln.startswith("#")]
    assert "export RAY_AUTH_MODE=token" in slurm and not any("disabled" in ln for ln in slurm)
    cluster = yaml.safe_load((LAUNCH / "cluster.yaml").read_text())
    starts = [c for c in cluster["head_start_ray_commands"] + cluster["worker_start_ray_commands"] if "ray start" in c]
    assert starts and all(c.startswith("RAY_AUTH_MODE=token ") for c in starts)
    assert "~/.ray/auth_token" in cluster["file_mounts"]


def test_local_cluster_script_never_stops_ray_globally():
    code = [ln for ln in logical_lines((LAUNCH / "local_cluster.sh").read_text()) if not ln.startswith("#")]
    assert not any(re.search(r'"?\$RAY"? stop|\bray stop\b', ln) for ln in code)
    assert any("RAY_AUTH_MODE=disabled" in ln for ln in code)


# -- the local two-node cluster (starts real Ray processes) ------------------------------
def cluster(action: str, env: dict, *options: str) -> subprocess.CompletedProcess:
    """``local_cluster.sh ACTION``; the limit only catches a hang: start polls its own deadlines (WAIT_S)."""
    return subprocess.run(["bash", str(LAUNCH / "local_cluster.sh"), action, *options], env=env, capture_output=True,
                          text=True, timeout=900)


def printed(stdout: str, key: str) -> str:
    """The value of the last ``KEY=value`` line of ``stdout`` (found by its key, not by its position)."""
    found = [ln.removeprefix(key + "=") for ln in stdout.splitlines() if ln.startswith(key + "=")]
    assert found, f"no {key}= line in {stdout!r}"
    return found[-1]


def cluster_env(state_dir: Path) -> dict:
    """The environment of a local cluster (and its jobs): this interpreter's bin dir first on PATH."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "DISTSPIKE_CLUSTER_DIR": str(state_dir), "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "PYTHON": sys.executable, "GRACE_S": "3", "NUM_CPUS": "4"}
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def read_state(state_dir: Path) -> dict:
    text = (state_dir / "state.env").read_text()
    return {k: v.strip('"') for k, v in (ln.split("=", 1) for ln in text.splitlines() if "=" in ln)}


def live_pids(pids: list[int]) -> list[int]:
    """Those of ``pids`` that still exist and are not zombies."""
    out = subprocess.run(["ps", "-eo", "pid=,stat="], capture_output=True, text=True).stdout.split("\n")
    alive = {int(p) for p, st in (ln.split() for ln in out if ln.strip()) if not st.startswith("Z")}
    return [p for p in pids if p in alive]


def session_pids(sids: list[int]) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,sid=,stat="], capture_output=True, text=True).stdout
    rows = [ln.split() for ln in out.splitlines() if ln.strip()]
    return [int(p) for p, s, st in rows if int(s) in sids and not st.startswith("Z")]


#: 127.0.0.0/8 and ::1 (and v4-mapped 127.x) as /proc/net/tcp{,6} print them (hex, host byte order words)
def is_loopback(hex_addr: str) -> bool:
    if len(hex_addr) == 8:
        return hex_addr.endswith("7F")  # little-endian: the first octet is the last byte
    return hex_addr == "00000000000000000000000001000000" or (
        hex_addr.startswith("0000000000000000FFFF0000") and hex_addr.endswith("7F"))


def listening(pids: list[int]) -> list[str]:
    """``addr:port`` (hex, as /proc prints them) of every TCP socket in LISTEN state held by ``pids``."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:  # exited meanwhile
            pass
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # 0A: LISTEN
                found.append(f[1])
    return found


def test_loopback_recognizer():
    assert is_loopback("0100007F") and is_loopback("0200007F") and not is_loopback("00000000")
    assert not is_loopback("0100A8C0") and is_loopback("00000000000000000000000001000000")
    assert not is_loopback("00000000000000000000000000000000")


def assert_loopback_only(pids: list[int]) -> None:
    socks = listening(pids)
    assert len(socks) >= 6, f"too few listening sockets to judge (GCS, 2 raylets, agents): {socks}"
    outside = [s for s in socks if not is_loopback(s.split(":")[0])]
    assert not outside, f"local_cluster.sh listens beyond loopback (RAY_AUTH_MODE=disabled): {outside}"


@pytest.mark.ray
def test_local_cluster_start_train_stop(tmp_path):
    """start -> distspike-train with placement=two_nodes -> stop; nothing it started survives."""
    state_dir = Path(tempfile.mkdtemp(prefix="dsc-", dir="/tmp"))  # short: Ray socket paths
    env = cluster_env(state_dir)
    try:  # a start that fails or hangs is stopped too
        started = cluster("start", env)
        assert started.returncode == 0, started.stderr
        address = printed(started.stdout, "RAY_ADDRESS")
        state = read_state(state_dir)
        assert state["RAY_ADDRESS"] == address
        sids = [int(state["HEAD_SID"]), int(state["WORKER_SID"])]
        recorded = [int(p) for p in state["PIDS"].split()]
        assert recorded and set(live_pids(recorded)) <= set(session_pids(sids))
        assert address.startswith("127.0.0.1:")
        assert_loopback_only(session_pids(sids))
        skipped = train_on(address, tmp_path, env)
        during = session_pids(sids)  # includes the raylets' worker processes
        assert_loopback_only(during)
    finally:
        stopped = cluster("stop", env)
    assert stopped.returncode == 0, stopped.stderr
    assert live_pids(recorded + during) == [] and session_pids(sids) == []
    assert not (state_dir / "state.env").exists()
    shutil.rmtree(state_dir, ignore_errors=True)
    if skipped:
        pytest.skip(skipped)


def train_on(address: str, tmp_path: Path, env: dict) -> str | None:
    """One tiny distspike-train run on the cluster; the reason if it cannot run yet."""
    if importlib.util.find_spec("distspike.runtime.ray_backend") is None:
        return "distspike.runtime.ray_backend not written yet: the cluster was only started and stopped"
    run_dir = tmp_path / "run"
    cmd = [str(Path(sys.executable).with_name("distspike-train")), "runtime=ray_cluster",
           f"runtime.address={address}", "data=digits", "model=digits_small", "training.epochs=1",
           "data.n_train=50", "data.n_test=20", "eval_train=20", "placement=two_nodes", "logging=off",
           f"hydra.run.dir={run_dir}"]
    res = subprocess.run(cmd, env={**env, "DISTSPIKE_DATA": str(tmp_path)}, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (run_dir / "metrics.json").is_file()
    return None


def test_local_cluster_rejects_unknown_options(tmp_path):
    res = cluster("start", cluster_env(tmp_path), "--job")
    assert res.returncode == 2 and "--job" in res.stderr and not (tmp_path / "state.env").exists()


def job_checkout(root: Path) -> Path:
    """What submit_job.sh runs from: the package and the script, beside a venv and run outputs that must stay."""
    shutil.copytree(ROOT / "distspike", root / "distspike", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(LAUNCH, root / "launch")
    for junk in (".venv-ci/lib/big.bin", "outputs/2026-01-01/x.npz", "multirun/0/x", "results/cache.npz"):
        (root / junk).parent.mkdir(parents=True, exist_ok=True)
        (root / junk).write_bytes(b"0" * 1000)
    return root


def uploaded(state_dir: Path) -> list[set[str]]:
    """The top-level entries of each working dir the cluster's jobs got."""
    pkgs = (state_dir / "ray").glob("session_*/runtime_resources/working_dir_files/*")
    return [{p.name for p in pkg.iterdir()} for pkg in pkgs if pkg.is_dir()]


@pytest.fixture(scope="module")
def jobs_cluster():
    """``local_cluster.sh start --jobs``, shared by this module's job-server tests (one start instead of one per
    test, for CI time): yields ``(job address, env, session ids)``; stops it after them, and checks that nothing
    it started survives."""
    state_dir = Path(tempfile.mkdtemp(prefix="dsj-", dir="/tmp"))
    env = {**cluster_env(state_dir), "RAY_AUTH_MODE": "disabled"}  # the loopback-only test cluster
    recorded, sids = [], []
    try:  # a start that fails or hangs is stopped too
        started = cluster("start", env, "--jobs")
        assert started.returncode == 0, started.stderr
        job_address = printed(started.stdout, "RAY_JOB_ADDRESS")
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", job_address) and printed(started.stdout, "RAY_ADDRESS")
        state = read_state(state_dir)
        sids, recorded = [int(state["HEAD_SID"]), int(state["WORKER_SID"])], [int(p) for p in state["PIDS"].split()]
        yield job_address, env, sids
        recorded += session_pids(sids)
    finally:
        stopped = cluster("stop", env)
    assert stopped.returncode == 0, stopped.stderr
    assert live_pids(recorded) == [] and session_pids(sids) == []
    shutil.rmtree(state_dir, ignore_errors=True)


@pytest.mark.ray
def test_local_cluster_jobs_runs_the_job_server_on_loopback(jobs_cluster):
    """start --jobs -> the dashboard's job server answers, on a socket of ours bound to loopback (-> stop: the
    fixture)."""
    job_address, env, sids = jobs_cluster
    port = f"{int(job_address.rsplit(':', 1)[1]):04X}"
    assert any(s.endswith(":" + port) for s in listening(session_pids(sids)))  # the job server is ours
    assert_loopback_only(session_pids(sids))


@pytest.mark.ray
def test_ray_job_submit_and_submit_job_run_on_the_local_cluster(jobs_cluster, tmp_path):
    """`ray job submit` and submit_job.sh (a distspike-train run whose upload leaves out the venv and run outputs)."""
    job_address, env, sids = jobs_cluster
    hello = subprocess.run(["ray", "job", "submit", "--address", job_address, "--", "python", "-c",
                            "print('hello from a ray job')"], env=env, capture_output=True, text=True, timeout=300)
    assert hello.returncode == 0 and "hello from a ray job" in hello.stdout, hello.stdout + hello.stderr
    src, run_dir = job_checkout(tmp_path / "src"), tmp_path / "job_run"
    job = subprocess.run(["bash", "launch/submit_job.sh", "data=digits", "model=digits_small", "training.epochs=1",
                          "data.n_train=100", "data.n_test=50", "eval_train=20", f"hydra.run.dir={run_dir}"],
                         cwd=src, env={**env, "RAY_JOB_ADDRESS": job_address, "JOB_PIP": "0"},
                         capture_output=True, text=True, timeout=400)
    assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
    assert (run_dir / "metrics.json").is_file()
    dirs = uploaded(Path(env["DISTSPIKE_CLUSTER_DIR"]))
    assert any("distspike" in d for d in dirs), dirs
    assert not any(d & {".venv-ci", "outputs", "multirun", "results"} for d in dirs), dirs
    # each node unpacks the upload in its own temp dir: with one shared dir, the worker's agent installing the
    # job's runtime env replaced the dir the head's driver ran in (getcwd: FileNotFoundError; local_cluster.sh)
    assert list((Path(env["DISTSPIKE_CLUSTER_DIR"]) / "ray-b").glob("session_*/runtime_resources"))
    assert_loopback_only(session_pids(sids))
