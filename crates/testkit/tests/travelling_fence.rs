//! Read-your-writes across regions: the fence travels with the client. Two web nodes with
//! separate shared state and caches (each stands for a region) share one PostgreSQL primary
//! and one replica whose replay is paused; a user writes through node 1 and reads through
//! node 2, which serves the write only when the request carries the fence node 1 handed
//! back (the `X-Crescendo-Fence` header, or the `crescendo_fence` cookie for browsers).

use crescendo_testkit::{Answer, Browser, PgCluster, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::{Duration, Instant};

/// A node over `cluster`, with the token key every node shares and the paused replica kept
/// in rotation (only a fence keeps its stale data away).
async fn node(cluster: &PgCluster) -> TestApp {
    TestApp::spawn_with(|s| {
        cluster.configure(s);
        s.auth.argon2_memory_kib = 1024;
        s.auth.argon2_iterations = 1;
        s.auth.jwt_secret = Some(crescendo_config::Secret::new(
            "a key both nodes of this test share, 32+ chars",
        ));
        s.store.replica_max_lag_ms = 60_000;
    })
    .await
}

/// Waits until the replica answers `sql` with `want`.
async fn replica_has(cluster: &PgCluster, sql: &str, want: &str) {
    let started = Instant::now();
    while cluster.replicas[0].query(sql).ok().as_deref() != Some(want) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the replica never answered {sql:?} with {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GET `path` on `app` as `token`, with `extra` headers.
async fn get(app: &TestApp, path: &str, token: Option<&str>, extra: &[(&str, &str)]) -> Answer {
    let mut r = app.request(Method::GET, path, token);
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    TestApp::answer(r.send().await.expect("request sent")).await
}

fn fence_of(a: &Answer) -> String {
    a.headers
        .get("x-crescendo-fence")
        .expect("a write's answer carries its fence")
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_region_is_read_through_the_other_when_the_client_carries_its_fence() {
    // arrange: a user and an article both nodes have read, then the replica stops replaying
    let cluster = PgCluster::start(1, false, false, &[]).await;
    let (one, two) = (node(&cluster).await, node(&cluster).await);
    let token = one.register("traveller").await;
    let slug = one.article_slug(&token, "Before the trip").await;
    let count = format!("SELECT count(*) FROM articles WHERE slug = '{slug}'");
    replica_has(&cluster, &count, "1").await;
    let path = format!("/api/articles/{slug}");
    let seen = get(&two, &path, Some(&token), &[]).await;
    assert_eq!(seen.status, StatusCode::OK, "{:?}", seen.json);
    assert!(
        seen.headers.get("x-crescendo-fence").is_none(),
        "a read hands back no fence"
    );
    cluster.replicas[0]
        .query("SELECT pg_wal_replay_pause()")
        .expect("replay pauses");

    // act: the user edits it and writes another through node 1
    let edit = one
        .put(
            &path,
            Some(&token),
            json!({"article": {"body": "written in region one"}}),
        )
        .await;
    assert_eq!(edit.status, StatusCode::OK);
    let edited = fence_of(&edit);
    let cookie = edit
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap())
        .find(|c| c.starts_with("crescendo_fence="))
        .expect("and the fence cookie");
    assert_eq!(
        cookie,
        format!("crescendo_fence={edited}; Path=/; HttpOnly; SameSite=Lax; Max-Age=300")
    );
    let created = one
        .post(
            "/api/articles",
            Some(&token),
            json!({"article": {"title": "On the way", "description": "d", "body": "b"}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.json);
    let latest = fence_of(&created);
    let new_slug = created.json["article"]["slug"]
        .as_str()
        .unwrap()
        .to_string();
    let new_path = format!("/api/articles/{new_slug}");
    let (position, _) = edited.split_once('@').expect("POSITION@MS");
    assert!(position.parse::<u64>().unwrap() > 0);
    let new_count = format!("SELECT count(*) FROM articles WHERE slug = '{new_slug}'");
    assert_eq!(
        cluster.replicas[0].query(&new_count).unwrap(),
        "0",
        "the replica is really behind"
    );

    // assert: without the fence, node 2 serves its cache and its replica: the writes are unseen
    let stale = get(&two, &path, Some(&token), &[]).await;
    assert_ne!(stale.json["article"]["body"], "written in region one");
    assert_eq!(
        get(&two, &new_path, Some(&token), &[]).await.status,
        StatusCode::NOT_FOUND
    );
    // nor with a value that cannot be a position
    let forged = [("x-crescendo-fence", "18446744073709551615")];
    let still = get(&two, &path, Some(&token), &forged).await;
    assert_ne!(still.json["article"]["body"], "written in region one");

    // with it, in the header or the cookie, signed in or not, node 2 reads both writes
    let carried = [("x-crescendo-fence", edited.as_str())];
    let fresh = get(&two, &path, Some(&token), &carried).await;
    assert_eq!(fresh.json["article"]["body"], "written in region one");
    let cookie_pair = cookie.split(';').next().unwrap();
    let by_cookie = get(&two, &path, None, &[("cookie", cookie_pair)]).await;
    assert_eq!(by_cookie.json["article"]["body"], "written in region one");
    let carried = [("x-crescendo-fence", latest.as_str())];
    let new = get(&two, &new_path, Some(&token), &carried).await;
    assert_eq!(new.status, StatusCode::OK, "{:?}", new.json);
    assert_eq!(
        get(&two, &new_path, None, &carried).await.status,
        StatusCode::OK,
        "anonymous requests carry fences too"
    );
    cluster.replicas[0]
        .query("SELECT pg_wal_replay_resume()")
        .expect("replay resumes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_that_moves_to_the_other_region_sees_its_article_through_the_fence_cookie() {
    // arrange: two nodes over a replica that has the schema and then stops replaying
    let cluster = PgCluster::start(1, false, false, &[]).await;
    let (one, two) = (node(&cluster).await, node(&cluster).await);
    replica_has(&cluster, "SELECT to_regclass('articles') IS NOT NULL", "t").await;
    cluster.replicas[0]
        .query("SELECT pg_wal_replay_pause()")
        .expect("replay pauses");

    // act: a browser signs up and publishes through node 1, then lands on node 2
    let mut b = Browser::new(&one);
    b.sign_up("walker").await;
    let csrf = b.csrf_from("/editor").await;
    let fields = [
        ("title", "Postcard from region one"),
        ("description", "d"),
        ("body", "Sent just now."),
        ("tags", ""),
        ("csrf", csrf.as_str()),
    ];
    let posted = b.post("/editor", &fields).await;
    assert_eq!(posted.status, StatusCode::SEE_OTHER, "{}", posted.body);
    let url = posted.location.expect("to the article");
    assert!(b.fence_cookie().is_some(), "the write set the fence cookie");
    b.move_to(&two);
    let page = b.get(&url).await;

    // assert: node 2 shows it; a visitor without the cookie gets node 2's replica: no article
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Postcard from region one"));
    let mut stranger = Browser::new(&two);
    assert_eq!(stranger.get(&url).await.status, StatusCode::NOT_FOUND);
    cluster.replicas[0]
        .query("SELECT pg_wal_replay_resume()")
        .expect("replay resumes");
}
