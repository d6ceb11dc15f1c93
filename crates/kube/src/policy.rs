//! NetworkPolicies: everything in the namespace is denied, then each role is let reach only
//! what it needs. Web nodes take traffic from the Ingress controller (or the edges) and
//! reach PostgreSQL, Redis, NATS, the edges' purge port and S3; workers reach the same
//! minus the public side; each data server takes only its clients; Prometheus reaches each
//! metrics port; KEDA reaches NATS's monitoring port; CloudNativePG's operator reaches its
//! instances. Every pod may ask the cluster's DNS.

use crate::Plan;
use crate::names::{meta, peers, ports, selector};
use crate::settings;
use serde_json::{Value, json};

/// The NetworkPolicies.
pub fn objects(p: &Plan) -> Vec<Value> {
    let t = &p.t;
    let mut out = vec![
        policy(p, "crescendo-default-deny", json!({}), vec![], vec![]),
        policy(
            p,
            "crescendo-dns",
            json!({}),
            vec![],
            vec![json!({
                "to": [{
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
            })],
        ),
    ];
    let clients = app_roles(p);
    let public = match t.edge {
        Some(_) => pods("edge"),
        None => namespace(peers::INGRESS),
    };
    let web_in = vec![
        rule(vec![public], ports::HTTP),
        rule(vec![namespace(peers::MONITORING)], ports::OPS),
    ];
    out.push(role(p, "web", web_in, backends(p)));
    if t.queue.is_some() {
        let worker_in = vec![rule(vec![namespace(peers::MONITORING)], ports::OPS)];
        out.push(role(p, "worker", worker_in, backends(p)));
        let nats_in = vec![
            rule(clients.clone(), ports::NATS),
            rule(vec![namespace(peers::KEDA)], ports::NATS_MONITOR),
        ];
        out.push(role(p, "nats", nats_in, vec![]));
    }
    let pg_in = vec![
        rule(
            [clients.clone(), vec![pods("postgres")]].concat(),
            ports::PG,
        ),
        rule(vec![namespace(peers::CNPG)], ports::PG_STATUS),
        rule(vec![namespace(peers::CNPG)], ports::PG),
        rule(vec![namespace(peers::MONITORING)], ports::PG_METRICS),
    ];
    // instances stream from each other, and their instance manager talks to the API server
    // (and archives WAL to S3): both are outside any pod selector
    let pg_out = vec![
        rule(vec![pods("postgres")], ports::PG),
        json!({"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]}),
    ];
    out.push(role(p, "postgres", pg_in, pg_out));
    if t.redis.is_some() {
        out.push(role(
            p,
            "redis",
            vec![rule(clients.clone(), ports::REDIS)],
            vec![],
        ));
    }
    if t.cache.is_some() {
        out.push(role(
            p,
            "cache",
            vec![rule(clients.clone(), ports::REDIS)],
            vec![],
        ));
    }
    if t.edge.is_some() {
        let edge_in = vec![
            rule(vec![namespace(peers::INGRESS)], ports::EDGE),
            rule(clients, ports::PURGE),
        ];
        out.push(role(
            p,
            "edge",
            edge_in,
            vec![rule(vec![pods("web")], ports::HTTP)],
        ));
    }
    out
}

/// The pods that run Crescendo: web nodes, and workers when there is a queue.
fn app_roles(p: &Plan) -> Vec<Value> {
    let mut v = vec![pods("web")];
    if p.t.queue.is_some() {
        v.push(pods("worker"));
    }
    v
}

/// What web nodes and workers reach.
fn backends(p: &Plan) -> Vec<Value> {
    let t = &p.t;
    let mut out = vec![rule(vec![pods("postgres")], ports::PG)];
    if t.redis.is_some() {
        out.push(rule(vec![pods("redis")], ports::REDIS));
    }
    if t.cache.is_some() {
        out.push(rule(vec![pods("cache")], ports::REDIS));
    }
    if t.queue.is_some() {
        out.push(rule(vec![pods("nats")], ports::NATS));
    }
    if t.edge.is_some() {
        out.push(rule(vec![pods("edge")], ports::PURGE));
    }
    if settings::is_s3(t) {
        // S3 is outside the cluster: HTTPS anywhere
        out.push(json!({"ports": [{"protocol": "TCP", "port": 443}]}));
    }
    out
}

fn pods(component: &str) -> Value {
    json!({"podSelector": {"matchLabels": selector(component)}})
}

fn namespace(name: &str) -> Value {
    json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}})
}

/// A rule for peers `peers` on TCP port `port` (`from` or `to` is filled in by [`policy`]).
fn rule(peers: Vec<Value>, port: u16) -> Value {
    json!({"peers": peers, "ports": [{"protocol": "TCP", "port": port}]})
}

/// The policy of `component`'s pods.
fn role(p: &Plan, component: &str, ingress: Vec<Value>, egress: Vec<Value>) -> Value {
    let name = format!("crescendo-{component}");
    policy(
        p,
        &name,
        json!({"matchLabels": selector(component)}),
        ingress,
        egress,
    )
}

/// A policy for the pods `pods` selects, allowing `ingress` and `egress`, denying the rest.
fn policy(p: &Plan, name: &str, pods: Value, ingress: Vec<Value>, egress: Vec<Value>) -> Value {
    let side = |rules: Vec<Value>, key: &str| -> Vec<Value> {
        rules
            .into_iter()
            .map(|mut r| {
                if let Some(peers) = r.as_object_mut().and_then(|o| o.remove("peers")) {
                    r[key] = peers;
                }
                r
            })
            .collect()
    };
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(name, "network", &p.o.namespace),
        "spec": {
            "podSelector": pods,
            "policyTypes": ["Ingress", "Egress"],
            "ingress": side(ingress, "from"),
            "egress": side(egress, "to"),
        }
    })
}
