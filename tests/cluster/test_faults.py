"""The rig's fault commands (``distspike/cluster/faults.py``): bad input is one line, nothing touched (no Ray)."""
from __future__ import annotations

import pytest

from distspike.cluster import emulated


def fake_rig(directory) -> emulated.Rig:
    """A recorded 3-node rig whose namespaces do not exist (nothing is started)."""
    rig = emulated.Rig(str(directory))
    tag = rig.state["tag"]
    rig.state["nodes"] = [{"ns": f"dsr{tag}n{i}", "ip": emulated.node_ip(i), "cgroup": str(directory / f"cg{i}"),
                           "temp_dir": str(directory / f"n{i}")} for i in range(3)]
    rig.state["address"] = "198.18.0.2:6379"
    rig.save()
    return rig


@pytest.mark.parametrize("argv, message", [
    (["kill", "0"], "node 0: only worker nodes 1..2 can be killed or cut off (node 0 is the head: it holds the "
                    "GCS and the driver)"),
    (["restart", "3"], "node 3: only worker nodes 1..2 can be killed or cut off"),
    (["partition", "1", "0"], "partition of 0.0 s: give 0 < SECONDS <= 3600"),
])
def test_fault_commands_refuse_bad_input_with_one_line(tmp_path, capsys, argv, message):
    fake_rig(tmp_path)
    assert emulated.main(["--dir", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"emulated_cluster: error: {message}") and err.count("\n") == 1


def test_fault_commands_need_a_rig(tmp_path, capsys):
    assert emulated.main(["--dir", str(tmp_path), "kill", "1"]) == 2
    assert capsys.readouterr().err == (f"emulated_cluster: error: no rig in {tmp_path}; "
                                       f"run 'emulated_cluster.sh start N' first\n")


def test_killing_a_node_with_no_process_left_says_it_is_down(tmp_path, capsys):
    fake_rig(tmp_path)
    assert emulated.main(["--dir", str(tmp_path), "kill", "2"]) == 2
    assert "node 2 (198.18.0.4) has no process to kill: it is down already" in capsys.readouterr().err


def test_the_rig_shortens_ray_s_health_checks_unless_the_environment_sets_them(monkeypatch):
    monkeypatch.delenv("RAY_health_check_period_ms", raising=False)
    assert emulated.ray_env()["RAY_health_check_period_ms"] == "1000"
    monkeypatch.setenv("RAY_health_check_period_ms", "3000")
    assert emulated.ray_env()["RAY_health_check_period_ms"] == "3000"
