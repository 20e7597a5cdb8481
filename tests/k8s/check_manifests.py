#!/usr/bin/env python3
"""Renders qsign's kustomizations and checks the invariants operations rely on.

  check_manifests.py K8S_DIR              render K8S_DIR/base and every K8S_DIR/overlays/*,
                                          check each rendering; exit 1 naming every violation
  check_manifests.py --self-test          prove the checks catch broken manifests
  check_manifests.py --sync-roles K8S_DIR write K8S_DIR/base/postgres-roles.yaml from
                                          deploy/postgres/roles.sql

Rendering uses `kubectl kustomize` ($KUBECTL overrides the binary). Works with Debian 12's
kubectl 1.20 (kustomize v2) and current kubectl. Python 3 standard library plus PyYAML.

The invariants:
  * workloads (Deployments, CronJobs, ...): every container and init container has CPU and memory
    requests and limits, runs as non-root with a read-only root filesystem, no privilege
    escalation, no privileged mode, ALL capabilities dropped and seccomp RuntimeDefault; no host
    namespaces; no service-account token; every Deployment container has gRPC readiness and
    liveness probes on a declared port (httpGet only for a process serving no gRPC: the gateway,
    the web); every Deployment spreads its pods across nodes
    (podAntiAffinity on kubernetes.io/hostname selecting its own pods);
  * Secrets reach pods only as volumes: no env valueFrom.secretKeyRef, no envFrom.secretRef; no
    Secret with data is part of the manifests;
  * a default-deny NetworkPolicy (all pods, Ingress and Egress, no rules) exists in every
    namespace with workloads; every Service selects pods, and those pods are selected by a
    NetworkPolicy whose ingress rules admit each of the Service's ports; every workload's pods are
    selected by some policy besides the default deny;
  * HorizontalPodAutoscalers target existing Deployments whose containers request the scaled
    resource; min <= max;
  * PodDisruptionBudgets select existing pods and leave room for an eviction;
  * ConfigMaps and ServiceAccounts that pods reference exist;
  * the CloudNativePG Cluster has >= 3 instances, a managed role per service with a database
    (identity, consent, lifecycle, signer, tsa, web; none for the gateway), and its bootstrap SQL is
    deploy/postgres/roles.sql verbatim;
  * every Deployment runs --config=<file> from a mounted ConfigMap, and that file parses as a
    qsign.config.v1.ServerConfig (schema read from proto/qsign/config/v1/config.proto): exactly
    its own service section, tls set, no insecure_dev, every *_file (and conninfo ssl*/passfile)
    mounted in the container from a Secret or ConfigMap, probes on observability.health_listen,
    its listen ports declared; its peers' Services headless (round_robin over every pod); its
    allow-list clients (<component>.qsign.internal: those pods;
    *.ingress.qsign.internal: the ingress namespace) admitted by NetworkPolicy ingress, its peers
    (dns:///<Service>:<port>) reachable by NetworkPolicy egress;
  * overlays: one namespace for every namespaced object; every image pinned (a tag other than
    "latest", or a digest).
"""

import copy
import os
import shutil
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:  # pragma: no cover - environment problem, reported plainly.
    sys.exit("check_manifests: PyYAML is missing: apt-get install python3-yaml (scripts/setup)")

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod")
SERVICES_WITH_DATABASE = ("identity", "consent", "lifecycle", "signer", "tsa", "web")
# HTTP-only processes: no gRPC listener (so no grpc.health.v1: httpGet probes).
SERVICES_WITHOUT_GRPC = ("gateway", "web")
# Kinds that live in a namespace (enough for what these manifests hold).
CLUSTER_SCOPED = ("Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "PriorityClass", "StorageClass", "PersistentVolume")


class RenderError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Rendering


def kubectl():
    binary = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not binary:
        raise RenderError("kubectl not found: install Debian's kubernetes-client (scripts/setup) "
                          "or set KUBECTL")
    return binary


def render(directory):
    """The objects `kubectl kustomize directory` produces."""
    proc = subprocess.run([kubectl(), "kustomize", directory], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True)
    if proc.returncode != 0:
        raise RenderError("kubectl kustomize %s failed:\n%s" % (directory, proc.stderr.strip()))
    try:
        return [d for d in yaml.safe_load_all(proc.stdout) if d]
    except yaml.YAMLError as e:
        raise RenderError("kubectl kustomize %s produced invalid YAML: %s" % (directory, e))


def kustomizations(k8s_dir):
    """base and every overlay, as (label, path)."""
    found = []
    base = os.path.join(k8s_dir, "base")
    if os.path.isfile(os.path.join(base, "kustomization.yaml")):
        found.append(("base", base))
    overlays = os.path.join(k8s_dir, "overlays")
    if os.path.isdir(overlays):
        for name in sorted(os.listdir(overlays)):
            path = os.path.join(overlays, name)
            if os.path.isfile(os.path.join(path, "kustomization.yaml")):
                found.append(("overlays/" + name, path))
    return found


# ---------------------------------------------------------------------------------------------
# Helpers


def ref(obj):
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    name = "%s/%s" % (obj.get("kind"), meta.get("name"))
    return "%s (namespace %s)" % (name, ns) if ns else name


def namespace(obj):
    return (obj.get("metadata") or {}).get("namespace") or ""


def pod_template(obj):
    """(metadata, spec) of the pods a workload creates, or None."""
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        return obj.get("metadata") or {}, spec
    if kind == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec") or {})
    template = spec.get("template")
    if not template:
        return None
    return template.get("metadata") or {}, template.get("spec") or {}


def workloads(objs):
    out = []
    for o in objs:
        if o.get("kind") in WORKLOAD_KINDS:
            t = pod_template(o)
            if t:
                out.append((o, t[0].get("labels") or {}, t[1]))
    return out


def containers(pod_spec):
    """(kind, container) for init containers and containers."""
    return ([("init container", c) for c in pod_spec.get("initContainers") or []] +
            [("container", c) for c in pod_spec.get("containers") or []])


def selector_matches(selector, labels):
    """A LabelSelector ({matchLabels, matchExpressions}) against labels. Empty selects all."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def plain_selector_matches(selector, labels):
    """A Service selector (a plain map)."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def is_empty_selector(selector):
    return not (selector or {}).get("matchLabels") and not (selector or {}).get("matchExpressions")


def quantity_present(resources, section, name):
    return name in ((resources or {}).get(section) or {})


# ---------------------------------------------------------------------------------------------
# Checks. Each appends human-readable violations to `errors` and returns what it checked.


def check_workload_security(objs, errors):
    n = 0
    for o, labels, pod in workloads(objs):
        psc = pod.get("securityContext") or {}
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(host):
                errors.append("%s: %s is set" % (ref(o), host))
        if pod.get("automountServiceAccountToken") is not False:
            errors.append("%s: pods must not mount a service-account token "
                          "(automountServiceAccountToken: false)" % ref(o))
        if psc.get("runAsUser") == 0:
            errors.append("%s: pod securityContext runAsUser is 0 (root)" % ref(o))
        for what, c in containers(pod):
            n += 1
            where = "%s: %s %s" % (ref(o), what, c.get("name"))
            sc = c.get("securityContext") or {}
            res = c.get("resources") or {}
            for section in ("requests", "limits"):
                for q in ("cpu", "memory"):
                    if not quantity_present(res, section, q):
                        errors.append("%s has no %s.%s" % (where, section, q))
            non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
            if non_root is not True:
                errors.append("%s does not set runAsNonRoot: true" % where)
            if sc.get("runAsUser", psc.get("runAsUser")) == 0:
                errors.append("%s runs as user 0" % where)
            if sc.get("readOnlyRootFilesystem") is not True:
                errors.append("%s does not set readOnlyRootFilesystem: true" % where)
            if sc.get("allowPrivilegeEscalation") is not False:
                errors.append("%s does not set allowPrivilegeEscalation: false" % where)
            if sc.get("privileged"):
                errors.append("%s is privileged" % where)
            caps = sc.get("capabilities") or {}
            if "ALL" not in (caps.get("drop") or []):
                errors.append("%s does not drop ALL capabilities" % where)
            if caps.get("add"):
                errors.append("%s adds capabilities %s" % (where, caps.get("add")))
            seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
            if seccomp not in ("RuntimeDefault", "Localhost"):
                errors.append("%s has no seccompProfile RuntimeDefault" % where)
    return "%d containers: requests+limits, non-root, read-only root, no privilege escalation, " \
           "ALL capabilities dropped, seccomp, no host namespaces, no token" % n


def check_deployment_probes_and_spread(objs, errors):
    n = 0
    for o in objs:
        if o.get("kind") != "Deployment":
            continue
        n += 1
        meta, pod = pod_template(o)
        labels = meta.get("labels") or {}
        for c in pod.get("containers") or []:
            where = "%s: container %s" % (ref(o), c.get("name"))
            declared = {p.get("containerPort") for p in c.get("ports") or []}
            named = {p.get("name") for p in c.get("ports") or [] if p.get("name")}
            for probe in ("readinessProbe", "livenessProbe"):
                p = c.get(probe)
                if not p:
                    errors.append("%s has no %s" % (where, probe))
                    continue
                # grpc.health.v1; httpGet only where the process serves no gRPC (the gateway, the web:
                # check_service_configs ties each kind to the config).
                grpc = p.get("grpc") or p.get("httpGet")
                port = (grpc or {}).get("port")
                if not grpc:
                    errors.append("%s: %s is not a grpc probe (grpc.health.v1) nor an httpGet "
                                  "probe" % (where, probe))
                elif port not in declared and port not in named:
                    errors.append("%s: %s port %s is not a declared containerPort" %
                                  (where, probe, port))
        anti = ((pod.get("affinity") or {}).get("podAntiAffinity") or {})
        terms = list(anti.get("requiredDuringSchedulingIgnoredDuringExecution") or [])
        terms += [t.get("podAffinityTerm") or {}
                  for t in anti.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
        if not any(t.get("topologyKey") == "kubernetes.io/hostname" and
                   selector_matches(t.get("labelSelector"), labels) for t in terms):
            errors.append("%s: no podAntiAffinity on kubernetes.io/hostname selecting its own "
                          "pods" % ref(o))
        if not selector_matches((o.get("spec") or {}).get("selector"), labels):
            errors.append("%s: spec.selector does not match its pod template labels" % ref(o))
    return "%d Deployments: gRPC readiness+liveness probes on declared ports, anti-affinity " \
           "across nodes" % n


def check_secrets(objs, errors):
    n = 0
    for o in objs:
        if o.get("kind") == "Secret" and ((o.get("data") or o.get("stringData"))):
            errors.append("%s carries data: Secrets are created out of band "
                          "(docs/operations.md), never kept in the manifests" % ref(o))
    for o, labels, pod in workloads(objs):
        for what, c in containers(pod):
            where = "%s: %s %s" % (ref(o), what, c.get("name"))
            for e in c.get("env") or []:
                n += 1
                if "secretKeyRef" in (e.get("valueFrom") or {}):
                    errors.append("%s takes Secret %s into env %s: mount it as a file instead" %
                                  (where, e["valueFrom"]["secretKeyRef"].get("name"), e.get("name")))
            for e in c.get("envFrom") or []:
                n += 1
                if "secretRef" in e:
                    errors.append("%s takes Secret %s into its environment (envFrom): mount it as "
                                  "a file instead" % (where, (e.get("secretRef") or {}).get("name")))
    return "Secrets only as volumes (%d env entries checked), no Secret data in the manifests" % n


def check_network_policies(objs, errors):
    policies = [o for o in objs if o.get("kind") == "NetworkPolicy"]
    wl = workloads(objs)

    def is_default_deny(p):
        spec = p.get("spec") or {}
        types = spec.get("policyTypes") or []
        return (is_empty_selector(spec.get("podSelector")) and "Ingress" in types and
                "Egress" in types and not spec.get("ingress") and not spec.get("egress"))

    namespaces = {namespace(o) for o, _, _ in wl}
    for ns in sorted(namespaces):
        if not any(is_default_deny(p) and namespace(p) == ns for p in policies):
            errors.append("no default-deny NetworkPolicy (podSelector {}, policyTypes Ingress and "
                          "Egress, no rules) in namespace %s" % (ns or "(unset)"))

    def selecting(labels, ns, direction):
        return [p for p in policies
                if namespace(p) == ns and not is_default_deny(p)
                and direction in ((p.get("spec") or {}).get("policyTypes") or [])
                and selector_matches((p.get("spec") or {}).get("podSelector"), labels)]

    for o, labels, pod in wl:
        if not (selecting(labels, namespace(o), "Ingress") or
                selecting(labels, namespace(o), "Egress")):
            errors.append("%s: its pods are selected by no NetworkPolicy besides the default deny"
                          % ref(o))

    n = 0
    for s in objs:
        if s.get("kind") != "Service":
            continue
        selector = (s.get("spec") or {}).get("selector")
        if not selector:
            continue  # Services without selectors point at external endpoints.
        n += 1
        matched = [(o, labels, pod) for o, labels, pod in wl
                   if namespace(o) == namespace(s) and plain_selector_matches(selector, labels)]
        if not matched:
            errors.append("%s selects no pods (selector %s)" % (ref(s), selector))
            continue
        for o, labels, pod in matched:
            allowing = selecting(labels, namespace(o), "Ingress")
            if not allowing:
                errors.append("%s: its pods (%s) are selected by no NetworkPolicy allowing ingress"
                              % (ref(s), ref(o)))
                continue
            named = {}
            for c in pod.get("containers") or []:
                for p in c.get("ports") or []:
                    if p.get("name"):
                        named[p["name"]] = p.get("containerPort")
            for sp in (s.get("spec") or {}).get("ports") or []:
                target = sp.get("targetPort", sp.get("port"))
                number = named.get(target, target) if isinstance(target, str) else target
                if isinstance(target, str) and target not in named:
                    errors.append("%s: targetPort %s is not a named port of %s" %
                                  (ref(s), target, ref(o)))
                    continue
                if not any(rule_admits(rule, number, target)
                           for p in allowing for rule in (p.get("spec") or {}).get("ingress") or []):
                    errors.append("%s: port %s (pod port %s) of %s is admitted by no NetworkPolicy "
                                  "ingress rule" % (ref(s), sp.get("port"), number, ref(o)))
    return "default deny per namespace, %d Services' pods and ports admitted by NetworkPolicies, " \
           "%d workloads covered" % (n, len(wl))


def rule_admits(rule, number, name):
    ports = rule.get("ports")
    if not ports:
        return True
    for p in ports:
        port = p.get("port")
        if port is None or port == number or (isinstance(name, str) and port == name):
            return True
        end = p.get("endPort")
        if isinstance(port, int) and end and isinstance(number, int) and port <= number <= end:
            return True
    return False


def check_hpas(objs, errors):
    deployments = {(namespace(o), (o.get("metadata") or {}).get("name")): o
                   for o in objs if o.get("kind") in ("Deployment", "StatefulSet")}
    n = 0
    for h in objs:
        if h.get("kind") != "HorizontalPodAutoscaler":
            continue
        n += 1
        spec = h.get("spec") or {}
        target = spec.get("scaleTargetRef") or {}
        d = deployments.get((namespace(h), target.get("name")))
        if d is None or d.get("kind") != target.get("kind"):
            errors.append("%s targets %s/%s, which does not exist" %
                          (ref(h), target.get("kind"), target.get("name")))
            continue
        lo, hi = spec.get("minReplicas", 1), spec.get("maxReplicas")
        if not isinstance(hi, int) or lo < 1 or lo > hi:
            errors.append("%s: minReplicas %s / maxReplicas %s" % (ref(h), lo, hi))
        _, pod = pod_template(d)
        for m in spec.get("metrics") or []:
            resource = (m.get("resource") or {}).get("name") if m.get("type") == "Resource" else None
            if not resource:
                continue
            for c in pod.get("containers") or []:
                if not quantity_present(c.get("resources"), "requests", resource):
                    errors.append("%s scales on %s, but %s container %s requests none" %
                                  (ref(h), resource, ref(d), c.get("name")))
    return "%d HorizontalPodAutoscalers target existing Deployments" % n


def check_pdbs(objs, errors):
    wl = workloads(objs)
    n = 0
    for p in objs:
        if p.get("kind") != "PodDisruptionBudget":
            continue
        n += 1
        spec = p.get("spec") or {}
        matched = [o for o, labels, _ in wl
                   if namespace(o) == namespace(p) and selector_matches(spec.get("selector"), labels)]
        if not matched:
            errors.append("%s selects no pods (selector %s)" % (ref(p), spec.get("selector")))
            continue
        min_available = spec.get("minAvailable")
        for o in matched:
            replicas = (o.get("spec") or {}).get("replicas", 1)
            if isinstance(min_available, int) and isinstance(replicas, int) and \
                    min_available >= replicas:
                errors.append("%s: minAvailable %d with %d replicas of %s blocks every eviction" %
                              (ref(p), min_available, replicas, ref(o)))
    return "%d PodDisruptionBudgets select existing pods" % n


def check_references(objs, errors):
    configmaps = {(namespace(o), (o.get("metadata") or {}).get("name"))
                  for o in objs if o.get("kind") == "ConfigMap"}
    accounts = {(namespace(o), (o.get("metadata") or {}).get("name"))
                for o in objs if o.get("kind") == "ServiceAccount"}
    secrets = set()
    for o, labels, pod in workloads(objs):
        ns = namespace(o)
        for v in pod.get("volumes") or []:
            if "configMap" in v and (ns, v["configMap"].get("name")) not in configmaps:
                errors.append("%s: volume %s uses ConfigMap %s, which is not in the manifests" %
                              (ref(o), v.get("name"), v["configMap"].get("name")))
            if "secret" in v:
                secrets.add(v["secret"].get("secretName"))
        for _, c in containers(pod):
            for e in c.get("envFrom") or []:
                cm = (e.get("configMapRef") or {}).get("name")
                if cm and (ns, cm) not in configmaps:
                    errors.append("%s: container %s uses ConfigMap %s, which is not in the "
                                  "manifests" % (ref(o), c.get("name"), cm))
            mounts = {m.get("name") for m in c.get("volumeMounts") or []}
            volumes = {v.get("name") for v in pod.get("volumes") or []}
            for m in sorted(mounts - volumes):
                errors.append("%s: container %s mounts %s, which is no volume of the pod" %
                              (ref(o), c.get("name"), m))
        sa = pod.get("serviceAccountName")
        if sa and (ns, sa) not in accounts:
            errors.append("%s: serviceAccountName %s is not in the manifests" % (ref(o), sa))
    return "ConfigMaps and ServiceAccounts referenced by pods exist; Secrets the operator " \
           "provides: %s" % (", ".join(sorted(secrets)) or "none")


def check_database(objs, errors, roles_sql):
    clusters = [o for o in objs if o.get("kind") == "Cluster" and
                str(o.get("apiVersion", "")).startswith("postgresql.cnpg.io/")]
    if not clusters:
        errors.append("no CloudNativePG Cluster (postgresql.cnpg.io) in the manifests")
        return "CloudNativePG Cluster"
    for c in clusters:
        spec = c.get("spec") or {}
        if not isinstance(spec.get("instances"), int) or spec["instances"] < 3:
            errors.append("%s: instances %s (< 3)" % (ref(c), spec.get("instances")))
        roles = {r.get("name"): r for r in (spec.get("managed") or {}).get("roles") or []}
        for svc in SERVICES_WITH_DATABASE:
            r = roles.get(svc)
            if not r or r.get("ensure", "present") != "present" or not r.get("login"):
                errors.append("%s: no managed login role %s" % (ref(c), svc))
            elif r.get("superuser") or r.get("createrole") or r.get("createdb") or \
                    r.get("bypassrls") or r.get("replication"):
                errors.append("%s: role %s has more than login" % (ref(c), svc))
        for svc in SERVICES_WITHOUT_GRPC:
            if svc in roles and svc not in SERVICES_WITH_DATABASE:
                errors.append("%s: the %s has a database role; it must have none" % (ref(c), svc))
        refs = ((((spec.get("bootstrap") or {}).get("initdb") or {})
                 .get("postInitApplicationSQLRefs") or {}).get("configMapRefs") or [])
        if not refs:
            errors.append("%s: bootstrap.initdb.postInitApplicationSQLRefs does not run "
                          "deploy/postgres/roles.sql" % ref(c))
        for r in refs:
            cm = next((o for o in objs if o.get("kind") == "ConfigMap" and
                       namespace(o) == namespace(c) and
                       (o.get("metadata") or {}).get("name") == r.get("name")), None)
            if cm is None:
                errors.append("%s: bootstrap SQL ConfigMap %s is not in the manifests" %
                              (ref(c), r.get("name")))
            elif roles_sql is not None and (cm.get("data") or {}).get(r.get("key")) != roles_sql:
                errors.append("%s: ConfigMap %s key %s differs from deploy/postgres/roles.sql; "
                              "run tests/k8s/check_manifests.py --sync-roles k8s" %
                              (ref(c), r.get("name"), r.get("key")))
    return "%d CloudNativePG Cluster(s): >= 3 instances, a role per service, none for the " \
           "gateway or the web, bootstrap SQL = deploy/postgres/roles.sql" % len(clusters)


def check_overlay(objs, errors):
    namespaces = {namespace(o) for o in objs if o.get("kind") not in CLUSTER_SCOPED}
    if len(namespaces) != 1 or "" in namespaces:
        errors.append("namespaced objects must all be in one namespace set by the overlay; "
                      "found %s" % sorted(n or "(unset)" for n in namespaces))
    n = 0
    for o, labels, pod in workloads(objs):
        for what, c in containers(pod):
            n += 1
            image = c.get("image") or ""
            name = image.split("@", 1)[0]
            tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else ""
            if "@sha256:" not in image and (not tag or tag == "latest"):
                errors.append("%s: %s %s image %r is not pinned (a version tag or a digest)" %
                              (ref(o), what, c.get("name"), image))
    return "one namespace; %d container images pinned" % n


# ---------------------------------------------------------------------------------------------
# Service config files (text-format qsign.config.v1.ServerConfig) in the ConfigMaps.
#
# A minimal text-format parser driven by the real schema (proto/qsign/config/v1/config.proto,
# read here, so a renamed or removed field fails the check): scalars, nested messages, repeated
# fields (repeated occurrences or [a, b] lists), '#' comments, adjacent string concatenation.
# Enough for what the configs hold; the binary's --check_config is the full validation
# (tests/k8s/check_configs.py).

CONFIG_PROTO = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir,
                            "proto", "qsign", "config", "v1", "config.proto")
SERVICE_SECTIONS = ("signer", "consent", "identity", "lifecycle", "gateway", "web", "tsa")
# Client identities (subjectAltName DNS) of the allow-lists: "<component>.qsign.internal" is the
# pods labelled app.kubernetes.io/component=<component>; "<route>.ingress.qsign.internal" is the
# ingress controller, in namespace INGRESS_NAMESPACE.
SERVICE_IDENTITY_SUFFIX = ".qsign.internal"
INGRESS_IDENTITY_SUFFIX = ".ingress.qsign.internal"
INGRESS_NAMESPACE = "ingress-nginx"
# libpq conninfo keys that name files.
CONNINFO_FILE_KEYS = ("sslrootcert", "sslcert", "sslkey", "sslcrl", "passfile")
INT32_TYPES = ("int32", "sint32", "sfixed32")


class ConfigError(Exception):
    pass


def load_config_schema(path=CONFIG_PROTO):
    """{message: {field: (type, repeated)}} of a proto file without nested messages."""
    import re
    text = re.sub(r"//[^\n]*", "", open(path).read())
    schema = {}
    for m in re.finditer(r"\bmessage\s+(\w+)\s*\{([^{}]*)\}", text):
        fields = {}
        for f in re.finditer(r"(repeated\s+)?([\w.]+)\s+(\w+)\s*=\s*\d+\s*;", m.group(2)):
            fields[f.group(3)] = (f.group(2), bool(f.group(1)))
        schema[m.group(1)] = fields
    if "ServerConfig" not in schema:
        raise ConfigError("%s: no message ServerConfig" % path)
    return schema


def _tokens(text):
    import re
    spec = re.compile(r'\s+|#[^\n]*|(?P<str>"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\')|'
                      r'(?P<word>[-+]?[\w.]+)|(?P<punct>[{}\[\]:,;<>])')
    pos, line = 0, 1
    while pos < len(text):
        m = spec.match(text, pos)
        if not m:
            raise ConfigError("line %d: unexpected %r" % (line, text[pos]))
        kind = m.lastgroup
        if kind:
            value = m.group(kind)
            if kind == "str":
                value = value[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
            yield kind, value, line
        line += m.group(0).count("\n")
        pos = m.end()


def parse_textproto(text, schema, message="ServerConfig"):
    """The config as nested dicts (repeated fields as lists); ConfigError naming line and field."""
    toks = list(_tokens(text))
    i = 0

    def peek():
        return toks[i] if i < len(toks) else (None, None, toks[-1][2] if toks else 1)

    def take():
        nonlocal i
        t = peek()
        if t[0] is None:
            raise ConfigError("unexpected end of file")
        i += 1
        return t

    def scalar(ftype, where):
        kind, value, line = take()
        if ftype in ("string", "bytes"):
            if kind != "str":
                raise ConfigError("line %d: %s: expected a quoted string, got %s" %
                                  (line, where, value))
            while peek()[0] == "str":  # "a" "b" is "ab"
                value += take()[1]
            return value
        if ftype == "bool":
            if value in ("true", "True", "t", "1"):
                return True
            if value in ("false", "False", "f", "0"):
                return False
            raise ConfigError("line %d: %s: expected true or false, got %s" % (line, where, value))
        if ftype in INT32_TYPES + ("int64", "uint32", "uint64"):
            try:
                n = int(value, 0)
            except (TypeError, ValueError):
                raise ConfigError("line %d: %s: expected an integer, got %s" % (line, where, value))
            if ftype in INT32_TYPES and not -2**31 <= n < 2**31:
                raise ConfigError("line %d: %s: %d is out of int32 range" % (line, where, n))
            return n
        raise ConfigError("line %d: %s: field type %s is not supported by this checker" %
                          (line, where, ftype))

    def message_body(name, close, prefix):
        fields = schema[name]
        out = {}
        while True:
            kind, value, line = peek()
            if kind is None and close is None:
                return out
            if kind == "punct" and value == close:
                take()
                return out
            kind, field, line = take()
            if kind != "word" or field not in fields:
                raise ConfigError("line %d: unknown field %s%s in %s" %
                                  (line, prefix, field, name))
            ftype, repeated = fields[field]
            where = prefix + field
            is_msg = ftype in schema
            if peek()[1] == ":":
                take()
            elif not is_msg:
                raise ConfigError("line %d: %s: expected ':'" % (line, where))
            if is_msg:
                values = []
                opener = take()
                if opener[1] not in ("{", "<"):
                    raise ConfigError("line %d: %s: expected '{'" % (opener[2], where))
                values.append(message_body(ftype, "}" if opener[1] == "{" else ">", where + "."))
            elif peek()[1] == "[":
                take()
                values = []
                while peek()[1] != "]":
                    values.append(scalar(ftype, where))
                    if peek()[1] == ",":
                        take()
                take()
                if not repeated:
                    raise ConfigError("line %d: %s is not repeated" % (line, where))
            else:
                values = [scalar(ftype, where)]
            if repeated:
                out.setdefault(field, []).extend(values)
            elif field in out:
                raise ConfigError("line %d: %s is set twice" % (line, where))
            else:
                out[field] = values[0]
            if peek()[1] in (",", ";"):
                take()

    return message_body(message, None, "")


def config_files(config, prefix=""):
    """(field path, file path) of every file a parsed config names."""
    out = []
    for k, v in sorted(config.items()):
        for item in (v if isinstance(v, list) else [v]):
            if isinstance(item, dict):
                out += config_files(item, prefix + k + ".")
            elif isinstance(item, str) and k.endswith("_file") and item:
                out.append((prefix + k, item))
            elif isinstance(item, str) and k == "conninfo":
                for word in item.split():
                    key, _, value = word.partition("=")
                    if key in CONNINFO_FILE_KEYS and value:
                        out.append(("%s%s %s" % (prefix, k, key), value))
    return out


def port_of(address):
    try:
        return int(address.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None


def mounted_from(path, container, pod):
    """The Secret/ConfigMap volume that provides `path` in the container, or None."""
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    for m in container.get("volumeMounts") or []:
        v = volumes.get(m.get("name")) or {}
        source = v.get("secret") or v.get("configMap")
        if source is None:
            continue
        mount = (m.get("mountPath") or "").rstrip("/")
        if m.get("subPath"):
            if path == mount:
                return v
            continue
        if not path.startswith(mount + "/"):
            continue
        rel = path[len(mount) + 1:]
        items = source.get("items")
        if items is None or rel in [it.get("path") for it in items]:
            return v
    return None


def _peer_admitted(entries, labels, want_namespace=None):
    """Whether from/to entries admit pods with `labels` (this namespace) or the namespace."""
    if not entries:
        return True
    for e in entries:
        ns_sel, pod_sel = e.get("namespaceSelector"), e.get("podSelector")
        if want_namespace is None:
            if ns_sel is None and pod_sel is not None and selector_matches(pod_sel, labels):
                return True
        elif ns_sel is not None and \
                (ns_sel.get("matchLabels") or {}).get("kubernetes.io/metadata.name") == want_namespace:
            return True
    return False


def _policies_admit(policies, pod_labels, ns, direction, port, peer_labels=None, peer_ns=None):
    key, peer_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for p in policies:
        spec = p.get("spec") or {}
        if namespace(p) != ns or direction not in (spec.get("policyTypes") or []) or \
                not selector_matches(spec.get("podSelector"), pod_labels):
            continue
        for rule in spec.get(key) or []:
            if rule_admits(rule, port, None) and \
                    _peer_admitted(rule.get(peer_key), peer_labels or {}, peer_ns):
                return True
    return False


def check_service_configs(objs, errors, schema=None):
    if schema is None:
        schema = load_config_schema()
    configmaps = {(namespace(o), (o.get("metadata") or {}).get("name")): o
                  for o in objs if o.get("kind") == "ConfigMap"}
    policies = [o for o in objs if o.get("kind") == "NetworkPolicy"]
    wl = workloads(objs)
    hsm_owners = {}  # (namespace, "token label" | "PIN Secret", name) -> (role, where)
    n = 0
    for o in objs:
        if o.get("kind") != "Deployment":
            continue
        meta, pod = pod_template(o)
        labels = meta.get("labels") or {}
        ns = namespace(o)
        service = labels.get("app.kubernetes.io/component") or \
            (o.get("metadata") or {}).get("name", "").replace("qsign-", "", 1)
        for c in pod.get("containers") or []:
            where = "%s: container %s" % (ref(o), c.get("name"))
            args = [a for a in (c.get("command") or []) + (c.get("args") or [])
                    if str(a).startswith("--config=")]
            if len(args) != 1:
                errors.append("%s does not run with one --config=<file> (args %s)" %
                              (where, c.get("args")))
                continue
            n += 1
            path = args[0][len("--config="):]
            volume = mounted_from(path, c, pod)
            cm_name = ((volume or {}).get("configMap") or {}).get("name")
            cm = configmaps.get((ns, cm_name))
            if cm is None:
                errors.append("%s: --config=%s is not a file of a mounted ConfigMap" % (where, path))
                continue
            mount = next(m for m in c.get("volumeMounts") or [] if m.get("name") == volume.get("name"))
            key = m_sub = mount.get("subPath") or path[len(mount["mountPath"].rstrip("/")) + 1:]
            text = (cm.get("data") or {}).get(key)
            if text is None:
                errors.append("%s: --config=%s: ConfigMap %s has no key %s" %
                              (where, path, cm_name, m_sub))
                continue
            what = "%s: %s (ConfigMap %s)" % (where, path, cm_name)
            try:
                config = parse_textproto(text, schema)
            except ConfigError as e:
                errors.append("%s does not parse as qsign.config.v1.ServerConfig: %s" % (what, e))
                continue
            sections = [s for s in SERVICE_SECTIONS if s in config]
            if sections != [service]:
                errors.append("%s: service sections %s; a %s Deployment needs exactly one service "
                              "section: %s" % (what, sections or "none", service, service))
            if config.get("insecure_dev"):
                errors.append("%s sets insecure_dev: production pods serve mTLS only" % what)
            tls = config.get("tls") or {}
            for f in ("cert_file", "key_file", "client_ca_file"):
                if not tls.get(f):
                    errors.append("%s has no tls.%s" % (what, f))
            for field, f in config_files(config):
                if mounted_from(f, c, pod) is None:
                    errors.append("%s: %s %s is not mounted in the container from a Secret or "
                                  "ConfigMap" % (what, field, f))
            # Key separation: each HSM role its own token label and its own PIN Secret.
            for token in (config.get("hsm") or {}).get("token") or []:
                role, label = token.get("role", ""), token.get("label", "")
                volume = mounted_from(token.get("pin_file", ""), c, pod) or {}
                secret = (volume.get("secret") or {}).get("secretName")
                for key, kind in ((label, "token label"), (secret, "PIN Secret")):
                    if not key:
                        continue
                    other = hsm_owners.setdefault((ns, kind, key), (role, what))
                    if other[0] != role:
                        errors.append("%s: hsm.token role %s uses %s %s, as role %s does (%s): "
                                      "every HSM role needs its own token and PIN" %
                                      (what, role, kind, key, other[0], other[1]))
            # Probes on the health listener; the ports the config listens on are declared.
            declared = {p.get("containerPort") for p in c.get("ports") or []}
            obs = config.get("observability") or {}
            health = port_of(obs.get("health_listen", ""))
            if health is None and service not in SERVICES_WITHOUT_GRPC:
                errors.append("%s has no observability.health_listen for the probes" % what)
            http = port_of((config.get(service) or {}).get("http_listen") or "")
            names = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                grpc = (c.get(probe) or {}).get("grpc")
                get = (c.get(probe) or {}).get("httpGet")
                if grpc and health is not None and grpc.get("port") != health:
                    errors.append("%s: %s probes port %s, but health_listen is port %s" %
                                  (what, probe, grpc.get("port"), health))
                if grpc and health is None:
                    errors.append("%s: %s is a gRPC probe, but there is no health_listen" %
                                  (what, probe))
                if get and (health is not None or
                            names.get(get.get("port"), get.get("port")) != http):
                    errors.append("%s: %s is an httpGet probe: only for a process without gRPC "
                                  "(no health_listen), on its %s.http_listen" % (what, probe, service))
            for field, address in (("listen", config.get("listen") if config.get("allow") else ""),
                                   ("observability.metrics_listen", obs.get("metrics_listen")),
                                   ("observability.health_listen", obs.get("health_listen")),
                                   (service + ".http_listen",
                                    (config.get(service) or {}).get("http_listen"))):
                port = port_of(address or "")
                if address and port not in declared:
                    errors.append("%s: %s %s is not a declared containerPort" % (what, field, address))
            # Allow-lists against NetworkPolicy ingress, peers against egress.
            listen_port = port_of(config.get("listen") or "127.0.0.1:7443")
            for allow in config.get("allow") or []:
                for client in allow.get("clients") or []:
                    if client.endswith(INGRESS_IDENTITY_SUFFIX):
                        ok = _policies_admit(policies, labels, ns, "Ingress", listen_port,
                                             peer_ns=INGRESS_NAMESPACE)
                        source = "namespace %s" % INGRESS_NAMESPACE
                    elif client.endswith(SERVICE_IDENTITY_SUFFIX):
                        component = client[:-len(SERVICE_IDENTITY_SUFFIX)]
                        clients = [(w, l) for w, l, _ in wl if namespace(w) == ns and
                                   l.get("app.kubernetes.io/component") == component]
                        if not clients:
                            errors.append("%s: allow %s names %s, but no workload has component "
                                          "%s" % (what, allow.get("group"), client, component))
                            continue
                        ok = all(_policies_admit(policies, labels, ns, "Ingress", listen_port, l)
                                 for _, l in clients)
                        source = "%s's pods" % ", ".join(ref(w) for w, _ in clients)
                    else:
                        continue  # an outside client: nothing in the manifests to compare.
                    if not ok:
                        errors.append("%s: allow %s lets %s call, but no NetworkPolicy admits %s "
                                      "to port %s" % (what, allow.get("group"), client, source,
                                                      listen_port))
            peers = dict(config.get("peers") or {})
            peers.pop("load_balancing", None)
            for peer, target in sorted(peers.items()):
                host, port = target.replace("dns:///", "", 1).rsplit(":", 1)[0], port_of(target)
                svc = next((s for s in objs if s.get("kind") == "Service" and namespace(s) == ns and
                            (s.get("metadata") or {}).get("name") == host.split(".")[0]), None)
                if svc is None:
                    errors.append("%s: peers.%s %s names no Service in the manifests" %
                                  (what, peer, target))
                    continue
                if (svc.get("spec") or {}).get("clusterIP") != "None":
                    # A ClusterIP resolves to one virtual address: round_robin would pin each
                    # caller's HTTP/2 connection to one pod.
                    errors.append("%s: peers.%s %s: Service %s is not headless (clusterIP: None), "
                                  "so its callers cannot balance over its pods" %
                                  (what, peer, target, host))
                selector = (svc.get("spec") or {}).get("selector")
                targets = [(w, l, p) for w, l, p in wl if namespace(w) == ns and
                           plain_selector_matches(selector, l)]
                sp = next((p for p in (svc.get("spec") or {}).get("ports") or []
                           if p.get("port") == port), None)
                if not targets or sp is None:
                    errors.append("%s: peers.%s %s: Service %s has no pods or no port %s" %
                                  (what, peer, target, host, port))
                    continue
                for w, l, p in targets:
                    tp = sp.get("targetPort", port)
                    named = {cp.get("name"): cp.get("containerPort")
                             for tc in p.get("containers") or [] for cp in tc.get("ports") or []}
                    number = named.get(tp, tp)
                    if not _policies_admit(policies, labels, ns, "Egress", number, l):
                        errors.append("%s: peers.%s %s, but no NetworkPolicy lets its pods reach "
                                      "%s on port %s" % (what, peer, target, ref(w), number))
    return "%d service configs parse as qsign.config.v1.ServerConfig: their own service section " \
           "only, mTLS, every named file mounted, each HSM role its own token and PIN Secret, " \
           "probes on health_listen, allow-lists and peers admitted by NetworkPolicies" % n


def check_rendering(label, objs, roles_sql):
    errors = []
    report = [check_workload_security(objs, errors),
              check_deployment_probes_and_spread(objs, errors),
              check_secrets(objs, errors),
              check_network_policies(objs, errors),
              check_hpas(objs, errors),
              check_pdbs(objs, errors),
              check_references(objs, errors),
              check_database(objs, errors, roles_sql),
              check_service_configs(objs, errors)]
    if label.startswith("overlays/"):
        report.append(check_overlay(objs, errors))
    return report, errors


def check_tree(k8s_dir):
    k8s_dir = os.path.abspath(k8s_dir)
    found = kustomizations(k8s_dir)
    if not found:
        print("FAIL: no kustomization.yaml in %s/base or %s/overlays/*" % (k8s_dir, k8s_dir))
        return 1
    roles_path = os.path.join(os.path.dirname(k8s_dir), "deploy", "postgres", "roles.sql")
    roles_sql = open(roles_path).read() if os.path.isfile(roles_path) else None
    failed = False
    for label, path in found:
        try:
            objs = render(path)
        except RenderError as e:
            print("FAIL %s: %s" % (label, e))
            failed = True
            continue
        report, errors = check_rendering(label, objs, roles_sql)
        print("%s: %d objects rendered by kubectl kustomize" % (label, len(objs)))
        for line in report:
            print("  checked: " + line)
        for e in errors:
            print("  FAIL %s: %s" % (label, e))
        failed = failed or bool(errors)
    print("k8s manifests: %s" % ("FAILED" if failed else "all invariants hold"))
    return 1 if failed else 0


# ---------------------------------------------------------------------------------------------
# deploy/postgres/roles.sql as a ConfigMap


def roles_configmap(sql):
    header = ("# GENERATED from deploy/postgres/roles.sql by\n"
              "#   python3 tests/k8s/check_manifests.py --sync-roles k8s\n"
              "# Do not edit: change deploy/postgres/roles.sql and regenerate (the manifest test\n"
              "# fails while the two differ). CloudNativePG runs it at bootstrap\n"
              "# (postgres.yaml, postInitApplicationSQLRefs).\n")
    body = "".join(("    " + line if line else "") + "\n" for line in sql.rstrip("\n").split("\n"))
    return (header + "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: qsign-db-roles\n"
            "  labels:\n    app.kubernetes.io/name: qsign-db\n"
            "    app.kubernetes.io/component: database\n    app.kubernetes.io/part-of: qsign\n"
            "data:\n  roles.sql: |\n" + body)


def sync_roles(k8s_dir):
    k8s_dir = os.path.abspath(k8s_dir)
    sql = open(os.path.join(os.path.dirname(k8s_dir), "deploy", "postgres", "roles.sql")).read()
    text = roles_configmap(sql)
    if yaml.safe_load(text)["data"]["roles.sql"] != sql:
        print("FAIL: roles.sql does not survive a YAML block scalar (trailing spaces or tabs?)")
        return 1
    out = os.path.join(k8s_dir, "base", "postgres-roles.yaml")
    with open(out, "w") as f:
        f.write(text)
    print("wrote " + out)
    return 0


# ---------------------------------------------------------------------------------------------
# Self-test: a small, correct kustomization passes; each breakage is caught and named.

FIXTURE = {
    "kustomization.yaml": """
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - app.yaml
configMapGenerator:
  - name: demo-config
    files:
      - signer.textproto
""",
    "signer.textproto": """
# A signer's config: every file it names is mounted, allow-lists and peers match the policies.
listen: "0.0.0.0:7443"
tls {
  cert_file: "/run/secrets/demo/tls.crt"
  key_file: "/run/secrets/demo/tls.key"
  client_ca_file: "/run/secrets/demo/ca.crt"
}
allow { group: "signer.read" clients: ["job.qsign.internal", "app.ingress.qsign.internal"] }
database { conninfo: "host=db sslmode=verify-full sslrootcert=/run/secrets/demo/db-ca.crt" }
hsm { sessions: 4 token { role: "signer" label: "demo-signer" pin_file: "/run/secrets/demo/pin" } }
observability { health_listen: "0.0.0.0:8081" }
peers { identity: "dns:///demo:7443" }
signer { sad_keys { key_id: "a" public_key_file: "/run/secrets/demo/sad-a.pem" } max_batch: 10 }
""",
    "app.yaml": """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: demo
spec:
  replicas: 2
  selector:
    matchLabels: {app.kubernetes.io/name: demo}
  template:
    metadata:
      labels: {app.kubernetes.io/name: demo, app.kubernetes.io/component: signer}
    spec:
      serviceAccountName: demo
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        seccompProfile: {type: RuntimeDefault}
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
            - weight: 100
              podAffinityTerm:
                topologyKey: kubernetes.io/hostname
                labelSelector:
                  matchLabels: {app.kubernetes.io/name: demo}
      containers:
        - name: demo
          image: demo:1.0
          args: ["--config=/etc/demo/signer.textproto"]
          ports:
            - {name: grpc, containerPort: 7443}
            - {name: health, containerPort: 8081}
          readinessProbe:
            grpc: {port: 8081}
          livenessProbe:
            grpc: {port: 8081, service: liveness}
          resources:
            requests: {cpu: 100m, memory: 64Mi}
            limits: {cpu: "1", memory: 128Mi}
          securityContext:
            readOnlyRootFilesystem: true
            allowPrivilegeEscalation: false
            capabilities: {drop: [ALL]}
          volumeMounts:
            - {name: config, mountPath: /etc/demo, readOnly: true}
            - {name: key, mountPath: /run/secrets/demo, readOnly: true}
      volumes:
        - name: config
          configMap: {name: demo-config}
        - name: key
          secret: {secretName: demo-key}
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: demo-job
spec:
  schedule: "0 * * * *"
  jobTemplate:
    spec:
      template:
        metadata:
          labels: {app.kubernetes.io/name: demo-job, app.kubernetes.io/component: job}
        spec:
          restartPolicy: Never
          automountServiceAccountToken: false
          securityContext:
            runAsNonRoot: true
            seccompProfile: {type: RuntimeDefault}
          containers:
            - name: job
              image: demo:1.0
              resources:
                requests: {cpu: 10m, memory: 16Mi}
                limits: {cpu: 100m, memory: 32Mi}
              securityContext:
                readOnlyRootFilesystem: true
                allowPrivilegeEscalation: false
                capabilities: {drop: [ALL]}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: demo
---
apiVersion: v1
kind: Service
metadata:
  name: demo
spec:
  clusterIP: None
  selector: {app.kubernetes.io/name: demo}
  ports:
    - {name: grpc, port: 7443, targetPort: grpc}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: demo
spec:
  maxUnavailable: 1
  selector:
    matchLabels: {app.kubernetes.io/name: demo}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: demo
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: demo}
  minReplicas: 2
  maxReplicas: 4
  metrics:
    - type: Resource
      resource: {name: cpu, target: {type: Utilization, averageUtilization: 70}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: demo
spec:
  podSelector:
    matchExpressions:
      - {key: app.kubernetes.io/name, operator: In, values: [demo, demo-job]}
  policyTypes: [Ingress, Egress]
  ingress:
    - ports:
        - {protocol: TCP, port: 7443}
  egress:
    - to:
        - podSelector:
            matchLabels: {app.kubernetes.io/name: demo}
      ports:
        - {protocol: TCP, port: 7443}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: demo-roles
data:
  roles.sql: "SELECT 1;\\n"
---
apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata:
  name: demo-db
spec:
  instances: 3
  bootstrap:
    initdb:
      postInitApplicationSQLRefs:
        configMapRefs:
          - {name: demo-roles, key: roles.sql}
  managed:
    roles:
      - {name: identity, login: true}
      - {name: consent, login: true}
      - {name: lifecycle, login: true}
      - {name: tsa, login: true}
      - {name: web, login: true}
      - {name: signer, login: true}
""",
}
FIXTURE_ROLES_SQL = "SELECT 1;\n"


def find(objs, kind, name=None):
    for o in objs:
        if o.get("kind") == kind and (name is None or o["metadata"]["name"] == name):
            return o
    raise KeyError("%s/%s" % (kind, name))


def deployment_container(objs):
    return find(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def cron_container(objs):
    return find(objs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]


def demo_config(objs, edit):
    """Edits the fixture's config file (a str -> str function) in its ConfigMap."""
    cm = next(o for o in objs if o.get("kind") == "ConfigMap" and
              o["metadata"]["name"].startswith("demo-config"))  # kustomize adds a hash suffix
    data = cm["data"]
    key = next(iter(data))
    data[key] = edit(data[key])


def drop_default_deny(objs):
    objs.remove(find(objs, "NetworkPolicy", "default-deny"))


def pdb_min_available_all(objs):
    spec = find(objs, "PodDisruptionBudget")["spec"]
    spec.pop("maxUnavailable")
    spec["minAvailable"] = 2


# (what is broken, how, a phrase the violation must contain)
BREAKAGES = [
    ("Deployment without a liveness probe",
     lambda o: deployment_container(o).pop("livenessProbe"), "Deployment/demo: container demo has no livenessProbe"),
    ("probe that is not gRPC",
     lambda o: deployment_container(o).update(readinessProbe={"tcpSocket": {"port": 8081}}), "readinessProbe is not a grpc probe"),
    ("probe on an undeclared port",
     lambda o: deployment_container(o)["readinessProbe"]["grpc"].update(port=9999), "port 9999 is not a declared containerPort"),
    ("container without limits",
     lambda o: deployment_container(o)["resources"].pop("limits"), "container demo has no limits.cpu"),
    ("CronJob container without requests",
     lambda o: cron_container(o)["resources"].pop("requests"), "CronJob/demo-job: container job has no requests.memory"),
    ("runAsNonRoot false",
     lambda o: deployment_container(o)["securityContext"].update(runAsNonRoot=False), "does not set runAsNonRoot: true"),
    ("writable root filesystem",
     lambda o: deployment_container(o)["securityContext"].pop("readOnlyRootFilesystem"), "readOnlyRootFilesystem: true"),
    ("privilege escalation allowed",
     lambda o: cron_container(o)["securityContext"].update(allowPrivilegeEscalation=True), "CronJob/demo-job: container job does not set allowPrivilegeEscalation: false"),
    ("capabilities kept",
     lambda o: deployment_container(o)["securityContext"].pop("capabilities"), "does not drop ALL capabilities"),
    ("no seccomp profile",
     lambda o: find(o, "Deployment")["spec"]["template"]["spec"]["securityContext"].pop("seccompProfile"), "has no seccompProfile RuntimeDefault"),
    ("no anti-affinity",
     lambda o: find(o, "Deployment")["spec"]["template"]["spec"].pop("affinity"), "no podAntiAffinity on kubernetes.io/hostname"),
    ("Secret in an environment variable",
     lambda o: deployment_container(o).update(env=[{"name": "PIN", "valueFrom": {"secretKeyRef": {"name": "demo-key", "key": "pin"}}}]), "takes Secret demo-key into env PIN"),
    ("Secret through envFrom",
     lambda o: cron_container(o).update(envFrom=[{"secretRef": {"name": "demo-key"}}]), "CronJob/demo-job: container job takes Secret demo-key into its environment"),
    ("Secret data committed",
     lambda o: o.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "leak"}, "data": {"pin": "MTIzNA=="}}), "Secret/leak carries data"),
    ("no default-deny policy",
     drop_default_deny, "no default-deny NetworkPolicy"),
    ("Service whose pods no policy selects",
     lambda o: find(o, "NetworkPolicy", "demo")["spec"]["podSelector"]["matchExpressions"][0].update(values=["demo-job"]), "Service/demo: its pods (Deployment/demo) are selected by no NetworkPolicy allowing ingress"),
    ("Service port no policy admits",
     lambda o: find(o, "NetworkPolicy", "demo")["spec"]["ingress"][0]["ports"][0].update(port=7444), "Service/demo: port 7443 (pod port 7443) of Deployment/demo is admitted by no NetworkPolicy"),
    ("Service selecting nothing",
     lambda o: find(o, "Service")["spec"].update(selector={"app.kubernetes.io/name": "nothing"}), "Service/demo selects no pods"),
    ("HPA for a missing Deployment",
     lambda o: find(o, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"].update(name="gone"), "HorizontalPodAutoscaler/demo targets Deployment/gone, which does not exist"),
    ("PDB selecting nothing",
     lambda o: find(o, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].update({"app.kubernetes.io/name": "gone"}), "PodDisruptionBudget/demo selects no pods"),
    ("PDB that blocks every eviction",
     pdb_min_available_all, "blocks every eviction"),
    ("ConfigMap volume without its ConfigMap",
     lambda o: find(o, "Deployment")["spec"]["template"]["spec"]["volumes"][0]["configMap"].update(name="missing"), "uses ConfigMap missing, which is not in the manifests"),
    ("database cluster of one",
     lambda o: find(o, "Cluster")["spec"].update(instances=1), "Cluster/demo-db: instances 1"),
    ("a service without its database role",
     lambda o: find(o, "Cluster")["spec"]["managed"]["roles"].pop(), "no managed login role signer"),
    ("a database role for the gateway",
     lambda o: find(o, "Cluster")["spec"]["managed"]["roles"].append({"name": "gateway", "login": True}), "the gateway has a database role"),
    ("Deployment without --config",
     lambda o: deployment_container(o).update(args=["--flagfile=/etc/demo/signer.flags"]), "does not run with one --config=<file>"),
    ("config that does not parse (unknown field)",
     lambda o: demo_config(o, lambda c: c + "sad_key_id: \"x\"\n"), "unknown field sad_key_id in ServerConfig"),
    ("config of another service",
     lambda o: demo_config(o, lambda c: c.replace("signer {", "consent {").replace("sad_keys { key_id: \"a\" public_key_file: \"/run/secrets/demo/sad-a.pem\" } max_batch: 10", "")), "needs exactly one service section: signer"),
    ("config with two service sections",
     lambda o: demo_config(o, lambda c: c + "gateway {}\n"), "service sections ['signer', 'gateway']"),
    ("config with insecure_dev",
     lambda o: demo_config(o, lambda c: c + "insecure_dev: true\n"), "sets insecure_dev"),
    ("config without tls",
     lambda o: demo_config(o, lambda c: c.replace("  key_file: \"/run/secrets/demo/tls.key\"\n", "")), "has no tls.key_file"),
    ("config naming a file no volume provides",
     lambda o: demo_config(o, lambda c: c.replace("/run/secrets/demo/pin", "/run/secrets/hsm/pin")), "hsm.token.pin_file /run/secrets/hsm/pin is not mounted"),
    ("two HSM roles on one token",
     lambda o: demo_config(o, lambda c: c.replace("pin_file: \"/run/secrets/demo/pin\" }", "pin_file: \"/run/secrets/demo/pin\" } token { role: \"consent\" label: \"demo-signer\" pin_file: \"/run/secrets/demo/pin2\" }")), "every HSM role needs its own token and PIN"),
    ("conninfo naming a file no volume provides",
     lambda o: demo_config(o, lambda c: c.replace("/run/secrets/demo/db-ca.crt", "/etc/db-ca.crt")), "database.conninfo sslrootcert /etc/db-ca.crt is not mounted"),
    ("probes not on health_listen",
     lambda o: demo_config(o, lambda c: c.replace("0.0.0.0:8081", "0.0.0.0:7443")), "readinessProbe probes port 8081, but health_listen is port 7443"),
    ("allow-list client no NetworkPolicy admits",
     lambda o: find(o, "NetworkPolicy", "demo")["spec"]["ingress"][0].update({"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "demo"}}}]}), "allow signer.read lets job.qsign.internal call, but no NetworkPolicy admits CronJob/demo-job's pods"),
    ("peer no NetworkPolicy egress reaches",
     lambda o: find(o, "NetworkPolicy", "demo")["spec"].pop("egress"), "peers.identity dns:///demo:7443, but no NetworkPolicy lets its pods reach Deployment/demo"),
    ("peer Service not headless",
     lambda o: find(o, "Service", "demo")["spec"].pop("clusterIP"), "peers.identity dns:///demo:7443: Service demo is not headless"),
    ("peer naming no Service",
     lambda o: demo_config(o, lambda c: c.replace("dns:///demo:7443", "dns:///nowhere:7443")), "peers.identity dns:///nowhere:7443 names no Service"),
    ("bootstrap SQL out of date",
     lambda o: find(o, "ConfigMap", "demo-roles")["data"].update({"roles.sql": "SELECT 2;\n"}), "differs from deploy/postgres/roles.sql"),
]


def self_test():
    tmp = tempfile.mkdtemp(prefix="qsign-k8s-selftest-")
    failures = 0
    try:
        fixture = os.path.join(tmp, "k8s", "base")
        os.makedirs(fixture)
        for name, text in FIXTURE.items():
            with open(os.path.join(fixture, name), "w") as f:
                f.write(text.lstrip("\n"))
        objs = render(fixture)
        _, errors = check_rendering("base", objs, FIXTURE_ROLES_SQL)
        if errors:
            print("FAIL self-test: the correct fixture is rejected:\n  " + "\n  ".join(errors))
            return 1
        print("ok   correct fixture passes (%d objects)" % len(objs))
        for what, breakage, expected in BREAKAGES:
            broken = copy.deepcopy(objs)
            breakage(broken)
            _, errors = check_rendering("base", broken, FIXTURE_ROLES_SQL)
            if any(expected in e for e in errors):
                print("ok   caught: %s" % what)
            else:
                failures += 1
                print("FAIL not caught: %s (expected %r, got %s)" % (what, expected, errors or "no error"))
        # Overlay-only checks.
        unpinned = copy.deepcopy(objs)
        deployment_container(unpinned)["image"] = "demo:latest"
        _, errors = check_rendering("overlays/x", unpinned, FIXTURE_ROLES_SQL)
        if any("image 'demo:latest' is not pinned" in e for e in errors) and \
                any("one namespace set by the overlay" in e for e in errors):
            print("ok   caught: overlay with an unpinned image and no namespace")
        else:
            failures += 1
            print("FAIL not caught: overlay with an unpinned image and no namespace (%s)" % errors)
        # End to end, as ctest runs it: a broken tree makes the program exit 1 naming the object.
        with open(os.path.join(fixture, "app.yaml")) as f:
            text = f.read()
        with open(os.path.join(fixture, "app.yaml"), "w") as f:
            f.write(text.replace("          livenessProbe:\n            grpc: {port: 8081, service: liveness}\n", ""))
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), os.path.join(tmp, "k8s")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True)
        if proc.returncode == 1 and "Deployment/demo: container demo has no livenessProbe" in proc.stdout:
            print("ok   end to end: a Deployment without a liveness probe fails the run (exit 1)")
        else:
            failures += 1
            print("FAIL end to end: exit %d, output:\n%s" % (proc.returncode, proc.stdout))
        # A kustomization that does not render fails plainly.
        with open(os.path.join(fixture, "kustomization.yaml"), "a") as f:
            f.write("patchesStrategicMerge:\n  - missing-patch.yaml\n")
        try:
            render(fixture)
            failures += 1
            print("FAIL a kustomization naming a missing file rendered")
        except RenderError:
            print("ok   caught: a kustomization that does not render")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("self-test: %s" % ("FAILED" if failures else "every breakage caught"))
    return 1 if failures else 0


def main(argv):
    try:
        if argv[1:] == ["--self-test"]:
            return self_test()
        if len(argv) == 3 and argv[1] == "--sync-roles":
            return sync_roles(argv[2])
        if len(argv) == 2 and not argv[1].startswith("-"):
            return check_tree(argv[1])
    except RenderError as e:
        print("FAIL: %s" % e)
        return 1
    print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
