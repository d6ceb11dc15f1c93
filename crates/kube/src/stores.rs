//! Redis and NATS JetStream as StatefulSets: the shared-state Redis (`crescendo-redis`,
//! never evicting, its data on a volume), the cache servers (`crescendo-cache-0`…, one pod
//! each, stable names for the web nodes' hash ring; no volume, since a server that rejoins
//! the ring is flushed anyway), and one NATS server with JetStream on a volume. Passwords
//! reach the servers from their Secrets through the environment, never their command lines:
//! Redis's ACL file is written at start into a memory volume, NATS reads `$NATS_PASSWORD`
//! in its configuration itself.

use crate::Plan;
use crate::names::{self, headless, meta, ports, selector};
use crate::settings::secret_env;
use serde_json::{Value, json};

const REDIS_IMAGE: &str = "redis:7.2";
const NATS_IMAGE: &str = "nats:2.10-alpine";
/// The `redis` user of the official image.
const REDIS_UID: u32 = 999;
/// An unprivileged user for the NATS server.
const NATS_UID: u32 = 1000;

/// Redis's objects: the shared-state server and the cache servers, with their settings.
pub fn redis(p: &Plan) -> Vec<Value> {
    let ns = &p.o.namespace;
    let mut conf = serde_json::Map::new();
    let mut out = Vec::new();
    if let Some(r) = &p.t.redis {
        conf.insert(
            "sessions.conf".into(),
            redis_conf(r.maxmemory_mb, "noeviction", true).into(),
        );
        out.push(headless("crescendo-redis", "redis", ns, redis_port()));
        out.push(redis_set(
            p,
            ("crescendo-redis", "redis"),
            "sessions.conf",
            1,
            r.maxmemory_mb,
        ));
    }
    if let Some(c) = &p.t.cache {
        conf.insert(
            "cache.conf".into(),
            redis_conf(c.maxmemory_mb, "allkeys-lru", false).into(),
        );
        out.push(headless("crescendo-cache", "cache", ns, redis_port()));
        out.push(redis_set(
            p,
            ("crescendo-cache", "cache"),
            "cache.conf",
            c.servers,
            c.maxmemory_mb,
        ));
    }
    if !out.is_empty() {
        out.insert(
            0,
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": meta("crescendo-redis-conf", "redis", ns),
                "data": conf,
            }),
        );
    }
    out
}

fn redis_port() -> Value {
    json!([{"name": "redis", "port": ports::REDIS, "targetPort": "redis"}])
}

fn redis_conf(maxmemory_mb: u32, policy: &str, persist: bool) -> String {
    format!(
        "port {}\nbind * -::*\nprotected-mode no\naclfile /run/redis/users.acl\n\
         maxmemory {maxmemory_mb}mb\nmaxmemory-policy {policy}\ndir /data\n\
         appendonly {}\nsave \"\"\n",
        ports::REDIS,
        if persist { "yes" } else { "no" },
    )
}

/// A StatefulSet `name` of `component`: `replicas` Redis servers reading `conf`, using up
/// to `mb` MiB each; the shared-state one (`redis`) keeps its data on a volume.
fn redis_set(
    p: &Plan,
    (name, component): (&str, &str),
    conf: &str,
    replicas: usize,
    mb: u32,
) -> Value {
    let persist = component == "redis";
    let script = format!(
        "printf 'user default off\\nuser crescendo on >%s ~* &* +@all\\n' \"$REDIS_PASSWORD\" \
         > /run/redis/users.acl && exec redis-server /etc/redis/{conf}"
    );
    let mut spec = json!({
        "serviceName": name,
        "replicas": replicas,
        "podManagementPolicy": "Parallel",
        "selector": {"matchLabels": selector(component)},
        "template": {
            "metadata": {"labels": names::labels(component)},
            "spec": {
                "securityContext": names::pod_security(REDIS_UID),
                "automountServiceAccountToken": false,
                "containers": [{
                    "name": "redis",
                    "image": REDIS_IMAGE,
                    "command": ["sh", "-c", script],
                    "env": [secret_env("REDIS_PASSWORD", names::REDIS_SECRET, "password")],
                    "ports": [{"name": "redis", "containerPort": ports::REDIS}],
                    "readinessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 5},
                    "livenessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 10},
                    "resources": {
                        "requests": {"cpu": "100m", "memory": format!("{}Mi", mb + 32)},
                        "limits": {"memory": format!("{}Mi", mb * 2 + 64)},
                    },
                    "securityContext": names::container_security(),
                    "volumeMounts": [
                        {"name": "conf", "mountPath": "/etc/redis"},
                        {"name": "acl", "mountPath": "/run/redis"},
                        {"name": "data", "mountPath": "/data"},
                    ],
                }],
                "volumes": [
                    {"name": "conf", "configMap": {"name": "crescendo-redis-conf"}},
                    {"name": "acl", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                ],
            }
        }
    });
    if persist {
        spec["volumeClaimTemplates"] = claim("1Gi");
    } else if let Value::Array(volumes) = &mut spec["template"]["spec"]["volumes"] {
        volumes.push(json!({"name": "data", "emptyDir": {"sizeLimit": "64Mi"}}));
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta(name, component, &p.o.namespace),
        "spec": spec,
    })
}

/// A StatefulSet's one volume, `data`, of `size`.
fn claim(size: &str) -> Value {
    json!([{
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
    }])
}

/// NATS's objects, when the topology has a queue.
pub fn nats(p: &Plan) -> Vec<Value> {
    if p.t.queue.is_none() {
        return Vec::new();
    }
    let ns = &p.o.namespace;
    let conf = format!(
        "port: {}\nhttp_port: {}\njetstream {{\n  store_dir: /data\n  max_file_store: 8G\n}}\n\
         authorization {{\n  users = [\n    {{user: crescendo, password: $NATS_PASSWORD}}\n  ]\n}}\n",
        ports::NATS,
        ports::NATS_MONITOR,
    );
    let ports_list = json!([
        {"name": "client", "port": ports::NATS, "targetPort": "client"},
        {"name": "monitor", "port": ports::NATS_MONITOR, "targetPort": "monitor"},
    ]);
    vec![
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta("crescendo-nats-conf", "nats", ns),
            "data": {"nats.conf": conf},
        }),
        headless("crescendo-nats", "nats", ns, ports_list),
        json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": meta("crescendo-nats", "nats", ns),
            "spec": {
                "serviceName": "crescendo-nats",
                "replicas": 1,
                "selector": {"matchLabels": selector("nats")},
                "template": {
                    "metadata": {"labels": names::labels("nats")},
                    "spec": {
                        "securityContext": names::pod_security(NATS_UID),
                        "automountServiceAccountToken": false,
                        "containers": [{
                            "name": "nats",
                            "image": NATS_IMAGE,
                            "command": ["nats-server", "--config", "/etc/nats/nats.conf"],
                            "env": [secret_env("NATS_PASSWORD", names::NATS_SECRET, "password")],
                            "ports": [
                                {"name": "client", "containerPort": ports::NATS},
                                {"name": "monitor", "containerPort": ports::NATS_MONITOR},
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz?js-enabled-only=true", "port": "monitor"},
                                "periodSeconds": 5,
                            },
                            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "monitor"}, "periodSeconds": 10},
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "128Mi"},
                                "limits": {"memory": "512Mi"},
                            },
                            "securityContext": names::container_security(),
                            "volumeMounts": [
                                {"name": "conf", "mountPath": "/etc/nats"},
                                {"name": "data", "mountPath": "/data"},
                            ],
                        }],
                        "volumes": [{"name": "conf", "configMap": {"name": "crescendo-nats-conf"}}],
                    }
                },
                "volumeClaimTemplates": claim("10Gi"),
            }
        }),
    ]
}
