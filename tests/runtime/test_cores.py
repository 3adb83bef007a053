"""``runtime.compiled=auto`` (``runtime/cores.py``): the decision as a pure function, and the probe."""
from __future__ import annotations

import os

import pytest

from distspike.runtime import cores


def report(machine="m1", cpus=(0, 1), n_cores=2):
    return {"machine": machine, "cpus": list(cpus), "cores": n_cores, "node": "10.0.0.1"}


def test_auto_picks_plain_calls_when_actors_outnumber_the_cores():
    # three actors on one 2-core machine
    compiled, why = cores.choose("auto", {f"a{i}": report() for i in range(3)})
    assert compiled is False
    assert why.startswith("runtime.compiled=auto: plain calls: 3 actors share 2 physical core(s) on machine m1")


def test_auto_picks_compiled_graphs_when_every_actor_has_a_core():
    where = {"a0": report("m1"), "a1": report("m1"), "a2": report("m2"), "a3": report("m2")}
    compiled, why = cores.choose("auto", where)
    assert compiled is True and "(4 actors on 2 machine(s))" in why


def test_auto_counts_machines_not_nodes():
    """Emulated nodes of one machine share its cores: 3 nodes x 1 actor on 2 cores is crowded."""
    where = {f"a{i}": dict(report("boot-1"), node=f"198.18.0.{i + 2}") for i in range(3)}
    assert cores.choose("auto", where)[0] is False


def test_a_cpu_quota_caps_the_cores():
    where = {"a0": report(n_cores=1), "a1": report(n_cores=1)}  # 2 CPUs in the affinity, a 1-core quota
    assert cores.choose("auto", where)[0] is False


@pytest.mark.parametrize("setting", [True, False])
def test_an_explicit_setting_is_kept(setting):
    compiled, why = cores.choose(setting, {"a": report()} if setting is False else {f"a{i}": report() for i in range(9)})
    assert compiled is setting and why == f"runtime.compiled={str(setting).lower()}: as configured"


def test_a_bad_setting_is_refused():
    with pytest.raises(ValueError, match=r"runtime.compiled='yes' must be true, false or auto"):
        cores.choose("yes", {})


def test_probe_reports_this_process():
    p = cores.probe()
    assert p["cpus"] == sorted(os.sched_getaffinity(0))
    assert 1 <= p["cores"] <= len(p["cpus"]) and p["machine"]


def test_physical_cores_counts_hyperthreads_once(tmp_path, monkeypatch):
    for cpu, core in ((0, 0), (1, 0), (2, 1)):
        top = tmp_path / f"cpu{cpu}" / "topology"
        top.mkdir(parents=True)
        (top / "physical_package_id").write_text("0\n")
        (top / "core_id").write_text(f"{core}\n")
    monkeypatch.setattr(cores, "SYSFS_CPU", str(tmp_path))
    assert cores.physical_cores([0, 1, 2]) == 2
    assert cores.physical_cores([0, 1, 2, 3]) == 3  # cpu3: no topology, counted alone


@pytest.mark.ray
def test_auto_on_the_ray_runtime_decides_from_the_actors_cores(ray_cluster, caplog):
    """2 shards of a 2-layer net: 6 actors; on this 2-core machine auto must pick plain calls."""
    import logging

    from distspike.config import ModelConfig, NetConfig, RuntimeConfig
    from distspike.runtime import make_net

    cfg = NetConfig(ModelConfig((6, 4, 3)))
    with caplog.at_level(logging.INFO, logger="distspike.runtime"):
        with make_net(cfg, RuntimeConfig("ray_cluster", 2, address="auto")) as net:
            compiled = net.backend.compiled
    expect = cores.probe()["cores"] >= 6
    assert compiled is expect
    why = [r.getMessage() for r in caplog.records if r.getMessage().startswith("runtime.compiled=auto")]
    assert len(why) == 1 and ("compiled graphs" if expect else "plain calls: 6 actors share") in why[0]
