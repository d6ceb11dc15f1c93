//! The web Deployment `crescendo kube` renders, run for real by `podman play kube` with its
//! ConfigMap and Secrets, next to a PostgreSQL pod made for the test; the RealWorld
//! collection must pass against it. Everything the test makes (images, secrets, a network,
//! pods, volumes) is removed at the end, also when it fails.
//!
//! The images are built by `scripts/image.sh` from the local Debian base (built when absent,
//! then kept: nothing is pulled from a registry): the Crescendo image from this test build's
//! own binary, and the PostgreSQL image with `apt-get` inside the build. Needs root and podman
//! configured as `scripts/podman-setup.sh` does (`scripts/test.sh` installs both).
//!
//! What podman 4.3 cannot do, the test does in its place, and nothing else is changed:
//! - Services are ignored, so the PostgreSQL Service's name (`crescendo-pg-rw`) is given to
//!   the PostgreSQL pod's address by the Deployment's `hostAliases`;
//! - `$(VAR)` in an `env` value is not expanded, so the test expands it as the kubelet would;
//! - a `containerPort` without `hostPort` is published on every interface at its own number,
//!   so each port gets a `hostPort` on 127.0.0.1;
//! - a `secretKeyRef` reads a podman secret holding the Secret's `data` as JSON (the Secret
//!   objects `play kube` itself stores are YAML, which 4.3's `secretKeyRef` cannot read), so
//!   the test makes each Secret that way, with values generated as `NOTES.txt` does.

use base64::Engine;
use crescendo_kube::{Options, names, settings};
use crescendo_topology::Topology;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `podman ARGS`; returns stdout, or panics with stderr.
fn podman(args: &[&str]) -> String {
    let out = Command::new("podman")
        .args(args)
        .output()
        .expect("podman is installed (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "podman {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `podman KIND exists NAME` (kind: pod, volume, image, network, container).
fn exists(kind: &str, name: &str) -> bool {
    if kind == "secret" {
        return Command::new("podman")
            .args(["secret", "inspect", name])
            .output()
            .is_ok_and(|o| o.status.success());
    }
    Command::new("podman")
        .args([kind, "exists", name])
        .status()
        .is_ok_and(|s| s.success())
}

/// What the test made, removed in reverse order when it is dropped.
#[derive(Default)]
struct Made(Vec<(&'static str, String)>);

impl Made {
    /// Records `name` of `kind` (pod, volume, secret, network, image, or `play` for a
    /// `podman play kube` file) before it is made, so a half-made one is removed too.
    fn add(&mut self, kind: &'static str, name: impl Into<String>) -> String {
        let name = name.into();
        self.0.push((kind, name.clone()));
        name
    }

    /// Removes everything recorded; returns what is still there afterwards.
    fn remove_all(&mut self) -> Vec<String> {
        for (kind, name) in self.0.iter().rev() {
            let args: Vec<&str> = match *kind {
                "play" => vec!["play", "kube", "--down", name],
                "pod" => vec!["pod", "rm", "-f", "-t", "0", name],
                "image" => vec!["rmi", "-f", name],
                other => vec![other, "rm", name],
            };
            let _ = Command::new("podman").args(&args).output();
        }
        let left = self
            .0
            .iter()
            .filter(|(kind, name)| *kind != "play" && exists(kind, name))
            .map(|(kind, name)| format!("{kind} {name}"))
            .collect();
        self.0.clear();
        left
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        self.remove_all();
    }
}

/// A generated secret value: 24 random bytes as 48 hex digits, as `openssl rand -hex 24`.
fn generated() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("/dev/urandom readable");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Secrets topology `t` reads, with values as `NOTES.txt`'s commands give them:
/// secret name → key → value.
fn secret_values(t: &Topology) -> BTreeMap<String, BTreeMap<String, String>> {
    settings::secrets(t)
        .into_iter()
        .map(|s| {
            let keys = s
                .keys
                .iter()
                .map(|(k, v)| {
                    let value = if v.contains("openssl rand") {
                        generated()
                    } else {
                        assert!(
                            !v.contains('$'),
                            "{}: {k} needs a value from outside",
                            s.name
                        );
                        (*v).to_string()
                    };
                    ((*k).to_string(), value)
                })
                .collect();
            (s.name.to_string(), keys)
        })
        .collect()
}

/// Makes each Secret as a podman secret: the Secret's `data` (base64 values) as JSON.
fn create_secrets(made: &mut Made, values: &BTreeMap<String, BTreeMap<String, String>>) {
    let b64 = base64::engine::general_purpose::STANDARD;
    for (name, keys) in values {
        let data: serde_json::Map<String, Value> = keys
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(b64.encode(v))))
            .collect();
        let mut child = Command::new("podman")
            .args(["secret", "create", &made.add("secret", name.clone()), "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("podman runs");
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(Value::Object(data).to_string().as_bytes())
            .unwrap();
        drop(stdin);
        assert!(
            child.wait().unwrap().success(),
            "podman secret create {name}"
        );
    }
}

/// Builds image `tag` with `scripts/image.sh ARGS --tag TAG` (the base first, when absent).
fn build_image(made: &mut Made, args: &[&str], tag: &str) {
    let tag = made.add("image", tag);
    let started = Instant::now();
    let out = Command::new(root().join("scripts/image.sh"))
        .args(args)
        .args(["--tag", &tag])
        .output()
        .expect("scripts/image.sh runs");
    assert!(
        out.status.success(),
        "scripts/image.sh {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "{}built {tag} in {:.1} s",
        String::from_utf8_lossy(&out.stdout),
        started.elapsed().as_secs_f64()
    );
}

/// A free TCP port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes `objects` as one YAML stream (each a JSON document) to `path`, readable only by
/// its owner: the Deployment's `env` holds a password once `$(VAR)` is expanded.
fn write_stream(path: &Path, objects: &[Value]) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let docs: Vec<String> = objects.iter().map(Value::to_string).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(format!("---\n{}\n", docs.join("\n---\n")).as_bytes())
        .unwrap();
}

/// Does in web Deployment `d` what podman cannot (see the crate doc): `hostAliases` from
/// `aliases`, `$(VAR)` expanded with the ConfigMap's `config` and the Secrets' `secrets`,
/// and each container port published on 127.0.0.1 only. Returns port name → host port.
fn adjust_for_podman(
    d: &mut Value,
    aliases: Value,
    config: &Value,
    secrets: &BTreeMap<String, BTreeMap<String, String>>,
) -> BTreeMap<String, u16> {
    let spec = &mut d["spec"]["template"]["spec"];
    spec["hostAliases"] = aliases;
    let container = &mut spec["containers"][0];
    let mut vars: BTreeMap<String, String> = config
        .as_object()
        .expect("ConfigMap data")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string values").to_string()))
        .collect();
    for e in container["env"].as_array_mut().expect("env") {
        let name = e["name"].as_str().expect("env name").to_string();
        let value = if let Some(v) = e["value"].as_str() {
            let expanded = vars
                .iter()
                .fold(v.to_string(), |v, (k, x)| v.replace(&format!("$({k})"), x));
            e["value"] = Value::String(expanded.clone());
            expanded
        } else {
            let r = &e["valueFrom"]["secretKeyRef"];
            let (secret, key) = (r["name"].as_str().unwrap(), r["key"].as_str().unwrap());
            secrets[secret][key].clone()
        };
        vars.insert(name, value);
    }
    let mut published = BTreeMap::new();
    for p in container["ports"].as_array_mut().expect("ports") {
        let port = free_port();
        p["hostIP"] = json!("127.0.0.1");
        p["hostPort"] = json!(port);
        published.insert(p["name"].as_str().expect("named port").to_string(), port);
    }
    published
}

/// The status code of a GET of `path` on 127.0.0.1:`port`, if it answers.
fn status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split(' ').nth(1)?.parse().ok()
}

/// Polls `check` every 200 ms for up to `limit`; false if it never held.
fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// The PostgreSQL pod made for the test: the local PostgreSQL image, its superuser and
/// password from the same `crescendo-db` Secret the web nodes read.
fn postgres_pod(name: &str, image: &str) -> Value {
    let from_db = |key: &str| json!({"secretKeyRef": {"name": names::DB_SECRET, "key": key}});
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{
            "name": "postgres",
            "image": image,
            "imagePullPolicy": "Never",
            "env": [
                {"name": "POSTGRES_USER", "valueFrom": from_db("username")},
                {"name": "POSTGRES_PASSWORD", "valueFrom": from_db("password")},
                {"name": "POSTGRES_DB", "value": "crescendo"},
            ],
        }]}
    })
}

/// Renders `topology` with `crescendo kube --image IMAGE` into `dir`, as users do, and checks
/// that every file is what [`crescendo_kube::render`] gives; returns the rendering.
fn render_as_users_do(topology: &Path, image: &str, dir: &Path) -> crescendo_kube::Manifests {
    let out = Command::new(env!("CARGO_BIN_EXE_crescendo"))
        .arg("kube")
        .arg(topology)
        .arg("--out")
        .arg(dir)
        .args(["--image", image])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o = Options {
        image: image.into(),
        ..Options::default()
    };
    let m = crescendo_kube::render(&Topology::load(topology).unwrap(), &o).unwrap();
    for (file, text) in m.texts() {
        assert_eq!(
            std::fs::read_to_string(dir.join(&file)).unwrap(),
            text,
            "{file}"
        );
    }
    m
}

/// Plays the PostgreSQL pod `name` on `network`; returns its address once it takes
/// connections.
fn start_postgres(made: &mut Made, dir: &Path, name: &str, image: &str, network: &str) -> String {
    let file = dir.join("postgres.json");
    write_stream(&file, &[postgres_pod(name, image)]);
    made.add("pod", name);
    podman(&["play", "kube", "--network", network, file.to_str().unwrap()]);
    let container = format!("{name}-postgres");
    let ready = wait_for(Duration::from_secs(90), || {
        Command::new("podman")
            .args(["exec", &container, "pg_isready", "-q", "-h", "127.0.0.1"])
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(
        ready,
        "PostgreSQL pod not ready within 90 s:\n{}",
        logs(&container)
    );
    let format = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
    podman(&["inspect", "--format", &format, &container])
        .trim()
        .to_string()
}

/// The last lines a container logged.
fn logs(container: &str) -> String {
    Command::new("podman")
        .args(["logs", "--tail", "40", container])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
        })
        .unwrap_or_default()
}

/// The names podman gives what web Deployment `d` makes (its pod, and its volumes by
/// volume and claim name), checked with the Secrets' names in `values`: none may exist
/// before the test, since the test removes them at the end.
fn fixed_names(
    d: &Value,
    values: &BTreeMap<String, BTreeMap<String, String>>,
) -> (String, Vec<String>) {
    let web_pod = format!("{}-pod-0", d["metadata"]["name"].as_str().unwrap());
    let volumes: Vec<String> = d["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| [&v["name"], &v["persistentVolumeClaim"]["claimName"]])
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    let names = values
        .keys()
        .map(|s| ("secret", s))
        .chain(volumes.iter().map(|v| ("volume", v)))
        .chain([("pod", &web_pod)]);
    for (kind, name) in names {
        assert!(
            !exists(kind, name),
            "podman {kind} {name} exists already; it is not this test's"
        );
    }
    (web_pod, volumes)
}

/// The number of users in the database of PostgreSQL container `container`.
fn users(container: &str) -> u32 {
    let out = podman(&[
        "exec",
        container,
        "psql",
        "-U",
        "crescendo",
        "-d",
        "crescendo",
        "-tAc",
        "SELECT count(*) FROM users",
    ]);
    out.trim().parse().expect("a count")
}

#[test]
fn the_rendered_web_deployment_passes_the_realworld_collection_under_podman_play_kube() {
    let started = Instant::now();
    let topology = root().join("topologies/02-separate-db.toml");
    let t = Topology::load(&topology).unwrap();
    let run = std::process::id();
    let dir = tempfile::tempdir().unwrap();
    let mut made = Made::default();

    // what users get, from the binary they run
    let image = format!("localhost/crescendo-podman-test:{run}");
    let m = render_as_users_do(&topology, &image, &dir.path().join("kube"));
    let namespace = m.files["namespace.yaml"].clone();
    let mut web = m.files["web.yaml"].clone();
    let config = namespace.iter().find(|o| o["kind"] == "ConfigMap").unwrap()["data"].clone();
    let deployment = web.iter_mut().find(|o| o["kind"] == "Deployment").unwrap();
    let values = secret_values(&t);
    let (web_pod, volumes) = fixed_names(deployment, &values);

    build_image(
        &mut made,
        &["crescendo", "--binary", env!("CARGO_BIN_EXE_crescendo")],
        &image,
    );
    let pg_image = format!("localhost/crescendo-podman-test-postgres:{run}");
    build_image(&mut made, &["postgres"], &pg_image);
    create_secrets(&mut made, &values);
    let network = made.add("network", format!("crescendo-podman-test-{run}"));
    podman(&["network", "create", &network]);
    let pg = format!("crescendo-podman-test-pg-{run}");
    let pg_ip = start_postgres(&mut made, dir.path(), &pg, &pg_image, &network);
    println!(
        "images built and PostgreSQL up after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let (pg_host, _) = names::pg_clusters(&t)[0].clone();
    let aliases = json!([{"ip": pg_ip, "hostnames": [format!("{pg_host}-rw")]}]);
    let ports = adjust_for_podman(deployment, aliases, &config, &values);
    let play = dir.path().join("web.json");
    write_stream(&play, &[namespace, web].concat());
    for v in &volumes {
        made.add("volume", v.clone());
    }
    made.add("pod", web_pod.clone());
    made.add("play", play.to_str().unwrap());
    podman(&[
        "play",
        "kube",
        "--network",
        &network,
        play.to_str().unwrap(),
    ]);

    let container = format!("{web_pod}-web");
    let ready = wait_for(Duration::from_secs(90), || {
        status(ports["ops"], "/ready") == Some(200)
    });
    assert!(
        ready,
        "the web pod was not ready within 90 s:\n{}",
        logs(&container)
    );
    let published = podman(&["port", &container]);
    assert!(
        published.lines().all(|l| l.contains("-> 127.0.0.1:")),
        "a port is published beyond loopback:\n{published}"
    );
    // the Deployment's securityContext: its user, and a root file system it cannot write
    assert_eq!(podman(&["exec", &container, "id", "-u"]).trim(), "10001");
    let write = Command::new("podman")
        .args(["exec", &container, "touch", "/written"])
        .output()
        .unwrap();
    assert!(!write.status.success(), "the root file system is writable");
    crescendo_testkit::realworld::run_collection(
        &format!("http://127.0.0.1:{}", ports["http"]),
        "podman",
        &[],
    );
    assert!(
        users(&format!("{pg}-postgres")) > 0,
        "no user reached the PostgreSQL pod"
    );
    println!(
        "collection passed after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let left = made.remove_all();
    assert!(left.is_empty(), "left behind: {left:?}");
    println!(
        "removed everything after {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
