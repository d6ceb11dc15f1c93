//! `crescendo kube`'s renderings of every topology in `topologies/`: stable to the byte, free
//! of secret values, and valid: built-in objects by `kubernetes-validate --strict` (the
//! Kubernetes API's own schemas), custom resources by `check-jsonschema` against the CRD
//! schemas stored in `deploy/schemas/`. Both are PyPI packages; `scripts/test.sh` installs
//! them into a virtual environment under the target directory, which these tests also look in.

use crescendo_kube::{Manifests, Options, render};
use crescendo_topology::Topology;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every topology file, and rung 9 with a worker tier that may grow (so KEDA's
/// ScaledObject is rendered and checked too).
fn topologies() -> Vec<(String, Topology)> {
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join("topologies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    for path in paths {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let t = Topology::load(&path).unwrap();
        if t.regions.is_some() {
            // two regions are two clusters, which the rendering says it does not join
            let Err(err) = render(&t, &Options::default()) else {
                panic!("{name}: two regions rendered as one cluster");
            };
            assert!(format!("{err:#}").contains("region"), "{name}: {err:#}");
            continue;
        }
        out.push((name, t));
    }
    let text = std::fs::read_to_string(root().join("topologies/09-queue.toml")).unwrap();
    let scaling = text.replace("workers = 2\n", "workers = 2\nmax_workers = 8\n");
    assert_ne!(text, scaling);
    out.push((
        "09-queue.toml with max_workers".into(),
        Topology::parse(&scaling, "scaling").unwrap(),
    ));
    assert!(out.len() >= 8, "{} topologies", out.len());
    out
}

fn rendered() -> Vec<(String, Manifests)> {
    topologies()
        .into_iter()
        .map(|(name, t)| {
            let m = render(&t, &Options::default()).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            (name, m)
        })
        .collect()
}

#[test]
fn every_topology_renders_to_the_same_bytes_twice() {
    for (name, t) in topologies() {
        let a = render(&t, &Options::default()).unwrap().texts();
        let b = render(&t, &Options::default()).unwrap().texts();
        assert_eq!(a, b, "{name}");
        assert!(a.iter().any(|(f, _)| f == "kustomization.yaml"), "{name}");
        let kustomization = &a.iter().find(|(f, _)| f == "kustomization.yaml").unwrap().1;
        for (file, _) in a.iter().filter(|(f, _)| f.ends_with(".yaml")) {
            if file != "kustomization.yaml" {
                assert!(
                    kustomization.contains(&format!("- {file}\n")),
                    "{name}: {file}"
                );
            }
        }
    }
}

/// Runs of letters and digits (what `openssl rand -hex` and Crescendo's own generated
/// secrets are made of) long enough to be a secret: 16 or more hex digits, or 24 or more
/// letters and digits with both in them.
fn secret_like(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| {
            let hex = w.len() >= 16 && w.chars().all(|c| c.is_ascii_hexdigit());
            let mixed = w.len() >= 24
                && w.chars().any(|c| c.is_ascii_digit())
                && w.chars().any(|c| c.is_ascii_alphabetic());
            hex || mixed
        })
        .map(str::to_string)
        .collect()
}

/// Every (Secret, key) an object reads, found wherever a Secret is named.
fn secret_refs(v: &Value, out: &mut Vec<(String, Option<String>)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("secretKeyRef" | "accessKeyId" | "secretAccessKey", Value::Object(r)) => out
                        .push((
                            r["name"].as_str().unwrap().into(),
                            Some(r["key"].as_str().unwrap().into()),
                        )),
                    ("secretName", Value::String(s)) => out.push((s.clone(), None)),
                    ("secret", Value::Object(r)) if r.contains_key("name") => {
                        out.push((r["name"].as_str().unwrap().into(), None))
                    }
                    _ => secret_refs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| secret_refs(v, out)),
        _ => {}
    }
}

#[test]
fn no_secret_value_is_rendered_and_the_notes_create_every_secret_read() {
    assert_eq!(
        secret_like("jwt=0123456789abcdef0123 x=Ab3dEfGhIjKlMnOpQrStUvWx1 crescendo-settings"),
        ["0123456789abcdef0123", "Ab3dEfGhIjKlMnOpQrStUvWx1"]
    );
    for (name, m) in rendered() {
        for (file, text) in m.texts() {
            assert_eq!(secret_like(&text), Vec::<String>::new(), "{name}: {file}");
        }
        let mut refs = Vec::new();
        for o in m.objects() {
            assert_ne!(o["kind"], "Secret", "{name}: a Secret is rendered");
            secret_refs(o, &mut refs);
        }
        assert!(refs.len() >= 3, "{name}: {refs:?}");
        for (secret, key) in refs {
            let create = m
                .notes
                .split("kubectl")
                .find(|c| {
                    c.contains(&format!(" secret generic {secret} "))
                        || c.contains(&format!(" secret tls {secret} "))
                })
                .unwrap_or_else(|| panic!("{name}: NOTES.txt does not create {secret}"));
            if let Some(key) = key {
                assert!(
                    create.contains(&format!("--from-literal={key}=")),
                    "{name}: NOTES.txt creates {secret} without {key}"
                );
            }
        }
    }
}

#[test]
fn web_pods_are_probed_on_the_ops_port_and_drain_within_their_grace_period() {
    let t = Topology::load(&root().join("topologies/07-stateless.toml")).unwrap();
    let m = render(&t, &Options::default()).unwrap();
    let web = m.files["web.yaml"]
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .unwrap();
    let pod = &web["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let settings = crescendo_kube::settings::web(&t);
    let ops = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "ops")
        .unwrap();
    assert_eq!(ops["containerPort"], settings.http.ops_listen.port());
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "ops");
    let pause: u64 = c["lifecycle"]["preStop"]["exec"]["command"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let drain = pause + settings.http.drain_delay_ms / 1000 + settings.http.shutdown_grace_secs;
    assert!(grace > drain, "grace {grace} s, drain {drain} s");
}

/// Where the validators are: on PATH, or in the environment `scripts/test.sh` makes.
fn tool(name: &str) -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("../py-kube/bin")
        .join(name);
    if venv.is_file() {
        return venv;
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "{name} is missing: install the PyPI packages kubernetes-validate and \
             check-jsonschema (scripts/test.sh puts them in TARGET_DIR/py-kube)"
        )
    })
}

/// The stored schema for a custom resource's apiVersion and kind.
fn schema(api: &str, kind: &str) -> Option<&'static str> {
    Some(match (api, kind) {
        ("postgresql.cnpg.io/v1", "Cluster") => "cnpg-cluster-v1.json",
        ("postgresql.cnpg.io/v1", "ScheduledBackup") => "cnpg-scheduledbackup-v1.json",
        ("keda.sh/v1alpha1", "ScaledObject") => "keda-scaledobject-v1alpha1.json",
        ("monitoring.coreos.com/v1", "ServiceMonitor") => "servicemonitor-v1.json",
        _ => return None,
    })
}

fn builtin(api: &str) -> bool {
    !api.contains('/') || !api.split('/').next().unwrap().contains('.') || api.contains(".k8s.io/")
}

/// Checks `objects` with both validators; returns their complaints, empty when all pass.
fn validate(objects: &[(String, Value)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut core = Vec::new();
    let mut custom: std::collections::BTreeMap<&str, Vec<PathBuf>> = Default::default();
    for (i, (label, o)) in objects.iter().enumerate() {
        let api = o["apiVersion"].as_str().unwrap();
        let kind = o["kind"].as_str().unwrap();
        let safe: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let path = dir.path().join(format!("{i:04}-{safe}-{kind}.yaml"));
        std::fs::write(&path, crescendo_kube::yaml::document(o)).unwrap();
        if builtin(api) {
            core.push(path);
        } else {
            let s = schema(api, kind).unwrap_or_else(|| panic!("no schema for {api} {kind}"));
            custom.entry(s).or_default().push(path);
        }
    }
    let mut complaints = String::new();
    let mut run = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        if !out.status.success() {
            complaints.push_str(&String::from_utf8_lossy(&out.stdout));
            complaints.push_str(&String::from_utf8_lossy(&out.stderr));
        }
    };
    if !core.is_empty() {
        run(Command::new(tool("kubernetes-validate"))
            .args(["--strict", "--quiet"])
            .args(&core));
    }
    for (s, files) in custom {
        let schema = root().join("deploy/schemas").join(s);
        run(Command::new(tool("check-jsonschema"))
            .arg("--schemafile")
            .arg(schema)
            .args(&files));
    }
    complaints
}

#[test]
fn every_rendered_object_passes_the_kubernetes_and_crd_schemas() {
    let mut objects = Vec::new();
    let mut kinds = std::collections::BTreeSet::new();
    for (name, m) in rendered() {
        for o in m.objects() {
            kinds.insert(o["kind"].as_str().unwrap().to_string());
            objects.push((name.clone(), o.clone()));
        }
    }
    for kind in [
        "Cluster",
        "ScheduledBackup",
        "ScaledObject",
        "ServiceMonitor",
        "Deployment",
        "StatefulSet",
        "Ingress",
        "NetworkPolicy",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ] {
        assert!(kinds.contains(kind), "no {kind} rendered: {kinds:?}");
    }
    let complaints = validate(&objects);
    assert!(complaints.is_empty(), "{complaints}");
}

#[test]
fn the_validators_reject_a_misspelt_field_in_both_kinds_of_object() {
    let t = Topology::load(&root().join("topologies/04-replication.toml")).unwrap();
    let m = render(&t, &Options::default()).unwrap();
    let find = |kind: &str| m.objects().find(|o| o["kind"] == kind).unwrap().clone();
    let mut deployment = find("Deployment");
    deployment["spec"]["replica"] = deployment["spec"]["replicas"].take();
    let complaints = validate(&[("broken".into(), deployment)]);
    assert!(complaints.contains("replica"), "{complaints}");
    let mut cluster = find("Cluster");
    cluster["spec"]["instance"] = cluster["spec"]["instances"].take();
    let complaints = validate(&[("broken".into(), cluster)]);
    assert!(complaints.contains("instance"), "{complaints}");
}
