//! Rung 8's automatic region failover (`[regions] auto_failover = true`): region B's watcher
//! promotes B's replica only when region A's primary is lost from B and from the witness in
//! the dns namespace. A WAN cut between the regions alone (the witness still reaches A)
//! makes no second primary; region A killed whole does make B the primary, with no operator.
//! Clients stay inside the users' namespaces.

use super::client::{Deployed, in_ns, site_client};
use super::faults::{kill_region, replica_in_recovery, try_article};
use serde_json::Value;
use std::time::{Duration, Instant};

/// How long the WAN is cut: three times the watcher's bound (5 s).
const CUT: Duration = Duration::from_secs(15);

/// The watcher's bound: A's primary lost from B and from the witness this long.
const LOSS_BOUND: Duration = crescendo_topology::regions::watch::LOSS_BOUND;

/// How long after region A is lost B's replica must be promoted: the watcher's bound, one
/// check interval (1 s) and the probes' time-outs (1.5 s), then the promotion itself;
/// doubled for a loaded machine.
const PROMOTION_BOUND: Duration = Duration::from_secs(20);

/// How long after region A is lost a write in B must succeed: the promotion, then B's web
/// nodes following the new primary on their own.
const RTO_BOUND: Duration = Duration::from_secs(45);

/// How long after healing B's writes may still fail (B's web nodes see A's primary again).
const HEALED_BOUND: Duration = Duration::from_secs(30);

/// Writes through region B from users-b as the user of `token` until it succeeds (B's web
/// nodes see A's primary again after the cut).
fn write_in_b_once_healed(d: &Deployed, token: &str) {
    let (site, token) = (d.site.clone(), token.to_string());
    in_ns(&d.ns("users-b"), move || async move {
        let (client, base) = site_client(&site).await;
        let healed = Instant::now();
        while let Err(e) = try_article(&client, &base, &token, "after the cut").await {
            assert!(
                healed.elapsed() < HEALED_BOUND,
                "B's writes fail {HEALED_BOUND:?} after healing: {e:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

/// Region B's watcher's last decision (`region-failover.json`).
fn decision(d: &Deployed) -> Value {
    let path = d.region_dir("b").join("region-failover.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_default()).unwrap_or(Value::Null)
}

/// Waits until the watcher's decision is `state`; returns how long that took.
fn decision_within(d: &Deployed, state: &str, bound: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let v = decision(d);
        if v["state"] == state {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < bound,
            "the watcher is not {state} after {bound:?}: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The witness runs in the dns namespace on the private network only, B's watcher in B;
/// the WAN between the regions is cut for [`CUT`]: B loses A's primary, the witness does
/// not, and B's replica stays a replica, the watcher saying why; after healing it watches
/// again.
pub fn a_wan_cut_alone_makes_no_second_primary(d: &Deployed) -> String {
    let (token, _) = d.register_in("users-b", "auto");
    let s = d.status();
    let procs = s["processes"].as_array().unwrap();
    let witness = procs
        .iter()
        .find(|p| p["role"] == "witness")
        .unwrap_or_else(|| panic!("no witness: {s}"));
    assert_eq!(witness["healthy"], true, "{s}");
    let addr = witness["addr"].as_str().unwrap();
    assert!(
        addr.starts_with("10.250.1.3:"),
        "the witness is not on the private network only: {addr}"
    );
    assert!(
        procs
            .iter()
            .any(|p| p["role"] == "region-watch" && p["region"] == "b" && p["healthy"] == true),
        "no healthy region-watch in region b: {s}"
    );
    assert!(
        !procs
            .iter()
            .any(|p| p["role"] == "region-watch" && p["region"] == "a"),
        "region A has a watcher: {s}"
    );
    decision_within(d, "watching", Duration::from_secs(10));
    assert_eq!(
        d.status()["region_failover"]["state"],
        "watching",
        "status does not show the watcher's decision"
    );

    d.wan("cut");
    let cut = Instant::now();
    let mut held = None;
    while cut.elapsed() < CUT {
        let v = decision(d);
        assert!(
            v["state"] == "watching" || v["state"] == "holding",
            "a WAN cut alone made the watcher act: {v}"
        );
        if v["state"] == "holding" && held.is_none() {
            held = Some(cut.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let v = decision(d);
    assert_eq!(v["state"], "holding", "{v}");
    let reasons = v["reasons"].to_string();
    assert!(
        reasons.contains("the witness reaches A's primary"),
        "the watcher does not say why it holds: {v}"
    );
    let lost = v["lost_from_b_ms"].as_u64().unwrap_or(0);
    assert!(
        lost >= 2 * LOSS_BOUND.as_millis() as u64,
        "B has not seen A's primary lost for long: {v}"
    );
    assert_eq!(
        replica_in_recovery(d),
        "t",
        "a WAN cut alone made region B a primary"
    );
    eprintln!(
        "rung 8, automatic failover, WAN cut for {CUT:?}: the watcher held from {held:?} after \
         the cut, A's primary lost from B for {lost} ms; B's replica still in recovery; {reasons}"
    );
    d.wan("heal");
    let back = decision_within(d, "watching", Duration::from_secs(20));
    eprintln!("rung 8, automatic failover: watching again {back:?} after healing");
    write_in_b_once_healed(d, &token);
    token
}

/// Region A is killed whole: the watcher promotes B's replica, no sooner than its bound and
/// within [`PROMOTION_BOUND`], and a write from users-b (whose region is B) succeeds. Prints
/// the RTO (region A lost to the first successful write in B).
pub fn losing_region_a_promotes_b_on_its_own(d: &Deployed, token: &str) {
    let token = token.to_string();
    let killed = kill_region(d, "a");
    let lost_at = Instant::now();
    let (site, dir) = (d.site.clone(), d.region_dir("b"));
    let (promoted, first_write) = in_ns(&d.ns("users-b"), move || async move {
        let (client, base) = site_client(&site).await;
        let mut promoted = None;
        loop {
            let v: Value = serde_json::from_slice(
                &std::fs::read(dir.join("region-failover.json")).unwrap_or_default(),
            )
            .unwrap_or(Value::Null);
            if v["state"] == "promoted" && promoted.is_none() {
                promoted = Some(lost_at.elapsed());
            }
            match try_article(&client, &base, &token, "after region A was lost").await {
                Ok(_) => break (promoted, lost_at.elapsed()),
                Err(e) if lost_at.elapsed() >= RTO_BOUND => {
                    let keep =
                        std::env::temp_dir().join(format!("auto-failover-{}", std::process::id()));
                    let _ = crescendo_topology::state::copy_logs(&dir, &keep);
                    panic!(
                        "no write in B {RTO_BOUND:?} after region A was lost: {e:?}; watcher: {v}; \
                         region B's logs in {}",
                        keep.display()
                    )
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let v = decision(d);
    assert_eq!(v["state"], "promoted", "{v}");
    assert_eq!(replica_in_recovery(d), "f", "B's replica was not promoted");
    let bound = LOSS_BOUND.as_millis() as u64;
    for lost in ["lost_from_b_ms", "lost_from_witness_ms"] {
        assert!(
            v[lost].as_u64().is_some_and(|ms| ms >= bound),
            "promoted before the bound ({lost}): {v}"
        );
    }
    if let Some(p) = promoted {
        assert!(
            p >= LOSS_BOUND && p < PROMOTION_BOUND,
            "promoted {p:?} after region A was lost"
        );
    }
    assert_eq!(d.status()["region_failover"]["state"], "promoted");
    eprintln!(
        "rung 8, automatic failover: killed region A's {killed} processes; the watcher had \
         promoted B {promoted:?} after; RTO (region A lost to the first write in B) \
         {first_write:?}; {}",
        v["promoted"]
    );
}
