//! The CDN edge: Varnish pods running the VCL `crescendo up` gives its edges
//! (`crates/topology/src/edge.vcl`), from a ConfigMap, with the web Service as origin. A
//! StatefulSet rather than a Deployment: each acknowledged write purges its keys on every
//! edge, so the web nodes must name each one (`crescendo-edge-0.crescendo-edge`…); a
//! Deployment's pods have no stable names to list. The purge token reaches Varnish in its
//! environment from the Secret (`std.getenv`), so the ConfigMap holds no secret.

use crate::Plan;
use crate::names::{self, headless, meta, ports, selector};
use crate::settings::secret_env;
use serde_json::{Value, json};

const VARNISH_IMAGE: &str = "varnish:7.6";
/// The `varnish` user of the official image.
const VARNISH_UID: u32 = 1000;

/// The edge's objects, when the topology has edges.
pub fn objects(p: &Plan) -> Vec<Value> {
    let Some(e) = &p.t.edge else {
        return Vec::new();
    };
    let ns = &p.o.namespace;
    let vcl = crescendo_topology::varnish::vcl_for(
        "crescendo-web",
        ports::HTTP,
        "std.getenv(\"PURGE_TOKEN\")",
    );
    let both = json!([
        {"name": "http", "port": ports::EDGE, "targetPort": "http"},
        {"name": "purge", "port": ports::PURGE, "targetPort": "purge"},
    ]);
    let tcp = |port: &str| json!({"tcpSocket": {"port": port}, "periodSeconds": 5});
    vec![
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta("crescendo-edge-vcl", "edge", ns),
            "data": {"edge.vcl": vcl},
        }),
        headless("crescendo-edge", "edge", ns, both),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta("crescendo-edge-public", "edge", ns),
            "spec": {
                "selector": selector("edge"),
                "ports": [{"name": "http", "port": ports::EDGE, "targetPort": "http"}],
            }
        }),
        json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": meta("crescendo-edge", "edge", ns),
            "spec": {
                "serviceName": "crescendo-edge",
                "replicas": e.count,
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": selector("edge")},
                "template": {
                    "metadata": {"labels": names::labels("edge")},
                    "spec": {
                        "securityContext": names::pod_security(VARNISH_UID),
                        "automountServiceAccountToken": false,
                        "containers": [{
                            "name": "varnish",
                            "image": VARNISH_IMAGE,
                            "command": [
                                "varnishd", "-F",
                                "-a", format!("public=:{}", ports::EDGE),
                                "-a", format!("admin=:{}", ports::PURGE),
                                "-f", "/etc/varnish/edge.vcl",
                                "-n", "/var/lib/varnish/work",
                                "-s", format!("malloc,{}m", e.memory_mb),
                                "-T", "none",
                            ],
                            "env": [secret_env("PURGE_TOKEN", names::APP_SECRET, "purge-token")],
                            "ports": [
                                {"name": "http", "containerPort": ports::EDGE},
                                {"name": "purge", "containerPort": ports::PURGE},
                            ],
                            "readinessProbe": tcp("http"),
                            "livenessProbe": tcp("http"),
                            "resources": {
                                "requests": {"cpu": "250m", "memory": format!("{}Mi", e.memory_mb + 128)},
                                "limits": {"memory": format!("{}Mi", e.memory_mb * 2 + 256)},
                            },
                            "securityContext": names::container_security(),
                            "volumeMounts": [
                                {"name": "vcl", "mountPath": "/etc/varnish"},
                                {"name": "work", "mountPath": "/var/lib/varnish"},
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }],
                        "volumes": [
                            {"name": "vcl", "configMap": {"name": "crescendo-edge-vcl"}},
                            {"name": "work", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}},
                            names::scratch("tmp"),
                        ],
                    }
                },
            }
        }),
    ]
}
