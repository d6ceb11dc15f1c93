//! The origin's side of the edge caches: what anonymous answers let an edge keep (and under
//! which surrogate keys), and the purges every write sends to each edge's purge listener,
//! kept in the write's own transaction (the outbox) so they survive the node dying.
//! A small recording listener in the test stands in for an edge.

use crescendo_app::{Pause, WriteStep};
use crescendo_cache::surrogate_key;
use crescendo_config::Secret;
use crescendo_domain::Slug;
use crescendo_testkit::{Answer, Browser, TestApp};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// The tokens of an answer's `xkey` header (empty without one).
fn xkeys(headers: &HeaderMap) -> Vec<String> {
    headers
        .get("xkey")
        .map(|v| v.to_str().unwrap().split(' ').map(String::from).collect())
        .unwrap_or_default()
}

/// Asserts that an answer lets an edge keep it, tagged with (at least) `keys`.
fn assert_edge_cacheable(what: &str, status: StatusCode, headers: &HeaderMap, keys: &[String]) {
    assert_eq!(status, StatusCode::OK, "{what}");
    assert_eq!(headers["surrogate-control"], "max-age=60", "{what}");
    assert_eq!(headers["cache-control"], "public, max-age=5", "{what}");
    let tagged = xkeys(headers);
    for k in keys {
        assert!(
            tagged.contains(&surrogate_key(k)),
            "{what}: xkey lacks {k} ({tagged:?})"
        );
    }
}

/// Asserts that nothing in an answer lets an edge keep it.
fn assert_not_edge_cacheable(what: &str, headers: &HeaderMap) {
    assert!(!headers.contains_key("surrogate-control"), "{what}");
    assert!(!headers.contains_key("xkey"), "{what}");
    let cc = headers
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert!(!cc.contains("public"), "{what}: {cc}");
}

/// The IDs of an article (from its slug) and of its author (looked up by name).
async fn ids(app: &TestApp, slug: &str, author: &str) -> (i64, i64) {
    let article = Slug::parse(slug).expect("a slug").id().as_i64();
    let user = app.app.profile(None, author).await.expect("the author");
    (article, user.profile.id.as_i64())
}

#[tokio::test]
async fn anonymous_reads_let_edges_keep_them_tagged_with_their_cache_keys() {
    // arrange: an article with a tag and a comment
    let app = TestApp::spawn().await;
    let token = app.register("edna").await;
    let a = app.create_article(&token, "Edge kept", &["edgy"]).await;
    let slug = a["slug"].as_str().unwrap().to_string();
    let (article, author) = ids(&app, &slug, "edna").await;
    let comments = format!("/api/articles/{slug}/comments");
    let said = app
        .post(&comments, Some(&token), json!({"comment": {"body": "hi"}}))
        .await;
    assert_eq!(said.status, StatusCode::OK);
    let (article_key, profile_key) = (format!("article:{article}"), format!("profile:{author}"));
    let listed = [article_key.clone(), profile_key.clone()];

    // act and assert: each public read, lists twice (the second from a page snapshot)
    let mut reads: Vec<(String, Vec<String>)> = vec![
        (format!("/api/articles/{slug}"), listed.to_vec()),
        (
            comments.clone(),
            vec![format!("comments:{article}"), profile_key.clone()],
        ),
        (
            "/api/profiles/edna".into(),
            vec![profile_key.clone(), "uname:edna".into()],
        ),
        ("/api/tags".into(), vec!["tags:popular".into()]),
        // a window past the cached head is read from the store: the head's key still tags it
        ("/api/articles?offset=600".into(), vec!["head:all".into()]),
        (
            "/api/articles?favorited=edna".into(),
            vec![format!("favs:{author}")],
        ),
    ];
    for _ in 0..2 {
        for (path, mut keys) in [
            ("/api/articles", "head:all".to_string()),
            ("/api/articles?tag=edgy", "head:tag:edgy".into()),
            ("/api/articles?author=edna", format!("head:author:{author}")),
        ]
        .map(|(p, k)| (p.to_string(), vec![k]))
        {
            keys.extend(listed.iter().cloned());
            reads.push((path, keys));
        }
    }
    for (path, keys) in &reads {
        let r = app.get(path, None).await;
        assert_edge_cacheable(path, r.status, &r.headers, keys);
    }
    let mut anon = Browser::new(&app);
    for (path, keys) in [
        (
            "/".to_string(),
            vec!["head:all".to_string(), article_key.clone()],
        ),
        (format!("/article/{slug}"), listed.to_vec()),
        (
            "/profile/edna".into(),
            vec![format!("head:author:{author}"), article_key.clone()],
        ),
    ] {
        let p = anon.get(&path).await;
        assert_edge_cacheable(&path, p.status, &p.headers, &keys);
    }
}

#[tokio::test]
async fn signed_in_answers_errors_and_pages_that_set_cookies_are_kept_by_no_edge() {
    // arrange
    let app = TestApp::spawn().await;
    let token = app.register("sid").await;
    let slug = app.article_slug(&token, "Private eyes").await;

    // act and assert: the same reads signed in, the feed, errors
    for path in [
        format!("/api/articles/{slug}"),
        format!("/api/articles/{slug}/comments"),
        "/api/articles".into(),
        "/api/profiles/sid".into(),
        "/api/tags".into(),
        "/api/articles/feed".into(),
        "/api/user".into(),
    ] {
        let r: Answer = app.get(&path, Some(&token)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_not_edge_cacheable(&path, &r.headers);
    }
    for path in ["/api/articles/no-such-article-zz", "/api/profiles/nobody"] {
        let r = app.get(path, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_not_edge_cacheable(path, &r.headers);
    }
    let mut anon = Browser::new(&app);
    let login = anon.get("/login").await;
    assert!(
        login.headers.contains_key("set-cookie"),
        "the form's session"
    );
    assert_not_edge_cacheable("/login", &login.headers);
    let mut signed_in = Browser::new(&app);
    signed_in.sign_up("sue").await;
    for path in [
        "/".to_string(),
        format!("/article/{slug}"),
        "/profile/sid".into(),
    ] {
        let p = signed_in.get(&path).await;
        assert_eq!(p.status, StatusCode::OK, "{path}");
        assert_not_edge_cacheable(&path, &p.headers);
    }
}

/// A request an edge's purge listener received.
#[derive(Debug)]
struct Purge {
    method: String,
    headers: HashMap<String, String>,
}

impl Purge {
    fn tokens(&self) -> Vec<&str> {
        self.headers
            .get("xkey-softpurge")
            .map(|v| v.split(' ').collect())
            .unwrap_or_default()
    }
}

/// A stand-in for an edge's purge listener on `addr`: answers every request 200 and sends
/// it to the returned channel. Stops with the test's runtime.
async fn purge_listener(addr: SocketAddr) -> mpsc::UnboundedReceiver<Purge> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(addr).unwrap();
    let listener = socket.listen(16).unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (read, mut write) = conn.into_split();
                let mut lines = BufReader::new(read).lines();
                // one request head after another (purges carry no body)
                while let Ok(Some(first)) = lines.next_line().await {
                    let method = first.split(' ').next().unwrap_or("").to_string();
                    let mut headers = HashMap::new();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if line.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':') {
                            headers.insert(k.trim().to_lowercase(), v.trim().to_string());
                        }
                    }
                    let _ = tx.send(Purge { method, headers });
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if write.write_all(ok).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    rx
}

/// A free loopback address, not listened on. On a loopback address of its own: a test that
/// takes its edge down and brings it back binds the port again, and on 127.0.0.1 the other
/// tests' connections and listeners may hold that port by then.
fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.13.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn an_edit_purges_the_article_on_the_edge_before_its_answer() {
    // arrange: an edge's purge listener; no workers, so only the write's own purge arrives
    let addr = free_addr();
    let mut purges = purge_listener(addr).await;
    let app = TestApp::spawn_with(|s| {
        s.edge.purge_urls = vec![format!("http://{addr}")];
        // no heartbeats among the purges this test reads
        s.edge.heartbeat_ms = 0;
        s.edge.purge_token = Some(Secret::new("edge-secret"));
        s.queue.workers = 0;
    })
    .await;
    let token = app.register("pat").await;
    let slug = app.article_slug(&token, "Before").await;
    let (article, _) = ids(&app, &slug, "pat").await;
    while purges.try_recv().is_ok() {} // the purges of the article's creation

    // act
    let path = format!("/api/articles/{slug}");
    let edited = app
        .put(&path, Some(&token), json!({"article": {"title": "After"}}))
        .await;

    // assert: the purge was there when the answer came
    assert_eq!(edited.status, StatusCode::OK);
    let purge = purges
        .try_recv()
        .expect("the edge was purged before the answer");
    assert_eq!(purge.method, "PURGE");
    assert_eq!(purge.headers["x-purge-token"], "edge-secret");
    assert!(
        purge
            .tokens()
            .contains(&surrogate_key(&format!("article:{article}")).as_str()),
        "{purge:?}"
    );
}

#[tokio::test]
async fn every_node_tells_each_edge_it_is_heard() {
    // arrange: an edge's purge listener, and a node that knows it
    let addr = free_addr();
    let mut heard = purge_listener(addr).await;
    let _app = TestApp::spawn_with(|s| {
        s.edge.purge_urls = vec![format!("http://{addr}")];
        s.edge.purge_token = Some(Secret::new("edge-secret"));
        s.edge.heartbeat_ms = 50;
    })
    .await;

    // assert: heartbeats come, carrying the token and no keys
    for _ in 0..3 {
        let beat = tokio::time::timeout(Duration::from_secs(10), heard.recv())
            .await
            .expect("a heartbeat within 10 s")
            .expect("the listener runs");
        assert_eq!(beat.method, "PURGE");
        assert_eq!(beat.headers["x-purge-token"], "edge-secret");
        assert!(beat.tokens().is_empty(), "{beat:?}");
    }
}

#[tokio::test]
async fn a_purge_an_edge_missed_is_sent_again_by_a_job_from_the_outbox_once_the_edge_is_back() {
    // arrange: the edge's purge listener is down while the write happens
    let addr = free_addr();
    let app = TestApp::spawn_with(|s| {
        s.edge.purge_urls = vec![format!("http://{addr}")];
        // no heartbeats among the purges this test reads
        s.edge.heartbeat_ms = 0;
        s.edge.purge_settle_ms = 100;
    })
    .await;
    let token = app.register("quin").await;
    let slug = app.article_slug(&token, "Missed").await;
    let (article, _) = ids(&app, &slug, "quin").await;

    // act: an edit moves the article to a new tag, then the edge comes back
    let path = format!("/api/articles/{slug}");
    let edited = app
        .put(
            &path,
            Some(&token),
            json!({"article": {"tagList": ["late"]}}),
        )
        .await;
    assert_eq!(edited.status, StatusCode::OK, "the write succeeds anyway");
    let mut purges = purge_listener(addr).await;

    // assert: the edit's purge arrives (retried with back-off until it does)
    let want = [
        surrogate_key(&format!("article:{article}")),
        surrogate_key("head:tag:late"),
    ];
    let delivered = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(p) = purges.recv().await {
            if want.iter().all(|t| p.tokens().contains(&t.as_str())) {
                return p;
            }
        }
        panic!("the listener stopped");
    })
    .await
    .expect("the queued purge was delivered within a minute");
    assert_eq!(delivered.method, "PURGE");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_whose_purge_reaches_neither_the_edge_nor_the_queue_succeeds_and_keeps_it_in_the_outbox()
 {
    // arrange: jobs on a NATS server; the edge's purge listener is down
    let dir = tempfile::tempdir().unwrap();
    let nats_dir = dir.path().to_path_buf();
    let mut nats = tokio::task::spawn_blocking(move || {
        crescendo_topology::nats::Nats::start(&nats_dir, [127, 0, 0, 1])
    })
    .await
    .unwrap()
    .expect("a private NATS server starts");
    let app = TestApp::spawn_with(|s| {
        s.queue.backend = crescendo_config::QueueBackend::Nats;
        s.queue.nats_url = nats.url();
        s.queue.workers = 0;
        s.edge.purge_urls = vec![format!("http://{}", free_addr())];
        s.edge.heartbeat_ms = 0;
        s.edge.purge_settle_ms = 50;
    })
    .await;
    // the queue goes down before the first write: no purge can leave the outbox
    tokio::task::block_in_place(|| nats.stop());
    let token = app.register("ray").await;
    let slug = app.article_slug(&token, "Unreachable").await;
    let before = app.app.outbox_len().await.unwrap();

    // act
    let path = format!("/api/articles/{slug}");
    let edited = app
        .put(&path, Some(&token), json!({"article": {"title": "Stale"}}))
        .await;

    // assert: the edit succeeds, and its purge waits in the outbox for a relay
    assert_eq!(edited.status, StatusCode::OK, "{:?}", edited.json);
    assert_eq!(app.get(&path, None).await.json["article"]["title"], "Stale");
    assert_eq!(
        app.app.outbox_len().await.unwrap(),
        before + 1,
        "the edit's purge is kept in the outbox"
    );
}

/// Waits (at most 30 s) until `app`'s outbox is empty.
async fn outbox_drained(app: &TestApp) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while app.app.outbox_len().await.unwrap() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the outbox empties within 30 s");
}

/// Waits (at most 60 s) for a purge carrying `token`; earlier purges without it are skipped.
async fn purge_with(purges: &mut mpsc::UnboundedReceiver<Purge>, token: &str) -> Purge {
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(p) = purges.recv().await {
            if p.tokens().contains(&token) {
                return p;
            }
        }
        panic!("the listener stopped");
    })
    .await
    .expect("the purge was delivered within a minute")
}

#[tokio::test]
async fn a_write_purges_now_and_once_settled_with_nothing_left_in_the_outbox_or_the_queue() {
    // arrange: an edge's purge listener; no workers, so a published job would stay queued
    let addr = free_addr();
    let mut purges = purge_listener(addr).await;
    let app = TestApp::spawn_with(|s| {
        s.edge.purge_urls = vec![format!("http://{addr}")];
        s.edge.heartbeat_ms = 0;
        s.edge.purge_settle_ms = 50;
        s.queue.workers = 0;
    })
    .await;
    let token = app.register("hal").await;
    let slug = app.article_slug(&token, "Twice").await;
    let (article, _) = ids(&app, &slug, "hal").await;
    let want = surrogate_key(&format!("article:{article}"));

    // act
    let path = format!("/api/articles/{slug}");
    let edited = app
        .put(
            &path,
            Some(&token),
            json!({"article": {"title": "Once more"}}),
        )
        .await;
    assert_eq!(edited.status, StatusCode::OK);

    // assert: the direct purge and the settled one arrive; the write's outbox entry is
    // removed, and no edge-purge job was ever published
    for which in ["direct", "settled"] {
        let p = purge_with(&mut purges, &want).await;
        assert_eq!(p.method, "PURGE", "{which}");
    }
    outbox_drained(&app).await;
    let queued = app.app.queue_depth("edge-purge").await.unwrap();
    assert_eq!((queued.pending, queued.dead), (0, 0), "no job was queued");
}

#[tokio::test]
async fn a_purge_reaches_the_edge_though_the_node_that_wrote_died_right_after_the_commit() {
    // arrange: an edge's purge listener, and a node without workers on a shared store
    let addr = free_addr();
    let mut purges = purge_listener(addr).await;
    let shared = crate::SharedStore::new().await;
    let node = |s: &mut crescendo_config::Settings, workers: usize| {
        shared.setup(s);
        s.edge.purge_urls = vec![format!("http://{addr}")];
        s.edge.heartbeat_ms = 0;
        s.edge.purge_settle_ms = 50;
        s.http.drain_delay_ms = 0;
        s.queue.workers = workers;
    };
    let mut first = TestApp::spawn_with(|s| node(s, 0)).await;
    let token = first.register("dee").await;
    let slug = first.article_slug(&token, "Dying").await;
    let (article, _) = ids(&first, &slug, "dee").await;
    let pause = Pause::new(WriteStep::Committed);
    first.app.pause_writes_at(Arc::clone(&pause));

    // act: an edit commits; the node dies before it purges anything (the held write never
    // goes on, its relay stops), and another node starts on the same store and queue
    let path = format!("/api/articles/{slug}");
    let edit = first
        .request(Method::PUT, &path, Some(&token))
        .json(&json!({"article": {"title": "Survived"}}))
        .send();
    let edit = tokio::spawn(edit);
    pause.reached().await;
    edit.abort();
    first.begin_shutdown();
    let second = TestApp::spawn_with(|s| node(s, 1)).await;

    // assert: the committed edit's purge reaches the edge (the creation purged no article
    // key: only the edit's purge carries it)
    let want = surrogate_key(&format!("article:{article}"));
    let p = purge_with(&mut purges, &want).await;
    assert_eq!(p.method, "PURGE");
    assert_eq!(
        second.get(&path, None).await.json["article"]["title"],
        "Survived"
    );
}
