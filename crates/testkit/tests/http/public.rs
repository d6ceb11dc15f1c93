//! What is public: metrics only on the operators' listener, uploads only to their owner,
//! HSTS on an HTTPS site, expired tokens refused, and a body read no further than its route's
//! limit even with an `Idempotency-Key`.

use crate::uploads::{multipart, png, upload};
use crescendo_testkit::TestApp;
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn metrics_answer_on_the_ops_listener_and_404_on_the_public_one() {
    let app = TestApp::spawn().await;
    app.get("/api/articles", None).await;

    let public = reqwest::get(app.url("/metrics")).await.unwrap();
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    let body = public.text().await.unwrap();
    assert!(
        !body.contains("crescendo_http_requests_total"),
        "no metric leaks on the public listener"
    );

    let ops = reqwest::get(format!("http://{}/metrics", app.ops_addr))
        .await
        .unwrap();
    assert_eq!(ops.status(), StatusCode::OK);
    assert!(
        ops.text()
            .await
            .unwrap()
            .contains("crescendo_http_requests_total{"),
        "the ops listener serves the metrics"
    );
    // the load balancer's probes stay on the public listener, and are on the ops one too
    for path in ["/health", "/ready"] {
        assert_eq!(app.get(path, None).await.status, StatusCode::OK, "{path}");
        let ops = reqwest::get(format!("http://{}{path}", app.ops_addr))
            .await
            .unwrap();
        assert_eq!(ops.status(), StatusCode::OK, "ops {path}");
    }
}

#[tokio::test]
async fn an_upload_is_shown_to_its_owner_only_and_others_cannot_tell_it_exists() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let other = app.register("other").await;
    let (status, body) = upload(&app, Some(&owner), "file", "a.png", &png(40, 30)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["upload"]["id"].as_str().unwrap().to_string();
    let path = format!("/api/uploads/{id}");

    let mine = app.get(&path, Some(&owner)).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.json);
    assert_eq!(mine.json["upload"]["id"], id.as_str());

    let theirs = app.get(&path, Some(&other)).await;
    let missing = app.get("/api/uploads/999999", Some(&other)).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{}", theirs.json);
    assert_eq!(
        theirs.json, missing.json,
        "another's upload answers like one that does not exist"
    );
    assert!(theirs.json["errors"].is_object(), "{}", theirs.json);

    let anonymous = app.get(&path, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(anonymous.json["errors"].is_object(), "{}", anonymous.json);
}

#[tokio::test]
async fn an_https_site_sends_hsts_on_every_answer() {
    let app = TestApp::spawn_with(|s| s.web.secure_cookies = true).await;
    let token = app.register("secure").await;
    let answers = [
        app.get("/api/articles", None).await,
        app.get("/api/user", Some(&token)).await,
        app.get("/api/user", None).await,
        app.get("/no/such/page", None).await,
        app.get("/", None).await,
        app.get("/ready", None).await,
    ];
    for a in &answers {
        assert_eq!(
            a.headers
                .get("strict-transport-security")
                .map(|v| v.to_str().unwrap()),
            Some("max-age=31536000"),
            "{} {:?}",
            a.status,
            a.json
        );
    }
    let preflight = app
        .request(Method::OPTIONS, "/api/user", None)
        .header("origin", "https://conduit.example")
        .header("access-control-request-method", "PUT")
        .send()
        .await
        .unwrap();
    assert_eq!(
        preflight.headers()["strict-transport-security"],
        "max-age=31536000"
    );
}

#[tokio::test]
async fn a_plain_http_site_sends_no_hsts() {
    let app = TestApp::spawn().await;
    for path in ["/api/articles", "/", "/no/such/page"] {
        let a = app.get(path, None).await;
        assert!(
            a.headers.get("strict-transport-security").is_none(),
            "{path}"
        );
    }
}

#[tokio::test]
async fn an_expired_token_gets_401_in_the_apis_format() {
    // every token expires the second it is issued
    let app = TestApp::spawn_with(|s| s.auth.token_ttl_secs = 0).await;
    let token = app.register("fleeting").await;

    let a = app.get("/api/user", Some(&token)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.json);
    assert!(a.json["errors"].is_object(), "{}", a.json);
    assert_eq!(a.headers["www-authenticate"], "Token");

    let write = app
        .post(
            "/api/articles",
            Some(&token),
            serde_json::json!({"article": {"title": "t", "description": "d", "body": "b"}}),
        )
        .await;
    assert_eq!(write.status, StatusCode::UNAUTHORIZED, "{}", write.json);
}

/// Sends `head` and the first `sent` bytes of its body on a raw connection (the rest is never
/// sent), and reads the answer: (status, JSON body).
async fn send_part_of_a_body(app: &TestApp, head: String, sent: usize) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (mut rd, mut wr) = sock.into_split();
    // writes on while the answer is read; it stops at `sent`, or when the server hangs up
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        wr.write_all(&vec![b' '; sent]).await?;
        Ok::<_, std::io::Error>(wr)
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let (status, body) = loop {
        let n = rd.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed without an answer");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        if body.len() >= length {
            let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
            break (status, body.to_string());
        }
    };
    writer.abort();
    (status, serde_json::from_str(&body).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_with_an_idempotency_key_gets_413_having_been_read_only_to_the_limit()
{
    // a layer that waited for more of the body than the limit would wait here until the
    // request time-out (503)
    let app = TestApp::spawn_with(|s| {
        s.http.request_timeout_secs = 10;
        s.auth.argon2_memory_kib = 1024;
    })
    .await;
    let token = app.register("hoarder").await;
    let limit = app.settings.http.body_limit_bytes;
    let head = format!(
        "POST /api/articles HTTP/1.1\r\nHost: test\r\nAuthorization: Token {token}\r\n\
         Idempotency-Key: twenty-megabytes\r\nContent-Type: application/json\r\n\
         Content-Length: 20000000\r\n\r\n"
    );
    let (status, json) = send_part_of_a_body(&app, head, 2 * limit).await;
    assert_eq!(status, 413, "{json}");
    assert!(json["errors"].is_object(), "{json}");
    // nothing was recorded under the key: the same key on a small body runs
    let small = app
        .request(Method::POST, "/api/articles", Some(&token))
        .header("idempotency-key", "twenty-megabytes")
        .json(&serde_json::json!({"article": {"title": "t", "description": "d", "body": "b"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_larger_than_the_api_body_limit_still_goes_through_with_an_idempotency_key() {
    let app = TestApp::spawn_with(|s| s.auth.argon2_memory_kib = 1024).await;
    let token = app.register("keyed").await;
    // noise does not compress: a PNG of about 1.7 MB, above the 1 MiB API limit and below
    // the upload limit
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let img = image::RgbImage::from_fn(760, 760, |_, _| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        image::Rgb([seed as u8, (seed >> 8) as u8, (seed >> 16) as u8])
    });
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let png = png.into_inner();
    assert!(
        png.len() > app.settings.http.body_limit_bytes,
        "{}",
        png.len()
    );
    let (ct, body) = multipart("file", "noise.png", "image/png", &png);
    let res = app
        .request(Method::POST, "/api/uploads", Some(&token))
        .header("content-type", ct)
        .header("idempotency-key", "big-upload")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
}
