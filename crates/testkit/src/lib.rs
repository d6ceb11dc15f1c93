//! Test helpers for Crescendo.
//!
//! [`TestApp::spawn`] starts a real server in this process on `127.0.0.1:0` with a fresh
//! data directory (SQLite file, keys, blobs), and gives typed helpers that speak HTTP to it.
//! The server drains and stops when the `TestApp` is dropped; the directory is removed.
//! Logs are silent unless `TEST_LOG=1`.
//!
//! With `TEST_STORE=postgres`, each `TestApp` runs on its own private PostgreSQL server
//! (started from the machine's binaries, stopped with the app) instead of SQLite, so the same
//! HTTP tests check both backends; with `TEST_STORE=sharded`, on a sharded store of three
//! clusters (one private server, a database per cluster and one for the catalogue). With `TEST_CACHE=none` nothing is cached, which takes the
//! uncached read paths; with `TEST_CACHE=redis` each `TestApp` caches on a ring of two
//! private Redis servers (the cache-tier rung's backend) with its near tier in front. With
//! `TEST_BLOBS=s3` uploads and their variants go to a private S3-compatible server (s3s-fs).

mod pg_cluster;
pub mod realworld;
pub mod webdriver;

pub use pg_cluster::{PgCluster, blackhole};

use crescendo_config::{Overrides, Settings};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::net::SocketAddr;

/// A running server with its own data, and a client for it.
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its operators' listener (`http.ops_listen`): `/metrics` is served there only.
    pub ops_addr: SocketAddr,
    /// The application behind the API, for looking at state the API does not show.
    pub app: crescendo_app::App,
    /// The settings it runs with.
    pub settings: Settings,
    /// The writes it is running: `writes.idle().await` waits until each has ended, even
    /// one whose client went away (hold one at a step with `app.pause_writes_at`).
    pub writes: crescendo_server::Writes,
    client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<anyhow_free::Result>>,
    _dir: tempfile::TempDir,
    /// The private PostgreSQL server, with `TEST_STORE=postgres`; dropped after the app.
    _postgres: Option<crescendo_topology::pg::Postgres>,
    /// The private cache servers, with `TEST_CACHE=redis`.
    _redis: Vec<crescendo_topology::redis::Redis>,
    /// The private S3 server, with `TEST_BLOBS=s3`.
    _s3: Option<crescendo_topology::s3::S3>,
}

mod anyhow_free {
    /// The server task's result, without naming anyhow here.
    pub type Result = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// Points `settings` at the bucket of the private S3 server `s3`.
pub fn keep_blobs_on(settings: &mut Settings, s3: &crescendo_topology::s3::S3) {
    let b = &mut settings.blobs;
    b.backend = crescendo_config::BlobBackend::S3;
    b.s3_endpoint = s3.endpoint();
    b.s3_bucket = crescendo_topology::s3::BUCKET.into();
    b.s3_region = crescendo_topology::s3::REGION.into();
    b.s3_access_key = s3.access_key().into();
    b.s3_secret_key = Some(crescendo_config::Secret::new(s3.secret_key()));
}

/// With `TEST_CACHE=redis`, starts two private Redis servers under `dir` and points
/// `settings` at them as a cache ring; with `TEST_CACHE=none`, turns caching off.
///
/// # Panics
/// An unknown `TEST_CACHE`, or a Redis server that does not start.
async fn private_cache(
    settings: &mut Settings,
    dir: &std::path::Path,
) -> Vec<crescendo_topology::redis::Redis> {
    let mut redis = Vec::new();
    match std::env::var("TEST_CACHE").as_deref() {
        Ok("none") => settings.cache.backend = crescendo_config::CacheBackend::None,
        Ok("redis") => {
            let root = dir.join("redis");
            redis = tokio::task::spawn_blocking(move || {
                (0..2)
                    .map(|i| {
                        crescendo_topology::redis::Redis::start(
                            &root.join(i.to_string()),
                            [127, 0, 0, 1],
                            32,
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .await
            .expect("launcher thread")
            .expect("private Redis servers start (TEST_CACHE=redis)");
            settings.cache.backend = crescendo_config::CacheBackend::Redis;
            settings.cache.redis_urls = redis
                .iter()
                .map(crescendo_topology::redis::Redis::url)
                .collect();
        }
        Ok("memory") | Err(_) => {}
        Ok(other) => panic!("TEST_CACHE={other}: use memory, none or redis"),
    }
    redis
}

/// With `TEST_BLOBS=s3`, starts a private S3 server under `dir` and keeps `settings`' blobs
/// on it.
///
/// # Panics
/// An unknown `TEST_BLOBS`, or an S3 server that does not start.
async fn private_blobs(
    settings: &mut Settings,
    dir: &std::path::Path,
) -> Option<crescendo_topology::s3::S3> {
    match std::env::var("TEST_BLOBS").as_deref() {
        Ok("s3") => {
            let root = dir.join("s3");
            let s3 = tokio::task::spawn_blocking(move || {
                crescendo_topology::s3::S3::start(&root, "127.0.0.1:0".parse().expect("address"))
            })
            .await
            .expect("launcher thread")
            .expect("a private S3 server starts (TEST_BLOBS=s3)");
            keep_blobs_on(settings, &s3);
            Some(s3)
        }
        Ok("local") | Err(_) => None,
        Ok(other) => panic!("TEST_BLOBS={other}: use local or s3"),
    }
}

/// With `TEST_STORE=postgres`, starts a private PostgreSQL server and points `settings`'
/// store at it; with `TEST_STORE=sharded`, points it at a sharded store on such a server (a
/// catalogue database and three clusters, one database each). Either way, unless the
/// settings bring their own PostgreSQL database (a test that does keeps it).
///
/// # Panics
/// An unknown `TEST_STORE`, or a PostgreSQL server that does not start.
async fn private_postgres(settings: &mut Settings) -> Option<crescendo_topology::pg::Postgres> {
    let own_postgres = settings.store.backend == crescendo_config::StoreBackend::Postgres;
    match std::env::var("TEST_STORE").as_deref() {
        Ok("postgres") if !own_postgres => {
            let pg = tokio::task::spawn_blocking(|| crescendo_topology::pg::Postgres::start(&[]))
                .await
                .expect("launcher thread")
                .expect("a private PostgreSQL server starts (TEST_STORE=postgres)");
            settings.store.backend = crescendo_config::StoreBackend::Postgres;
            settings.store.postgres_url = pg.url("postgres");
            Some(pg)
        }
        Ok("sharded") if !own_postgres => {
            let pg = tokio::task::spawn_blocking(|| crescendo_topology::pg::Postgres::start(&[]))
                .await
                .expect("launcher thread")
                .expect("a private PostgreSQL server starts (TEST_STORE=sharded)");
            for db in ["catalogue", "c1", "c2", "c3"] {
                pg.query(&format!("CREATE DATABASE {db}"))
                    .expect("a database for each cluster");
            }
            settings.store.backend = crescendo_config::StoreBackend::Postgres;
            settings.store.postgres_url = pg.url("catalogue");
            settings.store.postgres_shards = ["c1", "c2", "c3"]
                .iter()
                .map(|c| format!("{c}={}", pg.url(c)))
                .collect();
            Some(pg)
        }
        Ok("sqlite" | "postgres" | "sharded") | Err(_) => None,
        Ok(other) => panic!("TEST_STORE={other}: use sqlite, postgres or sharded"),
    }
}

/// An HTTP answer: status, headers and JSON body (`Value::Null` when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Parsed body.
    pub json: Value,
}

impl TestApp {
    /// Starts a server with default settings (but port 0 and a temp data dir).
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts a server after `tweak` adjusts its settings.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Settings)) -> Self {
        if std::env::var_os("TEST_LOG").is_some() {
            crescendo_telemetry::init_logs(Default::default(), "debug");
        }
        let _ = crescendo_telemetry::metrics_handle();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = Settings::load_with_env(
            None,
            &Overrides {
                listen: Some("127.0.0.1:0".parse().expect("address")),
                data_dir: Some(dir.path().into()),
            },
            std::iter::empty(),
        )
        .expect("default settings load");
        let redis = private_cache(&mut settings, dir.path()).await;
        let s3 = private_blobs(&mut settings, dir.path()).await;
        tweak(&mut settings);
        let postgres = private_postgres(&mut settings).await;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let running = crescendo_server::serve(settings.clone(), async move {
            let _ = stop_rx.await;
        })
        .await
        .expect("server starts");
        let writes = running.writes.clone();
        let done = tokio::spawn(async move {
            let joined: anyhow_free::Result = match running.done.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.into()),
                Err(e) => Err(Box::new(e)),
            };
            joined
        });
        Self {
            addr: running.addr,
            ops_addr: running.ops_addr,
            app: running.app,
            settings,
            writes,
            client: reqwest::Client::new(),
            stop: Some(stop_tx),
            done: Some(done),
            _dir: dir,
            _postgres: postgres,
            _redis: redis,
            _s3: s3,
        }
    }

    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A request builder with the token, if any, as `Authorization: Token …`.
    pub fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut r = self.client.request(method, self.url(path));
        if let Some(t) = token {
            r = r.header("authorization", format!("Token {t}"));
        }
        r
    }

    /// Sends a request with an optional JSON body and reads the answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut r = self.request(method, path, token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        Self::answer(r.send().await.expect("request sent")).await
    }

    /// Reads an answer.
    pub async fn answer(res: reqwest::Response) -> Answer {
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.expect("body read");
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            json,
        }
    }

    /// GET.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.call(Method::GET, path, token, None).await
    }
    /// POST with a JSON body.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.call(Method::POST, path, token, Some(body)).await
    }
    /// PUT with a JSON body.
    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.call(Method::PUT, path, token, Some(body)).await
    }
    /// DELETE.
    pub async fn delete(&self, path: &str, token: Option<&str>) -> Answer {
        self.call(Method::DELETE, path, token, None).await
    }

    /// Registers `username` (email `<username>@example.com`, password `password123`) and
    /// returns its token.
    pub async fn register(&self, username: &str) -> String {
        let a = self
            .post(
                "/api/users",
                None,
                json!({"user": {"username": username, "email": format!("{username}@example.com"), "password": "password123"}}),
            )
            .await;
        assert_eq!(
            a.status,
            StatusCode::CREATED,
            "register {username}: {:?}",
            a.json
        );
        a.json["user"]["token"].as_str().expect("token").to_string()
    }

    /// Publishes an article (as [`TestApp::create_article`], without tags) and returns its
    /// slug.
    pub async fn article_slug(&self, token: &str, title: &str) -> String {
        self.create_article(token, title, &[]).await["slug"]
            .as_str()
            .expect("slug")
            .to_string()
    }

    /// Publishes an article and returns it (the `article` object).
    pub async fn create_article(&self, token: &str, title: &str, tags: &[&str]) -> Value {
        let a = self
            .post(
                "/api/articles",
                Some(token),
                json!({"article": {"title": title, "description": format!("about {title}"), "body": format!("# {title}"), "tagList": tags}}),
            )
            .await;
        assert_eq!(
            a.status,
            StatusCode::CREATED,
            "create {title}: {:?}",
            a.json
        );
        a.json["article"].clone()
    }

    /// Asks the server to drain and stop, and waits until it has.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(d) = self.done.take() {
            d.await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }

    /// Starts the drain (as SIGTERM would) without waiting for it to finish.
    pub fn begin_shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A page as a browser got it: status, `Location`, headers and body text.
#[derive(Debug)]
pub struct Page {
    /// Status code.
    pub status: StatusCode,
    /// Where a redirect points.
    pub location: Option<String>,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body.
    pub body: String,
}

impl Page {
    /// The CSRF token of the first form on the page.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("the page has a form with a CSRF token");
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').expect("closing quote")].to_string()
    }
}

/// A browser without JavaScript: keeps the session cookie, posts forms, and does not follow
/// redirects (tests look at them).
pub struct Browser {
    client: reqwest::Client,
    base: String,
    cookie: Option<String>,
    /// The travelling read fence's cookie (`crescendo_fence=…`), kept beside the session's.
    fence: Option<String>,
}

fn form_encode(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Browser {
    /// A browser pointed at `app`, with no cookie yet.
    pub fn new(app: &TestApp) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Browser {
            client,
            base: format!("http://{}", app.addr),
            cookie: None,
            fence: None,
        }
    }

    /// Points this browser, cookies and all, at another node (a user whom the geo DNS moved
    /// to another region).
    pub fn move_to(&mut self, app: &TestApp) {
        self.base = format!("http://{}", app.addr);
    }

    /// The read fence cookie's `name=value`, if any.
    pub fn fence_cookie(&self) -> Option<&str> {
        self.fence.as_deref()
    }

    /// The session cookie's `name=value`, if any.
    pub fn cookie(&self) -> Option<&str> {
        self.cookie.as_deref()
    }

    async fn send(&mut self, r: reqwest::RequestBuilder) -> Page {
        let cookies: Vec<&str> = [&self.cookie, &self.fence]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let r = match cookies.is_empty() {
            false => r.header("cookie", cookies.join("; ")),
            true => r,
        };
        let res = r.send().await.expect("request sent");
        for c in res.headers().get_all("set-cookie") {
            let c = c.to_str().expect("ASCII cookie");
            let pair = c.split(';').next().unwrap_or_default().trim().to_string();
            let jar = match pair.starts_with("crescendo_fence=") {
                true => &mut self.fence,
                false => &mut self.cookie,
            };
            if c.contains("Max-Age=0") {
                *jar = None;
            } else {
                *jar = Some(pair);
            }
        }
        let status = res.status();
        let headers = res.headers().clone();
        let location = headers
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        let body = res.text().await.expect("body read");
        Page {
            status,
            location,
            headers,
            body,
        }
    }

    /// GET `path`.
    pub async fn get(&mut self, path: &str) -> Page {
        let r = self.client.get(format!("{}{path}", self.base));
        self.send(r).await
    }

    /// POSTs a form to `path`.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_encode(fields));
        self.send(r).await
    }

    /// POSTs a form as the page's script does, asking for JSON.
    pub async fn post_json(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(form_encode(fields));
        self.send(r).await
    }

    /// POSTs a `multipart/form-data` form to `path`, as a page's file form does: `fields`,
    /// then `file_field` holding `file` (named `photo`).
    pub async fn post_multipart(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        file_field: &str,
        file: &[u8],
    ) -> Page {
        let boundary = "crescendo-browser-boundary-41c9";
        let mut body = Vec::new();
        for (k, v) in fields {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{file_field}\"; filename=\"photo\"\r\nContent-Type: application/octet-stream\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(file);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body);
        self.send(r).await
    }

    /// Signs up through the form (password `password123`) and checks the redirect home.
    pub async fn sign_up(&mut self, username: &str) {
        let form = self.get("/register").await;
        let csrf = form.csrf();
        let email = format!("{username}@example.com");
        let p = self
            .post(
                "/register",
                &[
                    ("username", username),
                    ("email", &email),
                    ("password", "password123"),
                    ("csrf", &csrf),
                ],
            )
            .await;
        assert_eq!(
            p.status,
            StatusCode::SEE_OTHER,
            "sign-up of {username}: {}",
            p.body
        );
        assert_eq!(p.location.as_deref(), Some("/"));
    }

    /// A fresh CSRF token: the one in the form at `path`.
    pub async fn csrf_from(&mut self, path: &str) -> String {
        self.get(path).await.csrf()
    }
}
