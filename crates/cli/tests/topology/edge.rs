//! Rung 6: two Varnish edges in front of rung 7's tiers. What the edge keeps (assets,
//! anonymous reads) and what it never keeps (signed-in answers, answers that set a cookie),
//! purges on write reaching every edge, coalesced misses, stale answers while the web tier is
//! gone, the balancer's own address around an edge outage, and purges refused on the public
//! address.

use super::*;

/// How long an anonymous reader behind an edge may take to see a write: the purge is sent
/// before the write is answered, so this only allows for a loaded machine.
const PURGE_BOUND: Duration = Duration::from_secs(3);

/// An anonymous GET of `url`: its status, its `X-Cache` and its body.
async fn edge_get(client: &reqwest::Client, url: &str) -> (StatusCode, String, String) {
    let r = client.get(url).send().await.unwrap();
    let cache = r
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.status(), cache, r.text().await.unwrap())
}

/// Polls an anonymous read of `url` until its body contains `want`; returns how long that
/// took, or fails after [`PURGE_BOUND`].
async fn shows_within(client: &reqwest::Client, url: &str, want: &str) -> Duration {
    let started = Instant::now();
    loop {
        let (_, _, body) = edge_get(client, url).await;
        if body.contains(want) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < PURGE_BOUND,
            "{url} still shows {body} after {PURGE_BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The purges every web node has had confirmed so far.
async fn purges_done(s: &Value) -> f64 {
    let mut n = 0.0;
    for p in s["processes"].as_array().unwrap() {
        if p["role"] == "web" {
            let ops = p["ops_addr"].as_str().unwrap();
            n += metric(ops, "crescendo_edge_purges_total", "outcome=\"ok\"").await;
        }
    }
    n
}

/// Posts an article titled `title` as the user of `token`; returns its slug.
async fn new_article(client: &reqwest::Client, url: &str, token: &str, title: &str) -> String {
    let created: Value = client
        .post(format!("{url}/api/articles"))
        .header("authorization", format!("Token {token}"))
        .json(&json!({"article": {"title": title, "description": "d", "body": "b"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["article"]["slug"].as_str().unwrap().to_string()
}

/// The address of the process named `name`.
fn addr_of(s: &Value, name: &str) -> String {
    addr_where(s, "name", name)
}

/// Sends `sig` to every web node of `s`.
fn signal_web(s: &Value, sig: &str) {
    for p in s["processes"].as_array().unwrap() {
        if p["role"] == "web" {
            let pid = p["pid"].to_string();
            assert!(
                Command::new("kill")
                    .args([sig, &pid])
                    .status()
                    .unwrap()
                    .success()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rung_six_keeps_anonymous_reads_at_the_edge_and_purges_them_on_write() {
    let t = up(&topology("06-cdn.toml"), &[]);
    let (run_dir, url) = (t.run_dir.clone(), t.url.clone());
    let s = status_with_nodes_up(&run_dir, 3).await;
    monitoring::scrapes_every_tier(&s, &run_dir).await;
    let r = roles(&s);
    // two edges, each with its TLS terminator
    assert_eq!(r.iter().filter(|r| *r == "edge").count(), 4, "{r:?}");
    let (edge2, lb) = (addr_of(&s, "edge-2"), addr_of(&s, "haproxy"));
    assert_ne!(
        lb,
        t.public.to_string(),
        "the first edge holds the public address"
    );
    let edges = [url.clone(), format!("http://{edge2}")];
    let client = reqwest::Client::new();
    conforms_over_http_and_https(&s, &run_dir, &url).await;
    keeps_assets(&client, &url).await;
    let (slug, author, reader) = keeps_reads_and_purges_them(&client, &url, &edges).await;
    coalesces_misses(&client, &s, &url, &author, &edges).await;
    forgets_what_it_missed(&client, &s, &url, &edges[1], &slug, &author).await;
    takes_purges_privately(&client, &s, &url, &run_dir).await;
    serves_without_the_web_tier(&client, &s, &run_dir, &url, &slug, &reader).await;
    monitoring::scrapes_new_nodes(&s, &status(&run_dir), &run_dir).await;
    monitoring::counts_edge_traffic(&s, &run_dir).await;
    answers_around_a_dead_edge(&client, &s, &lb, &slug).await;
}

/// The RealWorld collection through the edge, over HTTP and over HTTPS (trusting only the
/// run's own authority), and HSTS over HTTPS.
async fn conforms_over_http_and_https(s: &Value, run_dir: &Path, url: &str) {
    realworld_collection(url, "edge");
    // and over HTTPS, trusting only the run's own authority
    let https = format!("https://{}", addr_of(s, "tls-1"));
    let ca = run_dir.join("ca.pem").to_string_lossy().into_owned();
    realworld_collection_with(&https, "edgetls", &["--ssl-extra-ca-certs", &ca]);
    let secure = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let tags = secure
        .get(format!("{https}/api/tags"))
        .send()
        .await
        .unwrap();
    assert_eq!(tags.status(), StatusCode::OK);
    assert!(tags.headers().contains_key("strict-transport-security"));
}

/// An asset's first request is fetched from the origin, the second is a hit. (A changed
/// asset has a new name, `crescendo_web::assets`' tests show, so it is fetched like this.)
async fn keeps_assets(client: &reqwest::Client, url: &str) {
    // (a) assets: the second request is a hit
    let home = edge_get(client, &format!("{url}/")).await.2;
    let css = home
        .split('"')
        .find(|s| s.starts_with("/assets/") && s.ends_with(".css"));
    let css = format!("{url}{}", css.expect("the home page links its stylesheet"));
    assert_eq!(
        edge_get(client, &css).await.1,
        "MISS",
        "a name not seen yet is fetched"
    );
    assert_eq!(edge_get(client, &css).await.1, "HIT");
}

/// An anonymous article read is kept, an edit is seen through every edge, and a signed-in
/// reader's view passes the edge and never reaches anyone else. Returns the article's slug,
/// its author's token and the reader's.
async fn keeps_reads_and_purges_them(
    client: &reqwest::Client,
    url: &str,
    edges: &[String],
) -> (String, String, String) {
    // (b) an anonymous article read is kept, and an edit is seen through every edge
    let author = register(url, "edgeauthor").await;
    let slug = new_article(client, url, &author, "Edge one").await;
    for e in edges {
        let article = format!("{e}/api/articles/{slug}");
        assert_eq!(edge_get(client, &article).await.1, "MISS");
        let (code, cache, body) = edge_get(client, &article).await;
        assert_eq!((code, cache.as_str()), (StatusCode::OK, "HIT"), "{body}");
    }
    let put = client
        .put(format!("{url}/api/articles/{slug}"))
        .header("authorization", format!("Token {author}"))
        .json(&json!({"article": {"body": "edited at the origin"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let mut delays = Vec::new();
    for e in edges {
        let article = format!("{e}/api/articles/{slug}");
        delays.push(shows_within(client, &article, "edited at the origin").await);
    }
    eprintln!("an edit was seen through both edges after {delays:?}");

    // (c) a signed-in reader's view passes the edge and never reaches anyone else
    let reader = register(url, "edgereader").await;
    let fav = client
        .post(format!("{url}/api/articles/{slug}/favorite"))
        .header("authorization", format!("Token {reader}"))
        .send()
        .await
        .unwrap();
    assert_eq!(fav.status(), StatusCode::OK);
    let mine = client
        .get(format!("{url}/api/articles/{slug}"))
        .header("authorization", format!("Token {reader}"))
        .send()
        .await
        .unwrap();
    assert_eq!(mine.headers()["x-cache"], "PASS");
    let mine: Value = mine.json().await.unwrap();
    assert_eq!(mine["article"]["favorited"], true);
    for e in edges {
        let article = format!("{e}/api/articles/{slug}");
        shows_within(client, &article, "\"favoritesCount\":1").await;
        let anon: Value = serde_json::from_str(&edge_get(client, &article).await.2).unwrap();
        assert_eq!(anon["article"]["favorited"], false);
    }
    // a page that sets a cookie (the sign-in form's CSRF cookie) is never kept
    for _ in 0..2 {
        assert_ne!(edge_get(client, &format!("{url}/login")).await.1, "HIT");
    }

    (slug, author, reader)
}

/// 500 concurrent anonymous reads of a cold article make one origin request per edge; once
/// deleted, the article is gone from every edge.
async fn coalesces_misses(
    client: &reqwest::Client,
    s: &Value,
    url: &str,
    author: &str,
    edges: &[String],
) {
    // the article's creation purges twice on each edge (at once and once settled):
    // the burst comes after both, so the one miss it counts is the burst's own
    let mut before = purges_done(s).await;
    loop {
        // earlier writes' settled purges are sent first (each within about a second)
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = purges_done(s).await;
        if now == before {
            break;
        }
        before = now;
    }
    let cold = new_article(client, url, author, "Edge cold").await;
    let started = Instant::now();
    while purges_done(s).await < before + 2.0 * edges.len() as f64 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the settled purges are sent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for e in edges {
        let article = format!("{e}/api/articles/{cold}");
        let reads = (0..500).map(|_| {
            let (client, article) = (client.clone(), article.clone());
            tokio::spawn(async move { edge_get(&client, &article).await })
        });
        let mut misses = 0;
        for r in reads.collect::<Vec<_>>() {
            let (code, cache, _) = r.await.unwrap();
            assert_eq!(code, StatusCode::OK);
            misses += usize::from(cache == "MISS");
        }
        assert_eq!(
            misses, 1,
            "{e}: one origin request for 500 concurrent reads"
        );
    }
    // a deleted article is gone from every edge
    let deleted = client
        .delete(format!("{url}/api/articles/{cold}"))
        .header("authorization", format!("Token {author}"))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    for e in edges {
        let (code, _, body) = edge_get(client, &format!("{e}/api/articles/{cold}")).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{e}: {body}");
    }
}

/// An edge stopped while a write purges its article, for longer than it may go without
/// hearing from the nodes, serves nothing stale once it runs again: it dropped everything
/// (the write's queued purge may not have reached it yet).
async fn forgets_what_it_missed(
    client: &reqwest::Client,
    s: &Value,
    url: &str,
    edge: &str,
    slug: &str,
    author: &str,
) {
    let article = format!("{edge}/api/articles/{slug}");
    edge_get(client, &article).await;
    assert_eq!(edge_get(client, &article).await.1, "HIT");
    // the manager and its cache process: the whole process group
    let group = format!("-{}", web_pid(s, "edge-2"));
    let signal = |sig: &str| {
        let ok = Command::new("kill").args([sig, "--", &group]).status();
        assert!(ok.unwrap().success());
    };
    signal("-STOP");
    let put = client
        .put(format!("{url}/api/articles/{slug}"))
        .header("authorization", format!("Token {author}"))
        .json(&json!({"article": {"body": "missed by edge-2"}}))
        .send()
        .await
        .unwrap();
    let status = put.status();
    // stopped for longer than an edge may go without hearing from the nodes
    tokio::time::sleep(crescendo_topology::varnish::SILENCE + Duration::from_secs(1)).await;
    signal("-CONT");
    assert_eq!(
        status,
        StatusCode::OK,
        "the write does not wait for a stopped edge"
    );
    let (code, _, body) = edge_get(client, &article).await;
    assert_eq!(code, StatusCode::OK);
    assert!(body.contains("missed by edge-2"), "{body}");
}

/// Purges are taken on the private listener only, with the run's token; the files that
/// hold the token and the management secret are owner-only.
async fn takes_purges_privately(client: &reqwest::Client, s: &Value, url: &str, run_dir: &Path) {
    // (e) purges are taken on the private listener only, with the run's token
    let purge = client
        .request(reqwest::Method::from_bytes(b"PURGE").unwrap(), url)
        .header("xkey-softpurge", "anything")
        .send()
        .await
        .unwrap();
    assert_eq!(purge.status(), StatusCode::METHOD_NOT_ALLOWED);
    let admin = s["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "edge-1");
    let admin = admin.unwrap()["ops_addr"].as_str().unwrap().to_string();
    let untokened = client
        .request(
            reqwest::Method::from_bytes(b"PURGE").unwrap(),
            format!("http://{admin}/"),
        )
        .header("xkey-softpurge", "anything")
        .send()
        .await
        .unwrap();
    assert_eq!(untokened.status(), StatusCode::FORBIDDEN);
    let mut files = Vec::new();
    files_under(run_dir, &mut files);
    for f in files
        .iter()
        .filter(|f| f.ends_with("edge.vcl") || f.ends_with("manage.secret"))
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(f).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", f.display());
    }
}

/// With the web tier killed, kept anonymous answers are still served for 5 s; then the tier
/// is scaled back.
async fn serves_without_the_web_tier(
    client: &reqwest::Client,
    s: &Value,
    run_dir: &Path,
    url: &str,
    slug: &str,
    reader: &str,
) {
    // (f) the web tier killed for 5 s: kept anonymous answers are still served, even one
    // a write has just purged (its replacement cannot be fetched)
    let article = format!("{url}/api/articles/{slug}");
    // the edge keeps the article as it is now; the write below purges it
    let (_, _, body) = edge_get(client, &article).await;
    assert!(body.contains("missed by edge-2"), "{body}");
    let unfav = client
        .delete(format!("{url}/api/articles/{slug}/favorite"))
        .header("authorization", format!("Token {reader}"))
        .send()
        .await
        .unwrap();
    assert_eq!(unfav.status(), StatusCode::OK);
    signal_web(s, "-KILL");
    let started = Instant::now();
    let mut served = 0;
    while started.elapsed() < Duration::from_secs(5) {
        let (code, cache, body) = edge_get(client, &article).await;
        assert_eq!((code, cache.as_str()), (StatusCode::OK, "HIT"), "{body}");
        assert!(body.contains("missed by edge-2"), "{body}");
        served += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served > 10);
    let scaled = crescendo(&["scale", "web=3", "--run-dir", &run_dir.to_string_lossy()]);
    assert!(
        scaled.status.success(),
        "{}",
        String::from_utf8_lossy(&scaled.stderr)
    );
}

/// With the first edge gone, the site answers at the balancer's own address.
async fn answers_around_a_dead_edge(client: &reqwest::Client, s: &Value, lb: &str, slug: &str) {
    // (g) an edge gone: the site answers at the balancer's own address
    let edge1 = web_pid(s, "edge-1");
    assert!(
        Command::new("kill")
            .args(["-KILL", &edge1.to_string()])
            .status()
            .unwrap()
            .success()
    );
    wait_for("the first edge to exit", Duration::from_secs(10), || {
        !alive(edge1)
    })
    .await;
    let direct = client
        .get(format!("http://{lb}/api/articles/{slug}"))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), StatusCode::OK);
    assert!(
        direct.headers().get("x-cache").is_none(),
        "the balancer answers itself"
    );
}
