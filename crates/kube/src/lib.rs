//! `crescendo kube`: Kubernetes manifests rendered from a topology file, the same file
//! `crescendo up` starts on one machine. Each role becomes what a cluster runs it as: the
//! web nodes a Deployment behind a Service and an Ingress, the workers a Deployment scaled
//! by KEDA on the queue's depth, PostgreSQL CloudNativePG clusters, Redis and NATS
//! StatefulSets, the CDN edge Varnish pods with the topology's own VCL, Prometheus's scrape
//! targets ServiceMonitors, and NetworkPolicies around all of it.
//!
//! [`render`] is pure: the same topology and [`Options`] give the same bytes. The manifests
//! name Secrets (listed in `NOTES.txt` with the command that creates each one) and never
//! hold a secret value.
//!
//! Modules: [`yaml`] (the writer), [`names`] (names, ports, labels, security contexts),
//! [`settings`] (the nodes' `CRESCENDO_*` settings and the Secrets), one module per tier
//! ([`web`], [`workers`], [`postgres`], [`stores`], [`edge`], [`monitor`]) and [`policy`].

pub mod edge;
pub mod monitor;
pub mod names;
pub mod policy;
pub mod postgres;
pub mod settings;
pub mod stores;
pub mod web;
pub mod workers;
pub mod yaml;

use crescendo_topology::Topology;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// The user the Crescendo image runs as (`scripts/image.sh` makes it).
pub const APP_UID: u32 = 10001;

/// What the rendering is for, beside the topology.
#[derive(Clone, Debug)]
pub struct Options {
    /// The Crescendo image every web node and worker runs.
    pub image: String,
    /// The namespace every object goes to.
    pub namespace: String,
    /// The public host name the Ingress answers for (and its certificate names).
    pub host: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            image: format!("crescendo:{}", env!("CARGO_PKG_VERSION")),
            namespace: "crescendo".into(),
            host: "crescendo.example.com".into(),
        }
    }
}

/// A topology and the options it is rendered with.
pub struct Plan {
    /// The topology.
    pub t: Topology,
    /// The options.
    pub o: Options,
}

/// Rendered manifests: per file, its objects, and the notes for the operator.
pub struct Manifests {
    /// File name (`web.yaml`…) → its objects, in order.
    pub files: BTreeMap<String, Vec<Value>>,
    /// `NOTES.txt`: the Secrets to create, and how to apply the rest.
    pub notes: String,
}

impl Manifests {
    /// Every object, file by file.
    pub fn objects(&self) -> impl Iterator<Item = &Value> {
        self.files.values().flatten()
    }

    /// Every file's name and text: the manifests, `kustomization.yaml` and `NOTES.txt`.
    pub fn texts(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .files
            .iter()
            .map(|(name, objects)| {
                let docs: Vec<String> = objects.iter().map(yaml::document).collect();
                (name.clone(), format!("---\n{}", docs.join("---\n")))
            })
            .collect();
        let resources: Vec<&String> = self.files.keys().collect();
        out.push((
            "kustomization.yaml".into(),
            yaml::document(&json!({
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": resources,
            })),
        ));
        out.push(("NOTES.txt".into(), self.notes.clone()));
        out
    }

    /// Writes every file into `dir` (made if missing).
    ///
    /// # Errors
    /// The directory or a file cannot be written.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        use anyhow::Context;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, text) in self.texts() {
            let path = dir.join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }
}

/// Renders topology `t` with options `o`.
///
/// # Errors
/// A topology that has no meaning on one cluster: two regions (`[regions]`), which the error explains.
pub fn render(t: &Topology, o: &Options) -> anyhow::Result<Manifests> {
    if t.regions.is_some() {
        anyhow::bail!(
            "{}: [regions] runs two regions on one machine, in network namespaces; on \
             Kubernetes each region is a cluster of its own, which this rendering does not \
             join (no cross-cluster replica or geo DNS): render the file without [regions] \
             for a one-region cluster",
            t.name
        );
    }
    let p = Plan {
        t: t.clone(),
        o: o.clone(),
    };
    let mut files = BTreeMap::new();
    let mut add = |name: &str, objects: Vec<Value>| {
        if !objects.is_empty() {
            files.insert(format!("{name}.yaml"), objects);
        }
    };
    add("namespace", vec![namespace(&p), settings_map(&p)]);
    add("web", web::objects(&p));
    add("workers", workers::objects(&p));
    add("postgres", postgres::objects(&p));
    add("redis", stores::redis(&p));
    add("nats", stores::nats(&p));
    add("edge", edge::objects(&p));
    add("monitoring", monitor::objects(&p));
    add("network-policies", policy::objects(&p));
    Ok(Manifests {
        files,
        notes: notes(&p),
    })
}

fn namespace(p: &Plan) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": p.o.namespace, "labels": {
            // the restricted Pod Security Standard: every pod here meets it
            "pod-security.kubernetes.io/enforce": "restricted",
        }},
    })
}

/// The `crescendo-settings` ConfigMap: the web nodes' settings without a secret in them.
fn settings_map(p: &Plan) -> Value {
    let (plain, _) = settings::split(&p.t, &settings::web(&p.t));
    let data: serde_json::Map<String, Value> = plain
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": names::meta("crescendo-settings", "web", &p.o.namespace),
        "data": data,
    })
}

/// NOTES.txt: the commands that create the Secrets with generated values, then apply.
fn notes(p: &Plan) -> String {
    let ns = &p.o.namespace;
    let mut out = format!(
        "Crescendo on Kubernetes: \"{}\" (rung {}), rendered by `crescendo kube`.\n\n\
         1. Create the namespace:\n\n    kubectl apply -f namespace.yaml\n\n\
         2. Create the Secrets the manifests read (values are generated here, on your\n   \
         machine, and never written to these files):\n\n",
        p.t.name, p.t.rung
    );
    for s in settings::secrets(&p.t) {
        let kind = if s.basic_auth {
            " --type=kubernetes.io/basic-auth"
        } else {
            ""
        };
        let keys: Vec<String> = s
            .keys
            .iter()
            .map(|(k, v)| format!(" \\\n      --from-literal={k}={v}"))
            .collect();
        out.push_str(&format!(
            "    kubectl -n {ns} create secret generic {}{kind}{}\n",
            s.name,
            keys.concat()
        ));
    }
    if settings::is_s3(&p.t) {
        out.push_str(
            "\n   (crescendo-s3 holds the key your S3 provider gave: set S3_ACCESS_KEY_ID and\n   \
             S3_SECRET_ACCESS_KEY in your shell first.)\n",
        );
    }
    out.push_str(&format!(
        "\n   and the Ingress's certificate for {}:\n\n    \
         kubectl -n {ns} create secret tls {} --cert=tls.crt --key=tls.key\n\n\
         3. Apply everything (CloudNativePG, KEDA and prometheus-operator must be installed\n   \
         when the topology uses them):\n\n    kubectl apply -k .\n",
        p.o.host,
        names::TLS_SECRET
    ));
    out
}
