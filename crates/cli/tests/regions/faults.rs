//! Rung 8's failures: the WAN between the regions cut for ten seconds, and region A lost
//! whole. Clients stay inside the users' namespaces.

use super::client::{Deployed, crescendo, in_ns, request, send, site_client};
use super::{CROSS_REGION_BOUND, DNS_FAILOVER_BOUND};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long region B's web nodes may take to refuse writes once the WAN is cut (they must
/// notice that A's primary stopped answering: the README states the bound).
const WRITE_REFUSAL_BOUND: Duration = Duration::from_secs(30);

/// Creates an article from namespace `ns` as the user of `token`: its slug when the answer
/// was 2xx, else the status and body.
pub async fn try_article(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    title: &str,
) -> Result<String, (u16, String)> {
    let body = json!({"article": {"title": title, "description": "d", "body": "b", "tagList": []}});
    match request(
        client,
        "POST",
        &format!("{base}/api/articles"),
        token,
        Some(body),
    )
    .send()
    .await
    {
        Ok(r) if r.status().is_success() => {
            let v: Value = r.json().await.unwrap();
            Ok(v["article"]["slug"].as_str().unwrap().to_string())
        }
        Ok(r) => Err((r.status().as_u16(), r.text().await.unwrap_or_default())),
        Err(e) => Err((0, e.to_string())),
    }
}

/// Whether every slug reads back from namespace `ns`'s region within `bound`.
fn all_readable(d: &Deployed, ns: &str, slugs: &[String], bound: Duration) -> Vec<String> {
    let (site, slugs) = (d.site.clone(), slugs.to_vec());
    in_ns(&d.ns(ns), move || async move {
        let (client, base) = site_client(&site).await;
        let started = Instant::now();
        let mut missing = slugs.clone();
        while !missing.is_empty() && started.elapsed() < bound {
            let mut still = Vec::new();
            for s in missing {
                let r = client.get(format!("{base}/api/articles/{s}")).send().await;
                if !r.is_ok_and(|r| r.status().is_success()) {
                    still.push(s);
                }
            }
            missing = still;
            if !missing.is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        missing
    })
}

/// The WAN between the regions is cut for ten seconds: both regions go on serving reads,
/// region A's writes succeed, region B's fail with 503 in the API's format (and succeed
/// again after the link heals); A's writes reach B after it; B never gets a primary.
pub fn a_wan_cut_keeps_reads_in_both_regions_and_fails_bs_writes_clearly(d: &Deployed) {
    let (ta, _) = d.register_in("users-a", "cuta");
    let (tb, _) = d.register_in("users-b", "cutb");
    d.wan("cut");
    let cut = Instant::now();
    let site = d.site.clone();
    let tb2 = tb.clone();
    let (refused_after, stale) = in_ns(&d.ns("users-b"), move || async move {
        let (client, base) = site_client(&site).await;
        let refused = loop {
            match try_article(&client, &base, &tb2, "during the cut").await {
                Err((503, body)) => {
                    let v: Value = serde_json::from_str(&body).unwrap();
                    assert!(
                        v["errors"]["body"].is_array(),
                        "503 not in the API's format: {body}"
                    );
                    break cut.elapsed();
                }
                other => assert!(
                    cut.elapsed() < WRITE_REFUSAL_BOUND,
                    "B's write during the cut: {other:?}"
                ),
            }
        };
        let r = client
            .get(format!("{base}/api/articles?limit=5"))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "B's read during the cut: {}",
            r.status()
        );
        let stale = r
            .headers()
            .get("x-crescendo-staleness")
            .map(|v| v.to_str().unwrap().to_string());
        (refused, stale)
    });
    eprintln!(
        "rung 8, WAN cut: B refused writes after {refused_after:?}; B's reads marked stale: {stale:?}"
    );
    assert!(
        stale.is_some(),
        "B's read during the cut carries no staleness header"
    );
    let site = d.site.clone();
    let made_in_a: Vec<String> = in_ns(&d.ns("users-a"), move || async move {
        let (client, base) = site_client(&site).await;
        let mut slugs = Vec::new();
        for n in 0..5 {
            let _ = send(
                &client,
                "GET",
                &format!("{base}/api/articles?limit=3"),
                "",
                None,
            )
            .await;
            slugs.push(
                try_article(&client, &base, &ta, &format!("a during the cut {n}"))
                    .await
                    .expect("A writes during the cut"),
            );
        }
        slugs
    });
    std::thread::sleep(Duration::from_secs(10).saturating_sub(cut.elapsed()));
    d.wan("heal");
    let healed = Instant::now();
    let site = d.site.clone();
    in_ns(&d.ns("users-b"), move || async move {
        let (client, base) = site_client(&site).await;
        while let Err(e) = try_article(&client, &base, &tb, "after the cut").await {
            assert!(
                healed.elapsed() < WRITE_REFUSAL_BOUND,
                "B's writes after healing: {e:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    eprintln!(
        "rung 8, WAN healed: B's writes back after {:?}",
        healed.elapsed()
    );
    let missing = all_readable(d, "users-b", &made_in_a, CROSS_REGION_BOUND);
    assert!(
        missing.is_empty(),
        "A's writes during the cut missing in B: {missing:?}"
    );
    assert_eq!(
        replica_in_recovery(d),
        "t",
        "region B got a primary of its own"
    );
}

/// Whether region B's database is still a replica (`t`), asked inside B's namespace.
pub fn replica_in_recovery(d: &Deployed) -> String {
    let admin = std::fs::read_to_string(d.region_dir("b").join("postgres-admin.toml")).unwrap();
    // `postgres_replica_urls = ["postgres://…"]`: B's one replica
    let line = admin
        .lines()
        .find(|l| l.starts_with("postgres_replica_urls"))
        .unwrap();
    let url = line.split('"').nth(1).unwrap().to_string();
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &d.ns("region-b"),
            "psql",
            "-X",
            "-A",
            "-t",
            &url,
            "-c",
            "SELECT pg_is_in_recovery()",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Region A is lost whole (every process killed) while a user near it writes: the geo DNS
/// sends that user to B, `failover --region b` promotes B's replica, and B takes writes.
/// Returns how many acknowledged writes B does not have (the RPO) and prints the RTO.
pub fn losing_region_a_moves_everyone_to_b(d: &Deployed) -> usize {
    let (token, _) = d.register_in("users-a", "rpo");
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (ns, site, acked, stop) =
            (d.ns("users-a"), d.site.clone(), acked.clone(), stop.clone());
        let token = token.clone();
        std::thread::spawn(move || {
            in_ns(&ns, move || async move {
                let (client, base) = site_client(&site).await;
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    if let Ok(slug) = try_article(&client, &base, &token, &format!("rpo {n}")).await
                    {
                        acked.lock().unwrap().push(slug);
                    }
                }
            })
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let killed = kill_region(d, "a");
    let lost_at = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    eprintln!("rung 8: killed region A's {killed} processes");
    while d.resolve("users-a") != vec![crescendo_topology::regions::public_ip(1)] {
        assert!(
            lost_at.elapsed() < DNS_FAILOVER_BOUND,
            "the geo DNS still sends users-a to A"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "rung 8: the geo DNS answered users-a with B after {:?}",
        lost_at.elapsed()
    );
    let out = crescendo(&["failover", "--region", "b", "--run-dir", &d.dir()]);
    assert!(out.contains("promoted"), "{out}");
    let site = d.site.clone();
    in_ns(&d.ns("users-a"), move || async move {
        let (client, base) = site_client(&site).await;
        while let Err(e) = try_article(&client, &base, &token, "after the failover").await {
            assert!(
                lost_at.elapsed() < Duration::from_secs(60),
                "no write in B after the failover: {e:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    eprintln!(
        "rung 8: RTO (region A lost to the first write in B) {:?}",
        lost_at.elapsed()
    );
    let acked = acked.lock().unwrap().clone();
    assert!(
        !acked.is_empty(),
        "the writer got no write acknowledged before region A was lost"
    );
    let missing = all_readable(d, "users-a", &acked, Duration::from_secs(5));
    eprintln!(
        "rung 8: {} writes acknowledged by A, {} missing in B",
        acked.len(),
        missing.len()
    );
    missing.len()
}

/// SIGKILLs every process of a region (each process group); returns how many.
pub fn kill_region(d: &Deployed, region: &str) -> usize {
    let state: Value =
        serde_json::from_slice(&std::fs::read(d.region_dir(region).join("state.json")).unwrap())
            .unwrap();
    let mut n = 0;
    for p in state["processes"].as_array().unwrap() {
        let pid = nix::unistd::Pid::from_raw(p["pid"].as_i64().unwrap() as i32);
        if nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL).is_ok() {
            n += 1;
        }
    }
    n
}

/// After the failover, `rejoin --region a` brings region A back as a replica region of B:
/// the geo DNS sends users-a back to A, whose writes now go to B's primary across the WAN
/// and read back at once in A, and show in B.
pub fn region_a_rejoins_as_a_replica_of_b(d: &Deployed) {
    let started = Instant::now();
    crescendo(&["rejoin", "--region", "a", "--run-dir", &d.dir()]);
    eprintln!("rung 8: region A rejoined in {:?}", started.elapsed());
    let back = Instant::now();
    while d.resolve("users-a") != vec![crescendo_topology::regions::public_ip(0)] {
        assert!(
            back.elapsed() < DNS_FAILOVER_BOUND,
            "the geo DNS does not send users-a back to A"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "rung 8: the geo DNS sent users-a back to A after {:?}",
        back.elapsed()
    );
    let (token, user) = d.register_in("users-a", "back");
    d.set_bio("users-a", &token, "rejoined");
    assert_eq!(
        d.read_profile("users-a", &user)["profile"]["bio"],
        "rejoined"
    );
    assert!(
        d.profile_bio_within("users-b", &user, "rejoined", CROSS_REGION_BOUND),
        "a write through the rejoined region A does not show in B"
    );
}
