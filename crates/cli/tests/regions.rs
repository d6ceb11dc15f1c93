//! Rung 8: two regions in network namespaces joined by a WAN relay with 20 ms one-way
//! delay, started by `crescendo up topologies/08-two-regions.toml`. Every client here runs
//! inside a users' namespace (users-a near region A, users-b near region B) and finds the
//! site through the geo DNS; nothing is sent from the machine's own namespace to a namespace
//! address (isolation is checked with `ip route get`, never with traffic).

#[path = "regions/auto.rs"]
mod auto;
#[path = "regions/client.rs"]
mod client;
#[path = "regions/faults.rs"]
mod faults;

use client::{Deployed, in_ns, site_client};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// How long the geo DNS may take to answer with the other region once one stops answering
/// its health checks (the README states the bound: checks every second, down after three
/// failed ones, plus the answer's 5 s TTL; doubled for a loaded machine).
const DNS_FAILOVER_BOUND: Duration = Duration::from_secs(20);

/// How long a write in one region may take to show in the other region's reads (WAL shipped
/// over the WAN, then the cross-region invalidation stream): allows for a loaded machine.
const CROSS_REGION_BOUND: Duration = Duration::from_secs(10);

#[test]
fn two_regions_serve_their_users_survive_a_wan_cut_and_fail_over_to_b() {
    let d = client::up("two-regions", &[]);
    namespaces_are_isolated(&d);
    each_users_namespace_resolves_its_own_region(&d);
    for (i, ns) in ["users-a", "users-b"].iter().enumerate() {
        let url = format!("http://{}:8000", d.site);
        crescendo_testkit::realworld::run_collection_in(&d.ns(ns), &url, &format!("rw{i}"), &[]);
    }
    a_user_in_b_reads_their_write_back_and_a_sees_it_too(&d);
    faults::a_wan_cut_keeps_reads_in_both_regions_and_fails_bs_writes_clearly(&d);
    let lost = faults::losing_region_a_moves_everyone_to_b(&d);
    eprintln!("rung 8, asynchronous cross-region replication: {lost} acknowledged writes lost");
    faults::region_a_rejoins_as_a_replica_of_b(&d);
    let prefix = d.prefix();
    drop(d);
    let left = client::namespaces_with(&prefix);
    assert!(left.is_empty(), "down left namespaces behind: {left:?}");
}

#[test]
fn with_synchronous_cross_region_commit_losing_region_a_loses_no_acknowledged_write() {
    let d = client::up("two-regions-sync", &[("synchronous", "true")]);
    let lost = faults::losing_region_a_moves_everyone_to_b(&d);
    assert_eq!(lost, 0, "synchronous commit lost acknowledged writes");
}

#[test]
fn with_automatic_failover_a_wan_cut_never_promotes_and_losing_region_a_does() {
    let d = client::up("two-regions-auto", &[("auto_failover", "true")]);
    let token = auto::a_wan_cut_alone_makes_no_second_primary(&d);
    auto::losing_region_a_promotes_b_on_its_own(&d, &token);
}

/// The users' namespaces reach the regions' public addresses but have no route to the
/// private inter-region network; the machine's own namespace would send namespace addresses
/// off the machine (which is why no client runs there); `status` gives every process its
/// region.
fn namespaces_are_isolated(d: &Deployed) {
    use crescendo_topology::netns::route_get;
    use crescendo_topology::regions::{private_ip, public_ip};
    let to_private = route_get(Some(&d.ns("users-a")), private_ip(0).into());
    assert!(
        to_private.contains("unreachable") || to_private.contains("No route"),
        "users-a can route to region A's private address: {to_private}"
    );
    let to_public = route_get(Some(&d.ns("users-a")), public_ip(0).into());
    assert!(to_public.contains("wan0"), "{to_public}");
    let from_root = route_get(None, public_ip(0).into());
    assert!(
        !from_root.contains("wan0"),
        "the root namespace has a link to the WAN: {from_root}"
    );
    let s = d.status();
    let procs = s["processes"].as_array().unwrap();
    for role in ["wan", "dns"] {
        assert!(procs.iter().any(|p| p["role"] == role), "no {role} in {s}");
    }
    for region in ["a", "b"] {
        let mine: Vec<&Value> = procs.iter().filter(|p| p["region"] == region).collect();
        for role in ["lb", "web", "redis", "nats", "worker", "invalidator"] {
            assert!(
                mine.iter()
                    .any(|p| p["role"] == role && p["healthy"] == true),
                "region {region} has no healthy {role}: {s}"
            );
        }
    }
    let pg = |region: &str, role: &str| {
        procs
            .iter()
            .any(|p| p["region"] == region && p["role"] == role)
    };
    assert!(pg("a", "pg-primary") && pg("b", "pg-replica") && !pg("b", "pg-primary"));
}

/// Each users' namespace is answered with its own region only, and a cached read there
/// crosses no WAN: it takes less than the WAN's round trip, which every crossing adds.
fn each_users_namespace_resolves_its_own_region(d: &Deployed) {
    use crescendo_topology::regions::public_ip;
    for (i, ns) in ["users-a", "users-b"].iter().enumerate() {
        let answer = d.resolve(ns);
        assert_eq!(answer, vec![public_ip(i)], "{ns} resolved {answer:?}");
        let fastest = in_ns(&d.ns(ns), {
            let site = d.site.clone();
            move || async move {
                let (client, base) = site_client(&site).await;
                let url = format!("{base}/api/tags");
                let mut fastest = Duration::MAX;
                for _ in 0..10 {
                    let t = Instant::now();
                    let r = client.get(&url).send().await.unwrap();
                    assert!(r.status().is_success());
                    r.bytes().await.unwrap();
                    fastest = fastest.min(t.elapsed());
                }
                fastest
            }
        });
        eprintln!("rung 8, {ns} to its own region, fastest cached read of 10: {fastest:?}");
        assert!(
            fastest < Duration::from_millis(2 * 20),
            "{ns}'s reads of its own region cross the WAN ({fastest:?})"
        );
    }
}

/// A user in region B registers and writes (to A's primary across the WAN), then reads the
/// write back at once in B; a reader in A sees B's write, and a reader in B sees A's write
/// (a profile cached in each region beforehand is invalidated across regions).
fn a_user_in_b_reads_their_write_back_and_a_sees_it_too(d: &Deployed) {
    let site = d.site.clone();
    let (token, user) = in_ns(&d.ns("users-b"), move || async move {
        let (client, base) = site_client(&site).await;
        let user = format!("ryw{}", std::process::id());
        let token = client::register(&client, &base, &user).await;
        for n in 0..5 {
            let body = json!({"article": {"title": format!("{user} {n}"), "description": "d", "body": "b", "tagList": []}});
            let made: Value = client::send(
                &client,
                "POST",
                &format!("{base}/api/articles"),
                &token,
                Some(body),
            )
            .await;
            let slug = made["article"]["slug"].as_str().unwrap().to_string();
            let back: Value = client::send(
                &client,
                "GET",
                &format!("{base}/api/articles/{slug}"),
                &token,
                None,
            )
            .await;
            assert_eq!(back["article"]["slug"], slug.as_str(), "{back}");
        }
        (token, user)
    });
    // the profile is cached in both regions, then changed in each in turn
    for (writer, reader, bio) in [
        ("users-b", "users-a", "from b"),
        ("users-a", "users-b", "from a"),
    ] {
        d.read_profile(reader, &user);
        let started = Instant::now();
        d.set_bio(writer, &token, bio);
        let seen = d.profile_bio_within(reader, &user, bio, CROSS_REGION_BOUND);
        assert!(
            seen,
            "a write from {writer} did not reach {reader}'s region within {CROSS_REGION_BOUND:?}"
        );
        eprintln!(
            "rung 8, a bio written from {writer} read by {reader} after {:?}",
            started.elapsed()
        );
    }
}
