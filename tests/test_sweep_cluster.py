"""``guidedrl sweep --address``: a sweep joins a Ray cluster that is already running — here a real
two-node cluster on 127.0.0.1 (Ray's ``cluster_utils.Cluster``: a head and a worker node, each its own
raylet and object store, one CPU each), driven by the CLI from another process as a user would."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest
import tomli_w

pytestmark = pytest.mark.slow
pytest.importorskip("ray", reason="Ray is part of the test extra: pip install -e '.[test]'")
from ray.cluster_utils import Cluster  # noqa: E402

_spec = importlib.util.spec_from_file_location("_sweep_checks", Path(__file__).with_name("test_sweep.py"))
checks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(checks)  # the shared tiny run (importlib import mode: no test-to-test imports)

SWEEP = {**checks.TINY, "sweep": {"seeds": [0, 1], "grid": {"ppo.lr": [1e-3, 3e-4]}}}


@pytest.fixture
def two_node_cluster():
    node = {"num_cpus": 1, "object_store_memory": 80 * 2**20, "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args=node)
    cluster.add_node(**{k: v for k, v in node.items() if k != "include_dashboard"})
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def test_a_sweep_joins_a_running_two_node_cluster_and_uses_both_nodes(two_node_cluster, guidedrl_script, tmp_path):
    spec = tmp_path / "sweep.toml"
    spec.write_text(tomli_w.dumps(SWEEP))
    out = tmp_path / "out"
    cmd = [str(guidedrl_script), "sweep", str(spec), "--out", str(out), "--address",
           two_node_cluster.address, "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((out / "sweep.json").read_text())
    assert record["backend"] == "ray" and record["address"] == two_node_cluster.address
    assert record["counts"] == {"finished": 4, "skipped": 0, "failed": 0}, record
    nodes = {t["node"] for t in record["trials"]}
    assert len(nodes) == 2 and "" not in nodes, f"trials should spread over both one-CPU nodes: {nodes}"
    for t in record["trials"]:
        assert json.loads((Path(t["run_dir"]) / "summary.json").read_text())["status"] == "finished"
    # the cluster outlives the sweep: joining must not shut it down
    assert len([n for n in two_node_cluster.list_all_nodes() if n.remaining_processes_alive()]) == 2
