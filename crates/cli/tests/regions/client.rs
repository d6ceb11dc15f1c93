//! The two-region topology as the tests drive it: started and stopped with the CLI, and
//! clients that run inside a users' namespace and resolve the site through the geo DNS.

use serde_json::{Value, json};
use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// A two-region topology brought up for one test; `down` when dropped.
pub struct Deployed {
    _root: tempfile::TempDir,
    pub run_dir: PathBuf,
    /// The site's name.
    pub site: String,
}

/// `crescendo` with `args`, quietly; asserts that it succeeded and returns its output.
pub fn crescendo(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_crescendo"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("crescendo runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "crescendo {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Starts `topologies/08-two-regions.toml` with `[regions]` settings overridden, from a
/// run directory of its own.
pub fn up(tag: &str, regions: &[(&str, &str)]) -> Deployed {
    let root = tempfile::tempdir().unwrap();
    let source =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../topologies/08-two-regions.toml");
    let mut text = std::fs::read_to_string(source).unwrap();
    let extra: String = regions
        .iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect();
    text = text.replacen("[regions]\n", &format!("[regions]\n{extra}"), 1);
    let file = root.path().join(format!("08-{tag}.toml"));
    std::fs::write(&file, text).unwrap();
    let run_dir = root.path().join("run");
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_crescendo"))
        .arg("up")
        .arg(&file)
        .args(["--detach", "--run-dir"])
        .arg(&run_dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("crescendo runs");
    let d = Deployed {
        _root: root,
        run_dir,
        site: "conduit.crescendo.test".into(),
    };
    assert!(
        out.status.success(),
        "up failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("rung 8 ({tag}): up in {:?}", started.elapsed());
    d
}

impl Drop for Deployed {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_crescendo"))
            .args(["down", "--run-dir"])
            .arg(&self.run_dir)
            .output();
    }
}

impl Deployed {
    /// The run directory as a string.
    pub fn dir(&self) -> String {
        self.run_dir.to_string_lossy().into_owned()
    }

    /// `status --json`.
    pub fn status(&self) -> Value {
        serde_json::from_str(&crescendo(&["status", "--json", "--run-dir", &self.dir()])).unwrap()
    }

    /// The state file.
    fn state(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.run_dir.join("state.json")).unwrap()).unwrap()
    }

    /// The namespaces' prefix of the run.
    pub fn prefix(&self) -> String {
        let netns = self.state()["regions"][0]["netns"]
            .as_str()
            .unwrap()
            .to_string();
        netns.split_once("-region-").unwrap().0.to_string()
    }

    /// The full name of namespace `name` (`users-a`…).
    pub fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix())
    }

    /// A region's own run directory.
    pub fn region_dir(&self, region: &str) -> PathBuf {
        self.run_dir.join(format!("region-{region}"))
    }

    /// What the geo DNS answers a client in namespace `ns` for the site.
    pub fn resolve(&self, ns: &str) -> Vec<std::net::Ipv4Addr> {
        let site = self.site.clone();
        in_ns(&self.ns(ns), move || async move { resolve(&site) })
    }

    /// Registers a user through the region nearest namespace `ns`; returns its token and name.
    pub fn register_in(&self, ns: &str, tag: &str) -> (String, String) {
        let site = self.site.clone();
        let tag = format!("{tag}{}", std::process::id());
        in_ns(&self.ns(ns), move || async move {
            let (client, base) = site_client(&site).await;
            (register(&client, &base, &tag).await, tag)
        })
    }

    /// Reads `user`'s profile from namespace `ns` (so its region caches it).
    pub fn read_profile(&self, ns: &str, user: &str) -> Value {
        let (site, user) = (self.site.clone(), user.to_string());
        in_ns(&self.ns(ns), move || async move {
            let (client, base) = site_client(&site).await;
            send(
                &client,
                "GET",
                &format!("{base}/api/profiles/{user}"),
                "",
                None,
            )
            .await
        })
    }

    /// Sets the bio of the user of `token` from namespace `ns`.
    pub fn set_bio(&self, ns: &str, token: &str, bio: &str) {
        let (site, token, bio) = (self.site.clone(), token.to_string(), bio.to_string());
        in_ns(&self.ns(ns), move || async move {
            let (client, base) = site_client(&site).await;
            let body = json!({"user": {"bio": bio}});
            let v = send(
                &client,
                "PUT",
                &format!("{base}/api/user"),
                &token,
                Some(body),
            )
            .await;
            assert_eq!(v["user"]["bio"], bio.as_str(), "{v}");
        });
    }

    /// Whether `user`'s profile read anonymously from `ns` shows `bio` within `bound`.
    pub fn profile_bio_within(&self, ns: &str, user: &str, bio: &str, bound: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < bound {
            if self.read_profile(ns, user)["profile"]["bio"] == bio {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// `crescendo wan cut` or `heal`.
    pub fn wan(&self, what: &str) {
        crescendo(&["wan", what, "--run-dir", &self.dir()]);
    }
}

/// Runs the future `f` makes on a runtime of its own inside network namespace `ns` (every
/// socket it opens is the namespace's).
pub fn in_ns<T, F, Fut>(ns: &str, f: F) -> T
where
    T: Send,
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = T>,
{
    crescendo_topology::netns::run_in(ns, move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f())
    })
    .unwrap()
}

/// The site's addresses as the geo DNS answers the calling namespace.
pub fn resolve(site: &str) -> Vec<std::net::Ipv4Addr> {
    crescendo_topology::geodns::query_a(
        crescendo_topology::regions::dns_addr(),
        site,
        None,
        Duration::from_secs(2),
    )
    .unwrap()
    .addrs
}

/// A client of the site as the calling namespace resolves it, and the site's base URL.
pub async fn site_client(site: &str) -> (reqwest::Client, String) {
    let addr = resolve(site)[0];
    let client = reqwest::Client::builder()
        .resolve(site, std::net::SocketAddr::from((addr, 8000)))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    (client, format!("http://{site}:8000"))
}

/// Registers `name`; returns its token.
pub async fn register(client: &reqwest::Client, base: &str, name: &str) -> String {
    let body = json!({"user": {"username": name, "email": format!("{name}@example.com"), "password": "password123"}});
    let v = send(client, "POST", &format!("{base}/api/users"), "", Some(body)).await;
    v["user"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string()
}

/// Sends a request (as the user of `token`, unless empty) and decodes the answer; panics on
/// an error status.
pub async fn send(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> Value {
    let r = request(client, method, url, token, body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {url}: {status} {v}");
    v
}

/// A request builder (as the user of `token`, unless empty).
pub fn request(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::RequestBuilder {
    let mut req = client.request(method.parse().unwrap(), url);
    if !token.is_empty() {
        req = req.header("authorization", format!("Token {token}"));
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    req
}

/// The network namespaces whose names start with `prefix`.
pub fn namespaces_with(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .map(str::to_string)
        .collect()
}
