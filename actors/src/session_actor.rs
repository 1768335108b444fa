//! The customer session actor: receives a customer's job events and passes them to
//! the connected client (the client layer subscribes), keeping the latest few.

use crate::context::NodeContext;
use crate::entity::{EntityKind, Registry};
use crate::error::CoreResult;
use crate::ids::CustomerId;
use crate::job::Job;
use crate::services::JobEvent;
use ractor::RpcReplyPort;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Jobs a session loads at start to show the customer where things stand.
const JOBS_ON_LOAD_MAX: usize = 50;

/// Commands of a customer session.
pub enum SessionCommand {
    /// A client connects: returns a channel of this customer's job events.
    Subscribe {
        /// Answer.
        reply: RpcReplyPort<CoreResult<mpsc::Receiver<JobEvent>>>,
    },
    /// A job event for this customer (from the notifier).
    Event(JobEvent),
    /// The latest events and the jobs known at start.
    Recent {
        /// Answer.
        reply: RpcReplyPort<CoreResult<SessionView>>,
    },
}

/// What a session knows.
#[derive(Clone, Debug)]
pub struct SessionView {
    /// The customer's latest jobs, read from storage when the session started.
    pub jobs_at_start: Vec<Job>,
    /// Events received since, oldest first (bounded).
    pub events: Vec<JobEvent>,
}

/// A session's state.
pub struct SessionState {
    jobs_at_start: Vec<Job>,
    events: VecDeque<JobEvent>,
    subscribers: Vec<mpsc::Sender<JobEvent>>,
}

/// The customer session entity kind.
pub struct SessionKind;

impl EntityKind for SessionKind {
    type Id = CustomerId;
    type Command = SessionCommand;
    type State = SessionState;
    const KIND: &'static str = "session";
    const FAILPOINT: &'static str = crate::failpoints::SESSION_HANDLE;

    fn raw_id(id: CustomerId) -> u64 {
        id.0
    }

    fn registry(ctx: &NodeContext) -> &Registry<Self> {
        &ctx.sessions
    }

    async fn load(id: CustomerId, ctx: &Arc<NodeContext>) -> CoreResult<SessionState> {
        let ids = ctx.store.customer_job_ids(id)?;
        let mut jobs_at_start = Vec::new();
        for job in ids.iter().rev().take(JOBS_ON_LOAD_MAX) {
            if let Some(job) = ctx.store.get_by_id::<Job>(&ctx.store.jobs, job.0)? {
                jobs_at_start.push(job);
            }
        }
        jobs_at_start.reverse();
        Ok(SessionState {
            jobs_at_start,
            events: VecDeque::new(),
            subscribers: Vec::new(),
        })
    }

    async fn handle(
        _id: CustomerId,
        state: &mut SessionState,
        command: SessionCommand,
        ctx: &Arc<NodeContext>,
    ) {
        let events_max = ctx.config.limits.session_events_max as usize;
        match command {
            SessionCommand::Subscribe { reply } => {
                let (sender, receiver) = mpsc::channel(events_max);
                state.subscribers.push(sender);
                let _ = reply.send(Ok(receiver));
            }
            SessionCommand::Event(event) => {
                if state.events.len() == events_max {
                    state.events.pop_front();
                }
                state.events.push_back(event.clone());
                state
                    .subscribers
                    .retain(|subscriber| !subscriber.is_closed());
                for subscriber in &state.subscribers {
                    let counter = match subscriber.try_send(event.clone()) {
                        Ok(()) => &ctx.stats.pushes_sent,
                        Err(_) => &ctx.stats.pushes_dropped,
                    };
                    crate::context::NodeStats::count(counter);
                }
            }
            SessionCommand::Recent { reply } => {
                let _ = reply.send(Ok(SessionView {
                    jobs_at_start: state.jobs_at_start.clone(),
                    events: state.events.iter().cloned().collect(),
                }));
            }
        }
    }

    fn may_passivate(state: &SessionState) -> bool {
        state
            .subscribers
            .iter()
            .all(|subscriber| subscriber.is_closed())
    }
}
