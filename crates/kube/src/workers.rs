//! The worker tier: a Deployment of `crescendo worker` pods, sized on the queue's depth by
//! a KEDA `ScaledObject` with its `nats-jetstream` trigger when the topology lets the tier
//! grow (`[queue] max_workers`). KEDA reads the consumer's pending count from the NATS
//! monitoring endpoint itself; an HPA on an external metric would need a metrics adapter
//! (and Prometheus rules) in between to say the same number.

use crate::Plan;
use crate::names::{self, meta, ports, selector};
use crate::settings;
use crescendo_topology::model::QueueTier;
use serde_json::{Value, json};

/// The JetStream stream and the durable consumer the workers pull image jobs from
/// (`crescendo-queue-nats` names them: the stream `CRESCENDO_JOBS`, and
/// `workers-images-variants` for the queue `images.variants`).
const STREAM: &str = "CRESCENDO_JOBS";
const CONSUMER: &str = "workers-images-variants";

/// How long a worker may finish the jobs in hand after SIGTERM (as `crescendo up` allows).
const DRAIN_SECS: u64 = 70;

/// The worker tier's objects; none without a queue.
pub fn objects(p: &Plan) -> Vec<Value> {
    let Some(q) = &p.t.queue else {
        return Vec::new();
    };
    let mut out = vec![deployment(p, q)];
    out.push(json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta("crescendo-worker", "worker", &p.o.namespace),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector("worker")}},
    }));
    out.push(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta("crescendo-worker", "worker", &p.o.namespace),
        "spec": {
            "selector": selector("worker"),
            "ports": [{"name": "ops", "port": ports::OPS, "targetPort": "ops"}],
        }
    }));
    if let Some(max) = q.max_workers.filter(|m| *m > q.workers) {
        out.push(scaled_object(p, q, max));
    }
    out
}

fn deployment(p: &Plan, q: &QueueTier) -> Value {
    let web = settings::web(&p.t);
    let worker = settings::worker(&p.t);
    // the worker reads the web nodes' ConfigMap; its own differences go in its env
    let (web_plain, _) = settings::split(&p.t, &web);
    let (plain, mut env) = settings::split(&p.t, &worker);
    for (k, v) in settings::overrides(&web_plain, &plain, &worker) {
        env.push(json!({"name": k, "value": v}));
    }
    let probe = |path: &str, period: u32| json!({"httpGet": {"path": path, "port": "ops"}, "periodSeconds": period, "failureThreshold": 3});
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta("crescendo-worker", "worker", &p.o.namespace),
        "spec": {
            "replicas": q.workers,
            "selector": {"matchLabels": selector("worker")},
            "template": {
                "metadata": {"labels": names::labels("worker")},
                "spec": {
                    "terminationGracePeriodSeconds": DRAIN_SECS,
                    "securityContext": names::pod_security(crate::APP_UID),
                    "automountServiceAccountToken": false,
                    "containers": [{
                        "name": "worker",
                        "image": p.o.image,
                        "command": ["crescendo", "worker"],
                        "ports": [{"name": "ops", "containerPort": ports::OPS}],
                        "envFrom": [{"configMapRef": {"name": "crescendo-settings"}}],
                        "env": env,
                        "readinessProbe": probe("/ready", 5),
                        "livenessProbe": probe("/health", 10),
                        "resources": {
                            "requests": {"cpu": "250m", "memory": "256Mi"},
                            "limits": {"cpu": "2", "memory": "1Gi"},
                        },
                        "securityContext": names::container_security(),
                        "volumeMounts": [
                            {"name": "tmp", "mountPath": "/tmp"},
                            {"name": "data", "mountPath": settings::DATA_DIR},
                        ],
                    }],
                    "volumes": [names::scratch("tmp"), worker_data(p)],
                }
            }
        }
    })
}

/// The workers write variants where the web nodes read them: S3, or the shared volume.
fn worker_data(p: &Plan) -> Value {
    if settings::is_s3(&p.t) {
        json!({"name": "data", "emptyDir": {"sizeLimit": "1Gi"}})
    } else {
        json!({"name": "data", "persistentVolumeClaim": {"claimName": "crescendo-blobs"}})
    }
}

fn scaled_object(p: &Plan, q: &QueueTier, max: usize) -> Value {
    json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": meta("crescendo-worker", "worker", &p.o.namespace),
        "spec": {
            "scaleTargetRef": {"name": "crescendo-worker"},
            "minReplicaCount": q.workers,
            "maxReplicaCount": max,
            "pollingInterval": 5,
            "cooldownPeriod": q.scale_down_after_secs,
            "triggers": [{
                "type": "nats-jetstream",
                "metadata": {
                    "natsServerMonitoringEndpoint": format!(
                        "crescendo-nats.{}.svc:{}", p.o.namespace, ports::NATS_MONITOR
                    ),
                    "account": "$G",
                    "stream": STREAM,
                    "consumer": CONSUMER,
                    "lagThreshold": q.jobs_per_worker.to_string(),
                },
            }],
        }
    })
}
