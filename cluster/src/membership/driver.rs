//! The membership task: owns foca, feeds it the links' datagrams and its own
//! timers, sends what it says over the links, and tells the links and the
//! operators' view what changed.

use super::codec::{announces_leave, sender_of, WireCodec};
use super::table::{MemberRow, MemberStatus, MemberTable, Transition};
use super::MemberId;
use crate::link::LinkEvent;
use crate::peers::Peers;
use fixit_actors::clock::SharedClock;
use fixit_actors::config::MembershipSection;
use foca::{
    AccumulatingRuntime, Config, Foca, Member, NoCustomBroadcast, OwnedNotification,
    PeriodicParams, Timer,
};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Largest membership datagram, in bytes: under the smallest QUIC datagram a
/// 1,280-byte path carries.
pub(crate) const PACKET_BYTES_MAX: usize = 1_100;

/// foca forgets a down member after this; until then an identity declared down
/// cannot come back unchanged (a restart or a rejoin is a new identity anyway).
const REMOVE_DOWN_AFTER: Duration = Duration::from_secs(3_600);

/// After leaving, time given to the leave datagrams before the links close. The
/// links' "stopping" close tells directly connected peers anyway.
const LEAVE_GRACE: Duration = Duration::from_millis(50);

type Swim = Foca<MemberId, WireCodec, SmallRng, NoCustomBroadcast>;

/// What operators see: this node's identity and every member it knows.
#[derive(Clone, Debug)]
pub struct MembershipView {
    /// This node's identity.
    pub me: MemberId,
    /// Every other member, sorted by name.
    pub members: Vec<MemberRow>,
    /// Status changes seen so far.
    pub changes: u64,
    /// Members declared down so far (a false one is a flap).
    pub downs: u64,
    /// Membership datagrams refused: undecodable, or naming another sender than
    /// their connection's certificate.
    pub refused: u64,
}

enum Command {
    Leave(oneshot::Sender<()>),
}

/// The running membership task (stopped when dropped).
pub(crate) struct Membership {
    commands: mpsc::Sender<Command>,
    view: watch::Receiver<MembershipView>,
    task: JoinHandle<()>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Membership {
    /// The current view, updated after every change.
    pub(crate) fn view(&self) -> watch::Receiver<MembershipView> {
        self.view.clone()
    }

    /// Announces this node's leave to the cluster (no suspicion wait for the
    /// others), then stops the task.
    pub(crate) async fn leave(self) {
        let (done, left) = oneshot::channel();
        if self.commands.send(Command::Leave(done)).await.is_ok() {
            let _ = left.await;
            tokio::time::sleep(LEAVE_GRACE).await;
        }
    }
}

/// The foca configuration for `section`'s timeouts.
pub(crate) fn swim_config(section: &MembershipSection) -> Config {
    let ms = Duration::from_millis;
    Config {
        probe_period: ms(section.probe_interval_ms),
        probe_rtt: ms(section.probe_timeout_ms),
        num_indirect_probes: NonZeroUsize::MIN.saturating_add(2),
        max_transmissions: NonZeroU8::MIN.saturating_add(9),
        suspect_to_down_after: ms(section.suspect_timeout_ms),
        remove_down_after: Some(REMOVE_DOWN_AFTER),
        max_packet_size: NonZeroUsize::MIN.saturating_add(PACKET_BYTES_MAX - 1),
        notify_down_members: true,
        periodic_announce: Some(PeriodicParams {
            frequency: ms(section.announce_interval_ms.saturating_mul(10)),
            num_members: NonZeroUsize::MIN,
        }),
        periodic_announce_to_down_members: Some(PeriodicParams {
            frequency: ms(section.announce_interval_ms),
            num_members: NonZeroUsize::MIN.saturating_add(2),
        }),
        periodic_gossip: Some(PeriodicParams {
            frequency: ms(section.gossip_interval_ms),
            num_members: NonZeroUsize::MIN.saturating_add(2),
        }),
    }
}

/// Starts membership for `me`, announcing to `seeds` (name → address), over
/// `peers`, fed by the links' `events`.
pub(crate) fn start(
    me: MemberId,
    section: &MembershipSection,
    seeds: &BTreeMap<String, SocketAddr>,
    peers: Arc<Peers>,
    events: mpsc::Receiver<LinkEvent>,
    clock: SharedClock,
) -> Membership {
    let rng = SmallRng::seed_from_u64(me.incarnation ^ crate::peers::name_hash(&me.name));
    let mut swim = Swim::new(me.clone(), swim_config(section), rng, WireCodec);
    let mut runtime = AccumulatingRuntime::new();
    let seed_ids: Vec<MemberId> = seeds
        .iter()
        .filter(|(name, _)| **name != me.name)
        .map(|(name, addr)| MemberId {
            name: name.clone(),
            addr: *addr,
            incarnation: 0,
            rejoins: 0,
        })
        .collect();
    // Seeds are known as down placeholders: foca announces to down members
    // periodically, so a seed that is not up yet is found once it is.
    if let Err(error) = swim.apply_many(
        seed_ids.iter().cloned().map(Member::down),
        false,
        &mut runtime,
    ) {
        tracing::warn!(%error, "membership: seeds not applied");
    }
    for seed in &seed_ids {
        if let Err(error) = swim.announce(seed.clone(), &mut runtime) {
            tracing::warn!(seed = %seed.name, %error, "membership: announce failed");
        }
    }
    let (view_sender, view) = watch::channel(MembershipView {
        me: me.clone(),
        members: Vec::new(),
        changes: 0,
        downs: 0,
        refused: 0,
    });
    let (commands, command_receiver) = mpsc::channel(4);
    let driver = Driver {
        announce_every: Duration::from_millis(section.announce_interval_ms),
        twice: section.datagram_copies > 1,
        seeds: seed_ids,
        table: MemberTable::new(&me.name),
        swim,
        runtime,
        peers,
        clock,
        timers: Vec::new(),
        last_heard: BTreeMap::new(),
        view: view_sender,
        refused: 0,
        leaving: false,
    };
    tracing::info!(node = %me.name, incarnation = me.incarnation, seeds = driver.seeds.len(), "membership started");
    let span = tracing::info_span!("membership", node = %me.name);
    let task = tokio::spawn(tracing::Instrument::instrument(
        driver.run(events, command_receiver),
        span,
    ));
    Membership {
        commands,
        view,
        task,
    }
}

struct Driver {
    /// Placeholders (incarnation 0) of the configured seeds.
    seeds: Vec<MemberId>,
    /// How often a node with no live member announces itself.
    announce_every: Duration,
    /// Every packet also goes on the other connection between the two nodes
    /// (duplicates are harmless to SWIM).
    twice: bool,
    swim: Swim,
    runtime: AccumulatingRuntime<MemberId>,
    table: MemberTable,
    peers: Arc<Peers>,
    clock: SharedClock,
    /// foca's timers: when each fires.
    timers: Vec<(Instant, Timer<MemberId>)>,
    /// Member name → when a datagram from it last arrived (ms since the epoch):
    /// a detection time is measured from there.
    last_heard: BTreeMap<String, u64>,
    view: watch::Sender<MembershipView>,
    refused: u64,
    /// This node is leaving (its own "declared down" is expected).
    leaving: bool,
}

impl Driver {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<LinkEvent>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        self.announce_if_alone();
        self.flush();
        let mut announce = tokio::time::interval(self.announce_every);
        announce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Bounded by the links' life: the event queue closes when they stop.
        loop {
            let next_timer = self.timers.iter().map(|(at, _)| *at).min();
            let far = Instant::now() + Duration::from_secs(3_600);
            tokio::select! {
                _ = announce.tick() => self.announce_if_alone(),
                event = events.recv() => match event {
                    Some(event) => self.on_event(event),
                    None => return,
                },
                command = commands.recv() => match command {
                    Some(Command::Leave(done)) => {
                        self.leaving = true;
                        if let Err(error) = self.swim.leave_cluster(&mut self.runtime) {
                            tracing::warn!(%error, "membership: leave failed");
                        }
                        self.flush();
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
                _ = tokio::time::sleep_until(next_timer.unwrap_or(far)) => self.fire_timers(),
            }
            self.flush();
        }
    }

    fn on_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Datagram { from, bytes } => {
                if sender_of(&bytes).as_deref() != Some(&*from) {
                    self.refused += 1;
                    tracing::debug!(%from, "membership datagram refused: sender is not its certificate's node");
                    return;
                }
                self.last_heard
                    .insert(from.to_string(), self.clock.now_ms());
                self.peers.heard_from(&from);
                if announces_leave(&bytes) {
                    self.member_stopping(&from);
                }
                if let Err(error) = self.swim.handle_data(&bytes, &mut self.runtime) {
                    tracing::debug!(%from, %error, "membership datagram not taken");
                }
            }
            LinkEvent::ConnectedIn { from, connection } => {
                self.peers.connected_in(&from, connection)
            }
            LinkEvent::Stopping { from } => self.member_stopping(&from),
        }
    }

    /// Member `name` said it is stopping (its leave, or its links closing so).
    fn member_stopping(&mut self, name: &str) {
        if let Some(transition) = self.table.mark_leaving(name, self.clock.now_ms()) {
            self.apply(&transition);
            self.publish();
        }
    }

    /// With no live member (started before its seeds, cut off, everyone else
    /// down), foca does not announce by itself: announce to the seeds and to every
    /// member known down, so the cluster is found again once it is reachable.
    fn announce_if_alone(&mut self) {
        if self.swim.num_members() > 0 {
            return;
        }
        let known: Vec<MemberId> = self.table.rows().into_iter().map(|row| row.id).collect();
        let seeds = self
            .seeds
            .iter()
            .filter(|seed| !known.iter().any(|id| id.name == seed.name));
        let targets: Vec<MemberId> = seeds.cloned().chain(known.iter().cloned()).collect();
        for target in targets {
            if let Err(error) = self.swim.announce(target.clone(), &mut self.runtime) {
                tracing::debug!(peer = %target.name, %error, "membership: announce failed");
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.timers)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.timers = waiting;
        for (_, timer) in due {
            if let Err(error) = self.swim.handle_timer(timer, &mut self.runtime) {
                tracing::debug!(%error, "membership timer not taken");
            }
        }
    }

    /// Takes in foca's news (so the links follow before anything is sent: a reply
    /// to a restarted peer must not go out on the connection to its old
    /// process), then sends what foca wants sent and schedules its timers.
    fn flush(&mut self) {
        while let Some(notification) = self.runtime.to_notify() {
            match notification {
                OwnedNotification::Defunct if self.leaving => {
                    tracing::info!("membership: left the cluster")
                }
                OwnedNotification::Defunct => {
                    tracing::warn!("membership: this node was declared down and cannot rejoin")
                }
                OwnedNotification::Rejoin(id) => {
                    tracing::info!(
                        rejoins = id.rejoins,
                        "membership: rejoined after being declared down"
                    );
                    self.view.send_modify(|view| view.me = id);
                }
                OwnedNotification::Idle => tracing::info!("membership: no other member is alive"),
                OwnedNotification::Active => tracing::info!("membership: joined the cluster"),
                _ => {}
            }
        }
        // Suspicion has no notification: the state is compared after every event.
        let now_ms = self.clock.now_ms();
        let state: Vec<(MemberId, foca::State)> = self
            .swim
            .iter_membership_state()
            .map(|member| (member.id().clone(), member.state()))
            .collect();
        let transitions = self.table.observe(state, now_ms);
        for transition in &transitions {
            self.apply(transition);
        }
        if !transitions.is_empty() || self.view.borrow().refused != self.refused {
            self.publish();
        }
        while let Some((to, bytes)) = self.runtime.to_send() {
            self.peers.send_datagram(&to, bytes, self.twice);
        }
        let now = Instant::now();
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.timers.push((now + after, timer));
        }
    }

    /// Makes the links follow one change, and counts and logs it.
    fn apply(&mut self, transition: &Transition) {
        let now_ms = self.clock.now_ms();
        let id = &transition.id;
        self.peers.member_changed(id, transition.to, now_ms);
        let to = transition.to.label();
        metrics::counter!("fixit_cluster_member_changes_total", "to" => to).increment(1);
        let was_reachable = transition.from.is_some_and(MemberStatus::reachable);
        if was_reachable && !transition.to.reachable() {
            let heard_ms = self.last_heard.get(&id.name).copied().unwrap_or(now_ms);
            let detection_ms = now_ms.saturating_sub(heard_ms);
            metrics::histogram!("fixit_cluster_detection_seconds", "to" => to)
                .record(detection_ms as f64 / 1_000.0);
            tracing::warn!(peer = %id.name, incarnation = id.incarnation, status = to, detection_ms, "cluster member not alive");
        } else {
            tracing::info!(peer = %id.name, incarnation = id.incarnation, status = to, new_incarnation = transition.new_incarnation, "cluster member changed");
        }
    }

    fn publish(&mut self) {
        let members = self.table.rows();
        for status in [
            MemberStatus::Alive,
            MemberStatus::Suspect,
            MemberStatus::Down,
            MemberStatus::Left,
        ] {
            let count = members.iter().filter(|row| row.status == status).count();
            metrics::gauge!("fixit_cluster_members", "status" => status.label()).set(count as f64);
        }
        let changes = self.table.changes();
        let downs = self.table.downs();
        let refused = self.refused;
        self.view.send_modify(|view| {
            view.members = members;
            view.changes = changes;
            view.downs = downs;
            view.refused = refused;
        });
    }
}
