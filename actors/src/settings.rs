//! Cluster-wide settings (service areas, zones, providers' work areas) as
//! last-writer-wins records, so nodes that missed a change — down, partitioned,
//! or restarted from an old disk — converge on the newest value of every key.
//!
//! Each record carries a [`Version`]: when it was written and by which node (the
//! node's name breaks ties), and a value or, for a removal, none (a tombstone, so
//! a removal is not undone by a node that still holds the old value). A node
//! merges a record only if its version is newer than the one it holds.
//!
//! Anti-entropy compares [`BUCKETS`] digests, each the wrapping sum of a hash of
//! every (key, version) whose key falls in the bucket: equal digests, nothing to
//! do; for a bucket that differs, the versions in it are exchanged and the newer
//! records fetched or pushed (`fixit-cluster`'s settings sync).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Digest buckets: a difference costs the exchange of one bucket's versions.
pub const BUCKETS: usize = 256;

/// When and where a setting was written; newer is greater.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    /// Written at, ms since the epoch (the writing node's clock).
    pub at_ms: u64,
    /// The writing node's name (breaks ties).
    pub origin: String,
}

/// One setting as stored and as exchanged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    /// Its key (`area/<name>`, `work/<provider>`).
    pub key: String,
    /// Its version.
    pub version: Version,
    /// The encoded value; `None`: removed.
    pub value: Option<Vec<u8>>,
}

/// FNV-1a, 64 bits: stable across builds and platforms (digests are compared
/// between nodes).
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The bucket of `key`.
pub fn bucket_of(key: &str) -> usize {
    (fnv(&[key.as_bytes()]) % BUCKETS as u64) as usize
}

fn entry_hash(key: &str, version: &Version) -> u64 {
    fnv(&[
        key.as_bytes(),
        &version.at_ms.to_be_bytes(),
        version.origin.as_bytes(),
    ])
}

/// Every key's version, with the bucket digests kept up to date.
#[derive(Clone, Debug)]
pub struct Versions {
    versions: BTreeMap<String, Version>,
    digests: Vec<u64>,
}

impl Default for Versions {
    fn default() -> Versions {
        Versions {
            versions: BTreeMap::new(),
            digests: vec![0; BUCKETS],
        }
    }
}

impl Versions {
    /// The version held for `key`.
    pub fn get(&self, key: &str) -> Option<&Version> {
        self.versions.get(key)
    }

    /// Whether `version` is newer than what is held for `key`.
    pub fn is_newer(&self, key: &str, version: &Version) -> bool {
        self.versions.get(key).is_none_or(|held| version > held)
    }

    /// Holds `version` for `key` (the caller checked it is newer).
    pub fn set(&mut self, key: &str, version: Version) {
        let bucket = bucket_of(key);
        if let Some(old) = self.versions.get(key) {
            self.digests[bucket] = self.digests[bucket].wrapping_sub(entry_hash(key, old));
        }
        self.digests[bucket] = self.digests[bucket].wrapping_add(entry_hash(key, &version));
        self.versions.insert(key.to_owned(), version);
    }

    /// The digest of every bucket.
    pub fn digests(&self) -> &[u64] {
        &self.digests
    }

    /// The buckets whose digest differs from `theirs` (all, if the lengths differ).
    pub fn differing(&self, theirs: &[u64]) -> Vec<usize> {
        if theirs.len() != BUCKETS {
            return (0..BUCKETS).collect();
        }
        (0..BUCKETS)
            .filter(|bucket| self.digests[*bucket] != theirs[*bucket])
            .collect()
    }

    /// The versions of the keys in `buckets`, at most `limit` of them.
    pub fn in_buckets(&self, buckets: &[usize], limit: usize) -> Vec<(String, Version)> {
        self.versions
            .iter()
            .filter(|(key, _)| buckets.contains(&bucket_of(key)))
            .take(limit)
            .map(|(key, version)| (key.clone(), version.clone()))
            .collect()
    }

    /// Number of keys held (tombstones included).
    pub fn len(&self) -> usize {
        self.versions.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }
}

/// What to do after comparing our versions with a peer's for some buckets:
/// the keys to fetch from the peer (theirs is newer or ours is missing), and the
/// keys to push to it (ours is newer, or theirs is missing).
pub fn reconcile(
    ours: &Versions,
    buckets: &[usize],
    theirs: &[(String, Version)],
) -> (Vec<String>, Vec<String>) {
    let theirs: BTreeMap<&str, &Version> = theirs.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let fetch = theirs
        .iter()
        .filter(|(key, version)| ours.is_newer(key, version))
        .map(|(key, _)| (*key).to_owned())
        .collect();
    let push = ours
        .versions
        .iter()
        .filter(|(key, _)| buckets.contains(&bucket_of(key)))
        .filter(|(key, version)| theirs.get(key.as_str()).is_none_or(|held| *version > *held))
        .map(|(key, _)| key.clone())
        .collect();
    (fetch, push)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(at_ms: u64, origin: &str) -> Version {
        Version {
            at_ms,
            origin: origin.into(),
        }
    }

    #[test]
    fn digests_depend_on_content_not_on_order() {
        let mut one = Versions::default();
        let mut two = Versions::default();
        one.set("area/a", v(1, "a"));
        one.set("area/b", v(2, "b"));
        two.set("area/b", v(2, "b"));
        two.set("area/a", v(0, "a"));
        assert!(!one.differing(two.digests()).is_empty());
        two.set("area/a", v(1, "a"));
        assert_eq!(one.digests(), two.digests());
        assert!(one.differing(two.digests()).is_empty());
    }

    #[test]
    fn reconciling_fetches_the_newer_and_pushes_the_missing() {
        let mut ours = Versions::default();
        ours.set("area/old", v(1, "a"));
        ours.set("area/mine", v(5, "a"));
        let theirs = vec![
            ("area/old".to_owned(), v(3, "b")),
            ("area/theirs".to_owned(), v(4, "b")),
        ];
        let buckets: Vec<usize> = (0..BUCKETS).collect();
        let (fetch, push) = reconcile(&ours, &buckets, &theirs);
        assert_eq!(fetch, ["area/old", "area/theirs"]);
        assert_eq!(push, ["area/mine"]);
        assert!(v(3, "a") < v(3, "b"), "the origin breaks ties");
    }
}
