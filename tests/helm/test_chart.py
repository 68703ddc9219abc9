"""Offline tests of the Helm chart in deploy/helm/crm (no cluster, no helm binary).

* ``helm_python`` (Helm v4 Go SDK via ctypes) lints the chart and renders it;
  rendering enforces ``values.schema.json``.
* ``kubernetes_validate`` checks every rendered manifest against the bundled
  Kubernetes OpenAPI schemas (strict: unknown fields are errors). The
  ServiceMonitor is a CRD it has no schema for, so its shape is asserted by hand.
"""

from __future__ import annotations

import copy
import functools
from collections import Counter
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import kubernetes_validate.utils as kv_utils
import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "crm"
KUBE_VERSION = "1.33.0"
RELEASE = "crm-test"
NAMESPACE = "crm"
SERVICES = ("identity", "contacts", "sales", "marketing", "support")
COMPONENTS = ("gateway", *SERVICES)
HOOK_EVENTS = "pre-install,pre-upgrade"

# Every optional feature switched on, plus the less common wiring paths.
FULL_VALUES: dict[str, Any] = {
    "commonLabels": {"team": "crm"},
    "image": {"repository": "registry.example.com/crm-platform", "tag": "1.2.3"},
    "imagePullSecrets": [{"name": "regcred"}],
    "serviceAccount": {"annotations": {"iam.example.com/role": "crm"}},
    "config": {
        "environment": "staging",
        "logLevel": "DEBUG",
        "billingMode": "stripe",
        "otlpEndpoint": "http://otel-collector:4317",
        "extra": {"CRM_MIGRATE_CONCURRENCY": 4},
    },
    "secrets": {
        "jwtPrivateKey": "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n",
        "stripeSecretKey": "sk_test_123",
        "stripeWebhookSecret": "whsec_123",
        "redisUrl": "redis://:s3cret@redis:6379/0",
    },
    "database": {"url": "postgresql://crm:pw@pg-main:5432/postgres"},
    "components": {
        "gateway": {"replicas": 3, "env": {"CRM_RATE_LIMIT_DEFAULT": "100/minute"}},
        "sales": {
            "database": {"url": "postgresql://crm:pw@pg-sales:5432/postgres", "name": "sales_db"},
            "worker": {"replicas": 2, "env": {"CRM_OUTBOX_BATCH_SIZE": "1000"}},
        },
        "support": {
            "database": {"existingSecret": "support-db", "existingSecretKey": "url"},
        },
        "marketing": {"autoscaling": {"enabled": False}},
    },
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "autoscaling": {"enabled": True, "targetMemoryUtilizationPercentage": 80},
    "podDisruptionBudget": {"enabled": True},
    "networkPolicy": {
        "enabled": True,
        "extraIngressFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ],
    },
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
        "hosts": [{"host": "crm.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
        "tls": [{"secretName": "crm-tls", "hosts": ["crm.example.com"]}],
    },
    "migrations": {"env": {"CRM_MIGRATE_LOCK_TIMEOUT_MS": "10000"}},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "crm", "effect": "NoSchedule"}
    ],
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
        }
    ],
    "priorityClassName": "crm-high",
}


# --------------------------------------------------------------------------- helpers


def _cached_schema_contents() -> None:
    """kubernetes_validate re-reads its 1.5 MB definitions file for every object; cache it."""
    if not hasattr(kv_utils.schema_contents, "cache_info"):
        kv_utils.schema_contents = functools.lru_cache(maxsize=64)(kv_utils.schema_contents)


def render(chart: helm_python.Chart, values: dict[str, Any] | None = None, **kw: Any) -> list[dict]:
    """Render and parse every manifest (NOTES.txt excluded), in file order."""
    opts = {"name": RELEASE, "namespace": NAMESPACE, **kw}
    manifests = chart.render(values or {}, **opts)
    docs: list[dict] = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("metadata", {}).setdefault("annotations", {})
                docs.append(doc)
    return docs


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = by_kind(docs, kind)
    assert name in found, f"{kind}/{name} not rendered; have {sorted(found)}"
    return found[name]


def container(doc: dict) -> dict:
    containers = doc["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(doc: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container(doc).get("env", [])}


def env_values(doc: dict) -> dict[str, str]:
    return {k: v["value"] for k, v in env_of(doc).items() if "value" in v}


def secret_strings(secret: dict) -> dict[str, str]:
    return secret.get("stringData") or {}


def name(component: str) -> str:
    return f"{RELEASE}-{component}"


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    return [
        (f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"])
        for d in docs
        if d["kind"] in ("Deployment", "Job")
    ]


def render_error(chart: helm_python.Chart, values: dict[str, Any]) -> str:
    with pytest.raises(helm_python.HelmValuesError) as excinfo:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    return str(excinfo.value)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def chart():
    with helm_python.Chart.load(CHART) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def default_docs(chart) -> list[dict]:
    return render(chart)


@pytest.fixture(scope="module")
def full_docs(chart) -> list[dict]:
    return render(chart, FULL_VALUES)


# --------------------------------------------------------------------------- lint + schema validity


def test_chart_metadata(chart) -> None:
    meta = chart.metadata
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "crm"
    assert meta["version"] == "0.1.0"
    assert meta["appVersion"] == "0.1.0"
    assert chart.schema is not None
    assert chart.schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert chart.schema["additionalProperties"] is False


@pytest.mark.parametrize("values", [None, FULL_VALUES], ids=["default", "full"])
def test_lint_strict(values) -> None:
    report = helm_python.lint(
        CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}"
    )
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    # severity: 1 info ("icon is recommended"), 2 warning, 3 error
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == []


@pytest.mark.parametrize("which", ["default_docs", "full_docs"])
def test_manifests_are_valid_kubernetes_objects(request, which) -> None:
    _cached_schema_contents()
    docs = request.getfixturevalue(which)
    failures = []
    for doc in docs:
        if doc["kind"] == "ServiceMonitor":
            continue  # CRD: no bundled schema; see test_service_monitor
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            failures.append(f"{doc['kind']}/{doc['metadata']['name']}: {path}: {e.message}")
    assert failures == []
    assert all(d["metadata"].get("namespace") in (None, NAMESPACE) for d in docs)


VARIANTS: list[dict[str, Any]] = [
    {"serviceAccount": {"create": False, "name": "crm-sa"}},
    {"secrets": {"create": False}},
    {"components": {"gateway": {"enabled": False}}, "ingress": {"enabled": True}},
    {"podDisruptionBudget": {"enabled": True, "minAvailable": "50%"}},
    {"ingress": {"enabled": True, "hosts": [{"paths": [{"path": "/api"}]}]}},
    {"autoscaling": {"enabled": True, "targetCPUUtilizationPercentage": None}},
    {"components": {"identity": {"autoscaling": {"enabled": True, "maxReplicas": 5}}}},
    {"metrics": {"enabled": False}, "fullnameOverride": "prod"},
]


@pytest.mark.parametrize("values", VARIANTS)
def test_variants_render_valid_manifests(chart, values) -> None:
    _cached_schema_contents()
    docs = render(chart, values)
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_resource_names_fit_dns_labels_and_are_unique(chart) -> None:
    long_release = "r" * 53  # Helm's maximum release name length
    docs = render(chart, FULL_VALUES, name=long_release)
    keys = Counter((d["kind"], d["metadata"]["name"]) for d in docs)
    assert [k for k, n in keys.items() if n > 1] == []
    for kind, res_name in keys:
        assert len(res_name) <= 63, (kind, res_name)
    gateway = one(docs, "Deployment", "r" * 46 + "-gateway")
    services = by_kind(docs, "Service")
    for svc in SERVICES:
        url = env_values(gateway)[f"CRM_{svc.upper()}_URL"]
        assert url.removeprefix("http://").removesuffix(":80") in services


# --------------------------------------------------------------------------- what gets rendered


def test_default_render_has_expected_objects(default_docs) -> None:
    kinds = Counter(d["kind"] for d in default_docs)
    assert kinds == {
        "Deployment": len(COMPONENTS) + len(SERVICES),
        "Service": len(COMPONENTS),
        "ConfigMap": 2,  # config + migrations hook copy
        "Secret": 5,  # secrets, database, nats, redis, migrations hook copy
        "ServiceAccount": 2,  # runtime + migrations hook copy
        "Job": 1,
        "NetworkPolicy": 4,  # on by default: default (deny), gateway, identity, services
    }
    assert set(by_kind(default_docs, "Deployment")) == {name(c) for c in COMPONENTS} | {
        name(f"{s}-worker") for s in SERVICES
    }
    assert set(by_kind(default_docs, "Service")) == {name(c) for c in COMPONENTS}


def test_full_render_has_optional_objects(full_docs) -> None:
    hpas = by_kind(full_docs, "HorizontalPodAutoscaler")
    assert set(hpas) == {name(c) for c in COMPONENTS if c != "marketing"}  # per-component opt-out
    assert set(by_kind(full_docs, "PodDisruptionBudget")) == {name(c) for c in COMPONENTS}
    assert set(by_kind(full_docs, "NetworkPolicy")) == {
        name(p) for p in ("gateway", "default", "identity", "services")
    }
    assert set(by_kind(full_docs, "Ingress")) == {name("gateway")}
    assert set(by_kind(full_docs, "ServiceMonitor")) == {RELEASE}


def test_components_and_workers_can_be_switched_off(chart) -> None:
    docs = render(chart, {"workers": {"enabled": False}})
    assert not [n for n in by_kind(docs, "Deployment") if n.endswith("-worker")]

    docs = render(
        chart,
        {"components": {"marketing": {"enabled": False}, "sales": {"worker": {"enabled": False}}}},
    )
    deployments = by_kind(docs, "Deployment")
    assert name("marketing") not in deployments
    assert name("marketing-worker") not in deployments
    assert name("sales") in deployments
    assert name("sales-worker") not in deployments
    assert name("marketing") not in by_kind(docs, "Service")
    gateway_env = env_values(deployments[name("gateway")])
    assert "CRM_MARKETING_URL" not in gateway_env
    assert "CRM_SALES_URL" in gateway_env
    job_env = env_of(one(docs, "Job", name("migrations")))
    assert "CRM_MARKETING_DATABASE_URL" not in job_env


# --------------------------------------------------------------------------- web, workers, services


@pytest.mark.parametrize("component", COMPONENTS)
def test_web_deployment_and_service(default_docs, component) -> None:
    deploy = one(default_docs, "Deployment", name(component))
    assert deploy["spec"]["replicas"] == 2
    c = container(deploy)
    assert c["image"] == "crm-platform:0.1.0"
    assert c["command"] + c["args"] == [
        "crm", "serve", component, "--host", "0.0.0.0", "--port", "8000",
    ]  # fmt: skip
    gateway = component == "gateway"
    # The gateway's metrics are on their own port (its http port is public, /metrics 404s).
    metrics_port = 9464 if gateway else 8000
    assert c["ports"] == [
        {"name": "http", "containerPort": 8000, "protocol": "TCP"},
        *([{"name": "metrics", "containerPort": 9464, "protocol": "TCP"}] if gateway else []),
    ]
    env = {e["name"]: e.get("value") for e in c["env"]}
    if gateway:
        assert env["CRM_METRICS_PORT"] == "9464" and env["CRM_METRICS_HOST"] == "0.0.0.0"
    probes = {
        kind: (c[kind]["httpGet"]["path"], c[kind]["httpGet"]["port"])
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes == {
        "startupProbe": ("/health/live", "http"),
        "livenessProbe": ("/health/live", "http"),
        "readinessProbe": ("/health/ready", "http"),
    }
    assert c["resources"]["requests"] and c["resources"]["limits"]

    pod_annotations = deploy["spec"]["template"]["metadata"]["annotations"]
    assert pod_annotations["prometheus.io/scrape"] == "true"
    assert pod_annotations["prometheus.io/port"] == str(metrics_port)
    assert pod_annotations["prometheus.io/path"] == "/metrics"
    assert len(pod_annotations["checksum/config"]) == 64
    assert len(pod_annotations["checksum/secrets"]) == 64

    svc = one(default_docs, "Service", name(component))
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
        {
            "name": "metrics",
            "port": 9464,
            "targetPort": "metrics" if gateway else "http",
            "protocol": "TCP",
        },
    ]
    selector = svc["spec"]["selector"]
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    assert deploy["spec"]["selector"]["matchLabels"] == selector
    # the Service must not pick up the component's worker pods
    for worker in by_kind(default_docs, "Deployment").values():
        if worker["metadata"]["name"].endswith("-worker"):
            assert not selector.items() <= worker["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("service", SERVICES)
def test_worker_deployment(default_docs, service) -> None:
    worker = one(default_docs, "Deployment", name(f"{service}-worker"))
    c = container(worker)
    assert c["command"] + c["args"] == ["crm", "worker", service]
    assert "ports" not in c
    assert worker["spec"]["replicas"] == 1
    assert env_values(worker)["CRM_SERVICE_NAME"] == service
    # same configuration sources as the web process
    web = one(default_docs, "Deployment", name(service))
    assert c["envFrom"] == container(web)["envFrom"]
    assert env_of(worker)["CRM_DATABASE_URL"] == env_of(web)["CRM_DATABASE_URL"]
    assert "prometheus.io/scrape" not in worker["spec"]["template"]["metadata"]["annotations"]
    assert name("gateway-worker") not in by_kind(default_docs, "Deployment")


def test_per_component_overrides(full_docs) -> None:
    gateway = one(full_docs, "Deployment", name("gateway"))
    assert env_values(gateway)["CRM_RATE_LIMIT_DEFAULT"] == "100/minute"
    assert container(gateway)["image"] == "registry.example.com/crm-platform:1.2.3"
    sales_worker = one(full_docs, "Deployment", name("sales-worker"))
    assert sales_worker["spec"]["replicas"] == 2
    assert env_values(sales_worker)["CRM_OUTBOX_BATCH_SIZE"] == "1000"
    assert "CRM_OUTBOX_BATCH_SIZE" not in env_values(one(full_docs, "Deployment", name("sales")))
    # HPA owns replicas where enabled; marketing opted out keeps its own count
    assert "replicas" not in gateway["spec"]
    assert one(full_docs, "Deployment", name("marketing"))["spec"]["replicas"] == 2
    pod = gateway["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["priorityClassName"] == "crm-high"
    tsc = pod["topologySpreadConstraints"][0]
    assert tsc["labelSelector"]["matchLabels"] == gateway["spec"]["selector"]["matchLabels"]


def test_replicas_zero_is_honoured(chart) -> None:
    docs = render(chart, {"components": {"support": {"replicas": 0, "worker": {"replicas": 0}}}})
    assert one(docs, "Deployment", name("support"))["spec"]["replicas"] == 0
    assert one(docs, "Deployment", name("support-worker"))["spec"]["replicas"] == 0


# --------------------------------------------------------------------------- configuration


def test_gateway_env_has_upstream_urls(default_docs) -> None:
    gateway = one(default_docs, "Deployment", name("gateway"))
    env = env_values(gateway)
    services = by_kind(default_docs, "Service")
    for svc in SERVICES:
        assert env[f"CRM_{svc.upper()}_URL"] == f"http://{RELEASE}-{svc}:80"
        assert services[name(svc)]["spec"]["ports"][0]["port"] == 80
    assert "CRM_DATABASE_URL" not in env_of(gateway)
    for svc in SERVICES:  # services verify tokens against identity's JWKS
        assert env_values(one(default_docs, "Deployment", name(svc)))["CRM_IDENTITY_URL"] == (
            f"http://{RELEASE}-identity:80"
        )


def test_configmap_and_secret_env(default_docs, full_docs) -> None:
    cm = one(default_docs, "ConfigMap", name("config"))["data"]
    assert cm == {  # CRM_REDIS_URL carries a password: pod env, never the ConfigMap
        "CRM_ENVIRONMENT": "production",
        "CRM_LOG_LEVEL": "INFO",
        "CRM_BILLING_MODE": "local",
        "CRM_NATS_URL": "nats://nats:4222",
        "CRM_SMTP_PORT": "587",
        "CRM_SMTP_STARTTLS": "true",
        "CRM_SMTP_FROM": "CRM <no-reply@crm.example>",
    }
    for _, pod in pod_specs(default_docs):
        if pod["containers"][0]["name"] == "migrate":
            continue
        assert pod["containers"][0]["envFrom"] == [
            {"configMapRef": {"name": name("config")}},
            {"secretRef": {"name": name("secrets")}},
        ]

    cm = one(full_docs, "ConfigMap", name("config"))["data"]
    assert cm["CRM_OTLP_ENDPOINT"] == "http://otel-collector:4317"
    assert cm["CRM_BILLING_MODE"] == "stripe"
    assert cm["CRM_MIGRATE_CONCURRENCY"] == "4"
    assert "CRM_REDIS_URL" not in cm  # moved to the Secret because secrets.redisUrl is set
    secret = secret_strings(one(full_docs, "Secret", name("secrets")))
    assert len(secret.pop("CRM_INTERNAL_TOKEN")) >= 32  # generated: never predictable
    assert secret == {
        "CRM_JWT_PRIVATE_KEY": FULL_VALUES["secrets"]["jwtPrivateKey"],
        "CRM_STRIPE_SECRET_KEY": "sk_test_123",
        "CRM_STRIPE_WEBHOOK_SECRET": "whsec_123",
        "CRM_REDIS_URL": "redis://:s3cret@redis:6379/0",
    }


def test_existing_secret_replaces_chart_secret(chart) -> None:
    docs = render(
        chart,
        {"secrets": {"existingSecret": "crm-prod"}, "database": {"existingSecret": "crm-db"}},
    )
    secrets = by_kind(docs, "Secret")
    assert name("secrets") not in secrets
    assert name("database") not in secrets
    # only the NATS admin password (the Job declares the streams) is left to copy
    assert set(secret_strings(secrets[name("migrations")])) == {"CRM_NATS_ADMIN_PASSWORD"}
    for ref, pod in pod_specs(docs):
        assert {"secretRef": {"name": "crm-prod"}} in pod["containers"][0]["envFrom"], ref
    identity = one(docs, "Deployment", name("identity"))
    assert env_of(identity)["CRM_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "crm-db",
        "key": "CRM_IDENTITY_DATABASE_URL",
    }


def test_database_secret_wiring_default(default_docs) -> None:
    db_secret = secret_strings(one(default_docs, "Secret", name("database")))
    for svc in SERVICES:
        for deploy_name in (name(svc), name(f"{svc}-worker")):
            deploy = one(default_docs, "Deployment", deploy_name)
            ref = env_of(deploy)["CRM_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": name("database"), "key": f"CRM_{svc.upper()}_DATABASE_URL"}
            assert ref["key"] in db_secret
            assert env_values(deploy)["CRM_DATABASE_NAME"] == f"crm_{svc}"
            assert env_values(deploy)["CRM_SERVICE_NAME"] == svc


def test_database_urls_always_carry_a_password(chart, default_docs) -> None:
    """A URL without a password gets the chart's (generated once, kept; also under
    `password` for the PostgreSQL server), the same in the hook copy the Job reads."""
    db_secret = secret_strings(one(default_docs, "Secret", name("database")))
    password = db_secret["password"]
    assert len(password) >= 32
    hook = secret_strings(one(default_docs, "Secret", name("migrations")))
    for svc in SERVICES:
        key = f"CRM_{svc.upper()}_DATABASE_URL"
        assert db_secret[key] == f"postgresql://crm:{password}@postgresql:5432/postgres"
        assert hook[key] == db_secret[key]
    given = render(chart, {"database": {"password": "given-pw"}})
    db_secret = secret_strings(one(given, "Secret", name("database")))
    assert db_secret["password"] == "given-pw"
    assert db_secret["CRM_IDENTITY_DATABASE_URL"] == (
        "postgresql://crm:given-pw@postgresql:5432/postgres"
    )


def test_database_secret_wiring_split_clusters(full_docs) -> None:
    db_secret = secret_strings(one(full_docs, "Secret", name("database")))
    assert db_secret["CRM_SALES_DATABASE_URL"] == "postgresql://crm:pw@pg-sales:5432/postgres"
    assert db_secret["CRM_IDENTITY_DATABASE_URL"] == "postgresql://crm:pw@pg-main:5432/postgres"
    assert "CRM_SUPPORT_DATABASE_URL" not in db_secret  # comes from its existing Secret
    assert "password" not in db_secret  # every URL brought its own

    sales = one(full_docs, "Deployment", name("sales"))
    assert env_values(sales)["CRM_DATABASE_NAME"] == "sales_db"
    support = one(full_docs, "Deployment", name("support-worker"))
    assert env_of(support)["CRM_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "support-db",
        "key": "url",
    }


def test_checksum_annotations_roll_pods_on_config_change(chart, default_docs) -> None:
    def checksums(docs: list[dict]) -> dict[str, str]:
        deploy = one(docs, "Deployment", name("identity"))
        return deploy["spec"]["template"]["metadata"]["annotations"]

    # A fixed internal token and passwords: without a cluster to read the live Secrets back
    # from, generated ones differ per render (in a cluster `lookup` keeps them stable).
    fixed = {"internalToken": "fixed-internal-token"}
    pinned = {
        "nats": {"auth": {"passwords": {u: f"{u}-pw" for u in ("admin", *SERVICES)}}},
        "redis": {"auth": {"password": "redis-pw"}},
        "database": {"password": "db-pw"},
    }

    def render_pinned(values: dict[str, Any]) -> list[dict]:
        merged = copy.deepcopy(pinned)
        for key, value in values.items():
            merged[key] = {**merged.get(key, {}), **value}
        return render(chart, merged)

    base = checksums(render_pinned({"secrets": fixed}))
    changed_config = checksums(render_pinned({"config": {"logLevel": "DEBUG"}, "secrets": fixed}))
    assert changed_config["checksum/config"] != base["checksum/config"]
    assert changed_config["checksum/secrets"] == base["checksum/secrets"]
    changed_secret = checksums(
        render_pinned({"secrets": {**fixed, "stripeSecretKey": "sk_live_x"}})
    )
    assert changed_secret["checksum/secrets"] != base["checksum/secrets"]
    changed_db = checksums(
        render_pinned(
            {
                "components": {"identity": {"database": {"url": "postgresql://x/y"}}},
                "secrets": fixed,
            },
        )
    )
    assert changed_db["checksum/secrets"] != base["checksum/secrets"]
    nats_pw = copy.deepcopy(pinned["nats"])
    nats_pw["auth"]["passwords"]["contacts"] = "rotated"
    changed_nats = checksums(render_pinned({"nats": nats_pw, "secrets": fixed}))
    assert changed_nats["checksum/secrets"] != base["checksum/secrets"]


# --------------------------------------------------------------------------- NATS users, Redis


def _secret_ref(doc: dict, env_name: str) -> dict:
    return env_of(doc)[env_name]["valueFrom"]["secretKeyRef"]


def test_nats_users_per_service(default_docs) -> None:
    """Every service's pods run as its own NATS user, whose rights in the rendered
    nats-server auth.conf are exactly crm_lib.events.nats_permissions."""
    import json

    from crm_lib.events import NATS_ADMIN_USER, nats_permissions

    nats_secret = secret_strings(one(default_docs, "Secret", name("nats")))
    conf = nats_secret.pop("auth.conf")
    passwords = {k: v for k, v in nats_secret.items()}
    assert set(passwords) == {"CRM_NATS_ADMIN_PASSWORD"} | {
        f"CRM_NATS_{svc.upper()}_PASSWORD" for svc in SERVICES
    }
    assert len(set(passwords.values())) == len(passwords)  # one password per user
    assert all(len(pw) >= 32 for pw in passwords.values())

    body = "\n".join(line for line in conf.splitlines() if not line.startswith("#"))
    users = {u["user"]: u for u in json.loads(body.removeprefix("authorization:"))["users"]}
    assert set(users) == {NATS_ADMIN_USER, *SERVICES}
    assert "permissions" not in users[NATS_ADMIN_USER]  # streams, dead letters
    assert users[NATS_ADMIN_USER]["password"] == passwords["CRM_NATS_ADMIN_PASSWORD"]
    for svc in SERVICES:
        assert users[svc]["permissions"] == nats_permissions(svc), svc
        assert users[svc]["password"] == passwords[f"CRM_NATS_{svc.upper()}_PASSWORD"]
        for deploy in (name(svc), name(f"{svc}-worker")):
            doc = one(default_docs, "Deployment", deploy)
            assert env_values(doc)["CRM_NATS_USER"] == svc
            assert _secret_ref(doc, "CRM_NATS_PASSWORD") == {
                "name": name("nats"),
                "key": f"CRM_NATS_{svc.upper()}_PASSWORD",
            }
    gateway = one(default_docs, "Deployment", name("gateway"))
    assert "CRM_NATS_USER" not in env_of(gateway)
    assert "CRM_NATS_PASSWORD" not in env_of(gateway)
    # No pod gets the NATS passwords through envFrom (only its own, by key).
    for secret_name in (name("secrets"), name("config")):
        for kind in ("Secret", "ConfigMap"):
            obj = by_kind(default_docs, kind).get(secret_name)
            if obj:
                data = obj.get("stringData") or obj.get("data") or {}
                assert not [k for k in data if k.startswith("CRM_NATS_") and "PASS" in k]

    # The migrations Job declares the streams as the admin, from its hook copy.
    job = one(default_docs, "Job", name("migrations"))
    assert env_values(job)["CRM_NATS_USER"] == NATS_ADMIN_USER
    ref = _secret_ref(job, "CRM_NATS_PASSWORD")
    assert ref == {"name": name("migrations"), "key": "CRM_NATS_ADMIN_PASSWORD"}
    hook = secret_strings(one(default_docs, "Secret", name("migrations")))
    assert hook["CRM_NATS_ADMIN_PASSWORD"] == passwords["CRM_NATS_ADMIN_PASSWORD"]


def test_nats_auth_existing_secret_and_given_passwords(chart) -> None:
    docs = render(chart, {"nats": {"auth": {"existingSecret": "nats-creds"}}})
    assert name("nats") not in by_kind(docs, "Secret")
    contacts = one(docs, "Deployment", name("contacts-worker"))
    assert _secret_ref(contacts, "CRM_NATS_PASSWORD") == {
        "name": "nats-creds",
        "key": "CRM_NATS_CONTACTS_PASSWORD",
    }
    job = one(docs, "Job", name("migrations"))
    assert _secret_ref(job, "CRM_NATS_PASSWORD")["name"] == "nats-creds"

    docs = render(chart, {"nats": {"auth": {"passwords": {"sales": "sales-pw"}}}})
    nats_secret = secret_strings(one(docs, "Secret", name("nats")))
    assert nats_secret["CRM_NATS_SALES_PASSWORD"] == "sales-pw"


def test_redis_password(chart, default_docs, full_docs) -> None:
    redis_secret = secret_strings(one(default_docs, "Secret", name("redis")))
    password = redis_secret["redis-password"]
    assert len(password) >= 32
    for component in COMPONENTS:
        doc = one(default_docs, "Deployment", name(component))
        names = [e["name"] for e in container(doc)["env"]]
        # defined before the URL that refers to it
        assert names.index("CRM_REDIS_PASSWORD") < names.index("CRM_REDIS_URL")
        assert _secret_ref(doc, "CRM_REDIS_PASSWORD") == {
            "name": name("redis"),
            "key": "redis-password",
        }
        assert env_values(doc)["CRM_REDIS_URL"] == ("redis://:$(CRM_REDIS_PASSWORD)@redis:6379/0")
    # secrets.redisUrl carries its own password: used as it is.
    assert name("redis") not in by_kind(full_docs, "Secret")
    assert "CRM_REDIS_URL" not in env_of(one(full_docs, "Deployment", name("gateway")))

    docs = render(
        chart, {"redis": {"auth": {"existingSecret": "redis-auth", "existingSecretKey": "pw"}}}
    )
    assert name("redis") not in by_kind(docs, "Secret")
    assert _secret_ref(one(docs, "Deployment", name("sales")), "CRM_REDIS_PASSWORD") == {
        "name": "redis-auth",
        "key": "pw",
    }


def test_network_policy_is_on_by_default(default_docs) -> None:
    assert set(by_kind(default_docs, "NetworkPolicy")) == {
        name(p) for p in ("gateway", "default", "identity", "services")
    }


# --------------------------------------------------------------------------- migrations hook


def test_migrations_job(default_docs) -> None:
    job = one(default_docs, "Job", name("migrations"))
    ann = job["metadata"]["annotations"]
    assert ann["helm.sh/hook"] == HOOK_EVENTS
    assert set(ann["helm.sh/hook-delete-policy"].split(",")) == {
        "before-hook-creation",
        "hook-succeeded",
    }
    spec = job["spec"]
    assert spec["backoffLimit"] >= 0
    assert spec["activeDeadlineSeconds"] > 0
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    c = container(job)
    assert c["command"] + c["args"] == ["crm", "migrate", "--all", "--streams"]

    # Same configuration as the services, taken from hook copies that exist
    # before pre-install hooks run (the release's own objects do not yet).
    job_weight = int(ann.get("helm.sh/hook-weight", "0"))
    sa = spec["template"]["spec"]["serviceAccountName"]
    expected = [
        ("ConfigMap", r["configMapRef"]["name"]) for r in c["envFrom"] if "configMapRef" in r
    ]
    expected += [("Secret", r["secretRef"]["name"]) for r in c["envFrom"] if "secretRef" in r]
    expected += [("ServiceAccount", sa)]
    assert len(expected) == 3
    for kind, ref_name in expected:
        obj = one(default_docs, kind, ref_name)
        obj_ann = obj["metadata"]["annotations"]
        assert obj_ann.get("helm.sh/hook") == HOOK_EVENTS, (kind, ref_name)
        assert int(obj_ann["helm.sh/hook-weight"]) < job_weight
        assert "before-hook-creation" in obj_ann["helm.sh/hook-delete-policy"]
    hook_cm = one(default_docs, "ConfigMap", name("migrations"))
    assert hook_cm["data"] == one(default_docs, "ConfigMap", name("config"))["data"]

    env = env_of(job)
    hook_secret = secret_strings(one(default_docs, "Secret", name("migrations")))
    for svc in SERVICES:
        ref = env[f"CRM_{svc.upper()}_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == name("migrations")
        assert ref["key"] in hook_secret
        assert env[f"CRM_{svc.upper()}_DATABASE_NAME"]["value"] == f"crm_{svc}"


def test_migrations_job_with_split_databases(full_docs) -> None:
    job = one(full_docs, "Job", name("migrations"))
    env = env_of(job)
    assert env["CRM_SUPPORT_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "support-db",
        "key": "url",
    }
    assert env["CRM_SALES_DATABASE_NAME"]["value"] == "sales_db"
    assert env["CRM_MIGRATE_LOCK_TIMEOUT_MS"]["value"] == "10000"
    hook_secret = secret_strings(one(full_docs, "Secret", name("migrations")))
    assert hook_secret["CRM_SALES_DATABASE_URL"] == "postgresql://crm:pw@pg-sales:5432/postgres"
    assert hook_secret["CRM_STRIPE_SECRET_KEY"] == "sk_test_123"


def test_migrations_can_be_disabled(chart) -> None:
    docs = render(chart, {"migrations": {"enabled": False}})
    assert not by_kind(docs, "Job")
    assert not [d for d in docs if "helm.sh/hook" in d["metadata"]["annotations"]]


# --------------------------------------------------------------------------- security


@pytest.mark.parametrize("which", ["default_docs", "full_docs"])
def test_security_context(request, which) -> None:
    docs = request.getfixturevalue(which)
    specs = pod_specs(docs)
    assert len(specs) == len(COMPONENTS) + len(SERVICES) + 1
    for ref, pod in specs:
        assert pod["automountServiceAccountToken"] is False, ref
        assert pod["securityContext"]["runAsNonRoot"] is True, ref
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, ref
        tmp = {v["name"]: v for v in pod["volumes"]}["tmp"]
        assert "emptyDir" in tmp, ref
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, ref
            assert sc["readOnlyRootFilesystem"] is True, ref
            assert sc["allowPrivilegeEscalation"] is False, ref
            assert sc["capabilities"]["drop"] == ["ALL"], ref
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, ref
            assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"], ref  # noqa: S108
    for sa in by_kind(docs, "ServiceAccount").values():
        assert sa["automountServiceAccountToken"] is False
    runtime_sa = one(docs, "ServiceAccount", RELEASE)
    assert all(
        pod["serviceAccountName"] == RELEASE for ref, pod in specs if not ref.startswith("Job/")
    )
    assert runtime_sa["metadata"]["name"] == RELEASE


# --------------------------------------------------------------------------- optional features


def test_autoscalers(full_docs) -> None:
    for component in COMPONENTS:
        if component == "marketing":
            continue
        hpa = one(full_docs, "HorizontalPodAutoscaler", name(component))
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name(component),
        }
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
        targets = {
            m["resource"]["name"]: m["resource"]["target"]["averageUtilization"]
            for m in hpa["spec"]["metrics"]
        }
        assert targets == {"cpu": 70, "memory": 80}


def test_pod_disruption_budgets(full_docs) -> None:
    for component in COMPONENTS:
        pdb = one(full_docs, "PodDisruptionBudget", name(component))
        deploy = one(full_docs, "Deployment", name(component))
        assert pdb["spec"]["maxUnavailable"] == 1
        assert pdb["spec"]["selector"] == deploy["spec"]["selector"]


def test_network_policies(full_docs) -> None:
    def labels(component: str) -> dict[str, str]:
        return one(full_docs, "Deployment", name(component))["spec"]["selector"]["matchLabels"]

    http = {"port": "http", "protocol": "TCP"}
    gw = one(full_docs, "NetworkPolicy", name("gateway"))
    assert gw["spec"]["podSelector"]["matchLabels"] == labels("gateway")
    # from anywhere: a rule without "from", on the http port only
    assert gw["spec"]["ingress"] == [{"ports": [http]}]

    default = one(full_docs, "NetworkPolicy", name("default"))
    release_labels = default["spec"]["podSelector"]["matchLabels"]
    assert release_labels == {
        "app.kubernetes.io/name": "crm",
        "app.kubernetes.io/instance": RELEASE,
    }
    assert default["spec"]["policyTypes"] == ["Ingress"]
    # every pod of the release (services, workers) is isolated; only the extra peers
    # (e.g. Prometheus) on http and metrics
    assert default["spec"]["ingress"] == [
        {
            "from": FULL_VALUES["networkPolicy"]["extraIngressFrom"],
            "ports": [http, {"port": "metrics", "protocol": "TCP"}],
        }
    ]
    for d in by_kind(full_docs, "Deployment").values():
        assert release_labels.items() <= d["spec"]["template"]["metadata"]["labels"].items()

    # identity (JWKS, internal API) from every pod of the release
    identity = one(full_docs, "NetworkPolicy", name("identity"))
    assert identity["spec"]["podSelector"]["matchLabels"] == labels("identity")
    assert identity["spec"]["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": release_labels}}], "ports": [http]}
    ]

    # the other services from the gateway only (never directly: X-Forwarded-For, tokens)
    services = one(full_docs, "NetworkPolicy", name("services"))
    selector = services["spec"]["podSelector"]
    assert selector["matchLabels"] == release_labels
    assert selector["matchExpressions"] == [
        {
            "key": "app.kubernetes.io/component",
            "operator": "In",
            "values": ["contacts", "sales", "marketing", "support"],
        }
    ]
    assert services["spec"]["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": labels("gateway")}}], "ports": [http]}
    ]
    # workers are never selected by an allowing rule besides the extra peers
    for policy in (gw, identity, services):
        values = policy["spec"]["podSelector"].get("matchExpressions", [{}])[0].get("values", [])
        component = policy["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/component")
        assert not str(component).endswith("-worker")
        assert not [v for v in values if v.endswith("-worker")]


def test_network_policy_default_without_extra_peers(default_docs) -> None:
    default = one(default_docs, "NetworkPolicy", name("default"))
    assert default["spec"]["ingress"] == []  # deny all but the allowing policies


def test_ingress(full_docs) -> None:
    ing = one(full_docs, "Ingress", name("gateway"))
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["tls"] == FULL_VALUES["ingress"]["tls"]
    rule = ing["spec"]["rules"][0]
    assert rule["host"] == "crm.example.com"
    assert rule["http"]["paths"][0]["backend"] == {
        "service": {"name": name("gateway"), "port": {"name": "http"}}
    }


def test_service_monitor(full_docs, default_docs) -> None:
    assert not by_kind(default_docs, "ServiceMonitor")
    sm = one(full_docs, "ServiceMonitor", RELEASE)
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert set(sm) == {"apiVersion", "kind", "metadata", "spec"}
    spec = sm["spec"]
    assert set(spec) <= {"jobLabel", "namespaceSelector", "selector", "endpoints"}
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert spec["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    # selects exactly the web Services
    selector = spec["selector"]["matchLabels"]
    selected = {
        n for n, s in by_kind(full_docs, "Service").items()
        if selector.items() <= s["metadata"]["labels"].items()
    }  # fmt: skip
    assert selected == {name(c) for c in COMPONENTS}
    assert all(
        {"http", "metrics"} <= {p["name"] for p in s["spec"]["ports"]}
        for s in by_kind(full_docs, "Service").values()
    )


# --------------------------------------------------------------------------- schema rejections


def test_full_values_pass_schema(chart) -> None:
    chart.validate_schema(FULL_VALUES)


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"components": {"identity": {"replicas": "two"}}}, "/components/identity/replicas"),
        ({"components": {"identity": {"replicas": -1}}}, "/components/identity/replicas"),
        ({"components": {"identity": {"replicas": 1.5}}}, "/components/identity/replicas"),
        ({"components": {"sales": {"worker": {"replicas": "1"}}}}, "/components/sales/worker"),
        ({"imagee": {"tag": "1.0"}}, "imagee"),
        ({"image": {"tag": 1.0}}, "/image/tag"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"components": {"contact": {"enabled": True, "replicas": 1}}}, "contact"),
        ({"components": {"gateway": {"database": {"url": "x"}}}}, "database"),
        ({"components": {"sales": {"databse": {"url": "x"}}}}, "databse"),
        ({"components": {"sales": {"env": {"BAD-NAME": "x"}}}}, "BAD-NAME"),
        ({"config": {"billingMode": "free"}}, "/config/billingMode"),
        ({"workers": {"enabled": "yes"}}, "/workers/enabled"),
        ({"autoscaling": {"targetCPUUtilizationPercentage": 0}}, "targetCPUUtilizationPercentage"),
        ({"migrations": {"backoffLimit": -1}}, "/migrations/backoffLimit"),
        ({"metrics": {"serviceMonitor": {"interval": "soon"}}}, "interval"),
    ],
)
def test_schema_rejects_invalid_values(chart, values, needle) -> None:
    message = render_error(chart, copy.deepcopy(values))
    assert needle in message, message


def test_missing_database_url_fails_render(chart) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=r"database\.url"):
        chart.render({"database": {"url": ""}}, name=RELEASE, namespace=NAMESPACE)
