//! What the running nodes say of the replicated wallet shards (`GET /cluster`):
//! which node leads each shard (read before a fault, to know what the fault takes
//! away), whether a node has rejoined its shards or given up leading them, and
//! whether every replica of every shard has caught up (before the nodes stop).

use super::cluster::ChaosCluster;
use fixit_auth::{Principal, Role};
use fixit_cluster::shards::ShardId;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How often the views are read while waiting.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// One shard as one node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ShardRow {
    shard: u32,
    replicas: Vec<String>,
    leader: Option<String>,
    term: u64,
    applied: Option<u64>,
    digest: Option<u64>,
    outbox_transfers: Option<u64>,
}

impl ShardRow {
    fn parse(row: &serde_json::Value) -> Option<ShardRow> {
        Some(ShardRow {
            shard: ShardId::parse(row["shard"].as_str()?)?.0,
            replicas: row["replicas"]
                .as_array()?
                .iter()
                .filter_map(|name| name.as_str().map(str::to_owned))
                .collect(),
            leader: row["leader"].as_str().map(str::to_owned),
            term: row["term"].as_u64().unwrap_or(0),
            applied: row["applied"].as_u64(),
            digest: row["digest"].as_u64(),
            outbox_transfers: row["audit"]["outbox_transfers"].as_u64(),
        })
    }
}

/// The shards node `index` replicates, as it sees them (`None`: no answer).
async fn rows(cluster: &ChaosCluster, index: usize) -> Option<Vec<ShardRow>> {
    let token = cluster.token(Principal {
        role: Role::Admin,
        sub: 0,
    });
    let view: serde_json::Value = cluster
        .http_client()
        .get(format!("http://{}/cluster", cluster.http_addr(index)))
        .bearer_auth(token)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let shards = view["shards"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    shards.iter().map(ShardRow::parse).collect()
}

/// Shard → the node leading it now: among the running nodes' views, the claim
/// made in the highest term.
pub(crate) async fn leaders(cluster: &ChaosCluster) -> BTreeMap<u32, String> {
    leaders_seen_by(cluster, None)
        .await
        .into_iter()
        .map(|(shard, (_, leader))| (shard, leader))
        .collect()
}

/// Shard → (term, leader): among the views of the running nodes other than
/// `except`, the claim made in the highest term.
pub(crate) async fn leaders_seen_by(
    cluster: &ChaosCluster,
    except: Option<usize>,
) -> BTreeMap<u32, (u64, String)> {
    let mut best: BTreeMap<u32, (u64, String)> = BTreeMap::new();
    let asked = (0..cluster.nodes.len())
        .filter(|index| cluster.nodes[*index].running() && Some(*index) != except);
    for index in asked {
        for row in rows(cluster, index).await.unwrap_or_default() {
            let Some(leader) = row.leader else {
                continue;
            };
            let known = best.get(&row.shard).map(|(term, _)| *term);
            if known.is_none_or(|term| row.term > term) {
                best.insert(row.shard, (row.term, leader));
            }
        }
    }
    best
}

/// The leaders in `before` (shard → (term, leader)) that `after` no longer
/// shows in the same term, as `w<n>: <leader> in term t → ...`.
pub(crate) fn deposed(
    before: &BTreeMap<u32, (u64, String)>,
    after: &BTreeMap<u32, (u64, String)>,
) -> Vec<String> {
    before
        .iter()
        .filter(|(shard, kept)| after.get(shard) != Some(kept))
        .map(|(shard, (term, leader))| {
            let now = after
                .get(shard)
                .map_or("no leader".to_owned(), |(term, leader)| {
                    format!("{leader} in term {term}")
                });
            format!("w{shard}: {leader} in term {term} → {now}")
        })
        .collect()
}

/// The shards node `index` leads now (empty when wallets are not replicated).
pub(crate) async fn led_by(cluster: &ChaosCluster, index: usize) -> BTreeSet<u32> {
    if !cluster.replicated() {
        return BTreeSet::new();
    }
    let name = &cluster.nodes[index].name;
    leaders(cluster)
        .await
        .into_iter()
        .filter(|(_, leader)| leader == name)
        .map(|(shard, _)| shard)
        .collect()
}

/// Shard → node `index`'s current term in it, by its own view (empty when it
/// does not answer, or wallets are not replicated).
pub(crate) async fn terms_of(cluster: &ChaosCluster, index: usize) -> BTreeMap<u32, u64> {
    rows(cluster, index)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|row| (row.shard, row.term))
        .collect()
}

/// The shards whose term rose from `before` to `after`, as `w<n>: a → b`
/// (a shard missing from either view, a view that could not be read, is not
/// judged).
pub(crate) fn raised_terms(before: &BTreeMap<u32, u64>, after: &BTreeMap<u32, u64>) -> Vec<String> {
    after
        .iter()
        .filter_map(|(shard, term)| {
            let was = *before.get(shard)?;
            (*term > was).then(|| format!("w{shard}: {was} → {term}"))
        })
        .collect()
}

/// Those of `shards` that node `index` says it leads, by its own view, with
/// the term it leads them in.
pub(crate) async fn claimed_by(
    cluster: &ChaosCluster,
    index: usize,
    shards: &BTreeSet<u32>,
) -> BTreeMap<u32, u64> {
    let name = &cluster.nodes[index].name;
    rows(cluster, index)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|row| shards.contains(&row.shard) && row.leader.as_ref() == Some(name))
        .map(|row| (row.shard, row.term))
        .collect()
}

/// Waits (`max` at most) until node `index` knows a leader of every shard it
/// replicates — it is back in its groups; whether it happened.
pub(crate) async fn wait_rejoined(cluster: &ChaosCluster, index: usize, max: Duration) -> bool {
    let end = Instant::now() + max;
    while Instant::now() < end {
        if let Some(rows) = rows(cluster, index).await {
            if !rows.is_empty() && rows.iter().all(|row| row.leader.is_some()) {
                return true;
            }
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    false
}

/// Waits (`max` at most) until node `index` no longer claims the leadership it
/// had of each shard in `claimed` (shard → the term it led in): it names
/// another leader, or none, or is in a later term (elected again, which a
/// member that rejoined may well be); the wait in ms, if it happened.
pub(crate) async fn wait_stepped_down(
    cluster: &ChaosCluster,
    index: usize,
    claimed: &BTreeMap<u32, u64>,
    max: Duration,
) -> Option<u64> {
    let started = Instant::now();
    let name = &cluster.nodes[index].name;
    while started.elapsed() < max {
        if let Some(rows) = rows(cluster, index).await {
            let stepped_down = rows.iter().all(|row| {
                claimed
                    .get(&row.shard)
                    .is_none_or(|term| row.term > *term || row.leader.as_ref() != Some(name))
            });
            if stepped_down {
                return Some(started.elapsed().as_millis() as u64);
            }
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    None
}

/// Whether every replica had caught up before the nodes stopped.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CaughtUp {
    /// Every running node replicated its shards, agreed on each shard's leader,
    /// applied the same index with the same digest, and no outbox held a transfer.
    pub agreed: bool,
    /// How long the wait took, in ms.
    pub waited_ms: u64,
    /// What still differed when the wait gave up.
    pub difference: Option<String>,
}

/// Waits (`max` at most) until every replica of every shard caught up: what
/// the drain's end needs before the nodes stop (the checker then finds the
/// replicas equal).
pub(crate) async fn wait_caught_up(cluster: &ChaosCluster, max: Duration) -> CaughtUp {
    let started = Instant::now();
    let mut difference = None;
    while started.elapsed() < max {
        let mut views = BTreeMap::new();
        for index in (0..cluster.nodes.len()).filter(|index| cluster.nodes[*index].running()) {
            views.insert(
                cluster.nodes[index].name.clone(),
                rows(cluster, index).await,
            );
        }
        difference = disagreement(&views);
        if difference.is_none() {
            return CaughtUp {
                agreed: true,
                waited_ms: started.elapsed().as_millis() as u64,
                difference: None,
            };
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    CaughtUp {
        agreed: false,
        waited_ms: started.elapsed().as_millis() as u64,
        difference,
    }
}

/// What keeps the replicas in `views` (node → its rows) from agreeing, if anything.
fn disagreement(views: &BTreeMap<String, Option<Vec<ShardRow>>>) -> Option<String> {
    let mut by_shard: BTreeMap<u32, Vec<(&str, &ShardRow)>> = BTreeMap::new();
    for (node, rows) in views {
        let Some(rows) = rows else {
            return Some(format!("node {node} did not answer GET /cluster"));
        };
        for row in rows {
            by_shard.entry(row.shard).or_default().push((node, row));
        }
    }
    for (shard, replicas) in &by_shard {
        let (first_node, first) = replicas[0];
        let expected: BTreeSet<&str> = first.replicas.iter().map(String::as_str).collect();
        let present: BTreeSet<&str> = replicas.iter().map(|(node, _)| *node).collect();
        if present != expected {
            return Some(format!(
                "w{shard}: replicas {expected:?}, views from {present:?}"
            ));
        }
        for (node, row) in replicas {
            let same = row.leader.is_some()
                && row.leader == first.leader
                && row.applied == first.applied
                && row.digest == first.digest;
            if !same {
                return Some(format!(
                    "w{shard}: {first_node} sees leader {:?}, applied {:?}, digest {:?}; {node} sees {:?}, {:?}, {:?}",
                    first.leader, first.applied, first.digest, row.leader, row.applied, row.digest
                ));
            }
            if row.outbox_transfers.is_some_and(|transfers| transfers > 0) {
                return Some(format!(
                    "w{shard}: {node} still has {:?} transfers in its outbox",
                    row.outbox_transfers
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(leader: &str, applied: u64, digest: u64) -> ShardRow {
        ShardRow {
            shard: 3,
            replicas: vec!["a".into(), "b".into()],
            leader: Some(leader.into()),
            term: 2,
            applied: Some(applied),
            digest: Some(digest),
            outbox_transfers: Some(0),
        }
    }

    #[test]
    fn replicas_agree_only_when_leader_index_and_digest_match_everywhere() {
        let views = |b: ShardRow| {
            BTreeMap::from([
                ("a".to_owned(), Some(vec![row("a", 10, 7)])),
                ("b".to_owned(), Some(vec![b])),
            ])
        };
        assert_eq!(disagreement(&views(row("a", 10, 7))), None);
        assert!(disagreement(&views(row("a", 9, 7))).is_some());
        assert!(disagreement(&views(row("a", 10, 8))).is_some());
        assert!(disagreement(&views(row("b", 10, 7))).is_some());
        let mut missing = views(row("a", 10, 7));
        missing.remove("b");
        assert!(disagreement(&missing).is_some());
    }
}
