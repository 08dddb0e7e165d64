"""Static checks of deploy/: the container image recipe, the Kubernetes manifests, alerts and dashboard.

Nothing here talks to a cluster or a registry. The kustomizations are rendered with `kubectl kustomize`
and validated offline against the Kubernetes JSON schemas shipped by kubernetes-validate; the Prometheus
Operator kinds (not in those schemas) are checked by hand.
"""

import fnmatch
import functools
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
K8S_VERSION = "1.32"  # the Kubernetes schemas validated against (offline, shipped by kubernetes-validate)

BASE = "base"
FORWARD = "overlays/forward-proxy"
SIDECAR = "overlays/ai-gateway-sidecar"
CLIENT = "examples/egress-client"
KUSTOMIZATIONS = [BASE, FORWARD, SIDECAR, CLIENT]

SITE_OVERLAY = K8S / "components" / "profile" / "site.yaml"
PROFILE_CONFIGMAP = "dlproxy-profile"

# The metrics contract (docs/contracts.md "Metrics"), with each metric's labels.
CONTRACT_METRICS = {
    "dlproxy_flows_total": {"direction", "verdict"},
    "dlproxy_detections_total": {"entry", "direction", "action"},
    "dlproxy_scanned_bytes_total": {"direction"},
    "dlproxy_scan_duration_seconds": {"direction"},
    "dlproxy_inspection_errors_total": {"reason"},
    "dlproxy_profile_entries": {"profile"},
    "dlproxy_profile_reloads_total": {"result"},
    "dlproxy_candidates_total": {"entry", "result"},
    "dlproxy_unscannable_total": {"reason"},
    # incident delivery
    "dlproxy_webhook_dropped_total": {"reason"},
    # closing the loop (docs/revocation.md)
    "dlproxy_revocations_total": {"revoker", "result"},
    "dlproxy_revocation_queue_depth": set(),
    # additive: dry-run (flows it let through count as verdict "dry_run")
    "dlproxy_dry_run_total": {"direction", "verdict"},
    "dlproxy_dry_run_enabled": set(),
}
SWITCHES = {"--dry-run"}  # `dlproxy run` flags that take no value
TARGET_LABELS = {"namespace", "pod", "job", "instance", "service", "container"}  # added by the scrape


# ---------------------------------------------------------------- helpers: rendering and pods


@functools.cache
def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail("kubectl is not installed: it renders the kustomizations (Debian: apt-get install "
                    "kubernetes-client; `make test` does this through tests/tools/ensure-system-deps.sh)")
    proc = subprocess.run([path, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=30)
    version = json.loads(proc.stdout)["clientVersion"]
    minor = int(re.match(r"\d+", version["minor"]).group())
    if minor < 21:  # kubectl <= 1.20 embeds kustomize v2: no components, replicas or patches
        pytest.fail(f"kubectl {version['gitVersion']} is too old to render deploy/kubernetes (its kustomize "
                    "lacks components); install kubectl >= 1.21 (tested with 1.32, kustomize v5.5)")
    return path


@functools.cache
def render(name: str) -> tuple:
    proc = subprocess.run([kubectl(), "kustomize", str(K8S / name)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"kubectl kustomize {name} failed:\n{proc.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


def of_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind, name=None):
    found = [d for d in of_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def all_containers(pod_spec):
    return pod_spec.get("initContainers", []) + pod_spec["containers"]


def is_proxy(container) -> bool:
    return container.get("command") == ["dlproxy", "run"]


def proxy_containers(pod_spec):
    return [c for c in all_containers(pod_spec) if is_proxy(c)]


def flags(container) -> dict[str, list[str]]:
    """`dlproxy run` arguments as {flag: [values]} (accepts `--flag value` and `--flag=value`)."""
    out, args = {}, list(container.get("args", []))
    while args:
        arg = args.pop(0)
        assert arg.startswith("--"), f"unexpected positional argument {arg!r} in {container['name']}"
        key, sep, value = arg.partition("=")
        out.setdefault(key, []).append(value if sep or key in SWITCHES else args.pop(0))
    return out


def matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def port_number(container, port) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    assert port in named, f"{container['name']}: no container port named {port!r}"
    return named[port]


def quantity(value) -> float:
    m = re.fullmatch(r"([0-9.]+)(m|k|M|G|Ki|Mi|Gi)?", str(value))
    assert m, f"unparseable quantity {value!r}"
    scale = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return float(m.group(1)) * scale[m.group(2)]


# ---------------------------------------------------------------- rendering and schemas


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_kustomization_renders_and_validates_offline(name):
    try:
        import kubernetes_validate
        from kubernetes_validate.utils import SchemaNotFoundError
    except ImportError:
        pytest.fail("kubernetes-validate is missing: it is in the test extra (pip install -e '.[test]')")
    docs = render(name)
    assert docs, f"{name} renders nothing"
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # CRDs: checked by test_prometheus_operator_resources
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except SchemaNotFoundError:
            pytest.fail(f"{name}: no Kubernetes {K8S_VERSION} schema for {doc['apiVersion']} {doc['kind']}")
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']} at {path}: {e.message}")


@pytest.mark.parametrize("name", [BASE, FORWARD, SIDECAR])
def test_prometheus_operator_resources(name):
    docs = render(name)
    monitors = [d for d in docs if d["kind"] in ("ServiceMonitor", "PodMonitor")]
    assert monitors, f"{name} has no ServiceMonitor or PodMonitor: its metrics would not be scraped"
    endpoint_keys = {"port", "path", "interval", "scrapeTimeout", "scheme", "relabelings", "metricRelabelings"}
    for mon in monitors:
        assert mon["apiVersion"] == "monitoring.coreos.com/v1" and mon["metadata"]["name"]
        spec = mon["spec"]
        assert set(spec) <= {"selector", "endpoints", "podMetricsEndpoints", "namespaceSelector", "jobLabel"}
        if mon["kind"] == "ServiceMonitor":
            services = [s for s in of_kind(docs, "Service") if matches(spec["selector"]["matchLabels"], s["metadata"]["labels"])]
            assert services, f"ServiceMonitor {mon['metadata']['name']} selects no Service"
            endpoints = spec["endpoints"]
            port_names = {p["name"] for s in services for p in s["spec"]["ports"]}
        else:
            pods = [d["spec"]["template"] for d in of_kind(docs, "Deployment")
                    if matches(spec["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"])]
            assert pods, f"PodMonitor {mon['metadata']['name']} selects no pod"
            endpoints = spec["podMetricsEndpoints"]
            port_names = {p["name"] for t in pods for c in all_containers(t["spec"]) for p in c.get("ports", [])}
        assert endpoints
        for ep in endpoints:
            assert set(ep) <= endpoint_keys, f"unknown endpoint fields {set(ep) - endpoint_keys}"
            assert ep["port"] in port_names and ep["path"] == "/metrics"


# ---------------------------------------------------------------- every pod


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_container_is_locked_down_and_bounded(name):
    for deployment in of_kind(render(name), "Deployment"):
        check_pod(name, deployment)


def check_pod(name, deployment):
    spec = deployment["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec.get("automountServiceAccountToken") is False
    for c in all_containers(spec):
        where = f"{name}: {deployment['metadata']['name']}/{c['name']}"
        sc = c.get("securityContext", {})
        assert sc.get("runAsNonRoot") is True, where
        assert sc.get("readOnlyRootFilesystem") is True, where
        assert sc.get("allowPrivilegeEscalation") is False, where
        assert sc.get("capabilities", {}).get("drop") == ["ALL"] and not sc["capabilities"].get("add"), where
        assert sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert not sc.get("privileged"), where
        res = c.get("resources", {})
        for kind in ("cpu", "memory"):
            request, limit = res.get("requests", {}).get(kind), res.get("limits", {}).get(kind)
            assert request and limit, f"{where}: {kind} request and limit required"
            assert quantity(request) <= quantity(limit), f"{where}: {kind} request above limit"
        assert ":" in c["image"] and not c["image"].endswith(":latest"), f"{where}: unpinned image"
        for env in c.get("env", []):
            if re.search(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", env["name"]):
                assert "value" not in env, f"{where}: {env['name']} must come from a Secret, not a literal"
        volumes = {v["name"] for v in spec.get("volumes", [])}
        assert {m["name"] for m in c.get("volumeMounts", [])} <= volumes, where


@pytest.mark.parametrize("name", [BASE, FORWARD, SIDECAR])
def test_proxy_containers_have_probes_on_the_metrics_port(name):
    pods = [d["spec"]["template"]["spec"] for d in of_kind(render(name), "Deployment")]
    proxies = [(pod, c) for pod in pods for c in proxy_containers(pod)]
    assert proxies, f"{name}: no dlproxy container"
    for pod, c in proxies:
        if c in pod.get("initContainers", []):
            assert c.get("restartPolicy") == "Always", "a proxy init container must be a native sidecar"
        metrics_port = int(flags(c)["--metrics-port"][-1])
        assert metrics_port == 9464 and flags(c)["--metrics-host"] == ["0.0.0.0"]  # probed by the kubelet
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = c[probe]["httpGet"]
            assert get["path"] == path, f"{c['name']}.{probe}"
            assert port_number(c, get["port"]) == metrics_port, f"{c['name']}.{probe} is not on the metrics port"
            assert c[probe].get("timeoutSeconds", 1) <= 5


def profile_mount_dirs(pod_spec, container) -> list[str]:
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    mounts = [m for m in container["volumeMounts"]
              if volumes[m["name"]].get("configMap", {}).get("name") == PROFILE_CONFIGMAP]
    for m in mounts:  # a subPath mount never sees ConfigMap updates, which would defeat hot reload
        assert "subPath" not in m and "subPathExpr" not in m, f"{container['name']}: profile mounted with subPath"
    return [m["mountPath"] for m in mounts]


@pytest.mark.parametrize("name", [BASE, SIDECAR])
def test_proxy_reads_the_profile_configmap(name):
    docs = render(name)
    cm = one(docs, "ConfigMap", PROFILE_CONFIGMAP)  # fixed name: no hash suffix (hot reload in place)
    (key,) = cm["data"]
    assert key == SITE_OVERLAY.name
    assert cm["data"][key] == SITE_OVERLAY.read_text(encoding="utf-8")
    for d in of_kind(docs, "Deployment"):
        spec = d["spec"]["template"]["spec"]
        for c in proxy_containers(spec):
            profiles = flags(c)["--profile"]
            assert profiles == [f"{mount}/{key}" for mount in profile_mount_dirs(spec, c)]
            assert "--no-builtin" not in flags(c), "the site overlay goes on top of the image's built-in profile"


def test_the_configmap_carries_a_site_overlay_not_a_copy_of_the_builtin():
    """The built-in profile comes from the image; the ConfigMap holds only the site's differences, and they
    load (with their examples) on top of the built-in exactly as the proxy loads them."""
    from dlproxy.engine.detector import Detector
    from dlproxy.engine.profile import builtin_profile_path, load_profiles, profile_sources
    from dlproxy.engine.selfcheck import check_examples

    assert sorted(p.name for p in SITE_OVERLAY.parent.glob("*.yaml")) == ["kustomization.yaml", "site.yaml"]
    builtin_ids = {e.id for e in load_profiles([builtin_profile_path()]).entries}
    doc = yaml.safe_load(SITE_OVERLAY.read_text(encoding="utf-8"))
    assert doc["profile"] != "credentials-and-secrets"
    assert len(doc.get("entries") or []) < len(builtin_ids) // 4, "a copy of the built-in entries"
    merged = load_profiles(profile_sources([SITE_OVERLAY]))
    assert builtin_ids <= {e.id for e in merged.entries}
    assert check_examples(Detector(merged)) == []


# ---------------------------------------------------------------- the forward proxy (base and overlay)


def test_base_proxy_arguments_and_ca():
    docs = render(BASE)
    spec = one(docs, "Deployment", "dlproxy")["spec"]["template"]["spec"]
    (proxy,) = proxy_containers(spec)
    f = flags(proxy)
    assert f["--listen-host"] == ["0.0.0.0"] and f["--listen-port"] == ["8080"]
    assert f["--metrics-host"] == ["0.0.0.0"] and f["--metrics-port"] == ["9464"]
    assert "--mode" not in f  # regular (forward) mode
    sets = dict(s.split("=", 1) for s in f["--set"])
    assert sets["body_size_limit"] == "64m"
    # The confdir is a writable emptyDir, filled from the CA Secret by an init container.
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in proxy["volumeMounts"]}
    confdir = sets["confdir"]
    assert "emptyDir" in volumes[mounts[confdir]]
    assert "/tmp" in mounts and "emptyDir" in volumes[mounts["/tmp"]]  # HOME with a read-only root
    (init,) = [c for c in spec["initContainers"] if not is_proxy(c)]
    assert init["image"] == proxy["image"]
    init_mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert init_mounts[mounts[confdir]] == confdir
    (ca_volume,) = [v for v in spec["volumes"] if "secret" in v]
    assert ca_volume["secret"]["secretName"] == "dlproxy-ca" and not ca_volume["secret"].get("optional")
    script = " ".join(init["command"] + init["args"])
    for pem in ("mitmproxy-ca.pem", "mitmproxy-ca-cert.pem", "mitmproxy-dhparam.pem"):
        assert f"{init_mounts[ca_volume['name']]}/{pem}" in script, f"init container does not copy {pem}"
    assert confdir in script


@pytest.mark.parametrize("name", [BASE, SIDECAR])
def test_revocation_state_dir_is_a_writable_disk_volume(name):
    """dlp_state_dir holds the revocation queue: a mounted emptyDir on disk (not memory: it should outlive a
    container restart) or a PVC, writable by the proxy."""
    docs = render(name)
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        spec = doc["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for proxy in proxy_containers(spec):
            sets = dict(s.split("=", 1) for s in flags(proxy)["--set"])
            mounts = {m["mountPath"]: m for m in proxy["volumeMounts"]}
            mount = mounts[sets["dlp_state_dir"]]
            assert not mount.get("readOnly")
            volume = volumes[mount["name"]]
            assert "persistentVolumeClaim" in volume or (
                "emptyDir" in volume and volume["emptyDir"].get("medium") != "Memory"), volume


def test_base_service_hpa_pdb_and_network_policy_fit_the_pods():
    docs = render(BASE)
    deployment = one(docs, "Deployment", "dlproxy")
    template = deployment["spec"]["template"]
    labels = template["metadata"]["labels"]
    (proxy,) = proxy_containers(template["spec"])

    service = one(docs, "Service", "dlproxy")
    assert matches(service["spec"]["selector"], labels)
    ports = {p["port"]: p for p in service["spec"]["ports"]}
    assert set(ports) == {8080, 9464}
    assert all(p.get("protocol", "TCP") == "TCP" for p in ports.values()), "the Service must be TCP only"
    assert all(port_number(proxy, p["targetPort"]) == n for n, p in ports.items())

    hpa = one(docs, "HorizontalPodAutoscaler", "dlproxy")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "dlproxy"}
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"] == ["cpu"]
    assert "replicas" not in deployment["spec"], "the HPA owns the scale: `replicas` resets it on every apply"
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]

    pdb = one(docs, "PodDisruptionBudget", "dlproxy")
    assert matches(pdb["spec"]["selector"]["matchLabels"], labels)
    assert pdb["spec"].get("maxUnavailable", 0) >= 1 or pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]

    policy = one(docs, "NetworkPolicy", "dlproxy")["spec"]
    assert matches(policy["podSelector"]["matchLabels"], labels)
    ingress = {p["port"]: rule["from"] for rule in policy["ingress"] for p in rule["ports"]}
    assert set(ingress) == {8080, 9464}, "only the proxy and metrics ports are reachable"
    assert ingress[9464] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert all("namespaceSelector" in peer for peer in ingress[8080])
    egress = {(p["port"], p.get("protocol", "TCP")) for rule in policy["egress"] for p in rule["ports"]}
    assert {(443, "TCP"), (80, "TCP"), (53, "UDP"), (53, "TCP")} <= egress


def test_forward_proxy_overlay_and_its_example_client():
    docs = render(FORWARD)
    namespace = one(docs, "Namespace")["metadata"]["name"]
    for d in docs:
        if d["kind"] != "Namespace":
            assert d["metadata"].get("namespace") == namespace, f"{d['kind']}/{d['metadata']['name']}"
    deployment = one(docs, "Deployment", "dlproxy")
    hpa = one(docs, "HorizontalPodAutoscaler", "dlproxy")
    assert "replicas" not in deployment["spec"] and hpa["spec"]["minReplicas"] == 3

    client = render(CLIENT)
    env = one(client, "ConfigMap", "dlproxy-client-env")["data"]
    service = one(docs, "Service", "dlproxy")
    proxy_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "proxy")
    assert env["HTTPS_PROXY"] == f"http://{service['metadata']['name']}.{namespace}.svc:{proxy_port}"
    # SSL_CERT_FILE / REQUESTS_CA_BUNDLE replace the trust store: a combined bundle (system CAs + proxy CA),
    # built by an init container, so hosts that do not go through the proxy still verify. Node adds its extra.
    assert env["NODE_EXTRA_CA_CERTS"].endswith("/mitmproxy-ca-cert.pem")
    bundle = env["SSL_CERT_FILE"]
    assert env["REQUESTS_CA_BUNDLE"] == bundle and not bundle.endswith("/mitmproxy-ca-cert.pem")
    pod = one(client, "Deployment")["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    script = " ".join(init["args"])
    assert "/etc/ssl/certs/ca-certificates.crt" in script and env["NODE_EXTRA_CA_CERTS"] in script
    assert script.rstrip().endswith(f"> {bundle}")
    bundle_dir = bundle.rsplit("/", 1)[0]
    volume_of = {m["mountPath"]: m["name"] for c in pod["containers"] for m in c["volumeMounts"]}
    assert volume_of[bundle_dir] in {m["name"] for m in init["volumeMounts"] if m["mountPath"] == bundle_dir}
    # The client namespace carries the label the proxy's NetworkPolicy admits on port 8080.
    policy = one(docs, "NetworkPolicy", "dlproxy")["spec"]
    admitted = [peer["namespaceSelector"]["matchLabels"] for rule in policy["ingress"]
                if any(p["port"] == proxy_port for p in rule["ports"]) for peer in rule["from"]]
    client_ns = one(client, "Namespace")["metadata"]["labels"]
    assert any(matches(sel, client_ns) for sel in admitted)


def dns_and_metadata_rules(policy: dict) -> None:
    """DNS only to the cluster DNS (a rule to any resolver is a way out); no cloud metadata address."""
    for rule in policy["egress"]:
        ports = {p["port"] for p in rule.get("ports", [])}
        if 53 in ports:
            assert rule.get("to"), "DNS egress to anywhere"
            for peer in rule["to"]:
                assert peer.get("namespaceSelector", {}).get("matchLabels") == {
                    "kubernetes.io/metadata.name": "kube-system"}, peer
                assert peer.get("podSelector", {}).get("matchLabels") == {"k8s-app": "kube-dns"}, peer
        for peer in rule.get("to", []):
            block = peer.get("ipBlock")
            if block and block["cidr"] == "0.0.0.0/0":
                assert "169.254.0.0/16" in block.get("except", [])
            if block and block["cidr"] == "::/0":
                assert {"fe80::/10"} <= set(block.get("except", []))
                assert {"fd00:ec2::254/128", "fc00::/7"} & set(block.get("except", [])), "IPv6 metadata reachable"


@pytest.mark.parametrize(("name", "policy"), [(BASE, "dlproxy"), (SIDECAR, "ai-app"), (CLIENT, None)])
def test_network_policies_restrict_dns_and_metadata(name, policy):
    docs = render(name)
    policies = of_kind(docs, "NetworkPolicy")
    if policy is not None:
        assert {p["metadata"]["name"] for p in policies} >= {policy}
    for p in policies:
        dns_and_metadata_rules(p["spec"])


def test_sidecar_pod_egress_is_narrowed_by_a_network_policy():
    """Per pod (Kubernetes cannot tell containers apart): only cluster DNS and HTTPS to outside addresses."""
    docs = render(SIDECAR)
    pod = one(docs, "Deployment")["spec"]["template"]
    policy = one(docs, "NetworkPolicy", "ai-app")["spec"]
    assert matches(policy["podSelector"]["matchLabels"], pod["metadata"]["labels"])
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    ports = {(p["port"], p.get("protocol", "TCP")) for rule in policy["egress"] for p in rule["ports"]}
    assert ports == {(443, "TCP"), (53, "UDP"), (53, "TCP")}
    private = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}
    for rule in policy["egress"]:
        for peer in rule.get("to", []):
            if peer.get("ipBlock", {}).get("cidr") == "0.0.0.0/0":
                assert private <= set(peer["ipBlock"]["except"]), "in-cluster services reachable"
    ingress = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    assert ingress == {9464}
    text = (K8S / SIDECAR / "networkpolicy.yaml").read_text()
    assert "cannot give the dlproxy sidecar egress and deny it to the app container" in text


# ---------------------------------------------------------------- the AI-gateway sidecar


def test_sidecar_overlay_runs_reverse_mode_on_loopback():
    docs = render(SIDECAR)
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor"}, kinds
    assert all(d["metadata"]["name"] != "dlproxy" for d in of_kind(docs, "Deployment")), "forward proxy deployed"
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    (proxy,) = proxy_containers(spec)
    f = flags(proxy)
    assert f["--listen-host"] == ["127.0.0.1"]
    assert "http3=false" in f["--set"]
    modes = {}
    for mode in f["--mode"]:
        m = re.fullmatch(r"reverse:(https://[^@]+)@127\.0\.0\.1:(\d+)", mode)
        assert m, f"{mode!r}: every listener must be reverse mode on 127.0.0.1"
        modes[m.group(1)] = int(m.group(2))
    assert "https://api.openai.com" in modes
    assert {p["containerPort"] for p in proxy.get("ports", [])} == {9464}, "only metrics leave the pod"
    apps = [c for c in spec["containers"] if not is_proxy(c)]
    env = {e["name"]: e.get("value") for c in apps for e in c.get("env", [])}
    assert env["OPENAI_BASE_URL"] == f"http://127.0.0.1:{modes['https://api.openai.com']}/v1"


# ---------------------------------------------------------------- the container image


def containerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (DEPLOY / "container" / "Containerfile").read_text()
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1].strip()) for ln in joined.splitlines() if ln.strip()]


def final_stage():
    instructions = containerfile()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def test_containerfile_base_user_ports_and_entrypoint():
    instructions = containerfile()
    for op, args in instructions:
        if op == "FROM":
            image = args.split()[0]
            assert re.fullmatch(r"python:3\.13(\.\d+)?-slim-(bookworm|trixie)(@sha256:[0-9a-f]{64})?", image), image
    stage = final_stage()
    ops = [op for op, _ in stage]
    users = [args for op, args in stage if op == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]), "final stage must run as a numeric non-root uid"
    assert ops.index("USER") < ops.index("ENTRYPOINT")
    exposed = {p.split("/")[0] for op, args in stage if op == "EXPOSE" for p in args.split()}
    assert {"8080", "9464"} <= exposed
    assert json.loads(dict(stage)["ENTRYPOINT"]) == ["dlproxy", "run"]
    healthcheck = dict(stage).get("HEALTHCHECK", "")
    assert "CMD" in healthcheck and "/healthz" in healthcheck and "9464" in healthcheck
    assert "curl" not in healthcheck and "urllib" in healthcheck  # slim images have no curl


def test_containerfile_builds_the_wheel_and_installs_the_fast_extra():
    instructions = containerfile()
    stages = [args.split()[-1] for op, args in instructions if op == "FROM" and " AS " in args.upper()]
    assert stages, "no named builder stage"
    runs = " ".join(args for op, args in instructions if op == "RUN")
    assert "pip wheel" in runs or "python -m build" in runs
    assert "[fast]" in runs
    copies = [args for op, args in final_stage() if op == "COPY"]
    assert any(f"--from={stages[0]}" in c for c in copies), "the final stage must take the build from the builder"


def test_containerfile_bakes_in_no_secrets():
    for op, args in containerfile():
        if op in ("ENV", "ARG"):
            pairs = shlex.split(args)
            if op == "ENV" and len(pairs) == 2 and "=" not in pairs[0]:
                pairs = ["=".join(pairs)]  # legacy `ENV NAME value`
            for pair in pairs:
                name, _, value = pair.partition("=")
                assert not (re.search(r"TOKEN|KEY|SECRET|PASSW|CREDENTIAL", name, re.I) and value), f"{op} {name}"
        if op in ("COPY", "ADD"):
            assert not re.search(r"\.(pem|key|p12|pfx)\b", args), f"{op} {args}: key material in the image"


def test_dockerignore_keeps_the_context_small_and_the_wheel_buildable():
    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    assert ".venv" in patterns and ".git" in patterns
    for needed in ("pyproject.toml", "README.md", "addons", "addons/dlproxy/__init__.py", "profiles"):
        excluded = [p for p in patterns if not p.startswith("!") and fnmatch.fnmatch(needed, p.removeprefix("**/"))]
        assert not excluded, f".dockerignore excludes {needed} (needed to build the wheel): {excluded}"


# ---------------------------------------------------------------- alerts, dashboard and the metrics they use


def alert_rules():
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["kind"] == "PrometheusRule"
    assert doc["metadata"]["name"]
    return [rule for group in doc["spec"]["groups"] for rule in group["rules"]]


def dashboard():
    return json.loads((DEPLOY / "grafana" / "dashboard.json").read_text())


def expressions() -> dict[str, str]:
    out = {f"alert {r['alert']}": r["expr"] for r in alert_rules()}
    for panel in dashboard()["panels"]:
        for t in panel["targets"]:
            out[f"panel {panel['title']} {t['refId']}"] = t["expr"]
    return out


def metric_base(name: str, known) -> str | None:
    """The defined metric a PromQL series name comes from (counter `_total`, histogram series)."""
    for candidate in (name, name.removesuffix("_total"),
                      *(name.removesuffix(s) for s in ("_bucket", "_sum", "_count") if name.endswith(s))):
        if candidate in known:
            return candidate
    return None


def test_alert_rules_are_complete():
    rules = alert_rules()
    assert len({r["alert"] for r in rules}) == len(rules), "duplicate alert names"
    for r in rules:
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", r["alert"])
        assert r["expr"].strip() and re.fullmatch(r"\d+[smhdw]", r["for"]), r["alert"]
        assert r["labels"]["severity"] in {"critical", "warning", "info"}, r["alert"]
        assert r["annotations"]["summary"] and r["annotations"]["description"], r["alert"]
    text = " ".join(r["expr"] for r in rules)
    for needed in ("dlproxy_detections_total", 'action="block"', "dlproxy_unscannable_total",
                   'dlproxy_profile_reloads_total{result="error"}', "up{"):
        assert needed in text, f"no alert on {needed}"


def test_dashboard_panels_all_query_something():
    dash = dashboard()
    panels = dash["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "duplicate panel ids"
    for p in panels:
        assert p["title"] and p["targets"], p.get("title")
        assert all(t["expr"].strip() and t["refId"] for t in p["targets"]), p["title"]
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
    text = " ".join(expressions().values())
    for needed in ("dlproxy_detections_total", 'verdict="blocked"', "dlproxy_scanned_bytes_total",
                   "histogram_quantile", "dlproxy_scan_duration_seconds_bucket", "dlproxy_unscannable_total",
                   "dlproxy_profile_reloads_total"):
        assert needed in text, f"dashboard lacks {needed}"


def test_expressions_are_balanced_and_group_by_real_labels():
    pairs = {")": "(", "]": "[", "}": "{"}
    for where, expr in expressions().items():
        stack = []
        for ch in re.sub(r'"[^"]*"', '""', expr):
            if ch in "([{":
                stack.append(ch)
            elif ch in pairs:
                assert stack and stack.pop() == pairs[ch], f"{where}: unbalanced {ch}"
        assert not stack, f"{where}: unclosed {stack}"
        # label matchers and `by (...)` clauses may only name labels the metric carries
        for metric, matchers in re.findall(r"\b(dlproxy_[a-z0-9_]+)\{([^}]*)\}", expr):
            base = metric_base(metric, CONTRACT_METRICS)
            used = set(re.findall(r"(\w+)\s*[=!~]", matchers))
            assert base and used <= CONTRACT_METRICS[base] | TARGET_LABELS, f"{where}: {metric}{{{matchers}}}"
        for m in re.finditer(r"by \(([\w, ]*)\) \(", expr):
            depth, end = 1, m.end()
            while depth:
                depth += {"(": 1, ")": -1}.get(expr[end], 0)
                end += 1
            inner = {metric_base(n, CONTRACT_METRICS) for n in re.findall(r"\bdlproxy_[a-z0-9_]+", expr[m.end():end])}
            if len(inner) == 1 and None not in inner:
                labels = {s.strip() for s in m.group(1).split(",")} - {"le"}
                assert labels <= CONTRACT_METRICS[inner.pop()] | TARGET_LABELS, f"{where}: by ({m.group(1)})"


def test_referenced_metrics_are_in_the_contract():
    for where, expr in expressions().items():
        for name in re.findall(r"\bdlproxy_[a-z0-9_]+", expr):
            assert metric_base(name, CONTRACT_METRICS), f"{where}: {name} is not a contract metric"


def test_referenced_metrics_are_defined_in_the_code():
    source_file = ROOT / "addons" / "dlproxy" / "ops" / "metrics.py"
    assert source_file.is_file(), "addons/dlproxy/ops/metrics.py is missing: it defines the metrics"
    defined = set(re.findall(r"""["'](dlproxy_[a-z0-9_]+)["']""", source_file.read_text()))
    assert defined, "no 'dlproxy_...' metric names found as string literals in addons/dlproxy/ops/metrics.py"
    for where, expr in expressions().items():
        for name in re.findall(r"\bdlproxy_[a-z0-9_]+", expr):
            assert metric_base(name, defined), f"{where}: {name} is not defined in metrics.py ({sorted(defined)})"
