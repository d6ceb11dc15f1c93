//! The web tier: a Deployment of `crescendo web` pods, its Service, PodDisruptionBudget,
//! HorizontalPodAutoscaler and the Ingress (TLS from a Secret) that takes the public
//! traffic, to the edges when there are some and to the web nodes otherwise.

use crate::Plan;
use crate::names::{self, meta, ports, selector};
use crate::settings::{self, PRE_STOP_PAUSE};
use serde_json::{Value, json};

/// The web tier's objects.
pub fn objects(p: &Plan) -> Vec<Value> {
    let ns = &p.o.namespace;
    let count = p.t.web.count;
    let mut out = vec![deployment(p)];
    out.push(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta("crescendo-web", "web", ns),
        "spec": {
            "selector": selector("web"),
            "ports": [
                {"name": "http", "port": ports::HTTP, "targetPort": "http"},
                {"name": "ops", "port": ports::OPS, "targetPort": "ops"},
            ],
            // sticky sessions (rungs 3 to 5 keep web sessions in each node's memory)
            "sessionAffinity": if sticky(p) { "ClientIP" } else { "None" },
        }
    }));
    out.push(json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta("crescendo-web", "web", ns),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector("web")}},
    }));
    out.push(json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta("crescendo-web", "web", ns),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "crescendo-web"},
            "minReplicas": count,
            "maxReplicas": count * 3,
            "metrics": [{
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
            }],
        }
    }));
    out.push(ingress(p));
    if !settings::is_s3(&p.t) {
        out.push(json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": meta("crescendo-blobs", "web", ns),
            "spec": {
                // every web node reads and writes the same uploads
                "accessModes": ["ReadWriteMany"],
                "resources": {"requests": {"storage": "10Gi"}},
            }
        }));
    }
    out
}

fn sticky(p: &Plan) -> bool {
    p.t.load_balancer.as_ref().is_some_and(|lb| lb.sticky)
}

fn deployment(p: &Plan) -> Value {
    let web = settings::web(&p.t);
    let (_, env) = settings::split(&p.t, &web);
    let blobs = if settings::is_s3(&p.t) {
        json!({"name": "data", "emptyDir": {"sizeLimit": "1Gi"}})
    } else {
        json!({"name": "data", "persistentVolumeClaim": {"claimName": "crescendo-blobs"}})
    };
    let probe = |path: &str, period: u32, failures: u32| {
        json!({
            "httpGet": {"path": path, "port": "ops"},
            "periodSeconds": period,
            "timeoutSeconds": 2,
            "failureThreshold": failures,
        })
    };
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta("crescendo-web", "web", &p.o.namespace),
        "spec": {
            "replicas": p.t.web.count,
            "selector": {"matchLabels": selector("web")},
            // a new pod takes traffic before an old one leaves
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": names::labels("web")},
                "spec": {
                    "terminationGracePeriodSeconds": settings::web_termination_grace(&web),
                    "securityContext": names::pod_security(crate::APP_UID),
                    "automountServiceAccountToken": false,
                    "containers": [{
                        "name": "web",
                        "image": p.o.image,
                        "command": ["crescendo", "web"],
                        "ports": [
                            {"name": "http", "containerPort": ports::HTTP},
                            {"name": "ops", "containerPort": ports::OPS},
                        ],
                        "envFrom": [{"configMapRef": {"name": "crescendo-settings"}}],
                        "env": env,
                        "readinessProbe": probe("/ready", 2, 2),
                        "livenessProbe": probe("/health", 10, 3),
                        "startupProbe": probe("/health", 2, 30),
                        "lifecycle": {"preStop": {"exec": {
                            "command": ["sleep", PRE_STOP_PAUSE.as_secs().to_string()],
                        }}},
                        "resources": {
                            "requests": {"cpu": "250m", "memory": "256Mi"},
                            "limits": {"cpu": "2", "memory": "512Mi"},
                        },
                        "securityContext": names::container_security(),
                        "volumeMounts": [
                            {"name": "tmp", "mountPath": "/tmp"},
                            {"name": "data", "mountPath": settings::DATA_DIR},
                        ],
                    }],
                    "volumes": [names::scratch("tmp"), blobs],
                }
            }
        }
    })
}

fn ingress(p: &Plan) -> Value {
    let (service, port) = match p.t.edge {
        Some(_) => ("crescendo-edge-public", ports::EDGE),
        None => ("crescendo-web", ports::HTTP),
    };
    let mut m = meta("crescendo", "ingress", &p.o.namespace);
    if sticky(p) {
        // ingress-nginx's own stickiness: the Service's ClientIP affinity sees only the
        // controller's address
        m["annotations"] = json!({
            "nginx.ingress.kubernetes.io/affinity": "cookie",
            "nginx.ingress.kubernetes.io/session-cookie-name": "crescendo-node",
        });
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": m,
        "spec": {
            "tls": [{"hosts": [p.o.host], "secretName": names::TLS_SECRET}],
            "rules": [{
                "host": p.o.host,
                "http": {"paths": [{
                    "path": "/",
                    "pathType": "Prefix",
                    "backend": {"service": {"name": service, "port": {"number": port}}},
                }]},
            }],
        }
    })
}
