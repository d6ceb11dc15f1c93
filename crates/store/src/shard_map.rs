//! The shard map: which database cluster holds each of the [`SHARD_COUNT`] logical shards,
//! and the epoch that names this placement.
//!
//! Logical shards are placed by consistent hashing: every cluster owns
//! [`ShardMap::VNODES`] points on a ring of 64-bit positions, at [`stable_hash`] of
//! `"{cluster}#{i}"`; a logical shard belongs to the first point clockwise from
//! [`stable_hash`] of `"shard:{n}"`. Adding a cluster gives it the shards just before its
//! own points and moves nothing else, about 1/(N+1) of them; removing one gives its shards
//! to the points after its own. Every process computes the same map from the same list of
//! clusters, and the hash is fixed in code, so two builds never disagree.
//!
//! A map is never changed in place: a new placement (a cluster added, or one hot shard moved
//! on its own with [`ShardMap::with_shard_on`]) is a new map with the next epoch, and
//! [`ShardMap::moves_to`] lists the shards whose home differs between two maps.

use crescendo_domain::{LogicalShard, SHARD_COUNT, stable_hash};
use std::collections::BTreeMap;

/// A logical shard whose home differs between two maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    /// The logical shard.
    pub shard: LogicalShard,
    /// Its cluster in the older map.
    pub from: String,
    /// Its cluster in the newer map.
    pub to: String,
}

/// Where every logical shard lives, at one epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardMap {
    epoch: u64,
    clusters: Vec<String>,
    /// Per logical shard, its cluster's index in `clusters`.
    owner: Vec<u16>,
}

impl ShardMap {
    /// Points each cluster owns on the ring: enough that every cluster's share of the 4,096
    /// logical shards stays within about a tenth of the mean.
    pub const VNODES: u32 = 256;

    /// The consistent-hash placement of every logical shard on `clusters` (names, unique,
    /// in any order), at `epoch`.
    ///
    /// # Panics
    /// When `clusters` is empty or names a cluster twice.
    pub fn place(clusters: &[&str], epoch: u64) -> Self {
        let mut names: Vec<String> = clusters.iter().map(|c| c.to_string()).collect();
        names.sort();
        names.dedup();
        assert!(
            !names.is_empty() && names.len() == clusters.len(),
            "a shard map needs distinct clusters: {clusters:?}"
        );
        let mut ring: Vec<(u64, u16)> = Vec::with_capacity(names.len() * Self::VNODES as usize);
        for (i, name) in names.iter().enumerate() {
            for v in 0..Self::VNODES {
                ring.push((stable_hash(format!("{name}#{v}").as_bytes()), i as u16));
            }
        }
        ring.sort_unstable();
        let owner = (0..SHARD_COUNT)
            .map(|n| {
                let h = stable_hash(format!("shard:{n}").as_bytes());
                let at = ring.partition_point(|&(p, _)| p < h);
                ring[at % ring.len()].1
            })
            .collect();
        Self {
            epoch,
            clusters: names,
            owner,
        }
    }

    /// The map stored as `homes` (each logical shard with its cluster's name) at `epoch`,
    /// as a catalogue database keeps it.
    ///
    /// # Errors
    /// A logical shard missing or out of range, named twice, or more than 65,535 clusters.
    pub fn from_homes(
        epoch: u64,
        homes: impl IntoIterator<Item = (u16, String)>,
    ) -> Result<Self, String> {
        let mut clusters: Vec<String> = Vec::new();
        let mut owner: Vec<Option<u16>> = vec![None; usize::from(SHARD_COUNT)];
        for (shard, cluster) in homes {
            let slot = owner
                .get_mut(usize::from(shard))
                .ok_or_else(|| format!("logical shard {shard} is out of range"))?;
            let i = match clusters.iter().position(|c| *c == cluster) {
                Some(i) => i,
                None => {
                    clusters.push(cluster);
                    clusters.len() - 1
                }
            };
            let i = u16::try_from(i).map_err(|_| "too many clusters".to_string())?;
            if slot.replace(i).is_some() {
                return Err(format!("logical shard {shard} has two homes"));
            }
        }
        let owner = owner
            .into_iter()
            .enumerate()
            .map(|(n, o)| o.ok_or_else(|| format!("logical shard {n} has no home")))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            epoch,
            clusters,
            owner,
        })
    }

    /// Every logical shard with its cluster's name, in shard order (what
    /// [`ShardMap::from_homes`] reads back).
    pub fn homes(&self) -> impl Iterator<Item = (u16, &str)> + '_ {
        self.owner
            .iter()
            .enumerate()
            .map(|(n, &i)| (n as u16, self.clusters[usize::from(i)].as_str()))
    }

    /// The epoch of this placement: every change makes a map with a higher one.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The clusters: those given to [`ShardMap::place`], sorted by name, then any that
    /// [`ShardMap::with_shard_on`] added.
    pub fn clusters(&self) -> &[String] {
        &self.clusters
    }

    /// The cluster that holds `shard`.
    pub fn cluster_of(&self, shard: LogicalShard) -> &str {
        &self.clusters[usize::from(self.owner[usize::from(shard.get())])]
    }

    /// How many logical shards each cluster holds, by cluster name.
    pub fn shard_counts(&self) -> BTreeMap<&str, usize> {
        let mut counts: BTreeMap<&str, usize> =
            self.clusters.iter().map(|c| (c.as_str(), 0)).collect();
        for &i in &self.owner {
            *counts
                .get_mut(self.clusters[usize::from(i)].as_str())
                .expect("every owner is a cluster") += 1;
        }
        counts
    }

    /// This map with `shard` alone moved to `cluster` (a hot shard given a cluster of its
    /// own, say), at the next epoch. The cluster may be new to the map.
    pub fn with_shard_on(&self, shard: LogicalShard, cluster: &str) -> Self {
        let mut next = self.clone();
        next.epoch += 1;
        let i = match next.clusters.iter().position(|c| c == cluster) {
            Some(i) => i,
            None => {
                next.clusters.push(cluster.to_string());
                next.clusters.len() - 1
            }
        };
        next.owner[usize::from(shard.get())] = i as u16;
        next
    }

    /// The logical shards whose cluster in `next` differs from this map's, in shard order.
    pub fn moves_to(&self, next: &ShardMap) -> Vec<Move> {
        (0..SHARD_COUNT)
            .map(LogicalShard::new)
            .filter_map(|shard| {
                let (from, to) = (self.cluster_of(shard), next.cluster_of(shard));
                (from != to).then(|| Move {
                    shard,
                    from: from.to_string(),
                    to: to.to_string(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_reads_back_from_its_homes_and_incomplete_ones_are_refused() {
        let map = ShardMap::place(&["a", "b", "c"], 7);
        let homes: Vec<(u16, String)> = map.homes().map(|(n, c)| (n, c.to_string())).collect();
        let back = ShardMap::from_homes(7, homes.clone()).unwrap();
        assert!(map.moves_to(&back).is_empty());
        assert_eq!(back.epoch(), 7);
        assert_eq!(back.shard_counts(), map.shard_counts());
        assert!(
            ShardMap::from_homes(7, homes[1..].to_vec()).is_err(),
            "shard 0 has no home"
        );
        let mut twice = homes.clone();
        twice.push((5, "a".into()));
        assert!(ShardMap::from_homes(7, twice).is_err());
        let mut beyond = homes;
        beyond.push((SHARD_COUNT, "a".into()));
        assert!(ShardMap::from_homes(7, beyond).is_err());
    }

    #[test]
    fn every_cluster_holds_about_its_share() {
        for n in 1..=6 {
            let names: Vec<String> = (1..=n).map(|i| format!("pg-{i}")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let map = ShardMap::place(&refs, 1);
            let mean = f64::from(SHARD_COUNT) / n as f64;
            for (cluster, count) in map.shard_counts() {
                let share = count as f64 / mean;
                assert!(
                    (0.85..=1.15).contains(&share),
                    "{n} clusters: {cluster} holds {count} shards, {share:.2} of the mean"
                );
            }
        }
    }

    #[test]
    fn adding_a_cluster_moves_about_its_share_and_only_to_it() {
        for n in 2..=5 {
            let names: Vec<String> = (1..=n + 1).map(|i| format!("pg-{i}")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let before = ShardMap::place(&refs[..n], 1);
            let after = ShardMap::place(&refs, 2);
            let moves = before.moves_to(&after);
            assert!(
                moves.iter().all(|m| m.to == names[n]),
                "only to the new one"
            );
            let moved = moves.len() as f64 / f64::from(SHARD_COUNT);
            let ideal = 1.0 / (n + 1) as f64;
            assert!(
                (ideal * 0.8..=ideal * 1.2).contains(&moved),
                "{n} → {}: {moved:.3} of the shards moved, ideal {ideal:.3}",
                n + 1
            );
        }
    }

    #[test]
    fn placement_depends_on_names_only() {
        let a = ShardMap::place(&["east", "west", "north"], 7);
        let b = ShardMap::place(&["north", "east", "west"], 7);
        assert_eq!(a, b, "order does not matter");
        // written down: a change of hash or ring would move data between builds
        let homes: Vec<&str> = [0u16, 1, 2, 4095]
            .into_iter()
            .map(|n| a.cluster_of(LogicalShard::new(n)))
            .collect();
        assert_eq!(homes, PINNED_HOMES);
    }

    const PINNED_HOMES: [&str; 4] = ["north", "east", "north", "west"];

    #[test]
    fn a_hot_shard_moves_alone_at_the_next_epoch() {
        let map = ShardMap::place(&["pg-1", "pg-2"], 3);
        let hot = LogicalShard::new(42);
        let next = map.with_shard_on(hot, "pg-hot");
        assert_eq!(next.epoch(), 4);
        assert_eq!(
            map.moves_to(&next),
            vec![Move {
                shard: hot,
                from: map.cluster_of(hot).to_string(),
                to: "pg-hot".into()
            }]
        );
        assert_eq!(next.shard_counts()["pg-hot"], 1);
    }

    #[test]
    #[should_panic(expected = "distinct clusters")]
    fn a_cluster_named_twice_is_refused() {
        ShardMap::place(&["pg-1", "pg-1"], 1);
    }
}
