//! Replication measured end to end: a write acknowledged by region A, and how long until
//! region B serves it. A writer in `users-a` creates an article through A; a reader in
//! `users-b` then asks B for it every 5 ms until B answers it. One probe at a time, until
//! stopped; both clients share this machine's monotonic clock.

use super::runtime;
use crescendo_topology::netns;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the reader waits for one write before it counts as not seen.
const GIVE_UP: Duration = Duration::from_secs(5);

/// Probes until `stop`; each probe's delay in seconds (a probe B did not serve within
/// [`GIVE_UP`] counts as that long).
///
/// # Errors
/// A namespace cannot be entered, or a client cannot be built.
pub(super) fn visibility(
    (users_a, users_b): (&str, &str),
    (a, b): (SocketAddr, SocketAddr),
    token: &str,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<f64>> {
    let (to_reader, written) = mpsc::channel::<(String, Instant)>();
    let (to_writer, seen) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let reader = s.spawn(move || {
            netns::run_in(users_b, || {
                runtime()?.block_on(async {
                    let client = crate::client::builder(1)
                        .timeout(Duration::from_secs(2))
                        .build()?;
                    let mut delays = Vec::new();
                    for (slug, acked) in written {
                        let url = format!("http://{b}/api/articles/{slug}");
                        loop {
                            let r = client.get(&url).send().await;
                            if r.is_ok_and(|r| r.status().is_success()) || acked.elapsed() > GIVE_UP
                            {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        delays.push(acked.elapsed().min(GIVE_UP).as_secs_f64());
                        if to_writer.send(()).is_err() {
                            break;
                        }
                    }
                    anyhow::Ok(delays)
                })
            })?
        });
        let writer = netns::run_in(users_a, move || {
            runtime()?.block_on(async {
                let client = crate::client::builder(1)
                    .timeout(Duration::from_secs(5))
                    .build()?;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let (acked, slug) = super::post_article(
                        &client,
                        &format!("http://{a}"),
                        token,
                        &format!("probe {n}"),
                        "replication",
                    )
                    .await;
                    if let Some(slug) = slug
                        && (to_reader.send((slug, acked)).is_err() || seen.recv().is_err())
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                drop(to_reader);
                anyhow::Ok(())
            })
        });
        let delays = reader.join().expect("the reader does not panic");
        writer??;
        delays
    })
}
