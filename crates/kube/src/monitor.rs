//! Prometheus's view: prometheus-operator `ServiceMonitor`s (not scrape annotations, which
//! only some Prometheus set-ups read and which cannot say how often), one per role with a
//! `/metrics`: the web nodes' and workers' ops port, and CloudNativePG's exporter in every
//! database instance. Rendered when the topology's monitoring is on.

use crate::Plan;
use crate::names::{self, meta};
use serde_json::{Value, json};

/// The ServiceMonitors; none when monitoring is off.
pub fn objects(p: &Plan) -> Vec<Value> {
    let Some(m) = p.t.monitoring() else {
        return Vec::new();
    };
    // CloudNativePG gives its own Services the cluster's labels too; only the metrics
    // Services have a port named `metrics`
    let mut targets = vec![
        ("crescendo-web", "web", "ops"),
        ("crescendo-postgres", "postgres", "metrics"),
    ];
    if p.t.queue.is_some() {
        targets.push(("crescendo-worker", "worker", "ops"));
    }
    targets
        .into_iter()
        .map(|(name, component, port)| {
            service_monitor(p, name, component, port, &m.scrape_interval)
        })
        .collect()
}

fn service_monitor(p: &Plan, name: &str, component: &str, port: &str, interval: &str) -> Value {
    json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": meta(name, component, &p.o.namespace),
        "spec": {
            "selector": {"matchLabels": names::selector(component)},
            "endpoints": [{"port": port, "path": "/metrics", "interval": interval}],
        }
    })
}
