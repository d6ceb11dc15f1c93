//! What the web nodes and workers are told: the same typed [`Settings`] `crescendo up`
//! builds, pointed at the cluster's Services, written out as `CRESCENDO_*` variables. Values
//! without a secret go to the `crescendo-settings` ConfigMap; a URL that carries a password
//! names it as `$(VAR)`, which the kubelet fills from the container's own earlier variables
//! (each read from a Secret by `secretKeyRef`), so no password is ever rendered.

use crate::names::{self, ports};
use crescendo_config::{
    BlobBackend, CacheBackend, QueueBackend, SessionBackend, Settings, StoreBackend,
};
use crescendo_topology::Topology;
use crescendo_topology::model::BlobsBackend;
use serde_json::{Value, json};
use std::time::Duration;

/// The pause in `preStop` before the kubelet sends SIGTERM: the time endpoint controllers
/// and Ingress controllers take to stop sending new requests to a pod that is going away.
pub const PRE_STOP_PAUSE: Duration = Duration::from_secs(5);

/// Where a node keeps what it writes locally (an emptyDir, or the shared blob volume).
pub const DATA_DIR: &str = "/var/lib/crescendo";

/// Address blocks whose `X-Forwarded-For` the web nodes believe: the pod networks the
/// Ingress controller and the edges sit on. Only they can reach a web pod (see the
/// NetworkPolicies), so a client cannot forge its address through them.
const PRIVATE_NETS: [&str; 3] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];

/// A Secret the manifests read and an operator creates.
pub struct SecretSpec {
    /// Its name.
    pub name: &'static str,
    /// Its keys, each with the value `kubectl create secret` gives it (a shell word).
    pub keys: Vec<(&'static str, &'static str)>,
    /// `kubernetes.io/basic-auth` rather than opaque (CloudNativePG asks for it).
    pub basic_auth: bool,
}

/// A generated value: 24 random bytes as 48 hex digits (URL-safe, so it can sit in a URL).
const GENERATED: &str = "\"$(openssl rand -hex 24)\"";

/// The Secrets topology `t` reads, in the order they are listed in NOTES.txt.
pub fn secrets(t: &Topology) -> Vec<SecretSpec> {
    let mut app = vec![("jwt-secret", GENERATED)];
    if t.edge.is_some() {
        app.push(("purge-token", GENERATED));
    }
    let mut out = vec![
        SecretSpec {
            name: names::APP_SECRET,
            keys: app,
            basic_auth: false,
        },
        SecretSpec {
            name: names::DB_SECRET,
            keys: vec![("username", "crescendo"), ("password", GENERATED)],
            basic_auth: true,
        },
    ];
    if t.redis.is_some() || t.cache.is_some() {
        out.push(SecretSpec {
            name: names::REDIS_SECRET,
            keys: vec![("password", GENERATED)],
            basic_auth: false,
        });
    }
    if t.queue.is_some() {
        out.push(SecretSpec {
            name: names::NATS_SECRET,
            keys: vec![("password", GENERATED)],
            basic_auth: false,
        });
    }
    if is_s3(t) {
        out.push(SecretSpec {
            name: names::S3_SECRET,
            keys: vec![
                ("ACCESS_KEY_ID", "\"$S3_ACCESS_KEY_ID\""),
                ("ACCESS_SECRET_KEY", "\"$S3_SECRET_ACCESS_KEY\""),
            ],
            basic_auth: false,
        });
    }
    out
}

/// Whether uploads go to S3.
pub fn is_s3(t: &Topology) -> bool {
    t.blobs
        .as_ref()
        .is_some_and(|b| b.backend == BlobsBackend::S3)
}

/// The web nodes' settings.
pub fn web(t: &Topology) -> Settings {
    let mut s = Settings {
        data_dir: DATA_DIR.into(),
        ..Settings::default()
    };
    s.http.listen = ([0, 0, 0, 0], ports::HTTP).into();
    s.http.ops_listen = ([0, 0, 0, 0], ports::OPS).into();
    // fail /ready for a second after SIGTERM (the preStop pause has already let the
    // endpoints go), then close the listener and finish what is in flight
    s.http.drain_delay_ms = 1000;
    s.http.trusted_proxies = PRIVATE_NETS
        .iter()
        .map(|b| b.parse().expect("a valid address block"))
        .collect();
    // the Ingress serves HTTPS (a TLS Secret): cookies are Secure, answers carry HSTS
    s.web.secure_cookies = true;
    store(t, &mut s);
    if t.cache.is_some() {
        s.cache.backend = CacheBackend::Redis;
        s.cache.redis_urls = names::cache_hosts(t)
            .iter()
            .map(|h| format!("redis://crescendo:$(REDIS_PASSWORD)@{h}:{}", ports::REDIS))
            .collect();
    } else if t.web.count > 1 {
        // one node's in-process cache cannot see another node's writes
        s.cache.backend = CacheBackend::None;
    }
    if t.redis.is_some() {
        s.sessions.backend = SessionBackend::Redis;
        s.sessions.redis_url = format!(
            "redis://crescendo:$(REDIS_PASSWORD)@{}:{}",
            names::REDIS_HOST,
            ports::REDIS
        );
    }
    if t.queue.is_some() {
        s.queue.backend = QueueBackend::Nats;
        s.queue.nats_url = format!(
            "nats://crescendo:$(NATS_PASSWORD)@{}:{}",
            names::NATS_HOST,
            ports::NATS
        );
        s.queue.workers = 0;
    }
    if is_s3(t) {
        s.blobs.backend = BlobBackend::S3;
        s.blobs.s3_bucket = "crescendo-media".into();
    } else {
        s.blobs.dir = format!("{DATA_DIR}/blobs").into();
    }
    if let Some(e) = &t.edge {
        s.edge.purge_urls = (0..e.count)
            .map(|i| format!("http://{}:{}", names::edge_host(i), ports::PURGE))
            .collect();
    }
    s
}

/// The database settings: one CloudNativePG cluster (its `-rw` and `-ro` Services), or at
/// rung 10 a catalogue cluster and one cluster per shard cluster.
fn store(t: &Topology, s: &mut Settings) {
    let url = |cluster: &str, svc: &str| {
        format!(
            "postgres://crescendo:$(PG_PASSWORD)@{cluster}-{svc}:{}/crescendo",
            ports::PG
        )
    };
    s.store.backend = StoreBackend::Postgres;
    let clusters = names::pg_clusters(t);
    s.store.postgres_url = url(&clusters[0].0, "rw");
    if t.postgres.replicas > 0 {
        // at rung 10, the catalogue's
        s.store.postgres_replica_urls = vec![url(&clusters[0].0, "ro")];
    }
    for (i, (cluster, shard)) in clusters.iter().enumerate().skip(1) {
        s.store
            .postgres_shards
            .push(format!("{shard}={}", url(cluster, "rw")));
        if t.postgres.replicas > 0 {
            s.store
                .postgres_shard_replicas
                .push(format!("{shard}={}", url(cluster, "ro")));
        }
        if i > t.postgres.clusters - t.postgres.spare {
            s.store.postgres_spare_shards.push(shard.clone());
        }
    }
}

/// The workers' settings: the web nodes' with `concurrency` jobs at a time and one listener
/// (`/health`, `/ready`, `/metrics`) on the ops port.
pub fn worker(t: &Topology) -> Settings {
    let mut s = web(t);
    s.http.listen = ([0, 0, 0, 0], ports::OPS).into();
    if let Some(q) = &t.queue {
        s.queue.workers = q.concurrency;
    }
    s
}

/// `settings` as variables: those without a secret (for the ConfigMap), and the container's
/// own `env` list, which reads each password from its Secret before the variables that name
/// it as `$(VAR)`.
pub fn split(t: &Topology, settings: &Settings) -> (Vec<(String, String)>, Vec<Value>) {
    let (with, without): (Vec<_>, Vec<_>) = settings
        .to_env()
        .into_iter()
        .partition(|(_, v)| v.contains("$("));
    let mut env = vec![
        secret_env("PG_PASSWORD", names::DB_SECRET, "password"),
        secret_env(
            "CRESCENDO_AUTH__JWT_SECRET",
            names::APP_SECRET,
            "jwt-secret",
        ),
    ];
    if t.redis.is_some() || t.cache.is_some() {
        env.push(secret_env(
            "REDIS_PASSWORD",
            names::REDIS_SECRET,
            "password",
        ));
    }
    if t.queue.is_some() {
        env.push(secret_env("NATS_PASSWORD", names::NATS_SECRET, "password"));
    }
    if t.edge.is_some() {
        env.push(secret_env(
            "CRESCENDO_EDGE__PURGE_TOKEN",
            names::APP_SECRET,
            "purge-token",
        ));
    }
    if is_s3(t) {
        env.push(secret_env(
            "CRESCENDO_BLOBS__S3_ACCESS_KEY",
            names::S3_SECRET,
            "ACCESS_KEY_ID",
        ));
        env.push(secret_env(
            "CRESCENDO_BLOBS__S3_SECRET_KEY",
            names::S3_SECRET,
            "ACCESS_SECRET_KEY",
        ));
    }
    env.extend(
        with.into_iter()
            .map(|(k, v)| json!({"name": k, "value": v})),
    );
    (without, env)
}

/// An environment variable read from key `key` of Secret `secret`.
pub fn secret_env(name: &str, secret: &str, key: &str) -> Value {
    json!({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
}

/// The seconds a web pod has between the start of its termination and SIGKILL: the
/// `preStop` pause, the drain delay, the grace for in-flight requests, and 4 s to exit.
pub fn web_termination_grace(s: &Settings) -> u64 {
    PRE_STOP_PAUSE.as_secs() + s.http.drain_delay_ms.div_ceil(1000) + s.http.shutdown_grace_secs + 4
}

/// The variables that turn `base` (a ConfigMap's variables) into `mine` (another role's,
/// from [`split`]), whose settings are `settings`: those `mine` sets to another value, and
/// those `base` sets that `mine` leaves at their default (written out with the default).
pub fn overrides(
    base: &[(String, String)],
    mine: &[(String, String)],
    settings: &Settings,
) -> Vec<(String, String)> {
    let tree = serde_json::to_value(settings).expect("settings serialise");
    let mut out: Vec<(String, String)> = mine
        .iter()
        .filter(|kv| !base.contains(kv))
        .cloned()
        .collect();
    for (k, _) in base {
        if mine.iter().any(|(m, _)| m == k) {
            continue;
        }
        let path = k.trim_start_matches("CRESCENDO_").to_lowercase();
        let leaf = path.split("__").fold(&tree, |v, part| &v[part]);
        let text = match leaf {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push((k.clone(), text));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crescendo_config::{Overrides, Secret};

    /// What a container's environment becomes: the ConfigMap's variables, then its own
    /// `env` list in order, each `$(VAR)` filled from the variables before it as the kubelet
    /// does, with `secrets` standing for the Secrets' values.
    fn kubelet(
        config: &[(String, String)],
        env: &[Value],
        secrets: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = config.to_vec();
        for e in env {
            let name = e["name"].as_str().unwrap().to_string();
            let value = match e["value"].as_str() {
                Some(v) => out.iter().fold(v.to_string(), |v, (k, val)| {
                    v.replace(&format!("$({k})"), val)
                }),
                None => {
                    let key = e["valueFrom"]["secretKeyRef"]["key"].as_str().unwrap();
                    secrets
                        .iter()
                        .find(|(k, _)| *k == key)
                        .unwrap()
                        .1
                        .to_string()
                }
            };
            out.retain(|(k, _)| *k != name);
            out.push((name, value));
        }
        out
    }

    #[test]
    fn web_nodes_and_workers_load_the_settings_the_topology_gives_them() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../topologies/09-queue.toml"
        );
        let t = Topology::load(std::path::Path::new(path)).unwrap();
        let secrets = [
            ("password", "pw"),
            ("jwt-secret", "j0123456789012345678901234567890123"),
            ("ACCESS_KEY_ID", "AK"),
            ("ACCESS_SECRET_KEY", "SK"),
        ];
        let (config, web_env) = split(&t, &web(&t));
        let loaded = |env| Settings::load_with_env(None, &Overrides::default(), env).unwrap();
        let node = loaded(kubelet(&config, &web_env, &secrets));
        assert_eq!(
            node.store.postgres_url,
            "postgres://crescendo:pw@crescendo-pg-rw:5432/crescendo"
        );
        assert_eq!(
            node.queue.nats_url,
            "nats://crescendo:pw@crescendo-nats-0.crescendo-nats:4222"
        );
        assert_eq!(node.cache.redis_urls.len(), 3);
        assert_eq!(node.queue.workers, 0);
        assert_eq!(node.auth.jwt_secret, Some(Secret::new(secrets[1].1)));
        assert_eq!(node.blobs.s3_secret_key, Some(Secret::new("SK")));
        assert_eq!(node.http.ops_listen.port(), ports::OPS);

        let w = worker(&t);
        let (plain, mut env) = split(&t, &w);
        for (k, v) in overrides(&config, &plain, &w) {
            env.push(json!({"name": k, "value": v}));
        }
        let node = loaded(kubelet(&config, &env, &secrets));
        assert_eq!(node.queue.workers, t.queue.as_ref().unwrap().concurrency);
        assert_eq!(node.http.listen.port(), ports::OPS);
        assert_eq!(
            node.store.postgres_replica_urls,
            ["postgres://crescendo:pw@crescendo-pg-ro:5432/crescendo"]
        );
    }
}
