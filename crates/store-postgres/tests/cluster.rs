//! The server monitor on real servers: a replica that answers late stays in rotation for a
//! few checks, one whose port refuses connections leaves at the first.

use crescendo_store_postgres::cluster::MISSED_CHECKS_DOWN;
use crescendo_store_postgres::{PgOptions, PgStore};
use crescendo_topology::pg::Postgres;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

/// A loopback TCP proxy in front of a server that can be frozen: while frozen it still
/// accepts connections but passes no byte either way, as a server too busy to answer. Once
/// closed, its port refuses connections, as that of a server that is gone.
struct Proxy {
    port: u16,
    frozen: watch::Sender<bool>,
    close: Option<oneshot::Sender<()>>,
    accepting: Option<JoinHandle<()>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (frozen, watch) = watch::channel(false);
        let (close, mut closed) = oneshot::channel();
        let accepting = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let client = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((client, _)) => client,
                        Err(_) => break,
                    },
                    _ = &mut closed => break,
                };
                let watch = watch.clone();
                connections.spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let ((cr, cw), (sr, sw)) = (client.into_split(), server.into_split());
                    tokio::join!(pipe(cr, sw, watch.clone()), pipe(sr, cw, watch));
                });
            }
            drop(listener);
            connections.shutdown().await;
        });
        Self {
            port,
            frozen,
            close: Some(close),
            accepting: Some(accepting),
        }
    }

    fn freeze(&self, frozen: bool) {
        self.frozen.send_replace(frozen);
    }

    /// Closes the port and every connection through it, and returns once they are closed.
    async fn close(&mut self) {
        if let Some(close) = self.close.take() {
            let _ = close.send(());
        }
        if let Some(accepting) = self.accepting.take() {
            accepting.await.unwrap();
        }
    }
}

/// A primary, one streaming replica, and a proxy in front of the replica.
async fn primary_and_replica() -> (Postgres, Postgres, Proxy) {
    let (primary, replica) = tokio::task::spawn_blocking(|| {
        let primary = Postgres::start(&[]).expect("the primary starts");
        let replica = Postgres::replica_of(&primary, "r1", &[]).expect("the replica starts");
        (primary, replica)
    })
    .await
    .unwrap();
    let proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], replica.port()))).await;
    (primary, replica, proxy)
}

/// Copies `from` to `to`, holding each chunk while the proxy is frozen.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut frozen: watch::Receiver<bool>) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if frozen.wait_for(|f| !*f).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// A store over `primary` with `replica` reached through `proxy`, checked only when the
/// test asks (the monitor's first check is an hour away; a check waits at most 500 ms).
fn store(primary: &Postgres, replica: &Postgres, proxy: &Proxy) -> PgStore {
    let mut opts = PgOptions::new(primary.url("postgres"));
    let url = replica.url("postgres").replace(
        &format!(":{}/", replica.port()),
        &format!(":{}/", proxy.port),
    );
    opts.replicas = vec![url];
    opts.check_interval = Duration::from_secs(3600);
    opts.max_replica_lag = Duration::from_secs(3600);
    PgStore::connect(&opts).expect("the URLs are valid")
}

/// Whether the store sends reads to the replica now.
fn replica_readable(store: &PgStore) -> bool {
    store.servers()[1].2
}

/// Checks the servers until the replica takes reads (at most 30 s).
async fn check_until_readable(store: &PgStore, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        store.check_servers().await;
        if replica_readable(store) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {:?}", store.servers());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_accepts_connections_but_answers_late_stays_until_it_misses_checks_in_a_row()
{
    // arrange: the replica, behind the proxy, in rotation
    let (primary, replica, proxy) = primary_and_replica().await;
    let store = store(&primary, &replica, &proxy);
    check_until_readable(&store, "the replica joins").await;

    // act: the replica stops answering, its port still accepting connections
    proxy.freeze(true);
    let mut readable_after = Vec::new();
    for _ in 0..MISSED_CHECKS_DOWN {
        store.check_servers().await;
        readable_after.push(replica_readable(&store));
    }

    // assert: late answers keep it in until the last check of the run takes it out
    let mut expected = vec![true; MISSED_CHECKS_DOWN as usize - 1];
    expected.push(false);
    assert_eq!(
        readable_after, expected,
        "readable after each of {MISSED_CHECKS_DOWN} checks without an answer"
    );
    proxy.freeze(false);
    check_until_readable(&store, "the replica answers again and comes back").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_port_refuses_connections_leaves_at_the_first_check() {
    // arrange
    let (primary, replica, mut proxy) = primary_and_replica().await;
    let store = store(&primary, &replica, &proxy);
    check_until_readable(&store, "the replica joins").await;

    // act
    proxy.close().await;
    store.check_servers().await;

    // assert
    assert!(
        !replica_readable(&store),
        "a replica whose port refuses connections is out after one check: {:?}",
        store.servers()
    );
}
