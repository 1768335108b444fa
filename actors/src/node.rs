//! A running node: storage, supervision tree and tickers, with one async method per
//! marketplace command. Input is validated here; entities never see bad input.

use crate::areas::{Areas, StoredArea, WorkAreas, AREA_PREFIX, WORK_PREFIX};
use crate::booking::{self, BookingLimits};
use crate::clock::SharedClock;
use crate::cluster_hooks::{CandidateQuery, ClusterHooks, ProviderCall, WalletCall};
use crate::config::NodeConfig;
use crate::context::{NodeContext, NodeStats, RevocationSink};
use crate::durability::{Durability, GroupCommit};
use crate::entity::CallLimits;
use crate::entity::Registry;
use crate::error::{CoreError, CoreResult};
use crate::faults::Faults;
use crate::geo::{Coord, GeoIndex, Nearby};
use crate::ids::{CustomerId, JobId, ProviderId, Skill, WalletId};
use crate::job::{Job, JobStatus};
use crate::job_actor::JobCommand;
use crate::ledger::{self, Balance, EntryKind, LedgerEntry, LedgerOp};
use crate::provider::Provider;
use crate::provider_actor::ProviderCommand;
use crate::root::{BranchName, Root, RootMessage};
use crate::services::{JobEvent, ProviderPush, PushHub, ServiceSlots};
use crate::session_actor::{SessionCommand, SessionView};
use crate::settings::{Setting, Version, Versions};
use crate::store::{Audit, OpOutcome, Store, Transfer};
use crate::wallet_actor::WalletCommand;
use fixit_protocol::area::{AreaList, Quote, WorkArea, ZoneCharge, AREAS_MAX};
use fixit_protocol::commands::Earnings;
use parking_lot::RwLock;
use ractor::{Actor, ActorId, ActorRef, ActorStatus};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Due timers handled per deadline tick; the rest wait for the next tick.
const DUE_TIMERS_PER_TICK_MAX: usize = 1_000;

/// How long shutdown waits for actors and the writer to let go of the database.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// Live entity actors, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveCounts {
    /// Wallet actors.
    pub wallets: usize,
    /// Provider actors.
    pub providers: usize,
    /// Job actors.
    pub jobs: usize,
    /// Session actors.
    pub sessions: usize,
}

impl LiveCounts {
    /// All entity actors.
    pub fn total(&self) -> usize {
        self.wallets + self.providers + self.jobs + self.sessions
    }
}

/// Most ledger entries one earnings answer reads (a bound on its cost).
pub const EARNINGS_ENTRIES_MAX: u64 = 20_000;

/// Ledger entries read per page for an earnings answer.
const EARNINGS_PAGE_ENTRIES: usize = 1_000;

/// Zone events buffered for a slow admin subscriber before it misses some.
const ZONE_EVENTS_BUFFERED: usize = 1_024;

/// Most providers one nearby search returns.
pub const NEARBY_LIMIT_MAX: usize = fixit_protocol::commands::NEARBY_LIMIT_MAX as usize;

/// A running node.
pub struct Node {
    ctx: Arc<NodeContext>,
    root: ActorRef<RootMessage>,
    writer: JoinHandle<()>,
    tickers: Vec<JoinHandle<()>>,
}

impl Node {
    /// Opens storage in `config.node.data_dir`, rebuilds the geo index and starts
    /// the supervision tree and the deadline ticker.
    pub async fn start(config: NodeConfig, clock: SharedClock) -> CoreResult<Node> {
        Node::start_in_cluster(config, clock, None).await
    }

    /// [`Node::start`] for a member of a cluster: wallets homed elsewhere are
    /// reached through `cluster`, and job ids carry its node number.
    pub async fn start_in_cluster(
        config: NodeConfig,
        clock: SharedClock,
        cluster: Option<Arc<dyn ClusterHooks>>,
    ) -> CoreResult<Node> {
        let store = Store::open(&config.node.data_dir, config.storage.cache_bytes)?;
        let geo = rebuild_geo_index(&store, config.geo.cell_precision)?;
        let (areas, work_areas, settings) = load_settings(&store, &config, clock.now_ms())?;
        let (durability, writer) = Durability::start(
            store.clone(),
            GroupCommit {
                batch_max: config.storage.group_commit_batch_max as usize,
                queue_max: config.storage.group_commit_queue_max as usize,
                min_interval: Duration::from_millis(config.storage.group_commit_min_interval_ms),
            },
            config.node.id.clone(),
        );
        let limits = Arc::new(CallLimits::new(
            config.limits.entity_inflight_max,
            config.limits.node_inflight_max,
            config.limits.busy_retry_after_ms,
            Duration::from_millis(config.limits.call_timeout_ms),
        ));
        let ctx = Arc::new(NodeContext {
            clock,
            store,
            durability,
            faults: Faults::default(),
            geo: RwLock::new(geo),
            stats: NodeStats::default(),
            wallets: Registry::new(limits.clone()),
            providers: Registry::new(limits.clone()),
            jobs: Registry::new(limits.clone()),
            sessions: Registry::new(limits.clone()),
            limits,
            services: ServiceSlots::default(),
            pushes: PushHub::default(),
            cluster,
            config,
            areas: RwLock::new(Arc::new(areas)),
            work_areas: RwLock::new(work_areas),
            zone_events: tokio::sync::broadcast::channel(ZONE_EVENTS_BUFFERED).0,
            provider_nodes: Default::default(),
            customer_nodes: Default::default(),
            settings: parking_lot::Mutex::new(settings),
            revocation_sink: RwLock::new(None),
            setting_changes: tokio::sync::Mutex::new(()),
        });
        let (root, _) = Actor::spawn(None, Root, ctx.clone())
            .await
            .map_err(|error| {
                CoreError::Internal(format!("supervision tree did not start: {error}"))
            })?;
        let tickers = vec![tokio::spawn(deadline_ticker(ctx.clone()))];
        tracing::info!(node = %ctx.config.node.id, "node started");
        Ok(Node {
            ctx,
            root,
            writer,
            tickers,
        })
    }

    /// Stops the actors, flushes, and lets go of the database so it can be reopened.
    pub async fn shutdown(self) -> CoreResult<()> {
        for ticker in &self.tickers {
            ticker.abort();
        }
        let _ = self
            .root
            .stop_and_wait(Some("shutdown".into()), Some(SHUTDOWN_WAIT))
            .await;
        self.ctx.durability.flushed().await?;
        let Node { ctx, writer, .. } = self;
        let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT;
        while Arc::strong_count(&ctx) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(ctx);
        tokio::time::timeout(SHUTDOWN_WAIT, writer)
            .await
            .map_err(|_| CoreError::Internal("storage writer did not stop".into()))?
            .map_err(|error| CoreError::Internal(format!("storage writer: {error}")))
    }

    /// Whether the supervision tree is up (false once the root gave up).
    pub fn is_running(&self) -> bool {
        self.root.get_status() == ActorStatus::Running
    }

    /// The shared parts (for tests, benchmarks and the client layer).
    pub fn context(&self) -> &Arc<NodeContext> {
        &self.ctx
    }

    /// Armed faults of this node.
    pub fn faults(&self) -> &Faults {
        &self.ctx.faults
    }

    /// Counters.
    pub fn stats(&self) -> &NodeStats {
        &self.ctx.stats
    }

    /// Live entity actors by kind.
    pub fn live(&self) -> LiveCounts {
        LiveCounts {
            wallets: self.ctx.wallets.live_count(),
            providers: self.ctx.providers.live_count(),
            jobs: self.ctx.jobs.live_count(),
            sessions: self.ctx.sessions.live_count(),
        }
    }

    /// The running branch supervisors.
    pub async fn branches(&self) -> CoreResult<HashMap<BranchName, ActorId>> {
        ractor::call!(self.root, RootMessage::Branches)
            .map_err(|error| CoreError::Unavailable(format!("root: {error}")))
    }

    /// Asks every branch to passivate idle entities now; returns how many were asked.
    pub async fn sweep_idle(&self) -> usize {
        self.ctx.wallets.sweep().await
            + self.ctx.providers.sweep().await
            + self.ctx.jobs.sweep().await
            + self.ctx.sessions.sweep().await
    }

    /// Handles due offer deadlines and retries now; returns how many jobs were woken.
    pub async fn check_deadlines(&self) -> CoreResult<usize> {
        wake_due_jobs(&self.ctx).await
    }

    /// Every stored job, counted by status ("requested", "offered", ..., "expired").
    pub fn jobs_by_status(&self) -> CoreResult<std::collections::BTreeMap<&'static str, u64>> {
        let mut counts = std::collections::BTreeMap::new();
        for job in self.ctx.store.all_by_id::<Job>(&self.ctx.store.jobs)? {
            *counts.entry(job.status.name()).or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// Up to `limit` stored providers (for dashboards), lowest ids first.
    pub fn providers_snapshot(&self, limit: usize) -> CoreResult<Vec<Provider>> {
        let store = &self.ctx.store;
        store.records_by_id(&store.providers, limit, false)
    }

    /// The `limit` most recent jobs (for dashboards), newest first.
    pub fn recent_jobs(&self, limit: usize) -> CoreResult<Vec<Job>> {
        let store = &self.ctx.store;
        store.records_by_id(&store.jobs, limit, true)
    }

    /// Completed jobs whose capture is in the ledger, and completed jobs whose is not.
    pub fn completed_jobs_paid(&self) -> CoreResult<(u64, u64)> {
        let (mut paid, mut unpaid) = (0, 0);
        for job in self.ctx.store.all_by_id::<Job>(&self.ctx.store.jobs)? {
            if matches!(job.status, JobStatus::Completed { .. }) {
                if self
                    .ctx
                    .store
                    .key_applied(job.customer.into(), &job.capture_key())?
                {
                    paid += 1;
                } else {
                    unpaid += 1;
                }
            }
        }
        Ok((paid, unpaid))
    }

    /// Audits the whole ledger in storage.
    pub fn audit(&self) -> CoreResult<Audit> {
        if let Some(cluster) = self.ctx.replicated_wallets() {
            return cluster.led_shards_audit();
        }
        self.ctx.store.audit()
    }

    // ---- wallets ----

    /// Applies a ledger operation to `wallet` under an idempotency key.
    pub async fn wallet_op(
        &self,
        wallet: WalletId,
        key: &str,
        op: LedgerOp,
    ) -> CoreResult<OpOutcome> {
        ledger::validate_ledger_key(key)?;
        self.ctx.wallet_op(wallet, key.to_owned(), op).await
    }

    /// Undelivered outbox transfers to node `to_node` (at most `limit`), returned
    /// only once durable: a transfer must never reach its receiver before its
    /// capture is on disk.
    pub async fn pending_transfers(
        &self,
        to_node: &str,
        limit: usize,
    ) -> CoreResult<Vec<Transfer>> {
        let transfers = self.ctx.store.outbox_transfers_to(to_node, limit)?;
        if !transfers.is_empty() {
            self.ctx.durability.flushed().await?;
        }
        Ok(transfers)
    }

    /// How many transfers wait in the outbox, and their sum.
    pub fn outbox_backlog(&self) -> CoreResult<(u64, i128)> {
        if let Some(cluster) = self.ctx.replicated_wallets() {
            let audit = cluster.led_shards_audit()?;
            return Ok((audit.outbox_transfers, audit.outbox_amount));
        }
        self.ctx.store.outbox_backlog()
    }

    /// Forgets a transfer its receiver acknowledged.
    pub fn transfer_delivered(&self, transfer: &Transfer) -> CoreResult<bool> {
        self.ctx.store.remove_transfer(transfer)
    }

    /// Deposits money into a wallet.
    pub async fn deposit(&self, wallet: WalletId, key: &str, amount: i64) -> CoreResult<OpOutcome> {
        self.wallet_op(wallet, key, LedgerOp::Deposit { amount })
            .await
    }

    /// Withdraws money from a wallet.
    pub async fn withdraw(
        &self,
        wallet: WalletId,
        key: &str,
        amount: i64,
    ) -> CoreResult<OpOutcome> {
        self.wallet_op(wallet, key, LedgerOp::Withdraw { amount })
            .await
    }

    /// A wallet's balance.
    pub async fn balance(&self, wallet: WalletId) -> CoreResult<Balance> {
        if let Some(cluster) = self.ctx.replicated_wallets() {
            return cluster
                .wallet_call(wallet, WalletCall::Balance)
                .await?
                .into_balance();
        }
        self.ctx
            .wallets
            .call(wallet, |reply| WalletCommand::Balance { reply })
            .await
    }

    /// A page of a wallet's ledger.
    pub async fn history(
        &self,
        wallet: WalletId,
        from_seq: u64,
        limit: usize,
    ) -> CoreResult<Vec<LedgerEntry>> {
        if let Some(cluster) = self.ctx.replicated_wallets() {
            let limit = u32::try_from(limit).unwrap_or(u32::MAX);
            return cluster
                .wallet_call(wallet, WalletCall::History { from_seq, limit })
                .await?
                .into_history();
        }
        self.ctx
            .wallets
            .call(wallet, |reply| WalletCommand::History {
                from_seq,
                limit,
                reply,
            })
            .await
    }

    /// A provider's earnings: the payment entries of its wallet's ledger, read in
    /// pages, at most [`EARNINGS_ENTRIES_MAX`] entries per answer.
    pub async fn earnings(&self, provider: ProviderId) -> CoreResult<Earnings> {
        let wallet = WalletId::from(provider);
        let balance = self.balance(wallet).await?;
        let mut earnings = Earnings {
            provider: provider.0,
            jobs_paid: 0,
            earned: 0,
            balance,
            entries_read: 0,
            complete: false,
        };
        while earnings.entries_read < EARNINGS_ENTRIES_MAX {
            let page = self
                .history(wallet, earnings.entries_read, EARNINGS_PAGE_ENTRIES)
                .await?;
            for entry in page.iter().filter(|entry| entry.kind == EntryKind::Payment) {
                earnings.jobs_paid += 1;
                earnings.earned += entry.available_delta;
            }
            earnings.entries_read += page.len() as u64;
            if page.len() < EARNINGS_PAGE_ENTRIES {
                earnings.complete = true;
                break;
            }
        }
        Ok(earnings)
    }

    // ---- providers ----

    /// A provider goes online with these skills.
    pub async fn provider_online(
        &self,
        provider: ProviderId,
        skills: &[&str],
    ) -> CoreResult<Provider> {
        let skills = skills
            .iter()
            .map(|name| Skill::new(name))
            .collect::<Result<Vec<_>, _>>()?;
        self.provider_call(provider, |reply| ProviderCommand::Online { skills, reply })
            .await
    }

    /// A provider goes offline.
    pub async fn provider_offline(&self, provider: ProviderId) -> CoreResult<Provider> {
        self.provider_call(provider, |reply| ProviderCommand::Offline { reply })
            .await
    }

    /// A provider reports a position.
    pub async fn update_location(
        &self,
        provider: ProviderId,
        lat: f64,
        lon: f64,
    ) -> CoreResult<Provider> {
        let at = Coord::new(lat, lon)?;
        self.provider_call(provider, |reply| ProviderCommand::Locate { at, reply })
            .await
    }

    /// A provider's record.
    pub async fn provider(&self, provider: ProviderId) -> CoreResult<Provider> {
        self.provider_call(provider, |reply| ProviderCommand::Get { reply })
            .await
    }

    /// A provider's app connects for pushes (offers).
    pub fn provider_pushes(&self, provider: ProviderId) -> mpsc::Receiver<ProviderPush> {
        self.ctx.pushes.subscribe(provider)
    }

    async fn provider_call<R: Send + 'static>(
        &self,
        provider: ProviderId,
        command: impl FnOnce(ractor::RpcReplyPort<CoreResult<R>>) -> ProviderCommand,
    ) -> CoreResult<R> {
        self.ctx.providers.call(provider, command).await
    }

    // ---- jobs ----

    /// A customer books a job: the price is held in escrow, then the nearest
    /// available provider with the skill is offered it. Retrying with the same key
    /// returns the same job; the same key with a different request is refused.
    pub async fn request_job(
        &self,
        customer: CustomerId,
        key: &str,
        skill: &str,
        lat: f64,
        lon: f64,
        price: i64,
    ) -> CoreResult<Job> {
        let limits = self.booking_limits();
        let booking = booking::validate(customer, key, skill, (lat, lon), price, &limits)?;
        let seen = self.ctx.store.job_request(customer, key)?;
        if let Some(job) = booking::replay(&booking, key, seen)? {
            return self.job(job).await;
        }
        // A retry holds what the first try priced, whatever the areas did since.
        let booking = match self.ctx.store.booking_price(customer, key)? {
            Some((_, charge)) => booking::priced(booking, charge, &limits)?,
            None => {
                let (served, charge) = self.pricing(&booking.request);
                if !served {
                    NodeStats::count(&self.ctx.stats.bookings_outside_service_area);
                    return Err(outside_service_area());
                }
                let booking = booking::priced(booking, charge, &limits)?;
                let priced = (booking.request.price, booking.zone.clone());
                self.ctx.store.put_booking_price(customer, key, &priced)?;
                booking
            }
        };
        self.wallet_op(customer.into(), &booking.hold_key, booking::hold(&booking))
            .await?;
        let job = booking::new_job(
            &booking,
            self.ctx.new_job_id()?,
            self.ctx.clock.now_ms(),
            &limits,
        );
        let wake_at_ms = job.wake_at_ms.unwrap_or(job.created_ms);
        let id = self.ctx.store.create_job(
            customer,
            key,
            booking.encoded.clone(),
            (job.id, &job),
            wake_at_ms,
        )?;
        self.ctx.durability.flushed().await?;
        self.job_call(id, |reply| JobCommand::Dispatch { reply })
            .await
    }

    /// The limits of a booking, from the node's config.
    fn booking_limits(&self) -> BookingLimits {
        let config = &self.ctx.config;
        BookingLimits {
            price_max: config.dispatch.price_max,
            fee_bps: config.fees.platform_fee_bps,
            first_wake_ms: config.dispatch.deadline_tick_ms,
        }
    }

    /// The `limit` nearest available providers of `skill` within `radius_m` of a
    /// point, in this node's index, best first. The radius may not exceed the
    /// configured dispatch radius; at most [`NEARBY_LIMIT_MAX`] are returned.
    pub fn nearby(
        &self,
        skill: &str,
        lat: f64,
        lon: f64,
        radius_m: f64,
        limit: usize,
    ) -> CoreResult<Vec<Nearby>> {
        let skill = Skill::new(skill)?;
        let at = Coord::new(lat, lon)?;
        let radius_max = self.ctx.config.dispatch.search_radius_m;
        if !(radius_m.is_finite() && radius_m > 0.0 && radius_m <= radius_max) {
            return Err(CoreError::Invalid(format!(
                "radius_m {radius_m} is outside (0, {radius_max}]"
            )));
        }
        if !(1..=NEARBY_LIMIT_MAX).contains(&limit) {
            return Err(CoreError::Invalid(format!(
                "limit {limit} is outside 1..={NEARBY_LIMIT_MAX}"
            )));
        }
        if !self.areas().serves(skill.as_str(), at) {
            return Err(outside_service_area());
        }
        self.ctx.local_candidates(&CandidateQuery {
            at,
            skill,
            limit: limit as u32,
            radius_m,
            exclude: Vec::new(),
        })
    }

    // ---- calls from other nodes ----

    /// Dispatch candidates here for a job held by another node.
    pub fn candidates(&self, query: &CandidateQuery) -> CoreResult<Vec<Nearby>> {
        let limit_ok = (1..=NEARBY_LIMIT_MAX as u32).contains(&query.limit);
        if !(limit_ok && query.radius_m.is_finite() && query.radius_m > 0.0) {
            return Err(CoreError::Invalid("candidate query out of bounds".into()));
        }
        self.ctx.local_candidates(query)
    }

    /// A command of a job held by another node for a provider held here.
    pub async fn provider_remote(
        &self,
        provider: ProviderId,
        call: ProviderCall,
    ) -> CoreResult<()> {
        match call {
            ProviderCall::Offer { job, until_ms } => {
                self.provider_call(provider, |reply| ProviderCommand::Offer {
                    job,
                    until_ms,
                    reply,
                })
                .await
            }
            ProviderCall::OfferEnded { job } => {
                self.ctx.services.push_provider(
                    &self.ctx.stats,
                    provider,
                    ProviderPush::OfferEnded { job },
                );
                self.provider_call(provider, |reply| ProviderCommand::OfferEnded { job, reply })
                    .await
            }
            ProviderCall::Assign { job } => {
                self.provider_call(provider, |reply| ProviderCommand::Assign { job, reply })
                    .await
            }
            ProviderCall::JobEnded { job } => {
                self.provider_call(provider, |reply| ProviderCommand::JobEnded { job, reply })
                    .await
            }
            ProviderCall::Push(push) => {
                self.ctx
                    .services
                    .push_provider(&self.ctx.stats, provider, push);
                Ok(())
            }
        }
    }

    /// Job events of jobs held by another node, for customers connected here.
    pub fn deliver_job_events(&self, events: Vec<JobEvent>) {
        for event in events {
            self.ctx.services.notify_job(&self.ctx.stats, event);
        }
    }

    // ---- areas ----

    /// The service areas and zones in force.
    pub fn areas(&self) -> Arc<Areas> {
        self.ctx.areas.read().clone()
    }

    /// Puts (replaces by name) a service area or zone, durably; whether one of
    /// that name existed.
    pub async fn put_area(&self, area: StoredArea) -> CoreResult<bool> {
        area.validate().map_err(CoreError::Invalid)?;
        let areas = self.areas();
        let existed = areas.contains(area.name());
        if !existed && areas.len() >= AREAS_MAX {
            return Err(CoreError::Invalid(format!(
                "a node holds at most {AREAS_MAX} areas"
            )));
        }
        self.write_setting(area.key(), Some(encode(&area)?)).await?;
        Ok(existed)
    }

    /// Removes a service area or zone by name, durably; whether it existed.
    pub async fn remove_area(&self, name: &str) -> CoreResult<bool> {
        fixit_protocol::area::validate_name(name)
            .map_err(|error| CoreError::Invalid(error.to_string()))?;
        let existed = self.areas().contains(name);
        if existed {
            self.write_setting(format!("{AREA_PREFIX}{name}"), None)
                .await?;
        }
        Ok(existed)
    }

    /// Sets a provider's work area (`Anywhere` clears it), durably; whether one
    /// was set.
    pub async fn set_work_area(&self, provider: ProviderId, area: WorkArea) -> CoreResult<bool> {
        area.validate().map_err(CoreError::Invalid)?;
        let existed = self.work_area(provider) != WorkArea::Anywhere;
        let record = match area {
            WorkArea::Anywhere => None,
            _ => Some(encode(&(provider, area))?),
        };
        self.write_setting(work_key(provider), record).await?;
        Ok(existed)
    }

    /// Writes a setting changed here: newer than any version of it seen so far.
    /// Runs to its end even if the caller stops waiting (a client gone), so what
    /// is stored is also in force and versioned.
    async fn write_setting(&self, key: String, value: Option<Vec<u8>>) -> CoreResult<()> {
        let ctx = self.ctx.clone();
        tokio::spawn(write_setting_in(ctx, key, value))
            .await
            .map_err(|error| CoreError::Internal(format!("a setting's write: {error}")))?
    }

    /// Merges settings from another node: each applies if it is newer than the
    /// version held (last writer wins); how many applied. Runs to its end even if
    /// the caller stops waiting.
    pub async fn merge_settings(&self, incoming: Vec<Setting>) -> CoreResult<usize> {
        let ctx = self.ctx.clone();
        tokio::spawn(merge_settings_in(ctx, incoming))
            .await
            .map_err(|error| CoreError::Internal(format!("a settings merge: {error}")))?
    }

    /// Stores a token revocation (encoded by the caller) as the setting
    /// `revoke/<key>`, so nodes that miss it learn it by anti-entropy; each node
    /// puts it in force through its revocation sink.
    pub async fn put_revocation(&self, key: &str, record: Vec<u8>) -> CoreResult<()> {
        self.write_setting(format!("{REVOKE_PREFIX}{key}"), Some(record))
            .await
    }

    /// Every stored revocation, as encoded: the settings' and those an earlier
    /// version kept in its own tree.
    pub fn revocations(&self) -> CoreResult<Vec<Vec<u8>>> {
        let mut records = self.ctx.store.revocations()?;
        for record in self.ctx.store.settings(REVOKE_PREFIX.as_bytes())? {
            if let Some(value) = decode_setting(&record)?.value {
                records.push(value);
            }
        }
        Ok(records)
    }

    /// Where revocations learnt from other nodes go (the API's token denylist).
    pub fn on_revocation(&self, sink: impl Fn(&[u8]) + Send + Sync + 'static) {
        *self.ctx.revocation_sink.write() = Some(Arc::new(sink));
    }

    /// The digest of every settings bucket (anti-entropy).
    pub fn settings_digests(&self) -> Vec<u64> {
        self.ctx.settings.lock().digests().to_vec()
    }

    /// The versions of the settings in `buckets`, at most `limit`.
    pub fn setting_versions(&self, buckets: &[usize], limit: usize) -> Vec<(String, Version)> {
        self.ctx.settings.lock().in_buckets(buckets, limit)
    }

    /// Our versions compared with a peer's: the keys to fetch, the keys to push.
    pub fn reconcile_settings(
        &self,
        buckets: &[usize],
        theirs: &[(String, Version)],
    ) -> (Vec<String>, Vec<String>) {
        crate::settings::reconcile(&self.ctx.settings.lock(), buckets, theirs)
    }

    /// The stored settings of `keys` (missing ones left out), until `bytes_max`
    /// of values (at least one).
    pub fn settings_of(&self, keys: &[String], bytes_max: usize) -> CoreResult<Vec<Setting>> {
        let mut found = Vec::new();
        let mut bytes = 0;
        for key in keys {
            let Some(record) = self.ctx.store.setting(key.as_bytes())? else {
                continue;
            };
            let setting: Setting = crate::codec::decode(&record)
                .map_err(|error| CoreError::Internal(format!("stored setting: {error}")))?;
            bytes += record.len();
            found.push(setting);
            if bytes >= bytes_max {
                break;
            }
        }
        Ok(found)
    }

    /// A provider's work area.
    pub fn work_area(&self, provider: ProviderId) -> WorkArea {
        self.ctx.work_areas.read().get(provider)
    }

    /// The work areas of the `limit` lowest provider ids that have one (for the
    /// dashboard).
    pub fn work_areas(&self, limit: usize) -> Vec<(ProviderId, WorkArea)> {
        self.ctx.work_areas.read().first(limit)
    }

    /// What a booking of `skill` at a point for `price` would hold, and whether it
    /// is served there.
    pub fn quote(&self, skill: &str, lat: f64, lon: f64, price: i64) -> CoreResult<Quote> {
        let limits = self.booking_limits();
        let booking = booking::validate(CustomerId(0), "quote", skill, (lat, lon), price, &limits)?;
        let (in_service_area, charge) = self.pricing(&booking.request);
        let booking = booking::priced(booking, charge, &limits)?;
        Ok(Quote {
            in_service_area,
            price: booking.request.price,
            zone: booking.zone,
        })
    }

    /// What the areas in force say of a request: whether its skill is offered
    /// at its position, and the zone that prices it.
    fn pricing(&self, request: &crate::job::JobRequest) -> (bool, Option<ZoneCharge>) {
        let areas = self.areas();
        let at = request.location;
        (
            areas.serves(request.skill.as_str(), at),
            areas.charge(at, request.price),
        )
    }

    /// Zone events from now on (admin subscribers).
    pub fn zone_events(&self) -> tokio::sync::broadcast::Receiver<fixit_protocol::area::ZoneEvent> {
        self.ctx.zone_events.subscribe()
    }

    /// A job's record.
    pub async fn job(&self, job: JobId) -> CoreResult<Job> {
        self.job_call(job, |reply| JobCommand::Get { reply }).await
    }

    /// The offered provider accepts.
    pub async fn accept(&self, provider: ProviderId, job: JobId) -> CoreResult<Job> {
        self.job_call(job, |reply| JobCommand::Accept { provider, reply })
            .await
    }

    /// The offered provider declines; the job cascades to the next candidate.
    pub async fn decline(&self, provider: ProviderId, job: JobId) -> CoreResult<Job> {
        self.job_call(job, |reply| JobCommand::Decline { provider, reply })
            .await
    }

    /// The assigned provider starts work.
    pub async fn start_job(&self, provider: ProviderId, job: JobId) -> CoreResult<Job> {
        self.job_call(job, |reply| JobCommand::Start { provider, reply })
            .await
    }

    /// The assigned provider completes: the customer pays (price − fee to the
    /// provider, fee to the platform).
    pub async fn complete(
        &self,
        provider: ProviderId,
        job: JobId,
        proof: Vec<u8>,
    ) -> CoreResult<Job> {
        if proof.len() > crate::services::PROOF_BYTES_MAX {
            return Err(CoreError::Invalid(format!(
                "proof is over {} bytes",
                crate::services::PROOF_BYTES_MAX
            )));
        }
        self.job_call(job, |reply| JobCommand::Complete {
            provider,
            proof,
            reply,
        })
        .await
    }

    /// The customer cancels before work starts; the hold is released.
    pub async fn cancel(&self, customer: CustomerId, job: JobId) -> CoreResult<Job> {
        self.job_call(job, |reply| JobCommand::Cancel { customer, reply })
            .await
    }

    async fn job_call(
        &self,
        job: JobId,
        command: impl FnOnce(ractor::RpcReplyPort<CoreResult<Job>>) -> JobCommand,
    ) -> CoreResult<Job> {
        self.ctx.jobs.call(job, command).await
    }

    // ---- customer sessions ----

    /// A customer's app connects: a channel of the customer's job events.
    pub async fn connect_customer(
        &self,
        customer: CustomerId,
    ) -> CoreResult<mpsc::Receiver<JobEvent>> {
        self.ctx
            .sessions
            .call(customer, |reply| SessionCommand::Subscribe { reply })
            .await
    }

    /// What a customer's session knows.
    pub async fn session(&self, customer: CustomerId) -> CoreResult<SessionView> {
        self.ctx
            .sessions
            .call(customer, |reply| SessionCommand::Recent { reply })
            .await
    }
}

/// Writes a setting changed here: newer than any version of it seen so far.
async fn write_setting_in(
    ctx: Arc<NodeContext>,
    key: String,
    value: Option<Vec<u8>>,
) -> CoreResult<()> {
    let _one_at_a_time = ctx.setting_changes.lock().await;
    let version = {
        let held = ctx.settings.lock();
        let after = held
            .get(&key)
            .map_or(0, |version| version.at_ms.saturating_add(1));
        Version {
            at_ms: ctx.clock.now_ms().max(after),
            origin: ctx.config.node.id.clone(),
        }
    };
    let setting = Setting {
        key,
        version,
        value,
    };
    apply_settings_in(&ctx, vec![setting]).await.map(drop)
}

/// Merges settings from another node: each applies if it is newer than the
/// version held (last writer wins). How many applied.
async fn merge_settings_in(ctx: Arc<NodeContext>, incoming: Vec<Setting>) -> CoreResult<usize> {
    let _one_at_a_time = ctx.setting_changes.lock().await;
    let horizon = ctx.clock.now_ms().saturating_add(SETTING_CLOCK_SKEW_MAX_MS);
    // The newest of each key, written no later than the horizon.
    let mut newest: std::collections::BTreeMap<String, Setting> = Default::default();
    for setting in incoming {
        if setting.version.at_ms > horizon {
            tracing::warn!(key = %setting.key, "a setting dated in the future is refused");
            continue;
        }
        match newest.get(&setting.key) {
            Some(kept) if kept.version >= setting.version => {}
            _ => {
                newest.insert(setting.key.clone(), setting);
            }
        }
    }
    let areas = ctx.areas.read().clone();
    let mut room = AREAS_MAX.saturating_sub(areas.len());
    let newer: Vec<Setting> = {
        let held = ctx.settings.lock();
        newest
            .into_values()
            .filter(|setting| held.is_newer(&setting.key, &setting.version))
            .filter(|setting| {
                let Some(name) = setting.key.strip_prefix(AREA_PREFIX) else {
                    return true;
                };
                if areas.contains(name) || setting.value.is_none() {
                    return true;
                }
                // A new area: only while there is room.
                if room == 0 {
                    tracing::warn!(key = %setting.key, "no room for another area");
                    return false;
                }
                room -= 1;
                true
            })
            .collect()
    };
    apply_settings_in(&ctx, newer).await
}

/// Stores `settings` (one flush), then puts them in force; settings that do
/// not decode are skipped (logged). Called with `setting_changes` held.
async fn apply_settings_in(ctx: &Arc<NodeContext>, settings: Vec<Setting>) -> CoreResult<usize> {
    let mut changes = Vec::new();
    for setting in settings {
        match SettingChange::of(&setting) {
            Ok(change) => changes.push((setting, change)),
            Err(error) => {
                tracing::warn!(key = %setting.key, %error, "setting skipped");
            }
        }
    }
    if changes.is_empty() {
        return Ok(0);
    }
    let records = changes
        .iter()
        .map(|(setting, _)| Ok((setting.key.clone(), encode(setting)?)))
        .collect::<CoreResult<Vec<_>>>()?;
    let store = ctx.store.clone();
    tokio::task::spawn_blocking(move || store.put_settings(&records))
        .await
        .map_err(|error| CoreError::Internal(error.to_string()))??;
    let applied = changes.len();
    let mut list = None;
    let sink = ctx.revocation_sink.read().clone();
    for (setting, change) in changes {
        ctx.settings.lock().set(&setting.key, setting.version);
        let mut work = ctx.work_areas.write();
        change.apply(
            &mut list,
            || ctx.areas.read().list(),
            &mut work,
            sink.as_ref(),
        );
    }
    if let Some(list) = list {
        *ctx.areas.write() = Arc::new(Areas::new(list));
    }
    Ok(applied)
}

/// The stored settings: areas, work areas and their versions. A configured area
/// whose content in the file changed since this node's last start (or is new to
/// it) is written first, as a change made now by this node; one unchanged in the
/// file is left alone, so run-time changes made since stand.
fn load_settings(
    store: &Store,
    config: &NodeConfig,
    now_ms: u64,
) -> CoreResult<(Areas, WorkAreas, Versions)> {
    let configured = config
        .geo
        .service_areas
        .iter()
        .cloned()
        .map(StoredArea::Service)
        .chain(config.geo.zones.iter().cloned().map(StoredArea::Zone));
    let mut writes = Vec::new();
    for area in configured {
        let content = encode(&area)?;
        let mark = format!("config_{}", area.key());
        if store.local_mark(&mark)?.as_ref() == Some(&content) {
            continue;
        }
        store.set_local_mark(&mark, &content)?;
        let stored = match store.setting(area.key().as_bytes())? {
            Some(record) => Some(decode_setting(&record)?),
            None => None,
        };
        let after = stored.map_or(0, |s| s.version.at_ms.saturating_add(1));
        let setting = Setting {
            key: area.key(),
            version: Version {
                at_ms: now_ms.max(after),
                origin: config.node.id.clone(),
            },
            value: Some(content),
        };
        writes.push((setting.key.clone(), encode(&setting)?));
    }
    store.put_settings(&writes)?;
    let mut versions = Versions::default();
    let mut list = None;
    let mut work = WorkAreas::default();
    for record in store.settings(b"")? {
        let setting = decode_setting(&record)?;
        versions.set(&setting.key, setting.version.clone());
        match SettingChange::of(&setting) {
            Ok(change) => change.apply(&mut list, AreaList::default, &mut work, None),
            Err(error) => tracing::warn!(key = %setting.key, %error, "stored setting skipped"),
        }
    }
    let list = list.unwrap_or_default();
    Ok((Areas::new(list), work, versions))
}

fn decode_setting(record: &[u8]) -> CoreResult<Setting> {
    crate::codec::decode(record)
        .map_err(|error| CoreError::Internal(format!("stored setting: {error}")))
}

/// How far ahead of this node's clock a setting from another node may be dated.
const SETTING_CLOCK_SKEW_MAX_MS: u64 = 24 * 3600 * 1000;

/// Longest settings key, in bytes.
const SETTING_KEY_BYTES_MAX: usize = 256;

/// Settings key prefix of a token revocation (then `token/<jti>` or
/// `subject/<role>/<sub>`).
const REVOKE_PREFIX: &str = "revoke/";

/// The settings key of a provider's work area.
fn work_key(provider: ProviderId) -> String {
    format!("{WORK_PREFIX}{:020}", provider.0)
}

/// What one setting changes.
enum SettingChange {
    /// A service area or zone put.
    PutArea(StoredArea),
    /// A service area or zone removed (by name).
    RemoveArea(String),
    /// A provider's work area (`Anywhere`: cleared).
    Work(ProviderId, WorkArea),
    /// A token revocation (encoded), for the revocation sink.
    Revocation(Vec<u8>),
}

impl SettingChange {
    /// Reads a setting; refuses an unknown key or a value that does not decode.
    fn of(setting: &Setting) -> CoreResult<SettingChange> {
        let bad = |why: String| CoreError::Invalid(format!("setting {}: {why}", setting.key));
        if !fixit_protocol::ids::is_printable_ascii(&setting.key, SETTING_KEY_BYTES_MAX) {
            return Err(bad("not a key".into()));
        }
        if let Some(name) = setting.key.strip_prefix(AREA_PREFIX) {
            fixit_protocol::area::validate_name(name).map_err(|e| bad(e.to_string()))?;
            return match &setting.value {
                None => Ok(SettingChange::RemoveArea(name.to_owned())),
                Some(bytes) => {
                    let area: StoredArea =
                        crate::codec::decode(bytes).map_err(|e| bad(e.to_string()))?;
                    area.validate().map_err(bad)?;
                    if area.name() != name {
                        return Err(bad("the name is not the key's".into()));
                    }
                    Ok(SettingChange::PutArea(area))
                }
            };
        }
        if let Some(id) = setting.key.strip_prefix(WORK_PREFIX) {
            let provider = ProviderId(id.parse().map_err(|_| bad("no provider id".into()))?);
            if setting.key != work_key(provider) {
                return Err(bad("not the provider's canonical key".into()));
            }
            return match &setting.value {
                None => Ok(SettingChange::Work(provider, WorkArea::Anywhere)),
                Some(bytes) => {
                    let (owner, area): (ProviderId, WorkArea) =
                        crate::codec::decode(bytes).map_err(|e| bad(e.to_string()))?;
                    area.validate().map_err(bad)?;
                    if owner != provider {
                        return Err(bad("the provider is not the key's".into()));
                    }
                    Ok(SettingChange::Work(provider, area))
                }
            };
        }
        if setting.key.starts_with(REVOKE_PREFIX) {
            // Revocations are never withdrawn: a tombstone would be a bug upstream.
            let value = setting
                .value
                .clone()
                .ok_or_else(|| bad("no revocation".into()))?;
            return Ok(SettingChange::Revocation(value));
        }
        Err(bad("unknown key".into()))
    }

    /// Puts the change in force: a work area into `work`, a revocation through
    /// `sink` (none while loading: the API reads stored revocations when it
    /// takes its token key), an area into `list` (made from `base` on first
    /// use), which the caller indexes.
    fn apply(
        self,
        list: &mut Option<AreaList>,
        base: impl FnOnce() -> AreaList,
        work: &mut WorkAreas,
        sink: Option<&RevocationSink>,
    ) {
        let name = match &self {
            SettingChange::Work(provider, area) => {
                work.set(*provider, area.clone());
                return;
            }
            SettingChange::Revocation(record) => {
                if let Some(sink) = sink {
                    sink(record);
                }
                return;
            }
            SettingChange::PutArea(area) => area.name().to_owned(),
            SettingChange::RemoveArea(name) => name.clone(),
        };
        let list = list.get_or_insert_with(base);
        list.service_areas.retain(|a| a.name != name);
        list.zones.retain(|z| z.name != name);
        match self {
            SettingChange::PutArea(StoredArea::Service(area)) => list.service_areas.push(area),
            SettingChange::PutArea(StoredArea::Zone(zone)) => list.zones.push(zone),
            SettingChange::RemoveArea(_)
            | SettingChange::Work(..)
            | SettingChange::Revocation(_) => {}
        }
    }
}

fn encode<T: serde::Serialize>(value: &T) -> CoreResult<Vec<u8>> {
    crate::codec::encode(value).map_err(|error| CoreError::Internal(error.to_string()))
}

fn rebuild_geo_index(store: &Store, precision: usize) -> CoreResult<GeoIndex> {
    let mut geo = GeoIndex::new(precision)?;
    for provider in store.all_by_id::<Provider>(&store.providers)? {
        if let (true, Some(at)) = (provider.searchable(), provider.location) {
            geo.upsert(provider.id, at, &provider.skills);
        }
    }
    Ok(geo)
}

fn outside_service_area() -> CoreError {
    CoreError::OutsideServiceArea("this skill is not offered at this position".into())
}

async fn wake_due_jobs(ctx: &NodeContext) -> CoreResult<usize> {
    let due = ctx
        .store
        .due_offers(ctx.clock.now_ms(), DUE_TIMERS_PER_TICK_MAX)?;
    let mut woken = 0;
    for job in due {
        match ctx.jobs.call(job, |reply| JobCommand::Wake { reply }).await {
            Ok(_) => woken += 1,
            Err(error) => tracing::debug!(%job, %error, "timer not handled; next tick retries"),
        }
    }
    Ok(woken)
}

async fn deadline_ticker(ctx: Arc<NodeContext>) {
    let mut interval =
        tokio::time::interval(Duration::from_millis(ctx.config.dispatch.deadline_tick_ms));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Err(error) = wake_due_jobs(&ctx).await {
            tracing::warn!(%error, "deadline tick failed");
        }
    }
}
