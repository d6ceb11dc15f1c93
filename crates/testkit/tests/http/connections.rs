//! Keep-alive connections: a node closes one that waits too long for its next request.

use crescendo_testkit::TestApp;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_keep_alive_connection_idle_past_the_idle_time_out_is_closed_by_the_node() {
    // arrange: a node that closes connections idle for a second
    let app = TestApp::spawn_with(|s| s.http.idle_timeout_secs = 1).await;
    let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    // act: one request on a keep-alive connection, then nothing
    conn.write_all(b"GET /health HTTP/1.1\r\nhost: crescendo\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    // the bound only turns a node that never closes into a failure instead of a hang
    let closed = tokio::time::timeout(Duration::from_secs(60), conn.read_to_end(&mut seen)).await;
    // assert: the answer came, then the node closed the idle connection
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        matches!(closed, Ok(Ok(_))),
        "the idle connection is still open: {closed:?}"
    );
}
