//! What the failure detector does under faults, measured from outside: for each
//! `kill -9` of the node-kills scenario, when every survivor's `GET /cluster`
//! stops showing the victim alive and shows it down, how fast a call that needs
//! the victim is refused once it is down, and, after the victim is back and
//! answers `/ready`, how long until calls forwarded to it succeed through every
//! survivor. Also the members declared down during packet loss (flapping) and
//! whether a healed partition comes back to everyone alive.
//!
//! The call that needs the victim is a balance of a wallet homed there; when
//! wallets are replicated no wallet needs one node (its shard's other replicas
//! serve it), so it is a read of a job held by the victim (an id with the
//! victim's node number that no job has: `not_found` once the victim answers).

use super::cluster::ChaosCluster;
use fixit_auth::{Principal, Role};
use fixit_sdk::Commands;
use futures::future::join_all;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How often a survivor's `GET /cluster` (and a victim's `/ready`) is polled.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// Longest any one wait of a kill round: past it the step counts as missed.
const STEP_MAX: Duration = Duration::from_secs(15);

/// Per kill, the victim's downtime is drawn from this range, in ms.
pub(crate) const DOWN_MS: (u64, u64) = (2_000, 10_000);

/// A distribution of one measure over every kill and survivor, in ms.
#[derive(Debug, Default, Serialize)]
pub struct Spread {
    count: usize,
    /// Steps that did not happen within the round's limit.
    missed: usize,
    p50_ms: u64,
    p99_ms: u64,
    max_ms: u64,
}

impl Spread {
    fn of(samples: &[Option<u64>]) -> Spread {
        let mut seen: Vec<u64> = samples.iter().flatten().copied().collect();
        seen.sort_unstable();
        let at = |share: f64| {
            let rank = ((share * seen.len() as f64).ceil() as usize).max(1);
            seen.get(rank - 1).copied().unwrap_or(0)
        };
        Spread {
            count: seen.len(),
            missed: samples.len() - seen.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: seen.last().copied().unwrap_or(0),
        }
    }
}

/// One survivor's view of one kill.
#[derive(Debug, Serialize)]
pub struct SurvivorSample {
    survivor: String,
    /// Kill → the survivor no longer shows the victim alive (suspect or worse).
    not_alive_ms: Option<u64>,
    /// Kill → the survivor shows the victim down.
    down_ms: Option<u64>,
    /// Latency of a call needing the victim made through the survivor once it
    /// shows the victim down; `None` if it was not a typed `unavailable`.
    unavailable_ms: Option<u64>,
    /// The restarted victim answers `/ready` → a call forwarded to it through
    /// this survivor succeeds.
    recovered_ms: Option<u64>,
}

/// One kill.
#[derive(Debug, Serialize)]
pub struct KillSample {
    victim: String,
    downtime_ms: u64,
    survivors: Vec<SurvivorSample>,
}

/// The membership part of a scenario's report.
#[derive(Debug, Default, Serialize)]
pub struct MembershipReport {
    kills: usize,
    /// Kill → survivor shows the victim not alive.
    not_alive_ms: Spread,
    /// Kill → survivor shows the victim down.
    down_ms: Spread,
    /// A call needing the victim, once it is shown down.
    unavailable_ms: Spread,
    /// Victim ready → forwarded calls to it succeed.
    recovered_ms: Spread,
    /// Members declared down, summed over the nodes, while the fault lasted.
    declared_down_during_fault: u64,
    /// After the fault healed, every node showed every other alive again.
    healed: Option<bool>,
    samples: Vec<KillSample>,
}

impl MembershipReport {
    /// From the kill rounds of a node-kills run.
    pub(crate) fn of_kills(samples: Vec<KillSample>) -> MembershipReport {
        let pick = |field: fn(&SurvivorSample) -> Option<u64>| -> Vec<Option<u64>> {
            samples
                .iter()
                .flat_map(|kill| kill.survivors.iter().map(field))
                .collect()
        };
        MembershipReport {
            kills: samples.len(),
            not_alive_ms: Spread::of(&pick(|s| s.not_alive_ms)),
            down_ms: Spread::of(&pick(|s| s.down_ms)),
            unavailable_ms: Spread::of(&pick(|s| s.unavailable_ms)),
            recovered_ms: Spread::of(&pick(|s| s.recovered_ms)),
            samples,
            ..MembershipReport::default()
        }
    }

    /// For a fault without kills: downs declared during it, and whether it healed.
    pub(crate) fn of_fault(declared_down: u64, healed: bool) -> MembershipReport {
        MembershipReport {
            declared_down_during_fault: declared_down,
            healed: Some(healed),
            ..MembershipReport::default()
        }
    }

    /// Whether every step of every kill happened (within its generous limit),
    /// and a healed fault came back to everyone alive: the functional result,
    /// which timings do not decide.
    pub(crate) fn complete(&self) -> bool {
        let missed = self.not_alive_ms.missed
            + self.down_ms.missed
            + self.unavailable_ms.missed
            + self.recovered_ms.missed;
        missed == 0 && self.healed != Some(false)
    }

    /// The targets, for the summary line and the report (not asserted:
    /// timings depend on the machine).
    pub(crate) fn targets_line(&self) -> String {
        if self.kills == 0 {
            return format!(
                "declared down during fault {}, healed {}",
                self.declared_down_during_fault,
                self.healed.unwrap_or(true)
            );
        }
        format!(
            "{} kills: not alive p99 {} ms, down p99 {} ms (target 2000), unavailable p99 {} ms (target 100), recovered p99 {} ms (target 1000)",
            self.kills,
            self.not_alive_ms.p99_ms,
            self.down_ms.p99_ms,
            self.unavailable_ms.p99_ms,
            self.recovered_ms.p99_ms
        )
    }
}

/// Polls cluster state over HTTP and calls nodes over QUIC as an admin.
pub(crate) struct Observer {
    http: reqwest::Client,
    token: String,
}

impl Observer {
    pub(crate) fn new(cluster: &ChaosCluster) -> Observer {
        Observer {
            http: cluster.http_client(),
            token: cluster.token(Principal {
                role: Role::Admin,
                sub: 0,
            }),
        }
    }

    async fn cluster_view(&self, http: SocketAddr) -> Option<serde_json::Value> {
        let response = self
            .http
            .get(format!("http://{http}/cluster"))
            .bearer_auth(&self.token)
            .send()
            .await
            .ok()?;
        response.json().await.ok()
    }

    /// Peer `peer`'s membership status as node `http` shows it.
    async fn status_of(&self, http: SocketAddr, peer: &str) -> Option<String> {
        let view = self.cluster_view(http).await?;
        view["peers"]
            .as_array()?
            .iter()
            .find(|row| row["name"] == peer)
            .and_then(|row| row["status"].as_str())
            .map(str::to_owned)
    }

    /// Members node `http` has declared down so far.
    pub(crate) async fn downs(&self, http: SocketAddr) -> u64 {
        match self.cluster_view(http).await {
            Some(view) => view["membership_downs"].as_u64().unwrap_or(0),
            None => 0,
        }
    }

    /// Waits until every running node shows every other node alive; whether that
    /// happened within [`STEP_MAX`].
    pub(crate) async fn all_alive(&self, cluster: &ChaosCluster) -> bool {
        let end = Instant::now() + STEP_MAX;
        let names = cluster.names();
        'poll: while Instant::now() < end {
            for index in 0..names.len() {
                for other in names.iter().filter(|other| **other != names[index]) {
                    let status = self.status_of(cluster.http_addr(index), other).await;
                    if status.as_deref() != Some("alive") {
                        tokio::time::sleep(POLL_EVERY).await;
                        continue 'poll;
                    }
                }
            }
            return true;
        }
        false
    }

    async fn ready(&self, http: SocketAddr) -> bool {
        let answer = self.http.get(format!("http://{http}/ready")).send().await;
        answer.is_ok_and(|response| response.status().is_success())
    }
}

/// One kill round: `kill -9` node `victim` (`on_kill` is told at once), watch
/// every survivor detect it and refuse what needs it, bring it back after
/// `downtime`, and watch forwarded calls to it recover.
pub(crate) async fn kill_round(
    cluster: &mut ChaosCluster,
    observer: &Observer,
    victim: usize,
    downtime: Duration,
    on_kill: impl FnOnce(),
) -> anyhow::Result<KillSample> {
    let names = cluster.names();
    let victim_name = names[victim].clone();
    let needed = Needs::victim(cluster, &victim_name)?;
    let survivors: Vec<usize> = (0..names.len()).filter(|index| *index != victim).collect();
    let mut clients = Vec::new();
    for &index in &survivors {
        clients.push(cluster.admin_client(index).await?);
    }
    let killed = Instant::now();
    cluster.kill9(victim)?;
    on_kill();
    let mut samples = Vec::new();
    let detections = survivors.iter().zip(&clients).map(|(&index, client)| {
        detect(
            observer,
            cluster.http_addr(index),
            &victim_name,
            client,
            needed,
            killed,
        )
    });
    for (detection, &index) in join_all(detections).await.into_iter().zip(&survivors) {
        let (not_alive_ms, down_ms, unavailable_ms) = detection;
        samples.push(SurvivorSample {
            survivor: names[index].clone(),
            not_alive_ms,
            down_ms,
            unavailable_ms,
            recovered_ms: None,
        });
    }
    tokio::time::sleep_until((killed + downtime).into()).await;
    cluster.start_node(victim).await?;
    cluster.restarts += 1;
    let http = cluster.http_addr(victim);
    let waited = Instant::now();
    while !observer.ready(http).await {
        anyhow::ensure!(
            waited.elapsed() < STEP_MAX,
            "{victim_name} never became ready"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
    let ready = Instant::now();
    let recoveries = clients.iter().map(|client| recover(client, needed, ready));
    for (sample, recovered) in samples.iter_mut().zip(join_all(recoveries).await) {
        sample.recovered_ms = recovered;
    }
    for client in clients {
        client.close().await;
    }
    Ok(KillSample {
        victim: victim_name,
        downtime_ms: downtime.as_millis() as u64,
        survivors: samples,
    })
}

/// A call only the victim can serve.
#[derive(Clone, Copy, Debug)]
enum Needs {
    /// A balance of a wallet homed on the victim (wallets not replicated).
    Balance(u64),
    /// A read of a job id held by the victim that no job has.
    Job(u64),
}

impl Needs {
    /// The call that needs node `victim` in `cluster`.
    fn victim(cluster: &ChaosCluster, victim: &str) -> anyhow::Result<Needs> {
        if cluster.replicated() {
            let number = u64::from(fixit_cluster::placement::node_number(victim));
            let shift = fixit_actors::cluster_hooks::JOB_ID_NODE_SHIFT;
            // The highest local id of the victim's range: never reached in a run.
            return Ok(Needs::Job(number << shift | ((1 << shift) - 1)));
        }
        let names = cluster.names();
        let wallet = (1..100_000u64)
            .find(|id| fixit_cluster::placement::home_of_wallet(*id, &names) == Some(victim))
            .ok_or_else(|| anyhow::anyhow!("no wallet homed on {victim}"))?;
        Ok(Needs::Balance(wallet))
    }

    /// Makes the call through `client`: `Ok` when the victim answered
    /// (`not_found` included: it served the call).
    async fn ask(self, client: &fixit_sdk::Client) -> Result<(), fixit_protocol::api::ApiError> {
        let answer = match self {
            Needs::Balance(wallet) => client.balance(wallet).await.map(drop),
            Needs::Job(job) => client.job(job).await.map(drop),
        };
        match answer {
            Err(error) if error.kind() == "not_found" => Ok(()),
            answer => answer,
        }
    }
}

/// Polls survivor `http` until it shows `victim` not alive, then down; then
/// makes the call that `needed` the victim through `client`.
async fn detect(
    observer: &Observer,
    http: SocketAddr,
    victim: &str,
    client: &fixit_sdk::Client,
    needed: Needs,
    killed: Instant,
) -> (Option<u64>, Option<u64>, Option<u64>) {
    let ms = |at: Instant| at.duration_since(killed).as_millis() as u64;
    let mut not_alive = None;
    let mut down = None;
    while killed.elapsed() < STEP_MAX {
        let status = observer.status_of(http, victim).await;
        let now = Instant::now();
        match status.as_deref() {
            Some("alive") | None => {}
            Some("suspect") => {
                not_alive.get_or_insert(ms(now));
            }
            Some(_) => {
                not_alive.get_or_insert(ms(now));
                down = Some(ms(now));
                break;
            }
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    let mut unavailable = None;
    if down.is_some() {
        let asked = Instant::now();
        if let Err(error) = needed.ask(client).await {
            if error.kind() == "unavailable" {
                unavailable = Some(asked.elapsed().as_millis() as u64);
            }
        }
    }
    (not_alive, down, unavailable)
}

/// Makes the call that `needed` the victim through `client` until it is served
/// (`not_found` is served: the victim answered); time since `ready`.
async fn recover(client: &fixit_sdk::Client, needed: Needs, ready: Instant) -> Option<u64> {
    while ready.elapsed() < STEP_MAX {
        match needed.ask(client).await {
            Ok(()) => return Some(ready.elapsed().as_millis() as u64),
            Err(_) => tokio::time::sleep(POLL_EVERY).await,
        }
    }
    None
}
