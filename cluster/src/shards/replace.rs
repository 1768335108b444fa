//! Replacing a node in the shards' replicas: a Raft membership change at each
//! shard's leader, with openraft's own learner and joint-consensus steps.
//!
//! An operator who lost node `old` for good starts node `new` (empty data dir,
//! its config naming it in the region map) and asks any node to replace `old`
//! by `new`. For every shard `old` is a voter of, its leader adds `new` as a
//! learner, waits until it has caught up (by log, or by snapshot), then
//! changes the voters to the old ones with `new` instead of `old` (a joint
//! configuration first, so a majority of both the old and the new voters
//! commits the change). Each step is idempotent: a request answers where every
//! shard stands after at most [`REPLACE_WAIT`], and the same request again
//! carries on from there.

use super::running::{Attempt, Shards};
use super::types::ShardId;
use crate::names::is_valid_node_name;
use crate::placement::node_number;
use crate::route::commands::{PeerAnswer, PeerCommand};
use fixit_actors::error::{CoreError, CoreResult};
use fixit_protocol::api::ApiError;
use fixit_protocol::commands::{PendingShard, Replacement};
use openraft::error::{ClientWriteError, RaftError};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Longest one replacement request works before it answers where each shard
/// stands (the operator sends it again until nothing is pending); within the
/// SDK's patience with a node of several (its `FAILOVER_AFTER`, 2.5 s).
pub const REPLACE_WAIT: Duration = Duration::from_millis(2_000);
/// Entries a learner may still lag behind the leader's log when it is made a
/// voter (the rest follows in the next appends).
pub const CAUGHT_UP_LAG: u64 = 64;
/// Longest a leader waits for a membership entry to commit in one step (within
/// a peer call's deadline); the change goes on meanwhile, and the next step
/// finds it done or under way.
const STEP_COMMIT_MAX: Duration = Duration::from_millis(1_500);
/// Longest a step at another node's leader is waited for.
const STEP_LEASH: Duration = Duration::from_millis(2_500);
/// Pause between two steps of a shard that is not done yet.
const STEP_PAUSE: Duration = Duration::from_millis(200);

/// Where replacing a node stands in one shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplaceStep {
    /// The shard's voters include the new node and not the old one.
    Replaced,
    /// Neither is a voter of the shard (and no change is under way): the old
    /// node did not replicate it.
    Unchanged,
    /// Not done yet: what it waits for.
    Pending(String),
}

impl Shards {
    /// Replaces node `old` by node `new` in the voters of every shard `old` is
    /// a voter of, driving each shard's leader step by step for at most
    /// [`REPLACE_WAIT`]; answers where every shard stands. `new` must be a
    /// member this node can reach, running with its config naming it in the
    /// region map (so it replicates the shards) on an empty data dir.
    pub async fn replace_node(&self, old: &str, new: &str) -> CoreResult<Replacement> {
        for name in [old, new] {
            if !is_valid_node_name(name) {
                return Err(CoreError::Invalid(format!(
                    "{name:?} cannot name a node (1 to 63 of a-z, 0-9 and '-', not all digits)"
                )));
            }
        }
        if old == new {
            return Err(CoreError::Invalid(format!(
                "a node cannot replace itself ({old})"
            )));
        }
        if node_number(old) == node_number(new) {
            return Err(CoreError::Invalid(format!(
                "nodes {old} and {new} have the same node number: give the new node another name"
            )));
        }
        let data_nodes = self.router().nodes().len();
        if self
            .configured_replicas()
            .any(|replicas| replicas.len() != data_nodes)
        {
            return Err(CoreError::Conflict(format!(
                "the cluster has {data_nodes} data nodes, more than each shard's replicas: \
                 replacing a node would move other replicas too, which is not automated \
                 (docs/CLUSTER.md)"
            )));
        }
        if new != self.name() && !self.router().reachable(new) {
            return Err(CoreError::Unavailable(format!(
                "node {new} is not a member this node reaches: start it (its config naming it \
                 in the region map, its seeds the running nodes) and send this again"
            )));
        }
        let deadline = Instant::now() + REPLACE_WAIT;
        let steps = futures::future::join_all(
            (0..self.buckets()).map(|shard| self.replace_in(ShardId(shard), old, new, deadline)),
        )
        .await;
        let mut replacement = Replacement {
            replaced: Vec::new(),
            unchanged: Vec::new(),
            pending: Vec::new(),
        };
        for (shard, step) in steps.into_iter().enumerate() {
            let shard = ShardId(shard as u32).name();
            match step? {
                ReplaceStep::Replaced => replacement.replaced.push(shard),
                ReplaceStep::Unchanged => replacement.unchanged.push(shard),
                ReplaceStep::Pending(why) => replacement.pending.push(PendingShard { shard, why }),
            }
        }
        if replacement.replaced.is_empty() && replacement.pending.is_empty() {
            return Err(CoreError::NotFound(format!(
                "node {old} among the voters of any shard"
            )));
        }
        tracing::info!(
            %old,
            %new,
            replaced = replacement.replaced.len(),
            unchanged = replacement.unchanged.len(),
            pending = replacement.pending.len(),
            "node replacement"
        );
        Ok(replacement)
    }

    /// Drives the replacement in `shard` at its leader until it is done or
    /// `deadline` passes; a leader's refusal (the request cannot be done) is
    /// the error.
    async fn replace_in(
        &self,
        shard: ShardId,
        old: &str,
        new: &str,
        deadline: Instant,
    ) -> CoreResult<ReplaceStep> {
        let command = PeerCommand::ReplaceReplica {
            shard,
            old: old.to_owned(),
            new: new.to_owned(),
        };
        let request_id = format!("{}-replace-{old}-{new}-{shard}", self.name());
        let mut last = ReplaceStep::Pending("no leader of the shard answered".into());
        loop {
            let step = self
                .at_leader(shard, deadline, STEP_LEASH, |node| {
                    let (command, request_id) = (&command, &request_id);
                    async move {
                        if node == self.name() {
                            self.replace_step(shard, old, new).await
                        } else {
                            self.ask_leader(&node, shard, command, None, request_id, |answer| {
                                match answer {
                                    PeerAnswer::Replace(step) => Ok(step),
                                    other => Err(Box::new(other)),
                                }
                            })
                            .await
                        }
                    }
                })
                .await;
            match step {
                None => return Ok(last),
                Some(Err(error)) => return Err(error),
                Some(Ok(ReplaceStep::Pending(why))) => last = ReplaceStep::Pending(why),
                Some(Ok(done)) => return Ok(done),
            }
            if Instant::now() + STEP_PAUSE >= deadline {
                return Ok(last);
            }
            tokio::time::sleep(STEP_PAUSE).await;
        }
    }

    /// Serves one step of a replacement another node sent to this one as the
    /// shard's leader.
    pub(crate) async fn serve_replace(
        &self,
        shard: ShardId,
        old: &str,
        new: &str,
    ) -> Result<PeerAnswer, ApiError> {
        match self.replace_step(shard, old, new).await {
            Attempt::Done(step) => Ok(PeerAnswer::Replace(step)),
            Attempt::Retry(leader) => Ok(PeerAnswer::NotLeader { leader }),
            Attempt::Refused(error) => Err(ApiError::Core(error)),
        }
    }

    /// One step of replacing `old` by `new` in `shard`, here as its leader:
    /// add `new` as a learner; once it has caught up, change the voters.
    async fn replace_step(&self, shard: ShardId, old: &str, new: &str) -> Attempt<ReplaceStep> {
        let Some(group) = self.groups().get(&shard) else {
            return Attempt::Retry(None);
        };
        let leader = self.leader_of(shard);
        if leader.as_deref() != Some(self.name()) {
            return Attempt::Retry(leader);
        }
        let (old_id, new_id) = (u64::from(node_number(old)), u64::from(node_number(new)));
        let metrics = group.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let configs = membership.get_joint_config();
        // The voters the shard is going to (the new ones of a change under
        // way, which a change from here completes).
        let voters: BTreeSet<u64> = configs.last().cloned().unwrap_or_default();
        let settled = configs.len() == 1;
        if settled && !voters.contains(&old_id) {
            return Attempt::Done(if voters.contains(&new_id) {
                ReplaceStep::Replaced
            } else {
                ReplaceStep::Unchanged
            });
        }
        if settled && voters.contains(&new_id) {
            return Attempt::Refused(CoreError::Invalid(format!(
                "node {new} is already a voter of {shard} beside {old}: replacing would only \
                 remove {old}"
            )));
        }
        if let Some(node) = membership.get_node(&old_id).filter(|node| node.addr != old) {
            return Attempt::Refused(CoreError::Invalid(format!(
                "node {old} has the number of {} in shard {shard}: check the name",
                node.addr
            )));
        }
        match membership.get_node(&new_id) {
            Some(node) if node.addr != new => {
                return Attempt::Refused(CoreError::Invalid(format!(
                    "node {new} has the number of {} in shard {shard}: give it another name",
                    node.addr
                )));
            }
            Some(_) => {}
            None => {
                if !self.router().reachable(new) {
                    return Attempt::Done(ReplaceStep::Pending(format!(
                        "node {new} is not reachable from {}, the shard's leader",
                        self.name()
                    )));
                }
                let added = group.raft.add_learner(new_id, BasicNode::new(new), false);
                return match tokio::time::timeout(STEP_COMMIT_MAX, added).await {
                    Ok(Ok(_)) => Attempt::Done(ReplaceStep::Pending(format!(
                        "node {new} added as a learner: it is catching up"
                    ))),
                    Ok(Err(error)) => not_written(error),
                    Err(_) => Attempt::Done(ReplaceStep::Pending(
                        "adding the learner was not committed in time".into(),
                    )),
                };
            }
        }
        if !voters.contains(&new_id) {
            // Caught up: close to the leader's log, and holding everything the
            // leader has applied (so, as a voter, it has every committed entry
            // a vote may need).
            let last = metrics.last_log_index.unwrap_or(0);
            let applied = metrics.last_applied.map_or(0, |log_id| log_id.index);
            let matched = metrics
                .replication
                .as_ref()
                .and_then(|replication| replication.get(&new_id).copied())
                .flatten()
                .map(|log_id| log_id.index);
            match matched {
                None => {
                    return Attempt::Done(ReplaceStep::Pending(format!(
                        "node {new} has confirmed no entry yet (does its config name it \
                         in the region map, so that it replicates {shard}?)"
                    )))
                }
                Some(matched)
                    if last.saturating_sub(matched) > CAUGHT_UP_LAG || matched < applied =>
                {
                    return Attempt::Done(ReplaceStep::Pending(format!(
                        "node {new} is catching up: {} entries behind",
                        last - matched
                    )))
                }
                Some(_) => {}
            }
        }
        let mut target = voters;
        target.remove(&old_id);
        target.insert(new_id);
        let changed = group.raft.change_membership(target, false);
        match tokio::time::timeout(STEP_COMMIT_MAX, changed).await {
            Ok(Ok(_)) => {
                tracing::info!(%shard, %old, %new, "replica replaced");
                Attempt::Done(ReplaceStep::Replaced)
            }
            Ok(Err(error)) => not_written(error),
            Err(_) => Attempt::Done(ReplaceStep::Pending(
                "the membership change was not committed in time".into(),
            )),
        }
    }
}

/// A membership entry not written: try the leader named, or say why.
fn not_written(error: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> Attempt<ReplaceStep> {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            Attempt::Retry(forward.leader_node.map(|node| node.addr))
        }
        other => Attempt::Done(ReplaceStep::Pending(format!("membership change: {other}"))),
    }
}
