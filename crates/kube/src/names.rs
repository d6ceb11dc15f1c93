//! Names, ports and labels every manifest shares, so the Services, the settings that point
//! at them and the NetworkPolicies that open them cannot drift apart.

use crescendo_topology::Topology;
use serde_json::{Value, json};

/// The Secret with the token signing key and the edges' purge token.
pub const APP_SECRET: &str = "crescendo-app";
/// The database owner's name and password (CloudNativePG's `bootstrap.initdb.secret`).
pub const DB_SECRET: &str = "crescendo-db";
/// The password of the Redis user `crescendo` (shared state and cache servers).
pub const REDIS_SECRET: &str = "crescendo-redis";
/// The password of the NATS user `crescendo`.
pub const NATS_SECRET: &str = "crescendo-nats";
/// The S3 access key (uploads and database backups).
pub const S3_SECRET: &str = "crescendo-s3";
/// The Ingress's certificate and key.
pub const TLS_SECRET: &str = "crescendo-tls";

/// The shared-state Redis, as the nodes reach it.
pub const REDIS_HOST: &str = "crescendo-redis-0.crescendo-redis";
/// The NATS server, as the nodes reach it.
pub const NATS_HOST: &str = "crescendo-nats-0.crescendo-nats";

/// Namespaces of what runs beside Crescendo, which the NetworkPolicies let in: the Ingress
/// controller, Prometheus (prometheus-operator), KEDA and the CloudNativePG operator.
pub mod peers {
    /// ingress-nginx's usual namespace.
    pub const INGRESS: &str = "ingress-nginx";
    /// kube-prometheus-stack's usual namespace.
    pub const MONITORING: &str = "monitoring";
    /// KEDA's usual namespace.
    pub const KEDA: &str = "keda";
    /// CloudNativePG's operator namespace.
    pub const CNPG: &str = "cnpg-system";
}

/// Container ports.
pub mod ports {
    /// The public HTTP listener of web nodes.
    pub const HTTP: u16 = 8080;
    /// `/health`, `/ready` and `/metrics` of web nodes and workers.
    pub const OPS: u16 = 9090;
    /// PostgreSQL.
    pub const PG: u16 = 5432;
    /// CloudNativePG's metrics exporter in each instance.
    pub const PG_METRICS: u16 = 9187;
    /// CloudNativePG's instance manager (the operator's status checks).
    pub const PG_STATUS: u16 = 8000;
    /// Redis.
    pub const REDIS: u16 = 6379;
    /// NATS clients.
    pub const NATS: u16 = 4222;
    /// NATS monitoring (`/jsz`, read by KEDA).
    pub const NATS_MONITOR: u16 = 8222;
    /// The edge's public listener.
    pub const EDGE: u16 = 8080;
    /// The edge's private purge listener.
    pub const PURGE: u16 = 6082;
}

/// The labels of every object of `component` (`web`, `worker`, `postgres`…).
pub fn labels(component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "crescendo",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "crescendo",
    })
}

/// The labels that select `component`'s pods.
pub fn selector(component: &str) -> Value {
    json!({"app.kubernetes.io/name": "crescendo", "app.kubernetes.io/component": component})
}

/// `metadata` of object `name` of `component` in namespace `ns`.
pub fn meta(name: &str, component: &str, ns: &str) -> Value {
    json!({"name": name, "namespace": ns, "labels": labels(component)})
}

/// The PostgreSQL clusters as (CloudNativePG name, shard cluster name): one `crescendo-pg`,
/// or at rung 10 the catalogue first, then `c1`, `c2`… as `crescendo up` names them.
pub fn pg_clusters(t: &Topology) -> Vec<(String, String)> {
    if t.postgres.clusters == 0 {
        return vec![("crescendo-pg".into(), "main".into())];
    }
    let mut out = vec![(
        "crescendo-pg-catalogue".to_string(),
        "catalogue".to_string(),
    )];
    for i in 1..=t.postgres.clusters {
        out.push((format!("crescendo-pg-c{i}"), format!("c{i}")));
    }
    out
}

/// Each cache server's host name (pods of the `crescendo-cache` StatefulSet).
pub fn cache_hosts(t: &Topology) -> Vec<String> {
    let n = t.cache.as_ref().map_or(0, |c| c.servers);
    (0..n)
        .map(|i| format!("crescendo-cache-{i}.crescendo-cache"))
        .collect()
}

/// Edge `i`'s host name (a pod of the `crescendo-edge` StatefulSet).
pub fn edge_host(i: usize) -> String {
    format!("crescendo-edge-{i}.crescendo-edge")
}

/// A `securityContext` for a container: no privilege escalation, no capabilities, a
/// read-only root filesystem (writable paths are emptyDirs or volumes).
pub fn container_security() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "capabilities": {"drop": ["ALL"]},
    })
}

/// A pod's `securityContext`: user and group `uid`, volumes group-owned by it, the
/// runtime's default seccomp profile.
pub fn pod_security(uid: u32) -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// A small emptyDir volume named `name` (for `/tmp` and other scratch paths).
pub fn scratch(name: &str) -> Value {
    json!({"name": name, "emptyDir": {"sizeLimit": "64Mi"}})
}

/// A headless Service for StatefulSet `name` (stable per-pod host names).
pub fn headless(name: &str, component: &str, ns: &str, ports: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, component, ns),
        "spec": {
            "clusterIP": "None",
            // pods are named before they are ready: a starting server can be found by its peers
            "publishNotReadyAddresses": true,
            "selector": selector(component),
            "ports": ports,
        }
    })
}
