//! Who owns a key: a fixed table of partitions, each assigned to a member by rendezvous hashing.
//!
//! Keys hash (xxh3) into [`PARTITIONS`] partitions; each partition belongs to the member with the
//! highest score `mix(partition, member)`. Rendezvous assignment moves only the partitions the
//! joining member wins, or the leaving member held: about 1/N of the keys. With 65,536
//! partitions the largest share stays within a few percent of the mean for any realistic N. The
//! table makes a lookup one hash and one index, whatever the cluster size.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_64;

/// Number of partitions keys are spread over.
pub(crate) const PARTITIONS: usize = 1 << 16;

/// A routable member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member {
    /// Unique id of the node (stable across restarts when configured).
    pub node_id: Arc<str>,
    /// Where the node serves the peer protocol.
    pub grpc_addr: SocketAddr,
}

/// An immutable ownership table, rebuilt when the set of ready members changes.
pub struct Ring {
    epoch: u64,
    members: Vec<Member>,
    /// The members' hashes, in member order, for scoring partitions.
    seeds: Vec<u64>,
    /// Index into `members` per partition.
    owners: Box<[u16]>,
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring").field("epoch", &self.epoch).field("members", &self.members).finish()
    }
}

impl Ring {
    /// A ring over `members` (any order; duplicates removed), tagged with `epoch`.
    pub fn new(epoch: u64, mut members: Vec<Member>) -> Self {
        members.sort();
        members.dedup_by(|a, b| a.node_id == b.node_id);
        members.truncate(usize::from(u16::MAX));
        let seeds: Vec<u64> = members.iter().map(|m| xxh3_64(m.node_id.as_bytes())).collect();
        let owners = (0..PARTITIONS as u64)
            .map(|partition| {
                let best = seeds
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, seed)| mix(partition, **seed))
                    .map_or(0, |(index, _)| index);
                best as u16
            })
            .collect();
        Ring { epoch, members, seeds, owners }
    }

    /// The ring's epoch: higher is newer on this node.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The members, sorted by node id.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Whether `node_id` is a member.
    pub(crate) fn contains(&self, node_id: &str) -> bool {
        self.members.iter().any(|m| *m.node_id == *node_id)
    }

    /// The partition a key falls in.
    pub fn partition(key: &str) -> usize {
        (xxh3_64(key.as_bytes()) % PARTITIONS as u64) as usize
    }

    /// The owner of `key`, or `None` when the ring is empty.
    pub fn owner(&self, key: &str) -> Option<&Member> {
        self.members.get(self.owner_index(key)?)
    }

    /// The index in [`members`](Self::members) of the owner of `key`; `None` when the ring is
    /// empty.
    pub(crate) fn owner_index(&self, key: &str) -> Option<usize> {
        let index = usize::from(self.owners[Self::partition(key)]);
        (index < self.members.len()).then_some(index)
    }

    /// The owner `key` would have if `gone` left the ring: the member with the next best score
    /// for its partition (rendezvous hashing moves only the leaver's keys). `None` when no
    /// other member remains.
    pub(crate) fn successor(&self, key: &str, gone: &str) -> Option<&Member> {
        let partition = Self::partition(key) as u64;
        self.members
            .iter()
            .zip(&self.seeds)
            .filter(|(member, _)| &*member.node_id != gone)
            .max_by_key(|(_, seed)| mix(partition, **seed))
            .map(|(member, _)| member)
    }

    /// The fraction of partitions (and so of keys) each member owns, in member order.
    pub fn shares(&self) -> Vec<f64> {
        let mut counts = vec![0usize; self.members.len()];
        for owner in self.owners.iter() {
            if let Some(count) = counts.get_mut(usize::from(*owner)) {
                *count += 1;
            }
        }
        counts.into_iter().map(|c| c as f64 / PARTITIONS as f64).collect()
    }

    /// The ownership share of one node (0 when it is not a member).
    pub fn share_of(&self, node_id: &str) -> f64 {
        let shares = self.shares();
        self.members.iter().position(|m| &*m.node_id == node_id).map_or(0.0, |i| shares[i])
    }
}

/// A fast, well-mixed score of a partition for a member (splitmix64 finaliser).
fn mix(partition: u64, seed: u64) -> u64 {
    let mut z = partition.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<Member> {
        (0..n)
            .map(|i| Member {
                node_id: format!("node-{i}").into(),
                grpc_addr: SocketAddr::from(([127, 0, 0, 1], 4000 + i as u16)),
            })
            .collect()
    }

    #[test]
    fn largest_share_is_within_ten_percent_of_the_mean() {
        for n in 3..=16 {
            let ring = Ring::new(1, members(n));
            let largest = ring.shares().into_iter().fold(0.0, f64::max);
            let mean = 1.0 / n as f64;
            assert!(largest <= 1.10 * mean, "{n} nodes: largest share {largest} vs mean {mean}");
        }
    }

    #[test]
    fn a_join_or_leave_moves_about_one_nth_of_the_keys() {
        let keys: Vec<String> = (0..20_000).map(|i| format!("key-{i}")).collect();
        let owner_ids = |ring: &Ring| -> Vec<Arc<str>> {
            keys.iter().map(|k| ring.owner(k).map(|m| m.node_id.clone()).unwrap()).collect()
        };
        for n in [3, 5, 8] {
            let before = owner_ids(&Ring::new(1, members(n)));
            let joined = owner_ids(&Ring::new(2, members(n + 1)));
            let moved = before.iter().zip(&joined).filter(|(a, b)| a != b).count();
            let expected = keys.len() as f64 / (n + 1) as f64;
            assert!((moved as f64) < expected * 1.15, "join of node {n}: {moved} moved");
            // Every moved key went to the newcomer.
            let newcomer = format!("node-{n}");
            assert!(before.iter().zip(&joined).all(|(a, b)| a == b || **b == newcomer));

            let mut fewer = members(n);
            fewer.remove(0);
            let left = owner_ids(&Ring::new(3, fewer));
            let moved = before.iter().zip(&left).filter(|(a, b)| a != b).count();
            assert!((moved as f64) < keys.len() as f64 / n as f64 * 1.15);
            assert!(before.iter().zip(&left).all(|(a, b)| a == b || &**a == "node-0"));
        }
    }

    #[test]
    fn member_order_does_not_change_ownership_and_empty_ring_owns_nothing() {
        let mut reversed = members(4);
        reversed.reverse();
        let (a, b) = (Ring::new(1, members(4)), Ring::new(9, reversed));
        assert!((0..1000).all(|i| {
            let key = format!("k{i}");
            a.owner(&key) == b.owner(&key)
        }));
        assert!(Ring::new(1, Vec::new()).owner("k").is_none());
    }
}
