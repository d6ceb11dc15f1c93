//! Seeding against a real server through a connection that loses an answer.

use crescendo_bench::{SeedPlan, seed};
use crescendo_testkit::TestApp;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy in front of `upstream` that relays everything, except the answer to the
/// first request whose bytes start with `victim`: once the server starts answering it (the
/// request has been applied), the proxy closes the client's connection without relaying a
/// byte, as a keep-alive connection closed under a request does. The flag is cleared once
/// an answer was lost.
async fn lossy_proxy(upstream: SocketAddr, victim: &'static [u8]) -> (SocketAddr, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let armed = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&armed);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(relay(client, upstream, Arc::clone(&flag), victim));
        }
    });
    (addr, armed)
}

/// Relays one client connection (see [`lossy_proxy`]).
async fn relay(client: TcpStream, upstream: SocketAddr, armed: Arc<AtomicBool>, victim: &[u8]) {
    let server = TcpStream::connect(upstream).await.unwrap();
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let hit = Arc::new(AtomicBool::new(false));
    let hit_up = Arc::clone(&hit);
    let up = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from_client.read(&mut buf).await {
            if buf[..n].starts_with(victim) && armed.swap(false, Ordering::SeqCst) {
                hit_up.store(true, Ordering::SeqCst);
            }
            if to_server.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from_server.read(&mut buf).await {
            if hit.load(Ordering::SeqCst) {
                return;
            }
            if to_client.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    // whichever direction ends first, both halves of both connections are dropped
    tokio::select! {
        () = up => {},
        () = down => {},
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeding_write_whose_answer_was_lost_is_sent_again_and_applied_once() {
    // arrange: the first article creation is applied, but its answer never arrives
    let app = TestApp::spawn_with(|s| s.auth.argon2_memory_kib = 1024).await;
    let (proxy, armed) = lossy_proxy(app.addr, b"POST /api/articles HTTP/1.1").await;
    let plan = SeedPlan {
        users: 2,
        follows_per_user: 0,
        articles: 2,
        favorites_per_user: 0,
        comments: 0,
        concurrency: 1,
        ..SeedPlan::default()
    };
    // act
    let seeded = seed(&format!("http://{proxy}"), &plan)
        .await
        .expect("seeding survives a lost answer");
    // assert: an answer was lost, and each author still has exactly one article
    assert!(!armed.load(Ordering::SeqCst), "no answer was lost");
    assert_eq!(seeded.slugs.len(), 2, "{:?}", seeded.slugs);
    for i in 0..2 {
        let a = app
            .get(&format!("/api/articles?author=bench_{i}&limit=0"), None)
            .await;
        assert_eq!(a.json["articlesCount"], 1, "bench_{i}: {}", a.json);
    }
}
