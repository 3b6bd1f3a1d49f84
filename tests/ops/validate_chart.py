#!/usr/bin/env python3
"""Strict validation of the AccuLLM chart as rendered by helm/render (helm template's output).

Usage: validate_chart.py RENDER_DIR REPO_ROOT ACCULLM_BINARY [VALUES_FILE]

- values (values.yaml + VALUES_FILE, merged as Helm does) against values.schema.json (the
  subset of JSON Schema the schema uses; an unknown keyword fails);
- every built-in object against Debian's python3-kubernetes models (generated from the
  Kubernetes OpenAPI spec): every key in the model's attribute_map, every value of the declared
  type, recursively; LeaderWorkerSet, ServiceMonitor, PodMonitor and PrometheusRule against
  the fields their projects document (FIELDS below; pod templates inside go to the models);
- cross-checks: selectors match pod labels, Services and monitors use named ports that exist,
  every `accullm serve` flag is in `accullm serve --help`, --port equals the http
  containerPort, probes use /healthz and /readyz (which coordinator/api_service.cc answers),
  referenced ConfigMaps/Secrets exist, securityContext is non-root / read-only root fs / no
  privilege escalation, OpenMPI's pinned ports equal what the NetworkPolicy allows, the
  PrometheusRule and dashboard ConfigMap equal monitoring/alerts and monitoring/dashboards.
"""
import glob
import json
import os
import re
import subprocess
import sys

import kubernetes.client as k8s
import yaml

render_dir, root, binary = sys.argv[1], sys.argv[2], sys.argv[3]
values_file = sys.argv[4] if len(sys.argv) > 4 else None
chart = os.path.join(root, "helm/accullm")
errors = []


def fail(msg):
    errors.append(msg)


# ---- values against values.schema.json ---------------------------------------------------
def merge(dst, src):
    for k, v in src.items():
        if v is None:
            dst.pop(k, None)
        elif isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge(dst[k], v)
        else:
            dst[k] = v


values = yaml.safe_load(open(os.path.join(chart, "values.yaml")))
if values_file:
    merge(values, yaml.safe_load(open(values_file)) or {})
JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
              "integer": int, "number": (int, float)}
KNOWN = {"$schema", "title", "description", "type", "properties", "additionalProperties", "required",
         "items", "enum", "minimum", "maximum", "exclusiveMinimum", "minLength", "pattern"}


def check_schema(v, s, path):
    for k in s:
        if k not in KNOWN:
            fail(f"values.schema.json {path}: keyword {k} not implemented by this checker")
    types = s.get("type")
    if types:
        types = types if isinstance(types, list) else [types]
        ok = any(isinstance(v, JSON_TYPES[t]) and not (t in ("integer", "number") and isinstance(v, bool))
                 for t in types)
        if not ok:
            return fail(f"values {path}: {v!r} is not {'/'.join(types)}")
    if "enum" in s and v not in s["enum"]:
        fail(f"values {path}: {v!r} not one of {s['enum']}")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if "minimum" in s and v < s["minimum"]:
            fail(f"values {path}: {v} < {s['minimum']}")
        if "maximum" in s and v > s["maximum"]:
            fail(f"values {path}: {v} > {s['maximum']}")
        if "exclusiveMinimum" in s and v <= s["exclusiveMinimum"]:
            fail(f"values {path}: {v} <= {s['exclusiveMinimum']}")
    if isinstance(v, str):
        if len(v) < s.get("minLength", 0):
            fail(f"values {path}: shorter than {s['minLength']}")
        if "pattern" in s and not re.search(s["pattern"], v):
            fail(f"values {path}: {v!r} does not match {s['pattern']}")
    if isinstance(v, dict):
        props = s.get("properties", {})
        for r in s.get("required", []):
            if r not in v:
                fail(f"values {path}: {r} is required")
        for k, sub in v.items():
            if k in props:
                check_schema(sub, props[k], f"{path}.{k}")
            elif s.get("additionalProperties", True) is False:
                fail(f"values {path}: unknown key {k}")
    if isinstance(v, list) and "items" in s:
        for i, item in enumerate(v):
            check_schema(item, s["items"], f"{path}[{i}]")


check_schema(values, json.load(open(os.path.join(chart, "values.schema.json"))), "")

# ---- built-in objects against the Kubernetes models --------------------------------------
def check_model(v, t, path):
    """v: a JSON value; t: an openapi type string of python3-kubernetes."""
    if t == "object":  # IntOrString, Quantity, RawExtension: scalar or free form
        return
    if t == "str":
        if not isinstance(v, str):
            fail(f"{path}: {v!r} is not a string")
        return
    if t == "int":
        if not isinstance(v, int) or isinstance(v, bool):
            fail(f"{path}: {v!r} is not an integer")
        return
    if t == "float":
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            fail(f"{path}: {v!r} is not a number")
        return
    if t == "bool":
        if not isinstance(v, bool):
            fail(f"{path}: {v!r} is not a boolean")
        return
    m = re.fullmatch(r"list\[(.+)\]", t)
    if m:
        if not isinstance(v, list):
            return fail(f"{path}: not a list")
        for i, item in enumerate(v):
            check_model(item, m.group(1), f"{path}[{i}]")
        return
    m = re.fullmatch(r"dict\(str, (.+)\)", t)
    if m:
        if not isinstance(v, dict):
            return fail(f"{path}: not a mapping")
        for k, item in v.items():
            if not isinstance(k, str):
                fail(f"{path}: key {k!r} is not a string")
            check_model(item, m.group(1), f"{path}.{k}")
        return
    cls = getattr(k8s, t, None)
    if cls is None:
        return fail(f"{path}: unknown model type {t}")
    if not isinstance(v, dict):
        return fail(f"{path}: {t} must be a mapping, got {v!r}")
    by_json = {j: a for a, j in cls.attribute_map.items()}
    for k, item in v.items():
        if k not in by_json:
            fail(f"{path}: {k} is not a field of {t}")
            continue
        check_model(item, cls.openapi_types[by_json[k]], f"{path}.{k}")


def model_for(obj):
    group_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    version = group_version.split("/")[-1]
    return f"{version[0].upper()}{version[1:]}{kind}"


# ---- custom resources: the documented fields -----------------------------------------------
# "k8s:T" = a python3-kubernetes model; ("list", X); ("map", X) = str keys; sets = enums.
SELECTOR = "k8s:V1LabelSelector"
SECRET_KEY = {"name": "str", "key": "str", "optional": "bool"}
SAFE_AUTH = {"type": "str", "credentials": SECRET_KEY}
RELABEL = {"sourceLabels": ("list", "str"), "separator": "str", "targetLabel": "str", "regex": "str",
           "modulus": "int", "replacement": "str", "action": "str"}
ENDPOINT_COMMON = {"path": "str", "scheme": {"http", "https"}, "params": ("map", ("list", "str")),
                   "interval": "str", "scrapeTimeout": "str", "honorLabels": "bool", "honorTimestamps": "bool",
                   "bearerTokenSecret": SECRET_KEY, "authorization": SAFE_AUTH,
                   "relabelings": ("list", RELABEL), "metricRelabelings": ("list", RELABEL),
                   "followRedirects": "bool", "enableHttp2": "bool", "filterRunning": "bool"}
FIELDS = {
    ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"): {
        "replicas": "int",
        "startupPolicy": {"LeaderCreated", "LeaderReady"},
        "rolloutStrategy": {"type": {"RollingUpdate"},
                            "rollingUpdateConfiguration": {"partition": "int", "maxUnavailable": "intstr",
                                                           "maxSurge": "intstr"}},
        "networkConfig": {"subdomainPolicy": {"Shared", "UniquePerReplica"}},
        "leaderWorkerTemplate": {
            "leaderTemplate": "k8s:V1PodTemplateSpec", "workerTemplate": "k8s:V1PodTemplateSpec",
            "size": "int",
            "restartPolicy": {"Default", "RecreateGroupOnPodRestart", "RecreateGroupAfterStart", "None"},
            "subGroupPolicy": {"subGroupPolicyType": {"LeaderWorker", "LeaderExcluded"}, "subGroupSize": "int"},
            "volumeClaimTemplates": ("list", "k8s:V1PersistentVolumeClaim"),
        },
    },
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "jobLabel": "str", "targetLabels": ("list", "str"), "podTargetLabels": ("list", "str"),
        "endpoints": ("list", dict(ENDPOINT_COMMON, port="str", targetPort="intstr")),
        "selector": SELECTOR, "namespaceSelector": {"any": "bool", "matchNames": ("list", "str")},
        "sampleLimit": "int",
    },
    ("monitoring.coreos.com/v1", "PodMonitor"): {
        "jobLabel": "str", "podTargetLabels": ("list", "str"),
        "podMetricsEndpoints": ("list", dict(ENDPOINT_COMMON, port="str", targetPort="intstr")),
        "selector": SELECTOR, "namespaceSelector": {"any": "bool", "matchNames": ("list", "str")},
        "sampleLimit": "int",
    },
    ("monitoring.coreos.com/v1", "PrometheusRule"): {
        "groups": ("list", {"name": "str", "interval": "str", "limit": "int",
                            "partial_response_strategy": "str",
                            "rules": ("list", {"alert": "str", "record": "str", "expr": "str", "for": "str",
                                               "keep_firing_for": "str", "labels": ("map", "str"),
                                               "annotations": ("map", "str")})}),
    },
}


def check_fields(v, spec, path):
    if isinstance(spec, str):
        if spec.startswith("k8s:"):
            return check_model(v, spec[4:], path)
        if spec == "intstr":
            if not isinstance(v, (int, str)) or isinstance(v, bool):
                fail(f"{path}: {v!r} is not an int or string")
            return
        return check_model(v, spec, path)
    if isinstance(spec, set):
        if v not in spec:
            fail(f"{path}: {v!r} not one of {sorted(spec)}")
        return
    if isinstance(spec, tuple):
        kind, sub = spec
        if kind == "list":
            if not isinstance(v, list):
                return fail(f"{path}: not a list")
            for i, item in enumerate(v):
                check_fields(item, sub, f"{path}[{i}]")
        else:
            if not isinstance(v, dict):
                return fail(f"{path}: not a mapping")
            for k, item in v.items():
                check_fields(item, sub, f"{path}.{k}")
        return
    if not isinstance(v, dict):
        return fail(f"{path}: not a mapping")
    for k, item in v.items():
        if k not in spec:
            fail(f"{path}: {k} is not a documented field")
        else:
            check_fields(item, spec[k], f"{path}.{k}")


# ---- load and validate every rendered object ----------------------------------------------
objects = []
files = sorted(glob.glob(os.path.join(render_dir, "**/*.yaml"), recursive=True))
if not files:
    sys.exit(f"FAIL: no rendered manifest under {render_dir}")
for f in files:
    for doc in yaml.safe_load_all(open(f)):
        if doc is None:
            continue
        where = f"{os.path.basename(f)}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        objects.append((where, doc))
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key in FIELDS:
            for k in doc:
                if k not in ("apiVersion", "kind", "metadata", "spec"):
                    fail(f"{where}: {k} is not a field of {key[1]}")
            check_model(doc.get("metadata"), "V1ObjectMeta", f"{where}.metadata")
            check_fields(doc.get("spec"), FIELDS[key], f"{where}.spec")
        else:
            name = model_for(doc)
            if getattr(k8s, name, None) is None:
                fail(f"{where}: no Kubernetes model {name} and no documented fields for {key}")
            else:
                check_model(doc, name, where)
        if not doc.get("metadata", {}).get("name"):
            fail(f"{where}: no metadata.name")

by_kind = {}
for where, o in objects:
    by_kind.setdefault(o["kind"], []).append((where, o))
names = {(o["kind"], o["metadata"]["name"]) for _, o in objects}


# ---- pods: templates, containers, flags, probes ------------------------------------------
def pod_templates():
    for where, o in by_kind.get("Deployment", []):
        yield f"{where} template", o["spec"]["template"]
    for where, o in by_kind.get("LeaderWorkerSet", []):
        lwt = o["spec"]["leaderWorkerTemplate"]
        yield f"{where} leaderTemplate", lwt["leaderTemplate"]
        yield f"{where} workerTemplate", lwt["workerTemplate"]


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


pods = list(pod_templates())
if not pods:
    fail("no pod template rendered")
help_text = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True).stdout
serve_flags = set(re.findall(r"(--[a-z][a-z0-9-]*)", help_text))
if "--port" not in serve_flags:
    fail(f"`{binary} serve --help` lists no --port: cannot check the flags")
api_source = open(os.path.join(root, "coordinator/api_service.cc")).read()
served_paths = set(re.findall(r'path == "(/[a-z]+)"', api_source))
for p in ("/healthz", "/readyz", "/metrics"):
    if p not in served_paths:
        fail(f"coordinator/api_service.cc does not answer {p}: the chart's probes/monitors need it")
existing_secrets = {values["apiKey"]["existingSecret"], values["mpi"]["ssh"]["existingSecret"]} - {""}

for where, tpl in pods:
    spec = tpl["spec"]
    labels = tpl.get("metadata", {}).get("labels", {})
    psc = spec.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True:
        fail(f"{where}: pod securityContext.runAsNonRoot is not true")
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    for v in vols.values():
        if "configMap" in v and ("ConfigMap", v["configMap"]["name"]) not in names:
            fail(f"{where}: volume {v['name']} uses ConfigMap {v['configMap']['name']}, which is not rendered")
        if "secret" in v:
            s = v["secret"]["secretName"]
            if ("Secret", s) not in names and s not in existing_secrets:
                fail(f"{where}: volume {v['name']} uses Secret {s}, neither rendered nor an existingSecret")
    for c in spec["containers"]:
        cw = f"{where} container {c['name']}"
        sc = c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False or sc.get("readOnlyRootFilesystem") is not True:
            fail(f"{cw}: needs allowPrivilegeEscalation false and readOnlyRootFilesystem true")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            fail(f"{cw}: does not drop ALL capabilities")
        for m in c.get("volumeMounts", []):
            if m["name"] not in vols:
                fail(f"{cw}: mounts unknown volume {m['name']}")
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref and ("Secret", ref["name"]) not in names and ref["name"] not in existing_secrets:
                fail(f"{cw}: env {e['name']} uses Secret {ref['name']}, neither rendered nor an existingSecret")
        args = c.get("args", [])
        if args and args[0] == "serve":
            for a in args[1:]:
                flag = a.split("=", 1)[0]
                if flag.startswith("--") and flag not in serve_flags:
                    fail(f"{cw}: `accullm serve {flag}` is not a flag of {binary} (serve --help)")
            port = [a.split("=", 1)[1] for a in args if a.startswith("--port=")]
            if not port or int(port[0]) != ports.get("http"):
                fail(f"{cw}: --port {port} differs from containerPort http {ports.get('http')}")
            if "--host=0.0.0.0" not in args:
                fail(f"{cw}: serve must bind 0.0.0.0 to be reachable in the pod")
            mp = [a.split("=", 1)[1] for a in args if a.startswith("--metrics-port=")]
            if mp and int(mp[0]) != values["metrics"]["stagePort"]:
                fail(f"{cw}: --metrics-port {mp} differs from metrics.stagePort")
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = c.get(kind)
            if not probe:
                continue
            handler = probe.get("httpGet") or probe.get("tcpSocket")
            if not handler:
                fail(f"{cw}: {kind} is neither httpGet nor tcpSocket")
                continue
            if handler.get("port") not in ports and handler.get("port") not in ports.values():
                fail(f"{cw}: {kind} port {handler.get('port')} is not a container port")
            if "httpGet" in probe:
                want = "/readyz" if kind == "readinessProbe" else "/healthz"
                if probe["httpGet"]["path"] != want:
                    fail(f"{cw}: {kind} path {probe['httpGet']['path']}, expected {want}")
        if labels.get("accullm.io/api") == "true":
            for kind in ("livenessProbe", "readinessProbe"):
                if "httpGet" not in c.get(kind, {}):
                    fail(f"{cw}: an API pod needs an HTTP {kind}")

# ---- selectors --------------------------------------------------------------------------
for where, o in by_kind.get("Deployment", []):
    if not matches(o["spec"]["selector"]["matchLabels"], o["spec"]["template"]["metadata"]["labels"]):
        fail(f"{where}: selector does not match its template's labels")
services = by_kind.get("Service", [])
for where, s in services:
    selected = [(w, t) for w, t in pods if matches(s["spec"]["selector"], t["metadata"].get("labels", {}))]
    if not selected:
        fail(f"{where}: selector {s['spec']['selector']} matches no pod")
    for p in s["spec"]["ports"]:
        for w, t in selected:
            cports = {cp["name"] for c in t["spec"]["containers"] for cp in c.get("ports", [])}
            if isinstance(p["targetPort"], str) and p["targetPort"] not in cports:
                fail(f"{where}: targetPort {p['targetPort']} is not a port of {w}")
for kind in ("PodDisruptionBudget", "NetworkPolicy"):
    for where, o in by_kind.get(kind, []):
        sel = (o["spec"].get("selector") or o["spec"].get("podSelector"))["matchLabels"]
        if not any(matches(sel, t["metadata"].get("labels", {})) for _, t in pods):
            fail(f"{where}: selector {sel} matches no pod")
for where, m in by_kind.get("ServiceMonitor", []):
    sel = m["spec"]["selector"]["matchLabels"]
    svc = [s for _, s in services if matches(sel, s["metadata"].get("labels", {}))]
    if not svc:
        fail(f"{where}: selector matches no Service")
    for ep in m["spec"]["endpoints"]:
        if not any(ep["port"] in {p["name"] for p in s["spec"]["ports"]} for s in svc):
            fail(f"{where}: endpoint port {ep['port']} is not a port of the selected Service")
        if ep.get("path") != "/metrics":
            fail(f"{where}: endpoint path {ep.get('path')} is not /metrics")
        auth_needed = values["apiKey"]["enabled"] and not values["metrics"]["noAuth"]
        if auth_needed and "bearerTokenSecret" not in ep:
            fail(f"{where}: /metrics needs the API key but the endpoint sends none")
for where, m in by_kind.get("PodMonitor", []):
    sel = m["spec"]["selector"]["matchLabels"]
    sel_pods = [t for _, t in pods if matches(sel, t["metadata"].get("labels", {}))]
    if not sel_pods:
        fail(f"{where}: selector matches no pod")
    for ep in m["spec"]["podMetricsEndpoints"]:
        for t in sel_pods:
            if ep["port"] not in {cp["name"] for c in t["spec"]["containers"] for cp in c.get("ports", [])}:
                fail(f"{where}: port {ep['port']} is not a container port of the selected pods")

# ---- the MPI group -----------------------------------------------------------------------
for where, o in by_kind.get("LeaderWorkerSet", []):
    spec = o["spec"]
    if spec.get("startupPolicy") != "LeaderCreated":
        fail(f"{where}: startupPolicy must be LeaderCreated (the leader is ready only after its workers run)")
    if spec["leaderWorkerTemplate"].get("restartPolicy") != "RecreateGroupOnPodRestart":
        fail(f"{where}: restartPolicy must be RecreateGroupOnPodRestart (an MPI job cannot lose a rank)")
    if spec["leaderWorkerTemplate"]["size"] != values["group"]["workers"] + 1:
        fail(f"{where}: size is not group.workers + 1")
    scripts = [c for _, c in by_kind.get("ConfigMap", []) if c["metadata"]["name"].endswith("-mpi-scripts")]
    if not scripts:
        fail(f"{where}: no mpi-scripts ConfigMap")
        continue
    leader_sh = scripts[0]["data"]["leader.sh"]
    for script, text in scripts[0]["data"].items():  # /bin/sh (dash in the image) must parse them
        r = subprocess.run(["sh", "-n"], input=text, capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"{where}: {script} does not parse: {r.stderr.strip()}")
    oob = re.search(r"oob_tcp_dynamic_ipv4_ports (\d+)-(\d+)", leader_sh)
    btl_min = re.search(r"btl_tcp_port_min_v4 (\d+)", leader_sh)
    btl_range = re.search(r"btl_tcp_port_range_v4 (\d+)", leader_sh)
    ssh_port = re.search(r"Port (\d+)", leader_sh)
    if not (oob and btl_min and btl_range and ssh_port):
        fail(f"{where}: leader.sh does not pin OpenMPI's OOB and BTL ports and the ssh port")
        continue
    needed = [(int(ssh_port.group(1)), int(ssh_port.group(1))), (int(oob.group(1)), int(oob.group(2))),
              (int(btl_min.group(1)), int(btl_min.group(1)) + int(btl_range.group(1)) - 1)]
    worker_ssh = [cp["containerPort"] for cp in spec["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]["ports"]
                  if cp["name"] == "ssh"]
    if worker_ssh != [needed[0][0]] or f"Port {needed[0][0]}" not in scripts[0]["data"]["worker.sh"]:
        fail(f"{where}: the workers' sshd port differs from the leader's ssh port")
    mpi_pol = [p for _, p in by_kind.get("NetworkPolicy", []) if p["metadata"]["name"].endswith("-mpi")]
    if values["networkPolicy"]["enabled"]:
        if not mpi_pol:
            fail(f"{where}: no NetworkPolicy for the MPI ports")
            continue
        rule = mpi_pol[0]["spec"]["ingress"][0]
        if not rule.get("from"):
            fail(f"{where}: the MPI NetworkPolicy admits any source")
        allowed = [(p["port"], p.get("endPort", p["port"])) if "port" in p else (1, 65535) for p in rule["ports"]]
        for lo, hi in needed:
            if not any(a <= lo and hi <= b for a, b in allowed):
                fail(f"{where}: ports {lo}-{hi} used by mpirun/sshd are not allowed by the MPI NetworkPolicy")
        if values["group"]["activationTransport"] != "nccl" and (1, 65535) in allowed:
            fail(f"{where}: the MPI NetworkPolicy opens every port without NCCL")

# ---- monitoring objects equal the files in monitoring/ -------------------------------------
alerts = yaml.safe_load(open(os.path.join(root, "monitoring/alerts/accullm.yml")))
for where, r in by_kind.get("PrometheusRule", []):
    if r["spec"] != alerts:
        fail(f"{where}: spec differs from monitoring/alerts/accullm.yml")
dashboard = json.load(open(os.path.join(root, "monitoring/dashboards/accullm.json")))
for where, c in by_kind.get("ConfigMap", []):
    if c["metadata"]["name"].endswith("-dashboard"):
        if json.loads(c["data"]["accullm.json"]) != dashboard:
            fail(f"{where}: the dashboard differs from monitoring/dashboards/accullm.json")
        if c["metadata"]["labels"].get("grafana_dashboard") != "1" and values["metrics"]["dashboard"]["labels"] == {"grafana_dashboard": "1"}:
            fail(f"{where}: not labelled for the Grafana sidecar")

kinds = sorted({o["kind"] for _, o in objects})
print(f"{render_dir}: {len(objects)} objects ({', '.join(kinds)}), {len(errors)} problems")
for e in errors:
    print("FAIL:", e)
sys.exit(1 if errors else 0)
