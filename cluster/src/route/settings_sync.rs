//! Anti-entropy of the cluster-wide settings (service areas, zones, work areas):
//! every [`SYNC_INTERVAL`] this node compares its settings digests with the next
//! peer's, and for the buckets that differ exchanges versions, fetches the
//! records the peer holds newer and pushes the ones it holds newer
//! (`fixit_actors::settings`: last writer wins, removals kept as tombstones). A
//! node that was down when a change was put on every node, or restarted on an
//! old disk, converges within a few intervals.

use super::commands::{PeerAnswer, PeerCommand};
use super::router::ClusterRouter;
use fixit_actors::settings::{Setting, Version};
use fixit_actors::Node;
use fixit_protocol::api::ApiError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Pause between two comparisons (each with the next peer in turn).
pub const SYNC_INTERVAL: Duration = Duration::from_secs(2);

/// Most versions one answer carries (the rest wait for the next comparison).
pub const VERSIONS_PER_ANSWER_MAX: usize = 4_096;

/// Keys asked for in one fetch.
const KEYS_PER_FETCH_MAX: usize = 64;

/// Bytes of settings one call carries, about (at least one setting): under the
/// links' frame limit.
pub const SETTINGS_BYTES_PER_CALL_MAX: usize = 256 * 1024;

/// Compares with one peer after another until `stop`.
pub(crate) async fn run(
    node: Arc<Node>,
    router: Arc<ClusterRouter>,
    mut stop: watch::Receiver<bool>,
) {
    let mut turn = 0usize;
    while !*stop.borrow() {
        tokio::select! {
            _ = tokio::time::sleep(SYNC_INTERVAL) => {}
            _ = stop.changed() => return,
        }
        let peers = router.other_nodes();
        if peers.is_empty() {
            continue;
        }
        let peer = &peers[turn % peers.len()];
        turn = turn.wrapping_add(1);
        match sync_with(&node, &router, peer).await {
            Ok((0, 0)) => {}
            Ok((fetched, pushed)) => {
                tracing::info!(%peer, fetched, pushed, "settings brought in line")
            }
            Err(error) => tracing::debug!(%peer, %error, "settings not compared"),
        }
    }
}

/// One comparison with `peer`: how many settings were fetched and pushed.
pub(crate) async fn sync_with(
    node: &Node,
    router: &ClusterRouter,
    peer: &str,
) -> Result<(usize, usize), ApiError> {
    let request_id = format!("{}-settings", router.name());
    let digests = PeerCommand::SettingsDigests(node.settings_digests());
    let (buckets, theirs) = match router.call(peer, &digests, None, &request_id).await? {
        PeerAnswer::Done => return Ok((0, 0)),
        PeerAnswer::SettingVersions { buckets, versions } => (buckets, versions),
        other => return Err(unexpected(peer, &other)),
    };
    let (fetch, push) = node.reconcile_settings(&buckets, &theirs);
    let mut fetched = 0;
    let mut wanted: &[String] = &fetch;
    while !wanted.is_empty() {
        let keys = wanted[..wanted.len().min(KEYS_PER_FETCH_MAX)].to_vec();
        let command = PeerCommand::SettingsFetch(keys);
        let settings = match router.call(peer, &command, None, &request_id).await? {
            PeerAnswer::Settings(settings) => settings,
            other => return Err(unexpected(peer, &other)),
        };
        if settings.is_empty() {
            break;
        }
        let answered = settings.len();
        fetched += node.merge_settings(settings).await?;
        wanted = &wanted[answered.min(wanted.len())..];
    }
    let mut pushed = 0;
    let mut rest: &[String] = &push;
    while !rest.is_empty() {
        let settings = node.settings_of(
            &rest[..rest.len().min(KEYS_PER_FETCH_MAX)],
            SETTINGS_BYTES_PER_CALL_MAX,
        )?;
        if settings.is_empty() {
            break;
        }
        let sent = settings.len();
        let command = PeerCommand::SettingsPush(settings);
        router.call(peer, &command, None, &request_id).await?;
        pushed += sent;
        rest = &rest[sent.min(rest.len())..];
    }
    Ok((fetched, pushed))
}

/// The answer to a peer's digests: `Done` when they match ours, else our
/// versions in the buckets that differ.
pub(crate) fn answer_digests(node: &Node, theirs: &[u64]) -> PeerAnswer {
    let ours = node.settings_digests();
    let buckets: Vec<usize> = if theirs.len() == ours.len() {
        (0..ours.len()).filter(|b| ours[*b] != theirs[*b]).collect()
    } else {
        (0..ours.len()).collect()
    };
    if buckets.is_empty() {
        return PeerAnswer::Done;
    }
    let versions: Vec<(String, Version)> = node.setting_versions(&buckets, VERSIONS_PER_ANSWER_MAX);
    PeerAnswer::SettingVersions { buckets, versions }
}

/// The settings a peer asked for, within the call's byte budget.
pub(crate) fn answer_fetch(node: &Node, keys: &[String]) -> Result<Vec<Setting>, ApiError> {
    Ok(node.settings_of(keys, SETTINGS_BYTES_PER_CALL_MAX)?)
}

fn unexpected(peer: &str, answer: &PeerAnswer) -> ApiError {
    ApiError::Core(fixit_actors::error::CoreError::Internal(format!(
        "node {peer} answered a settings call with {answer:?}"
    )))
}
