"""Cluster definitions: launcher YAMLs against the JSON schema Ray ships; KubeRay manifests parsed and
checked for the fields KubeRay requires."""
from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

LAUNCHERS = ["cluster/aws.yaml", "cluster/gcp.yaml"]


@pytest.mark.parametrize("path", LAUNCHERS)
def test_launcher_config_validates_against_ray_schema(path):
    config = yaml.safe_load(Path(path).read_text())
    validate_config(prepare_config(config))  # as `ray up` does; raises on any schema violation
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # no GPU (or any) work on the head
    gpu = [t for name, t in types.items() if name != config["head_node_type"]]
    assert gpu and all(t["min_workers"] == 0 for t in gpu)  # autoscale from 0
    assert any("pip install" in c and "-e ." in c for c in config["setup_commands"])


def test_schema_check_is_real():
    config = yaml.safe_load(Path("cluster/aws.yaml").read_text())
    config["available_node_types"]["head"]["bogus_key"] = 1
    with pytest.raises(jsonschema.ValidationError, match="bogus_key"):
        validate_config(prepare_config(config))


def _check_ray_cluster_spec(spec: dict) -> None:
    assert spec["rayVersion"].startswith("2.60")
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head["template"]["spec"]["containers"][0]["image"]
    assert spec["workerGroupSpecs"]
    for group in spec["workerGroupSpecs"]:
        for key in ("groupName", "minReplicas", "maxReplicas", "rayStartParams", "template"):
            assert key in group, key
        assert group["minReplicas"] == 0 <= group["replicas"] <= group["maxReplicas"]
        container = group["template"]["spec"]["containers"][0]
        assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1


def test_kuberay_raycluster():
    doc = yaml.safe_load(Path("cluster/kuberay/raycluster.yaml").read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayCluster") and doc["metadata"]["name"]
    assert doc["spec"]["enableInTreeAutoscaling"] is True
    _check_ray_cluster_spec(doc["spec"])


def test_kuberay_rayjob_runs_the_full_sweep():
    doc = yaml.safe_load(Path("cluster/kuberay/rayjob.yaml").read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayJob") and doc["metadata"]["name"]
    assert doc["spec"]["entrypoint"] == "python -m tlr_ray.sweep sweeps/full.yaml"
    yaml.safe_load(doc["spec"]["runtimeEnvYAML"])
    _check_ray_cluster_spec(doc["spec"]["rayClusterSpec"])
