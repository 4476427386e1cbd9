"""deploy/: Kubernetes OpenAPI validation, a structural CRD, the example CR against it,
and the wiring between the manifests (kustomization, config, CLI, probes)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from scaler.spec import ScalerSpec
from streams.cli import SUBCOMMANDS, build_parser
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_VERSION = kubernetes_validate.latest_version()
EXAMPLE = DEPLOY / "example-predictivescaler.yaml"


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def manifest_files() -> list[Path]:
    return sorted(p for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")


def all_objects() -> list[dict[str, Any]]:
    return [d for p in manifest_files() if p != EXAMPLE for d in docs(p)]


def by_kind(kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in all_objects() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def crd() -> dict[str, Any]:
    [c] = by_kind("CustomResourceDefinition")
    return c


def schema() -> dict[str, Any]:
    [v] = crd()["spec"]["versions"]
    return v["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_manifests_validate_against_the_kubernetes_openapi_schema(path):
    for d in docs(path):
        if d["apiVersion"].startswith("foresight.dev/"):
            continue  # a custom resource: checked against the CRD below
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest_and_the_image():
    k = docs(DEPLOY / "kustomization.yaml")[0]
    listed = set(k["resources"])
    assert all((DEPLOY / r).is_file() for r in listed)
    assert listed == {p.name for p in manifest_files()} - {EXAMPLE.name}, \
        "every manifest except the example CR is installed by kubectl apply -k"
    images = {c["image"].split(":")[0] for d in by_kind("Deployment")
              for c in d["spec"]["template"]["spec"]["containers"]}
    assert images == {i["name"] for i in k["images"]}


FORBIDDEN = {"$ref", "definitions", "dependencies", "deprecated", "id", "patternProperties",
             "additionalItems", "allOf", "anyOf", "oneOf", "not"}


def _walk(node: dict[str, Any], path: str = ""):
    yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def test_crd_schema_is_structural():
    root = schema()
    for path, node in _walk(root):
        assert node.get("type") or node.get("x-kubernetes-int-or-string") or \
            node.get("x-kubernetes-preserve-unknown-fields"), f"{path or '<root>'}: no type"
        assert not FORBIDDEN & set(node), f"{path}: {FORBIDDEN & set(node)}"
        assert not (node.get("properties") and node.get("additionalProperties")), path
        assert node.get("uniqueItems") is not True, path
    assert set(root["properties"]["metadata"]) == {"type"}, "no restrictions on metadata"
    assert crd()["spec"]["versions"][0]["subresources"] == {"status": {}}


def _closed(node: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields rejected (the API server would prune them silently)."""
    out = copy.deepcopy(node)
    for path, n in _walk(out):
        if n.get("type") == "object" and "properties" in n and path != ".metadata":
            n["additionalProperties"] = False
    return out


def test_crd_defaults_validate_against_their_own_schema():
    for _, node in _walk(schema()):
        if "default" in node:
            jsonschema.Draft4Validator(_closed(node)).validate(node["default"])


def _apply_defaults(node: dict[str, Any], value: Any) -> Any:
    if node.get("type") == "object" and isinstance(value, dict):
        for name, sub in (node.get("properties") or {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = _apply_defaults(sub, value[name])
    if node.get("type") == "array" and isinstance(value, list):
        value = [_apply_defaults(node["items"], v) for v in value]
    return value


def test_example_predictivescaler_validates_against_the_crd():
    [example] = docs(EXAMPLE)
    c = crd()
    assert example["apiVersion"] == f"{c['spec']['group']}/{c['spec']['versions'][0]['name']}"
    assert example["kind"] == c["spec"]["names"]["kind"]
    jsonschema.Draft4Validator(_closed(schema())).validate(example)
    # the CEL rules x-kubernetes-validations state
    spec = example["spec"]
    assert spec.get("minReplicas", 1) <= spec["maxReplicas"]
    assert ("signals" in spec) != ("series" in spec or "capacityPerReplica" in spec)
    assert all(sum(k in s for k in ("series", "prometheus", "kafkaTopic")) == 1
               for s in spec["signals"])
    assert all(("cron" in s) == ("durationSeconds" in s) != ("start" in s and "end" in s)
               and s["minReplicas"] <= spec["maxReplicas"] for s in spec["schedules"])
    s = ScalerSpec.from_manifest(example)  # and the controller accepts it
    assert len(s.signals) == 2 and len(s.schedules) == 2


def test_crd_cel_rules_are_where_the_spec_reader_says():
    """The rules the API server enforces (the reader enforces the same, tested in
    tests/scaler/test_spec.py): one form of signal(s), one source per signal, one form of
    schedule."""
    spec = schema()["properties"]["spec"]
    rules = [r["rule"] for r in spec["x-kubernetes-validations"]]
    assert any("has(self.signals)" in r and "has(self.series)" in r for r in rules)
    assert any("self.schedules.all(" in r for r in rules)
    [sig_rule] = spec["properties"]["signals"]["items"]["x-kubernetes-validations"]
    assert all(f"has(self.{k})" in sig_rule["rule"] for k in ("series", "prometheus", "kafkaTopic"))
    [sch_rule] = spec["properties"]["schedules"]["items"]["x-kubernetes-validations"]
    assert all(f"has(self.{k})" in sch_rule["rule"]
               for k in ("cron", "durationSeconds", "start", "end"))
    assert "series" not in spec["required"] and "capacityPerReplica" not in spec["required"]


@pytest.mark.parametrize("bad", [
    {"mode": "Aggressive"}, {"capacityPerReplica": 0}, {"maxReplicas": 0}, {"series": ""},
    {"behavior": {"scaleDown": {"policies": [{"type": "Pods", "value": 0, "periodSeconds": 60}]}}},
    {"tolerance": 2}, {"scaleTargetRef": {"kind": "Deployment"}}, {"replicas": 3},
    {"signals": []}, {"signals": [{"series": "a"}]},  # no capacityPerReplica
    {"signals": [{"series": "a", "capacityPerReplica": 1, "weight": 2}]},
    {"signals": [{"prometheus": {}, "capacityPerReplica": 1}]},  # no query
    {"schedules": [{"cron": "@daily", "durationSeconds": 60, "minReplicas": 1}]},  # no name
    {"schedules": [{"name": "x", "cron": "@daily", "durationSeconds": 0, "minReplicas": 1}]},
])
def test_crd_schema_rejects_bad_specs(bad):
    [example] = docs(EXAMPLE)
    example["spec"].update(bad)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(_closed(schema())).validate(example)


def test_crd_defaults_agree_with_the_controllers_defaults():
    """An object defaulted by the API server means what spec.py reads from the bare one."""
    minimal = {"metadata": {"name": "m", "namespace": "n"},
               "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "m"}, "series": "m/rps",
                        "capacityPerReplica": 10, "maxReplicas": 5}}
    for behavior in (None, {"scaleUp": {"stabilizationWindowSeconds": 30}}, {"scaleDown": {}}):
        bare = copy.deepcopy(minimal)
        if behavior is not None:
            bare["spec"]["behavior"] = behavior
        defaulted = _apply_defaults(schema(), copy.deepcopy(bare))
        assert ScalerSpec.from_manifest(defaulted) == ScalerSpec.from_manifest(bare)


def test_printer_columns_point_at_schema_fields():
    [v] = crd()["spec"]["versions"]
    names = [c["name"] for c in v["additionalPrinterColumns"]]
    assert names == ["Reference", "Mode", "Signal", "MinPods", "MaxPods", "Replicas", "Desired",
                     "Reason", "Vs HPA", "Age"]
    for col in v["additionalPrinterColumns"]:
        node = {"properties": {**schema()["properties"],
                               "metadata": {"properties": {"creationTimestamp": {"type": "string"}}}}}
        for part in col["jsonPath"].strip(".").split("."):
            node = node["properties"][part]
        assert node["type"] in ("string", "integer", "number"), col


def _containers(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    [d] = by_kind("Deployment", name)
    pod = d["spec"]["template"]["spec"]
    [c] = pod["containers"]
    return pod, c


@pytest.mark.parametrize("name", ["foresight-worker", "foresight-controller", "foresight-ingest"])
def test_deployments_are_hardened_and_probed(name):
    pod, c = _containers(name)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert c["readinessProbe"] and c["livenessProbe"] and c["resources"]["requests"]
    port_names = {p["name"] for p in c["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["port"] in port_names
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert {v["name"] for v in pod["volumes"] if {"emptyDir", "secret", "configMap"} & set(v)} == set(mounts)


def test_worker_data_dir_is_an_emptydir_and_the_service_reaches_its_web_port():
    pod, c = _containers("foresight-worker")
    [cm] = by_kind("ConfigMap", "foresight-config")
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert cm["data"]["FORESIGHT_DATA_DIR"] in mounts
    assert pod["automountServiceAccountToken"] is False, "workers do not talk to the API"
    [svc] = by_kind("Service", "foresight-worker")
    labels = pod.get("labels") or by_kind("Deployment", "foresight-worker")[0]["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    web = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert web[svc["spec"]["ports"][0]["targetPort"]] == Settings().web_port


def test_controller_runs_as_the_bound_service_account():
    pod, _ = _containers("foresight-controller")
    [binding] = by_kind("ClusterRoleBinding", "foresight-controller")
    [sa] = [s for s in by_kind("ServiceAccount") if s["metadata"]["name"] == pod["serviceAccountName"]]
    assert {"kind": "ServiceAccount", "name": sa["metadata"]["name"],
            "namespace": sa["metadata"]["namespace"]} in binding["subjects"]


@pytest.mark.parametrize("name", ["foresight-worker", "foresight-controller", "foresight-ingest"])
def test_container_args_are_valid_cli_invocations(name):
    _, c = _containers(name)
    assert c["args"][0] in SUBCOMMANDS
    build_parser().parse_args(c["args"])  # exits (SystemExit) on an unknown flag


def test_config_keys_are_settings():
    [cm] = by_kind("ConfigMap", "foresight-config")
    fields = {f"FORESIGHT_{f.upper()}" for f in Settings.__dataclass_fields__}
    assert set(cm["data"]) <= fields
    env = {k: str(v) for k, v in cm["data"].items()}
    Settings.from_env(env)  # every value parses as its field's type
    _, c = _containers("foresight-worker")
    assert {e["name"] for e in c.get("env", [])} <= fields


KAFKA_SECRET_DIR = "/etc/foresight/kafka"


def _commented_settings(path: Path) -> dict[str, str]:
    """The ``# FORESIGHT_X: "v"`` lines of a manifest: settings documented, to be uncommented."""
    out = {}
    for line in path.read_text().splitlines():
        s = line.strip().removeprefix("#").strip()
        if line.strip().startswith("#") and s.startswith("FORESIGHT_") and ":" in s:
            k, v = s.split(":", 1)
            out[k.strip()] = yaml.safe_load(v)
    return out


@pytest.mark.parametrize("name", ["foresight-worker", "foresight-controller"])
def test_kafka_credentials_are_a_mounted_secret_never_env(name):
    pod, c = _containers(name)
    [mount] = [m for m in c["volumeMounts"] if m["mountPath"] == KAFKA_SECRET_DIR]
    assert mount.get("readOnly") is True
    [vol] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert vol["secret"]["secretName"] == "foresight-kafka"
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"], "group-readable secret"
    for e in c.get("env", []):
        assert "KAFKA" not in e["name"], "Kafka secrets come from files, never env"
    assert all("secretRef" not in e for e in c.get("envFrom", []))


def test_the_documented_kafka_security_settings_parse_and_point_into_the_mount(tmp_path):
    from streams import kafka_config

    [cm] = by_kind("ConfigMap", "foresight-config")
    documented = _commented_settings(DEPLOY / "config.yaml")
    assert documented["FORESIGHT_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    env = {**{k: str(v) for k, v in cm["data"].items()}, **documented}
    s = Settings.from_env(env)
    assert not s.problems() and not kafka_config.settings_problems(s)
    files = [s.kafka_sasl_password_file, s.kafka_ssl_cafile, s.kafka_ssl_certfile, s.kafka_ssl_keyfile]
    assert all(f.startswith(KAFKA_SECRET_DIR + "/") for f in files), files
    assert (s.replication_factor, s.min_insync_replicas) == (0, 0), "derived from the cluster by default"


class _Recording(dict):
    """An environment that remembers every name looked up in it."""

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.asked: set[str] = set()

    def get(self, key: Any, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)

    def __getitem__(self, key: Any) -> Any:
        self.asked.add(key)
        return super().__getitem__(key)


def _ingest_reads(env: dict[str, str]) -> set[str]:
    """The variable names ``foresight ingest`` reads besides Settings (and parses ``env``)."""
    from streams.ingest import IngestSettings
    from streams.prometheus import PrometheusSettings

    rec = _Recording(env)
    PrometheusSettings.from_env(rec)
    IngestSettings.from_env(rec)
    return rec.asked


def test_ingest_runs_with_its_own_least_privilege_account():
    pod, c = _containers("foresight-ingest")
    sa = pod["serviceAccountName"]
    assert sa == "foresight-ingest" and pod.get("automountServiceAccountToken", True), "it needs the API"
    assert [s for s in by_kind("ServiceAccount") if s["metadata"]["name"] == sa]
    subject = {"kind": "ServiceAccount", "name": sa, "namespace": "foresight-system"}
    bound = [b for kind in ("ClusterRoleBinding", "RoleBinding") for b in by_kind(kind) if subject in b["subjects"]]
    roles = {(b["roleRef"]["kind"], b["roleRef"]["name"]) for b in bound}
    assert roles == {("ClusterRole", "foresight-ingest"), ("Role", "foresight-ingest-leader-election")}
    [cluster_role] = by_kind("ClusterRole", "foresight-ingest")
    verbs = {v for r in cluster_role["rules"] for v in r["verbs"]}
    assert verbs == {"list", "watch"}, "cluster-wide it only reads the PredictiveScalers"
    [lease] = by_kind("Role", "foresight-ingest-leader-election")
    from streams.ingest import LEASE_NAME

    assert any(r.get("resourceNames") == [LEASE_NAME] for r in lease["rules"]), "only its own Lease"
    assert all(b["subjects"] == [subject] for b in bound), "not shared with the controller"
    args = build_parser().parse_args(c["args"])
    assert args.command == "ingest" and args.kube, "one active ingest per cluster (the Lease)"


def test_ingest_config_is_what_it_reads_and_credentials_are_files(tmp_path):
    from streams.ingest import load_sources

    pod, c = _containers("foresight-ingest")
    refs = [e["configMapRef"]["name"] for e in c["envFrom"]]
    assert refs == ["foresight-config", "foresight-ingest-config"], "Kafka settings shared, its own after"
    [cm] = by_kind("ConfigMap", "foresight-ingest-config")
    env = {k: str(v) for k, v in cm["data"].items()}
    asked = _ingest_reads(env)  # and the values parse
    assert set(env) <= asked, f"keys the ingest never reads: {set(env) - asked}"
    # /metrics on the port the probes use
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert int(env["FORESIGHT_INGEST_METRICS_PORT"]) == ports[c["readinessProbe"]["httpGet"]["port"]]
    assert env["FORESIGHT_INGEST_METRICS_HOST"] == "0.0.0.0", "reachable by the kubelet's probes"
    # the sources file: the ConfigMap's key, mounted where --sources points, and valid
    args = build_parser().parse_args(c["args"])
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    [sources_vol] = [n for n, v in vols.items() if "configMap" in v]
    [sources_cm] = by_kind("ConfigMap", vols[sources_vol]["configMap"]["name"])
    directory, _, key = args.sources.rpartition("/")
    assert mounts[sources_vol] == directory and key in sources_cm["data"]
    f = tmp_path / key
    f.write_text(sources_cm["data"][key])
    assert load_sources(f, allow_empty=True) == [], "the specs' signals only, until listed"
    # credentials: a secret mounted as files; the settings name files under it, never values
    secret_mounts = [mounts[n] for n, v in vols.items() if "secret" in v]
    commented = [ln.strip("# ").split(":")[0] for ln in (DEPLOY / "ingest.yaml").read_text().splitlines()
                 if ln.strip().startswith("# FORESIGHT_PROMETHEUS_")]
    assert {"FORESIGHT_PROMETHEUS_BEARER_TOKEN_FILE", "FORESIGHT_PROMETHEUS_CA_FILE"} <= set(commented)
    assert {n for n in commented if n.endswith("_FILE")} <= asked
    for name, value in env.items():
        if name.endswith("_FILE"):
            assert any(value.startswith(m + "/") for m in secret_mounts), name


def test_no_manifest_carries_a_secret_value():
    """Secrets reach containers as mounted files (or secretKeyRef), never as plain values."""
    secret_words = ("TOKEN", "PASSWORD", "SECRET", "KEY")
    for d in all_objects():
        values: dict[str, Any] = {}
        if d["kind"] == "ConfigMap":
            values = d["data"]
        elif d["kind"] == "Deployment":
            for c in d["spec"]["template"]["spec"]["containers"]:
                values.update({e["name"]: e.get("value") for e in c.get("env", []) if "value" in e})
        for name, value in values.items():
            if any(w in name.upper() for w in secret_words) and not name.upper().endswith("_FILE"):
                raise AssertionError(f"{d['kind']} {d['metadata']['name']}: {name} holds a value: {value!r}")


def test_every_binding_names_a_service_account_of_ours_and_a_role_that_exists():
    accounts = {(s["metadata"]["namespace"], s["metadata"]["name"]) for s in by_kind("ServiceAccount")}
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for b in by_kind(kind):
            assert {(s["namespace"], s["name"]) for s in b["subjects"]} <= accounts, b["metadata"]["name"]
            ref = b["roleRef"]
            assert by_kind(ref["kind"], ref["name"]), f"{b['metadata']['name']}: no {ref['kind']} {ref['name']}"
