//! `fixit demo --kill-node-at-s`: stops one node mid-run (in this process,
//! without grace: see [`fixit_edge::server::RunningNode::kill`]), watches its
//! wallet shards fail over as the nodes still up see them, starts it again from
//! its config and data dir, and watches it catch up.

use super::cluster::DemoCluster;
use super::{stamp, DemoArgs};
use fixit_cluster::shards::{ShardView, ViewDepth};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Seconds a stopped node must be back before the run ends, so it has caught
/// up and serves its region again when the run settles and is audited.
pub(crate) const BACK_BEFORE_END_S: u64 = 10;

/// Pause between two looks at the shards' leaders.
const LEADERS_POLL: Duration = Duration::from_millis(100);

/// Longest wait after the restart for every shard to have a leader, and for
/// the restarted node to have caught up.
const CATCH_UP_WAIT_MAX: Duration = Duration::from_secs(20);

/// How long before the stop a node that leads no shard stands for election in
/// a few (time for the elections, well above their 0.6–1.2 s timeouts).
const STAND_BEFORE_STOP: Duration = Duration::from_secs(2);

/// The outage `--kill-node-at-s` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KillPlan {
    /// The node stopped (never 0, node a).
    pub(crate) node: usize,
    /// When, from the start of the simulation.
    pub(crate) at: Duration,
    /// For how long.
    pub(crate) down: Duration,
}

impl KillPlan {
    /// The outage `args` ask for, if any, checked against the nodes' names (in
    /// node order): not node a, and back [`BACK_BEFORE_END_S`] before the end.
    pub(crate) fn from_args(args: &DemoArgs, names: &[String]) -> anyhow::Result<Option<KillPlan>> {
        let Some(at_s) = args.kill_node_at_s else {
            return Ok(None);
        };
        let node = names
            .iter()
            .position(|name| *name == args.kill_node)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--kill-node {}: no such node (the demo's nodes are {})",
                    args.kill_node,
                    names.join(", ")
                )
            })?;
        anyhow::ensure!(
            node != 0,
            "--kill-node {}: node {} serves the dashboard and the QUIC listener you watch, and takes \
             the customers' bookings; stop another node ({})",
            args.kill_node,
            args.kill_node,
            names[1..].join(" or ")
        );
        anyhow::ensure!(args.down_s > 0, "--down-s must be at least 1");
        let back_s = at_s.saturating_add(args.down_s);
        anyhow::ensure!(
            back_s.saturating_add(BACK_BEFORE_END_S) <= args.duration_s,
            "--kill-node-at-s {at_s} --down-s {}: the node would be back at {back_s} s, but it must \
             be back at least {BACK_BEFORE_END_S} s before the end (--duration-s {}) so the run \
             ends on a cluster that has caught up; use --duration-s {} or more",
            args.down_s,
            args.duration_s,
            back_s + BACK_BEFORE_END_S
        );
        Ok(Some(KillPlan {
            node,
            at: Duration::from_secs(at_s),
            down: Duration::from_secs(args.down_s),
        }))
    }
}

/// What the outage came to: the report's `failover` section.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Failover {
    /// The node stopped.
    node: String,
    /// When it was stopped, seconds into the simulation.
    killed_at_s: f64,
    /// When it was serving again, seconds into the simulation.
    back_at_s: f64,
    /// Seconds from the stop until every node up knew a leader, itself up, of
    /// every wallet shard it replicates (none: wallets not replicated, or not
    /// within the wait).
    leader_again_s: Option<f64>,
    /// The shards the node led when it was stopped, and who led each then.
    shards_moved: BTreeMap<String, String>,
    /// Seconds from its start again until it knew the leader of every shard it
    /// replicates and was within a few entries of each leader's log.
    caught_up_s: Option<f64>,
    /// Calls of the simulation that failed because their node was down.
    pub(crate) calls_failed_while_down: u64,
}

/// Waits until `plan.at` after `started`, stops the node, starts it again
/// `plan.down` later, and prints each step as a progress line.
pub(crate) async fn run(
    cluster: Arc<DemoCluster>,
    plan: KillPlan,
    started: Instant,
) -> anyhow::Result<Failover> {
    let stop_at = started + plan.at;
    tokio::time::sleep_until(
        stop_at
            .checked_sub(STAND_BEFORE_STOP)
            .unwrap_or(started)
            .into(),
    )
    .await;
    stand_for_election(&cluster, plan.node, started).await;
    tokio::time::sleep_until(stop_at.into()).await;
    let name = cluster.name(plan.node).to_owned();
    let own = views_of(&cluster, plan.node);
    let led: Vec<String> = own
        .iter()
        .filter(|view| view.leader.as_deref() == Some(name.as_str()))
        .map(|view| view.shard.clone())
        .collect();
    let stopped = Instant::now();
    println!(
        "{} node {name} stopped (in-process abrupt stop); {}",
        stamp(started.elapsed()),
        what_fails_over(&cluster, plan.node, own.len(), &led)
    );
    let outage = async {
        cluster.kill(plan.node).await?;
        tokio::time::sleep_until((stopped + plan.down).into()).await;
        cluster.restart(plan.node).await?;
        let applied = applied_by_leaders(&cluster, plan.node);
        println!(
            "{} node {name} back, started again from its data dir; its providers go online again",
            stamp(started.elapsed())
        );
        anyhow::Ok((Instant::now(), applied))
    };
    let replicated = !own.is_empty();
    let leaders = async {
        if !replicated {
            return None;
        }
        let leaders = wait_for_leaders(&cluster, stopped + plan.down + CATCH_UP_WAIT_MAX).await?;
        let after = stopped.elapsed();
        let moved: BTreeMap<String, String> = led
            .iter()
            .filter_map(|shard| Some((shard.clone(), leaders.get(shard)?.clone())))
            .collect();
        println!(
            "{} every wallet shard has a leader again, {:.1} s after the stop{}",
            stamp(started.elapsed()),
            after.as_secs_f64(),
            moved_list(&moved)
        );
        Some((after, moved))
    };
    let (back, leaders) = tokio::join!(outage, leaders);
    let (back, applied) = back?;
    let caught_up = if replicated {
        let until = back + CATCH_UP_WAIT_MAX;
        wait_caught_up(&cluster, plan.node, own.len(), &applied, until).await
    } else {
        None
    };
    match caught_up {
        Some(after) => println!(
            "{} node {name}'s shards caught up: each of its {} wallet shards has a leader, and \
             {name} has applied all their leaders had when it started again, {:.1} s later",
            stamp(started.elapsed()),
            own.len(),
            after.as_secs_f64()
        ),
        None if replicated => println!(
            "{} node {name} has not caught up with its wallet shards within {CATCH_UP_WAIT_MAX:?}",
            stamp(started.elapsed())
        ),
        None => {}
    }
    let (leader_again, shards_moved) = leaders.unzip();
    Ok(Failover {
        node: name,
        killed_at_s: (stopped - started).as_secs_f64(),
        back_at_s: (back - started).as_secs_f64(),
        leader_again_s: leader_again.map(|after| after.as_secs_f64()),
        shards_moved: shards_moved.unwrap_or_default(),
        caught_up_s: caught_up.map(|after| after.as_secs_f64()),
        calls_failed_while_down: 0,
    })
}

/// When node `index` leads no wallet shard (the first elections decide), it
/// stands for election in the shards it would lead by preference (`w<n>` with
/// `n % nodes == index`), so there is a failover to watch; says so.
async fn stand_for_election(cluster: &DemoCluster, index: usize, started: Instant) {
    let Some(shards) = cluster.router(index).and_then(|router| router.shards()) else {
        return;
    };
    let name = cluster.name(index);
    let views = shards.views(ViewDepth::Raft);
    if views.is_empty()
        || views
            .iter()
            .any(|view| view.leader.as_deref() == Some(name))
    {
        return;
    }
    let mut standing = Vec::new();
    for (shard, group) in shards.groups() {
        if shard.0 as usize % cluster.len() != index {
            continue;
        }
        match group.raft.trigger().elect().await {
            Ok(()) => standing.push(shard.name()),
            Err(error) => tracing::warn!(%shard, %error, "could not stand for election"),
        }
    }
    if !standing.is_empty() {
        println!(
            "{} node {name} leads no wallet shard: it stands for election in {} so its stop has \
             leaders to replace",
            stamp(started.elapsed()),
            standing.join(" ")
        );
    }
}

/// The end of the "stopped" line: what happens to the node's wallet shards.
fn what_fails_over(cluster: &DemoCluster, node: usize, shards: usize, led: &[String]) -> String {
    let others: Vec<&str> = (0..cluster.len())
        .filter(|index| *index != node)
        .map(|index| cluster.name(index))
        .collect();
    if shards == 0 {
        "wallets are not replicated (--replication-factor 1): its wallets and region wait for it"
            .to_owned()
    } else if led.is_empty() {
        format!(
            "it led no wallet shard; {} lead on without it",
            others.join(" and ")
        )
    } else {
        format!(
            "wallet shards it led ({}) fail over to {}",
            led.join(" "),
            others.join(" and ")
        )
    }
}

/// " (w0→c w3→a)" for the shards that moved, or nothing.
fn moved_list(moved: &BTreeMap<String, String>) -> String {
    if moved.is_empty() {
        return String::new();
    }
    let list: Vec<String> = moved
        .iter()
        .map(|(shard, leader)| format!("{shard}→{leader}"))
        .collect();
    format!(" ({})", list.join(" "))
}

/// The wallet shards node `index` replicates, as it sees them (none while it is
/// down, its shards are not up yet, or wallets are not replicated).
fn views_of(cluster: &DemoCluster, index: usize) -> Vec<ShardView> {
    cluster
        .router(index)
        .and_then(|router| router.shards())
        .map(|shards| shards.views(ViewDepth::Raft))
        .unwrap_or_default()
}

/// Waits until every node up whose shards are running knows, for every shard
/// it replicates, a leader that is up; returns node a's view of the leaders.
async fn wait_for_leaders(
    cluster: &DemoCluster,
    until: Instant,
) -> Option<BTreeMap<String, String>> {
    while Instant::now() < until {
        if let Some(leaders) = every_shard_led(cluster) {
            return Some(leaders);
        }
        tokio::time::sleep(LEADERS_POLL).await;
    }
    None
}

fn every_shard_led(cluster: &DemoCluster) -> Option<BTreeMap<String, String>> {
    let leader_up = |view: &ShardView| {
        view.leader
            .as_deref()
            .and_then(|leader| cluster.index_of(leader))
            .is_some_and(|leader| cluster.state(leader).up)
    };
    let mut leaders = None;
    for (index, _) in cluster.live() {
        let views = views_of(cluster, index);
        if index == 0 && views.is_empty() {
            return None;
        }
        if !views.iter().all(leader_up) {
            return None;
        }
        if index == 0 {
            leaders = Some(
                views
                    .into_iter()
                    .filter_map(|view| Some((view.shard, view.leader?)))
                    .collect(),
            );
        }
    }
    leaders
}

/// For each shard led by a node up other than `index`: the last log index its
/// leader has applied.
fn applied_by_leaders(cluster: &DemoCluster, index: usize) -> BTreeMap<String, u64> {
    let mut applied = BTreeMap::new();
    for (leader, _) in cluster.live() {
        if leader == index {
            continue;
        }
        let name = cluster.name(leader);
        for view in views_of(cluster, leader) {
            if view.leader.as_deref() == Some(name) {
                applied.insert(view.shard, view.applied.unwrap_or(0));
            }
        }
    }
    applied
}

/// Waits until node `index` knows a leader of each of its `shards` shards, no
/// longer refuses votes, and has applied at least what `applied` says of each;
/// returns how long after `until - CATCH_UP_WAIT_MAX` (its start) that was.
async fn wait_caught_up(
    cluster: &DemoCluster,
    index: usize,
    shards: usize,
    applied: &BTreeMap<String, u64>,
    until: Instant,
) -> Option<Duration> {
    let back = until - CATCH_UP_WAIT_MAX;
    while Instant::now() < until {
        let views = views_of(cluster, index);
        let caught_up = views.len() == shards
            && views.iter().all(|view| {
                let wanted = applied.get(&view.shard).copied().unwrap_or(0);
                view.leader.is_some()
                    && !view.rejoining
                    && view.applied.is_some_and(|done| done >= wanted)
            });
        if caught_up {
            return Some(back.elapsed());
        }
        tokio::time::sleep(LEADERS_POLL).await;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        demo: DemoArgs,
    }

    fn plan(args: &[&str]) -> anyhow::Result<Option<KillPlan>> {
        let cli = Cli::try_parse_from(std::iter::once("demo").chain(args.iter().copied()))?;
        let names = ["a", "b", "c"].map(str::to_owned);
        KillPlan::from_args(&cli.demo, &names)
    }

    #[test]
    fn a_kill_is_planned_for_b_or_c_and_back_well_before_the_end() {
        assert_eq!(plan(&[]).unwrap(), None);
        assert_eq!(
            plan(&["--duration-s", "30", "--kill-node-at-s", "8"]).unwrap(),
            Some(KillPlan {
                node: 1,
                at: Duration::from_secs(8),
                down: Duration::from_secs(5),
            })
        );
        let c = plan(&["--kill-node-at-s", "8", "--kill-node", "c", "--down-s", "3"]).unwrap();
        assert_eq!(c.map(|plan| (plan.node, plan.down.as_secs())), Some((2, 3)));
    }

    #[test]
    fn a_kill_of_a_or_of_an_unknown_node_or_too_late_is_refused() {
        let a = plan(&["--kill-node-at-s", "8", "--kill-node", "a"]).unwrap_err();
        assert!(a.to_string().contains("dashboard"), "{a}");
        let x = plan(&["--kill-node-at-s", "8", "--kill-node", "x"]).unwrap_err();
        assert!(x.to_string().contains("no such node"), "{x}");
        let late = plan(&["--duration-s", "20", "--kill-node-at-s", "8"]).unwrap_err();
        assert!(late.to_string().contains("--duration-s 23"), "{late}");
        assert!(plan(&["--duration-s", "23", "--kill-node-at-s", "8"]).is_ok());
        assert!(plan(&["--kill-node-at-s", "8", "--down-s", "0"]).is_err());
        assert!(
            plan(&["--kill-node", "c"]).is_err(),
            "--kill-node needs --kill-node-at-s"
        );
    }
}
