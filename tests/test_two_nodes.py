"""Two Ray nodes on one machine: a head and a second node joined with `ray start --address`, holding a
custom resource the head lacks. Eval trials ask for it, so they must run on the second node; the sweep
completes with trials on both nodes."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from helpers import RAY, head_node, own_ports

pytestmark = pytest.mark.slow


def test_sweep_runs_on_two_nodes(tmp_path, demo_world):
    with head_node(tmp_path) as c:
        second = subprocess.run([RAY, "start", f"--address=127.0.0.1:{c['port']}", "--num-cpus=1", *own_ports(),
                                 '--resources={"second_node": 4}', "--disable-usage-stats"], env=c["env"],
                                capture_output=True, text=True, timeout=180)
        assert second.returncode == 0, second.stderr[-2000:]
        sweep = yaml.safe_load(open("sweeps/demo.yaml"))
        tiny = {"max_steps": 6, "eval_every": 3, "batch_size": 16, "max_seq_length": 32}
        sweep.update(name="two-nodes", variants=["MAD-X"])
        sweep["tasks"]["nli"].update(eval=["demo_xnli"], train_args={**tiny, "max_eval_examples": 30})
        sweep["language_adapters"].update(train_args=tiny, max_corpus_lines=200)
        sweep["execution"]["resources"]["eval"] = {"cpus_per_worker": 1, "custom": {"second_node": 1}}
        path = tmp_path / "two.yaml"
        path.write_text(yaml.safe_dump(sweep))
        r = subprocess.run([sys.executable, "-m", "tlr_ray.sweep", str(path), "--storage", str(tmp_path / "runs"),
                            "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"],
                           env=c["env"], capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
        manifests = [json.loads(p.read_text()) for p in (tmp_path / "runs" / "jobs").glob("*/manifest.json")]
        nodes = {m["kind"]: set() for m in manifests}
        for m in manifests:
            nodes[m["kind"]].add(m["ran_on"]["ray_node"])
        assert len(nodes["eval"]) == 1  # only the second node has the resource evals ask for
        all_nodes = set().union(*nodes.values())
        assert len(all_nodes) == 2, nodes  # trials ran on both nodes
