"""The emulated cluster rig: planning and bad input (no Ray), then a started rig's isolation."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from distspike.cluster import emulated
from distspike.cluster.emulated import MIB, RigError

GIB = 1 << 30


def needs_rig():
    """Skip (one line) where a rig cannot be built (as the fixture in conftest.py does)."""
    why = emulated.host_problem()
    if why:
        pytest.skip(f"emulated cluster unavailable: {why}")


# -- planning (pure) ------------------------------------------------------------------------
def test_plan_gives_each_node_its_cap_less_store_and_reserve():
    mem = emulated.plan_nodes(3, GIB, 100 * MIB, (600 * MIB, 300 * MIB), 10 * GIB)
    assert mem == [GIB - 700 * MIB, GIB - 400 * MIB, GIB - 400 * MIB]


def test_plan_refuses_more_nodes_than_memory_holds():
    with pytest.raises(RigError, match=r"N=40 nodes x 1024 MiB = 40960 MiB exceed the 20480 MiB"):
        emulated.plan_nodes(40, GIB, 100 * MIB, (600 * MIB, 300 * MIB), 20 * GIB)


@pytest.mark.parametrize("n", [0, -1, 201, True, 2.5])
def test_plan_refuses_a_bad_node_count(n):
    with pytest.raises(RigError, match=r"N=.* must be a node count from 1 to 200"):
        emulated.plan_nodes(n, GIB, 100 * MIB, (600 * MIB, 300 * MIB), 100 * GIB)


def test_plan_refuses_a_cap_that_leaves_nothing_for_actors():
    with pytest.raises(RigError, match=r"--mem-mb=512 leaves 0 MiB for actors .* give at least 764"):
        emulated.plan_nodes(2, 512 * MIB, 100 * MIB, (600 * MIB, 300 * MIB), 100 * GIB)


def test_rigs_in_different_dirs_get_different_names():
    a, b = emulated.rig_tag("/tmp/a"), emulated.rig_tag("/tmp/b")
    assert a != b and emulated.rig_tag("/tmp/a") == a
    assert emulated.names(a, 2) == {"bridge": f"dsr{a}b", "nodes": [f"dsr{a}n0", f"dsr{a}n1"]}


# -- bad input at the command line ------------------------------------------------------------
def test_the_node_census_is_read_from_its_marked_line_among_ray_notices():
    """Ray's driver prints node-death notices to the census's stdout (CI, stop 18); the result is the marked line."""
    notice = ("The node with node id abc has been marked dead because the detector has missed too many heartbeats."
              "\n\t(1) raylet crashes unexpectedly (OOM, etc.)\n\t(2) raylet has lagging heartbeats due to slow "
              "network or busy workload.")
    result = json.dumps([["198.18.0.2", 1.0], ["198.18.0.3", 2.0]])
    for stdout in (f"{emulated.NODES_MARK}{result}\n{notice}\n", f"{notice}\n{emulated.NODES_MARK}{result}\n"):
        assert json.loads(emulated.marked_line(stdout, emulated.NODES_MARK)) == json.loads(result)
    assert emulated.marked_line(notice, emulated.NODES_MARK) is None


def test_start_without_root_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert emulated.main(["--dir", str(tmp_path), "start", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "emulated_cluster: error: needs root (network namespaces and cgroups); run it as root"
    assert not os.listdir(tmp_path)


def test_start_too_many_nodes_is_one_line_and_leaves_nothing(tmp_path, capsys):
    needs_rig()
    assert emulated.main(["--dir", str(tmp_path), "start", "200", "--mem-mb", "4096"]) == 2
    err = capsys.readouterr().err
    assert "N=200 nodes x 4096 MiB" in err and err.count("\n") == 1
    assert not os.listdir(tmp_path)


def test_stop_cleans_a_stale_rig_left_by_a_crash(tmp_path, capsys):
    """A crash mid-start: a state file, a namespace with a live process, a cgroup. start refuses; stop cleans."""
    needs_rig()
    rig = emulated.Rig(str(tmp_path))
    rig.save()
    ns = emulated.names(rig.state["tag"], 1)["nodes"][0]
    rig.made("namespaces", ns)
    emulated.sh("ip", "netns", "add", ns)
    base, version = emulated.cgroup_base()
    cg = os.path.join(base, ns)
    rig.made("cgroups", cg)
    os.makedirs(cg)
    sleeper = subprocess.Popen(emulated.in_netns(ns, ["sleep", "600"]))
    try:
        assert emulated.main(["--dir", str(tmp_path), "start", "1"]) == 2
        assert "already recorded" in capsys.readouterr().err
        assert emulated.netns_pids(ns) == {sleeper.pid}
        assert emulated.main(["--dir", str(tmp_path), "stop", "--grace-s", "1"]) == 0
        assert sleeper.wait(timeout=30) != 0  # signalled by stop
        assert not emulated.netns_exists(ns) and not os.path.exists(cg)
        assert not os.path.exists(rig.path)
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
        emulated.stop(str(tmp_path), grace_s=0.5)


def test_stop_without_a_state_file_removes_namespaces_of_the_rigs_tag(tmp_path):
    needs_rig()
    tag = emulated.rig_tag(str(tmp_path))
    ns = f"dsr{tag}n0"
    emulated.sh("ip", "netns", "add", ns)
    try:
        assert emulated.stop(str(tmp_path), grace_s=0.5) == [f"netns {ns}"]
    finally:
        if emulated.netns_exists(ns):
            emulated.sh("ip", "netns", "del", ns)


# -- a started rig --------------------------------------------------------------------------

def root_listeners() -> set[int]:
    """PIDs of the processes with a listening TCP socket in this (the root) namespace."""
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    return {int(p.split("=")[1]) for line in out.splitlines() for p in line.split(",") if p.startswith("pid=")}


@pytest.mark.ray
def test_nothing_of_the_rig_listens_in_the_root_namespace(rig):
    root_ns = os.readlink("/proc/self/ns/net")
    pids = emulated.rig_pids(emulated.Rig.load(rig.dir))
    assert len(pids) >= 3 * 3  # raylet and agents on every node, GCS on the head
    for pid in pids:
        assert os.readlink(f"/proc/{pid}/ns/net") != root_ns
    assert not pids & root_listeners()


@pytest.mark.ray
def test_every_node_runs_in_its_namespace_and_cgroup_at_its_address(rig):
    state = emulated.Rig.load(rig.dir).state
    assert rig.address == "198.18.0.2:6379" and len(state["nodes"]) == 3
    for i, node in enumerate(state["nodes"]):
        in_ns = emulated.netns_pids(node["ns"])
        assert in_ns and in_ns <= emulated.cgroup_pids(node["cgroup"])
        addrs = emulated.sh("ip", "-n", node["ns"], "-j", "addr", "show", "eth0")
        assert json.loads(addrs)[0]["addr_info"][0]["local"] == f"198.18.0.{i + 2}"
        assert 0 < node["baseline"] < node["cap"] - node["memory"] - node["store"] + 1


@pytest.mark.ray
def test_status_and_run_in_the_driver_namespace(rig, capsys):
    assert emulated.main(["--dir", rig.dir, "status"]) == 0
    out = capsys.readouterr().out
    assert out.count("\nnode ") == 3 and "RAY_ADDRESS=198.18.0.2:6379" in out
    code = "import os; print(os.environ['RAY_ADDRESS'], os.readlink('/proc/self/ns/net'))"
    res = subprocess.run([os.sys.executable, "-m", "distspike.cluster.emulated", "--dir", rig.dir, "run", "--",
                          os.sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    head = emulated.Rig.load(rig.dir).state["nodes"][0]["ns"]
    head_pid = min(emulated.netns_pids(head))
    address, netns = res.stdout.split()
    assert address == rig.address and netns == os.readlink(f"/proc/{head_pid}/ns/net")
