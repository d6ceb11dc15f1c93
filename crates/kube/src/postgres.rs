//! The database tier as CloudNativePG `Cluster`s: one, with a primary and the topology's
//! streaming replicas (a synchronous standby when it says so), or at rung 10 a catalogue
//! cluster and one cluster per shard cluster, each with those replicas, as `crescendo up`
//! starts them. With uploads on
//! S3, each cluster archives its WAL to the object store and takes a nightly base backup.
//! A metrics Service per cluster lets Prometheus scrape CloudNativePG's exporter.

use crate::Plan;
use crate::names::{self, meta, ports};
use crate::settings;
use serde_json::{Value, json};

/// The PostgreSQL image: the major version the rest of Crescendo runs on (Debian's 15).
const PG_IMAGE: &str = "ghcr.io/cloudnative-pg/postgresql:15";

/// The bucket the clusters' WAL and base backups go to.
const BACKUP_BUCKET: &str = "crescendo-backups";

/// The database tier's objects.
pub fn objects(p: &Plan) -> Vec<Value> {
    let mut out = Vec::new();
    for (name, _) in names::pg_clusters(&p.t) {
        out.push(cluster(p, &name, p.t.postgres.replicas));
        if settings::is_s3(&p.t) {
            out.push(json!({
                "apiVersion": "postgresql.cnpg.io/v1",
                "kind": "ScheduledBackup",
                "metadata": meta(&name, "postgres", &p.o.namespace),
                "spec": {
                    // seconds first: every night at 03:00
                    "schedule": "0 0 3 * * *",
                    "cluster": {"name": name},
                    "method": "barmanObjectStore",
                    "backupOwnerReference": "self",
                }
            }));
        }
        out.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(&format!("{name}-metrics"), "postgres", &p.o.namespace),
            "spec": {
                "selector": {"cnpg.io/cluster": name},
                "ports": [{"name": "metrics", "port": ports::PG_METRICS, "targetPort": ports::PG_METRICS}],
            }
        }));
    }
    out
}

/// Cluster `name`, with a primary and `replicas` streaming replicas.
fn cluster(p: &Plan, name: &str, replicas: usize) -> Value {
    let pg = &p.t.postgres;
    let mut postgresql = json!({
        "parameters": {"max_connections": "200", "shared_buffers": "256MB"},
    });
    if pg.synchronous && replicas > 0 {
        // a commit waits for any one standby, as `ANY 1 (r1, r2)` does under `crescendo up`
        postgresql["synchronous"] =
            json!({"method": "any", "number": 1, "dataDurability": "required"});
    }
    let mut spec = json!({
        "instances": 1 + replicas,
        "imageName": PG_IMAGE,
        "postgresql": postgresql,
        "bootstrap": {"initdb": {
            "database": "crescendo",
            "owner": "crescendo",
            "secret": {"name": names::DB_SECRET},
        }},
        "enableSuperuserAccess": false,
        "storage": {"size": "10Gi"},
        "resources": {
            "requests": {"cpu": "500m", "memory": "512Mi"},
            "limits": {"memory": "1Gi"},
        },
        "inheritedMetadata": {"labels": names::labels("postgres")},
    });
    if settings::is_s3(&p.t) {
        spec["backup"] = json!({
            "retentionPolicy": "30d",
            "barmanObjectStore": {
                "destinationPath": format!("s3://{BACKUP_BUCKET}/"),
                "serverName": name,
                "s3Credentials": {
                    "accessKeyId": {"name": names::S3_SECRET, "key": "ACCESS_KEY_ID"},
                    "secretAccessKey": {"name": names::S3_SECRET, "key": "ACCESS_SECRET_KEY"},
                },
                "wal": {"compression": "gzip"},
            },
        });
    }
    json!({
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": meta(name, "postgres", &p.o.namespace),
        "spec": spec,
    })
}
