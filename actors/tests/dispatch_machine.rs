//! The dispatch machine without actors or a runtime: specific cascades step by step,
//! and property tests over random inputs, random candidates and a flaky wallet.

use fixit_actors::dispatch::{step, DispatchLimits, Effect, Input, Offer};
use fixit_actors::geo::Coord;
use fixit_actors::ids::{CustomerId, JobId, ProviderId, Skill};
use fixit_actors::job::{Job, JobRequest, JobStatus};
use fixit_actors::CoreError;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const CUSTOMER: CustomerId = CustomerId(10);
const STRANGER: CustomerId = CustomerId(11);
const PRICE: i64 = 5_000;
const FEE: i64 = 500;
const T0_MS: u64 = 1_000_000;
const OFFER_TIMEOUT_MS: u64 = 1_000;
const RETRY_DELAY_MS: u64 = 400;
/// Providers the random tests draw from.
const PROVIDERS_MAX: u64 = 8;

fn limits() -> DispatchLimits {
    DispatchLimits {
        offer_timeout_ms: OFFER_TIMEOUT_MS,
        offer_tries_max: 5,
        rounds_max: 4,
        retry_delay_ms: RETRY_DELAY_MS,
    }
}

fn new_job() -> Job {
    Job {
        id: JobId(7),
        customer: CUSTOMER,
        request: JobRequest {
            skill: Skill::new("plumber").unwrap(),
            location: Coord::new(48.85, 2.35).unwrap(),
            price: PRICE,
        },
        fee: FEE,
        status: JobStatus::Requested,
        tried: Vec::new(),
        offers: 0,
        hold_key: "job-request-k".into(),
        wake_at_ms: Some(T0_MS),
        verified: None,
        created_ms: T0_MS,
        zone: None,
    }
}

fn p(id: u64) -> ProviderId {
    ProviderId(id)
}

/// Steps and expects the input to be taken.
fn ok(job: &Job, input: Input, now_ms: u64) -> (Job, Vec<Effect>) {
    step(job, input, now_ms, &limits()).expect("input taken")
}

fn offer_of(effects: &[Effect]) -> Offer {
    match effects.last() {
        Some(Effect::Offer(offer)) => offer.clone(),
        other => panic!("expected an offer last, got {other:?}"),
    }
}

/// A job offered, at `now_ms`, to the first of `candidates` found by its first search.
fn offered(candidates: &[u64], now_ms: u64) -> (Job, Offer) {
    let job = new_job();
    let (job, effects) = ok(&job, Input::Dispatch, now_ms);
    assert_eq!(
        effects,
        vec![Effect::Search {
            round: 0,
            exclude: vec![]
        }]
    );
    let providers = candidates.iter().copied().map(p).collect();
    let (job, effects) = ok(
        &job,
        Input::Found {
            round: 0,
            providers,
        },
        now_ms,
    );
    let offer = offer_of(&effects);
    let (job, effects) = ok(&job, Input::OfferTaken(offer.clone()), now_ms);
    assert_eq!(job.status, offered_status(offer.provider, now_ms));
    assert_eq!(
        effects,
        vec![
            Effect::Persist(job.clone()),
            Effect::AnnounceOffer {
                provider: offer.provider,
                deadline_ms: now_ms + OFFER_TIMEOUT_MS
            }
        ]
    );
    (job, offer)
}

fn offered_status(provider: ProviderId, now_ms: u64) -> JobStatus {
    JobStatus::Offered {
        provider,
        deadline_ms: now_ms + OFFER_TIMEOUT_MS,
    }
}

fn release_effect(job: &Job) -> Effect {
    Effect::Release {
        wallet: CUSTOMER.into(),
        key: job.release_key(),
        amount: PRICE,
    }
}

/// The job went back to Requested, `passed` was told its offer ended, and a new
/// search of round 0 excludes it.
fn assert_cascades_past(job: &Job, effects: &[Effect], passed: ProviderId) {
    assert_eq!(job.status, JobStatus::Requested);
    assert_eq!(
        effects,
        vec![
            Effect::Persist(job.clone()),
            Effect::EndOffer { provider: passed },
            Effect::Search {
                round: 0,
                exclude: vec![passed]
            },
        ]
    );
}

#[test]
fn a_decline_offers_the_job_to_the_next_nearest() {
    let (job, offer) = offered(&[1, 2, 3], T0_MS);
    assert_eq!(offer.provider, p(1), "nearest first");
    assert_eq!(offer.rest, vec![p(2), p(3)]);
    let (job, effects) = ok(&job, Input::Decline { provider: p(1) }, T0_MS + 10);
    assert_cascades_past(&job, &effects, p(1));
    let found = Input::Found {
        round: 0,
        providers: vec![p(2), p(3)],
    };
    let (_, effects) = ok(&job, found, T0_MS + 10);
    assert_eq!(offer_of(&effects).provider, p(2));
}

#[test]
fn a_lapsed_offer_goes_to_the_next_candidate_at_the_deadline_not_before() {
    let (job, _) = offered(&[1, 2], T0_MS);
    let deadline_ms = T0_MS + OFFER_TIMEOUT_MS;
    let (early, effects) = ok(&job, Input::Wake, deadline_ms - 1);
    assert_eq!((early, effects), (job.clone(), vec![]), "not due yet");
    let (job, effects) = ok(&job, Input::Wake, deadline_ms);
    assert_cascades_past(&job, &effects, p(1));
    let found = Input::Found {
        round: 0,
        providers: vec![p(2)],
    };
    let (_, effects) = ok(&job, found, deadline_ms);
    assert_eq!(offer_of(&effects).provider, p(2));
}

#[test]
fn no_candidates_expires_and_releases_until_confirmed_under_one_key() {
    let job = new_job();
    let (job, _) = ok(&job, Input::Dispatch, T0_MS);
    let found = Input::Found {
        round: 0,
        providers: vec![],
    };
    let (job, effects) = ok(&job, found, T0_MS);
    assert_eq!(job.status, JobStatus::Expired);
    assert_eq!(job.wake_at_ms, Some(T0_MS + RETRY_DELAY_MS), "stored first");
    assert_eq!(
        effects,
        vec![Effect::Persist(job.clone()), release_effect(&job)]
    );
    let lost = Input::ReleaseFailed(CoreError::Unavailable("wallet restarting".into()));
    let (job, effects) = ok(&job, lost, T0_MS + 5);
    assert_eq!(job.wake_at_ms, Some(T0_MS + 5 + RETRY_DELAY_MS));
    assert_eq!(effects, vec![Effect::Persist(job.clone())]);
    let retry_ms = T0_MS + 5 + RETRY_DELAY_MS;
    let (job, effects) = ok(&job, Input::Wake, retry_ms);
    assert_eq!(effects, vec![release_effect(&job)], "same key again");
    let (job, effects) = ok(&job, Input::ReleaseConfirmed, retry_ms);
    assert!(!job.release_pending());
    assert_eq!(effects, vec![Effect::Persist(job.clone())]);
    let (_, effects) = ok(&job, Input::Wake, retry_ms + 10 * RETRY_DELAY_MS);
    assert_eq!(effects, vec![], "settled: nothing more");
}

#[test]
fn refused_candidates_cascade_through_the_rounds_then_wait_for_the_timer() {
    let job = new_job();
    let (mut job, _) = ok(&job, Input::Dispatch, T0_MS);
    for round in 0..limits().rounds_max {
        let a = p(u64::from(round) * 2 + 1);
        let b = p(u64::from(round) * 2 + 2);
        let found = Input::Found {
            round,
            providers: vec![a, b],
        };
        let (next, effects) = ok(&job, found, T0_MS);
        let offer = offer_of(&effects);
        assert_eq!((offer.provider, offer.round), (a, round));
        let (next, effects) = ok(&next, Input::OfferRefused(offer), T0_MS);
        let offer = offer_of(&effects);
        assert_eq!((offer.provider, offer.rest.len()), (b, 0));
        let (next, effects) = ok(&next, Input::OfferRefused(offer), T0_MS);
        assert!(next.tried.ends_with(&[a, b]));
        job = next;
        if round + 1 < limits().rounds_max {
            let exclude = job.tried.clone();
            let round = round + 1;
            assert_eq!(effects, vec![Effect::Search { round, exclude }]);
        } else {
            assert_eq!(job.status, JobStatus::Requested);
            assert_eq!(job.wake_at_ms, Some(T0_MS + RETRY_DELAY_MS));
            assert_eq!(effects, vec![Effect::Persist(job.clone())]);
        }
    }
    assert_eq!(job.offers, 0, "no offer was taken");
}

#[test]
fn the_last_try_expires_the_job_instead_of_searching() {
    let mut job = new_job();
    job.offers = limits().offer_tries_max;
    let (job, effects) = ok(&job, Input::Dispatch, T0_MS);
    assert_eq!(job.status, JobStatus::Expired);
    assert_eq!(
        effects,
        vec![Effect::Persist(job.clone()), release_effect(&job)]
    );
}

#[test]
fn accept_start_complete_capture_once_then_verify() {
    let (job, _) = offered(&[4], T0_MS);
    let at_ms = T0_MS + 20;
    let (job, effects) = ok(&job, Input::Accept { provider: p(4) }, at_ms);
    assert_eq!(
        effects,
        vec![Effect::Assign {
            provider: p(4),
            at_ms
        }]
    );
    assert_eq!(
        job.status,
        offered_status(p(4), T0_MS),
        "not before assigned"
    );
    let (job, effects) = ok(
        &job,
        Input::Assigned {
            provider: p(4),
            at_ms,
        },
        at_ms,
    );
    assert_eq!(job.status, JobStatus::Accepted { provider: p(4) });
    assert_eq!(effects, vec![Effect::Persist(job.clone())]);
    let (same, effects) = ok(&job, Input::Accept { provider: p(4) }, at_ms + 1);
    assert_eq!((same, effects), (job.clone(), vec![]), "a retried accept");
    let (job, _) = ok(&job, Input::Start { provider: p(4) }, at_ms);
    let proof = b"photo".to_vec();
    let complete = Input::Complete {
        provider: p(4),
        proof: proof.clone(),
    };
    let (job, effects) = ok(&job, complete, at_ms);
    let capture = Effect::Capture {
        wallet: CUSTOMER.into(),
        key: job.capture_key(),
        amount: PRICE,
        fee: FEE,
        provider: p(4),
        proof: proof.clone(),
    };
    assert_eq!(effects, vec![capture]);
    let busy = CoreError::Busy { retry_after_ms: 5 };
    let refused = step(&job, Input::CaptureFailed(busy.clone()), at_ms, &limits());
    assert_eq!(refused, Err(busy), "the wallet's error, as it was");
    let confirmed = Input::CaptureConfirmed {
        provider: p(4),
        proof: proof.clone(),
    };
    let (job, effects) = ok(&job, confirmed, at_ms);
    assert_eq!(job.status, JobStatus::Completed { provider: p(4) });
    assert_eq!(
        effects,
        vec![
            Effect::Persist(job.clone()),
            Effect::EndJob { provider: p(4) },
            Effect::Verify {
                provider: p(4),
                proof
            },
        ]
    );
}

#[test]
fn refusals_keep_their_typed_errors_and_change_nothing() {
    let (job, _) = offered(&[1], T0_MS);
    let refused = |input| step(&job, input, T0_MS + 1, &limits());
    // Another provider's offer: forbidden, and the refusal names no one.
    for input in [
        Input::Accept { provider: p(2) },
        Input::Decline { provider: p(2) },
    ] {
        match refused(input) {
            Err(CoreError::Forbidden(message)) => {
                assert!(!message.contains(&p(1).to_string()), "{message}")
            }
            other => panic!("expected forbidden, got {other:?}"),
        }
    }
    assert!(matches!(
        refused(Input::Cancel { customer: STRANGER }),
        Err(CoreError::NotFound(_))
    ));
    let late = step(
        &job,
        Input::Accept { provider: p(1) },
        T0_MS + OFFER_TIMEOUT_MS,
        &limits(),
    );
    assert!(matches!(late, Err(CoreError::Conflict(message)) if message.contains("expired")));
    let (cancelled, _) = ok(&job, Input::Cancel { customer: CUSTOMER }, T0_MS);
    let wallet_says_no = Input::ReleaseFailed(CoreError::Invalid("no such hold".into()));
    let refused = step(&cancelled, wallet_says_no, T0_MS, &limits());
    assert!(
        matches!(refused, Err(CoreError::Internal(_))),
        "{refused:?}"
    );
}

#[test]
fn cancel_ends_the_offer_and_releases_and_a_retried_cancel_does_nothing() {
    let (job, _) = offered(&[3], T0_MS);
    let (job, effects) = ok(&job, Input::Cancel { customer: CUSTOMER }, T0_MS + 1);
    assert_eq!(job.status, JobStatus::Cancelled);
    assert_eq!(
        effects,
        vec![
            Effect::Persist(job.clone()),
            Effect::EndOffer { provider: p(3) },
            release_effect(&job),
        ]
    );
    let (same, effects) = ok(&job, Input::Cancel { customer: CUSTOMER }, T0_MS + 2);
    assert_eq!((same, effects), (job, vec![]));
}

// ---------------------------------------------------------------------------------
// Property tests: random commands against a random world.

/// A command from outside (a customer, a provider, or the timer).
#[derive(Clone, Debug)]
enum Command {
    Dispatch,
    /// The provider holding the offer (or the job) does it, or provider `n` if none.
    Accept(Option<u64>),
    Decline(Option<u64>),
    Start(Option<u64>),
    Complete(Option<u64>),
    Cancel {
        owner: bool,
    },
    /// The clock moves on by this much, then the timer fires.
    Wake {
        after_ms: u64,
    },
}

/// How the world answers an awaited effect.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    Done,
    /// Retryable failure; nothing happened.
    Busy,
    /// Done, but the answer was lost on the way back (a timeout).
    Lost,
    /// Refused for good; nothing happened.
    Refused,
}

/// One answer of the world, used for whichever effect comes next.
#[derive(Clone, Debug)]
struct Answer {
    candidates: Vec<u64>,
    outcome: Outcome,
}

fn provider_choice() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![3 => Just(None), 1 => (1..=PROVIDERS_MAX).prop_map(Some)]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        1 => Just(Command::Dispatch),
        3 => provider_choice().prop_map(Command::Accept),
        2 => provider_choice().prop_map(Command::Decline),
        2 => provider_choice().prop_map(Command::Start),
        2 => provider_choice().prop_map(Command::Complete),
        1 => any::<bool>().prop_map(|owner| Command::Cancel { owner }),
        3 => (0..2 * OFFER_TIMEOUT_MS).prop_map(|after_ms| Command::Wake { after_ms }),
    ]
}

fn answer() -> impl Strategy<Value = Answer> {
    let outcome = prop_oneof![
        4 => Just(Outcome::Done),
        2 => Just(Outcome::Busy),
        1 => Just(Outcome::Lost),
        1 => Just(Outcome::Refused),
    ];
    let candidates = prop_oneof![
        1 => Just(vec![]),
        5 => prop::collection::vec(1..=PROVIDERS_MAX, 1..5),
    ];
    (candidates, outcome).prop_map(|(candidates, outcome)| Answer {
        candidates,
        outcome,
    })
}

/// Which settlement a hold had.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Settlement {
    Capture,
    Release,
}

/// The job, the clock, a wallet that applies each idempotency key once, and what
/// the machine was seen doing.
struct World {
    job: Job,
    now_ms: u64,
    answers: Vec<Answer>,
    next_answer: usize,
    /// When set, every awaited effect succeeds (used to settle at the end).
    healthy: bool,
    /// Keys the wallet applied, and what they did.
    applied: BTreeMap<String, Settlement>,
    /// Settlements the machine ever asked for.
    asked: BTreeSet<Settlement>,
    /// Providers the wallet and provider actors confirmed as assigned.
    assigned: BTreeSet<ProviderId>,
    /// The provider the job was first seen accepted by.
    accepted_by: Option<ProviderId>,
    /// Offers made in the current search round, and ever.
    round_offers: BTreeSet<ProviderId>,
    all_offers: BTreeSet<ProviderId>,
    /// The providers the current round's search had to exclude.
    excluded: Vec<ProviderId>,
}

impl World {
    fn new(answers: Vec<Answer>) -> World {
        World {
            job: new_job(),
            now_ms: T0_MS,
            answers,
            next_answer: 0,
            healthy: false,
            applied: BTreeMap::new(),
            asked: BTreeSet::new(),
            assigned: BTreeSet::new(),
            accepted_by: None,
            round_offers: BTreeSet::new(),
            all_offers: BTreeSet::new(),
            excluded: Vec::new(),
        }
    }

    fn next_answer(&mut self) -> Answer {
        if self.healthy || self.answers.is_empty() {
            return Answer {
                candidates: vec![],
                outcome: Outcome::Done,
            };
        }
        let answer = self.answers[self.next_answer % self.answers.len()].clone();
        self.next_answer += 1;
        answer
    }

    /// Who a command names: the provider in the job's status, else `n`, else 1.
    fn who(&self, choice: Option<u64>) -> ProviderId {
        match choice {
            Some(n) => p(n),
            None => self.job.status.provider().unwrap_or(p(1)),
        }
    }

    fn input_of(&mut self, command: Command) -> Input {
        match command {
            Command::Dispatch => Input::Dispatch,
            Command::Accept(choice) => Input::Accept {
                provider: self.who(choice),
            },
            Command::Decline(choice) => Input::Decline {
                provider: self.who(choice),
            },
            Command::Start(choice) => Input::Start {
                provider: self.who(choice),
            },
            Command::Complete(choice) => Input::Complete {
                provider: self.who(choice),
                proof: vec![1, 2, 3],
            },
            Command::Cancel { owner } => Input::Cancel {
                customer: if owner { CUSTOMER } else { STRANGER },
            },
            Command::Wake { after_ms } => {
                self.now_ms += after_ms;
                Input::Wake
            }
        }
    }

    /// Feeds one input and the answers to the effects it leads to, checking the
    /// invariants after every step; the first refusal ends the command.
    fn feed(&mut self, input: Input) -> Result<(), TestCaseError> {
        let mut next = Some(input);
        while let Some(input) = next.take() {
            let before = self.job.clone();
            let Ok((job, effects)) = step(&self.job, input, self.now_ms, &limits()) else {
                return Ok(()); // refused: the job is as it was
            };
            let awaiting = effects.iter().filter(|e| e.awaits_answer()).count();
            prop_assert!(awaiting <= 1, "one awaited effect per step: {effects:?}");
            if awaiting == 1 {
                prop_assert!(effects.last().is_some_and(Effect::awaits_answer));
            }
            for effect in effects {
                next = self.carry_out(effect, &job)?;
            }
            self.job = job;
            self.check(&before)?;
        }
        Ok(())
    }

    fn carry_out(&mut self, effect: Effect, job: &Job) -> Result<Option<Input>, TestCaseError> {
        Ok(match effect {
            Effect::Search { round, exclude } => Some(self.search(round, exclude)),
            Effect::Offer(offer) => Some(self.offer(offer)?),
            Effect::Assign { provider, at_ms } => Some(self.assign(provider, at_ms)),
            Effect::Capture {
                key,
                provider,
                proof,
                ..
            } => {
                prop_assert_eq!(&key, &job.capture_key());
                let done = self.settle(Settlement::Capture, key)?;
                Some(
                    done.map_or_else(Input::CaptureFailed, |()| Input::CaptureConfirmed {
                        provider,
                        proof,
                    }),
                )
            }
            Effect::Release { key, .. } => {
                prop_assert_eq!(&key, &job.release_key());
                let done = self.settle(Settlement::Release, key)?;
                Some(done.map_or_else(Input::ReleaseFailed, |()| Input::ReleaseConfirmed))
            }
            Effect::Persist(_)
            | Effect::AnnounceOffer { .. }
            | Effect::EndOffer { .. }
            | Effect::EndJob { .. }
            | Effect::Verify { .. } => None,
        })
    }

    fn search(&mut self, round: u32, exclude: Vec<ProviderId>) -> Input {
        self.round_offers.clear();
        self.excluded = exclude;
        let answer = self.next_answer();
        let providers = answer.candidates.into_iter().map(p).collect();
        Input::Found { round, providers }
    }

    fn offer(&mut self, offer: Offer) -> Result<Input, TestCaseError> {
        let provider = offer.provider;
        prop_assert!(
            self.round_offers.insert(provider),
            "{provider} offered twice in one round"
        );
        prop_assert!(self.all_offers.insert(provider), "{provider} offered twice");
        prop_assert!(
            !self.excluded.contains(&provider),
            "{provider} was excluded"
        );
        prop_assert_eq!(offer.deadline_ms, offer.at_ms + OFFER_TIMEOUT_MS);
        Ok(match self.next_answer().outcome {
            Outcome::Done => Input::OfferTaken(offer),
            _ => Input::OfferRefused(offer),
        })
    }

    fn assign(&mut self, provider: ProviderId, at_ms: u64) -> Input {
        match self.next_answer().outcome {
            Outcome::Done => {
                self.assigned.insert(provider);
                Input::Assigned { provider, at_ms }
            }
            _ => Input::AssignFailed(CoreError::Unavailable("provider restarting".into())),
        }
    }

    /// The wallet: applies a key once, answers a replay as the first time.
    fn settle(
        &mut self,
        kind: Settlement,
        key: String,
    ) -> Result<Result<(), CoreError>, TestCaseError> {
        self.asked.insert(kind);
        prop_assert!(
            self.asked.len() == 1,
            "both a capture and a release asked for"
        );
        if self.applied.get(&key) == Some(&kind) {
            return Ok(Ok(()));
        }
        let outcome = self.next_answer().outcome;
        if matches!(outcome, Outcome::Done | Outcome::Lost) {
            self.applied.insert(key, kind);
        }
        Ok(match outcome {
            Outcome::Done => Ok(()),
            Outcome::Busy => Err(CoreError::Busy { retry_after_ms: 10 }),
            Outcome::Lost => Err(CoreError::Unavailable("answer lost".into())),
            Outcome::Refused => Err(CoreError::InsufficientFunds {
                available: 0,
                needed: PRICE,
            }),
        })
    }

    /// The invariants, after every step.
    fn check(&mut self, before: &Job) -> Result<(), TestCaseError> {
        let job = &self.job;
        prop_assert!(self.assigned.len() <= 1, "assigned to {:?}", self.assigned);
        let holder = match job.status {
            JobStatus::Accepted { provider }
            | JobStatus::InProgress { provider }
            | JobStatus::Completed { provider } => Some(provider),
            _ => None,
        };
        if let Some(accepted_by) = self.accepted_by {
            prop_assert!(
                holder.is_none_or(|provider| provider == accepted_by),
                "the assigned provider changed to {holder:?}"
            );
            prop_assert!(
                !matches!(job.status, JobStatus::Requested | JobStatus::Offered { .. }),
                "offered again after it was accepted"
            );
        }
        if let Some(provider) = holder {
            prop_assert!(self.assigned.contains(&provider), "accepted unconfirmed");
            self.accepted_by = Some(provider);
        }
        if let JobStatus::Offered { provider, .. } = job.status {
            prop_assert!(job.tried.contains(&provider));
        }
        prop_assert!(job.offers <= limits().offer_tries_max);
        prop_assert!(job.offers >= before.offers && job.tried.starts_with(&before.tried));
        prop_assert!(
            self.applied.len() <= 1,
            "two settlements: {:?}",
            self.applied
        );
        if job.status.is_terminal() && !job.release_pending() {
            let expected = match job.status {
                JobStatus::Completed { .. } => Settlement::Capture,
                _ => Settlement::Release,
            };
            let settled: Vec<_> = self.applied.values().copied().collect();
            prop_assert_eq!(settled, vec![expected], "settled once, the right way");
        }
        Ok(())
    }

    /// With a healthy world, drives the job to its end: the hold must end in
    /// exactly one capture or one release.
    fn settle_all(&mut self) -> Result<(), TestCaseError> {
        self.healthy = true;
        for _ in 0..20 {
            let input = match self.job.status {
                _ if self.job.release_pending() => Input::Wake,
                JobStatus::InProgress { provider } => Input::Complete {
                    provider,
                    proof: vec![],
                },
                JobStatus::Completed { .. } | JobStatus::Cancelled | JobStatus::Expired => break,
                _ => Input::Cancel { customer: CUSTOMER },
            };
            self.now_ms += RETRY_DELAY_MS + OFFER_TIMEOUT_MS;
            self.feed(input)?;
        }
        prop_assert!(self.job.status.is_terminal() && !self.job.release_pending());
        prop_assert_eq!(self.applied.len(), 1, "exactly one settlement");
        let asked = self.asked.clone();
        for input in [
            Input::Wake,
            Input::Cancel { customer: CUSTOMER },
            Input::Dispatch,
        ] {
            self.now_ms += RETRY_DELAY_MS;
            self.feed(input)?;
        }
        prop_assert_eq!(&self.asked, &asked);
        prop_assert_eq!(self.applied.len(), 1, "nothing after the end");
        Ok(())
    }
}

proptest! {
    #[test]
    fn dispatch_assigns_once_settles_once_and_never_repeats_an_offer(
        commands in prop::collection::vec(command(), 1..60),
        answers in prop::collection::vec(answer(), 1..30),
    ) {
        let mut world = World::new(answers);
        world.feed(Input::Dispatch)?;
        for command in commands {
            let input = world.input_of(command);
            world.feed(input)?;
        }
        world.settle_all()?;
    }
}
