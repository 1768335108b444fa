//! The booking plan: what a customer's booking is and does, as pure functions —
//! the request validated, a reused key compared with what it booked before, the
//! escrow hold, and the new job's record. [`crate::node::Node::request_job`]
//! carries it out (look-up, hold, store, dispatch).

use crate::error::{CoreError, CoreResult};
use crate::geo::Coord;
use crate::ids::{CustomerId, JobId, Skill};
use crate::job::{Job, JobRequest, JobStatus};
use crate::ledger::{self, LedgerOp};
use crate::store::JobRequestRecord;
use fixit_protocol::area::{apply_multiplier, ZoneCharge};

/// A validated booking, ready to be carried out.
#[derive(Clone, Debug, PartialEq)]
pub struct Booking {
    /// Who books.
    pub customer: CustomerId,
    /// What is asked for.
    pub request: JobRequest,
    /// The request as stored under its key, compared when the key comes again.
    pub encoded: Vec<u8>,
    /// Idempotency key of the escrow hold on the customer's wallet.
    pub hold_key: String,
    /// The zone that prices it, if any ([`priced`]).
    pub zone: Option<ZoneCharge>,
}

/// What a booking's limits are (from the node's config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookingLimits {
    /// The highest price accepted, in minor units.
    pub price_max: i64,
    /// The platform fee, in basis points of the price.
    pub fee_bps: u32,
    /// How long after booking the job's first timer fires, in ms (so a dispatch
    /// happens even if the first one is lost).
    pub first_wake_ms: u64,
}

/// Validates a booking: the key, the skill, the position and the price. Nothing
/// is done for a refused one.
pub fn validate(
    customer: CustomerId,
    key: &str,
    skill: &str,
    (lat, lon): (f64, f64),
    price: i64,
    limits: &BookingLimits,
) -> CoreResult<Booking> {
    ledger::validate_key(key)?;
    let request = JobRequest {
        skill: Skill::new(skill)?,
        location: Coord::new(lat, lon)?,
        price,
    };
    if !(1..=limits.price_max).contains(&price) {
        return Err(CoreError::Invalid(format!(
            "price {price} is outside 1..={}",
            limits.price_max
        )));
    }
    let encoded =
        crate::codec::encode(&request).map_err(|error| CoreError::Internal(error.to_string()))?;
    Ok(Booking {
        customer,
        request,
        encoded,
        hold_key: format!("job-request-{key}"),
        zone: None,
    })
}

/// The booking priced by the zone it is in (`charge`, from the node's areas): the
/// price held becomes the price times the zone's multiplier, rounded up. The key
/// still compares the customer's own request, so a retry matches whatever the
/// zones did meanwhile. Refused as a conflict (with the zones in force, not the
/// request's shape) if the priced amount is over the price limit.
pub fn priced(
    mut booking: Booking,
    charge: Option<ZoneCharge>,
    limits: &BookingLimits,
) -> CoreResult<Booking> {
    let Some(charge) = charge else {
        return Ok(booking);
    };
    let price = apply_multiplier(booking.request.price, charge.multiplier_pct)
        .filter(|price| *price <= limits.price_max)
        .ok_or_else(|| {
            CoreError::Conflict(format!(
                "the price with zone {}'s multiplier of {}% is over {}",
                charge.zone, charge.multiplier_pct, limits.price_max
            ))
        })?;
    booking.request.price = price;
    booking.zone = Some(charge);
    Ok(booking)
}

/// What a key seen before means: the job it booked when the request is the same,
/// an `IdempotencyConflict` when it is not, `None` for a new key.
pub fn replay(
    booking: &Booking,
    key: &str,
    seen: Option<JobRequestRecord>,
) -> CoreResult<Option<JobId>> {
    match seen {
        None => Ok(None),
        Some(seen) if seen.request == booking.encoded => Ok(Some(seen.job)),
        Some(_) => Err(CoreError::IdempotencyConflict {
            key: key.to_owned(),
        }),
    }
}

/// The escrow hold of the price on the customer's wallet.
pub fn hold(booking: &Booking) -> LedgerOp {
    LedgerOp::Hold {
        amount: booking.request.price,
    }
}

/// The new job's record, once the hold is in place: requested, its fee taken from
/// the price, its first timer armed.
pub fn new_job(booking: &Booking, id: JobId, now_ms: u64, limits: &BookingLimits) -> Job {
    Job {
        id,
        customer: booking.customer,
        fee: ledger::fee_for(booking.request.price, limits.fee_bps),
        request: booking.request.clone(),
        status: JobStatus::Requested,
        tried: Vec::new(),
        offers: 0,
        hold_key: booking.hold_key.clone(),
        wake_at_ms: Some(now_ms + limits.first_wake_ms),
        verified: None,
        created_ms: now_ms,
        zone: booking.zone.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BookingLimits = BookingLimits {
        price_max: 100_000,
        fee_bps: 1_000,
        first_wake_ms: 250,
    };

    fn booking(key: &str, price: i64) -> CoreResult<Booking> {
        validate(
            CustomerId(7),
            key,
            "plumber",
            (52.52, 13.405),
            price,
            &LIMITS,
        )
    }

    #[test]
    fn bad_keys_skills_positions_and_prices_are_refused() {
        let bad = |result: CoreResult<Booking>| matches!(result, Err(CoreError::Invalid(_)));
        assert!(bad(booking("", 100)));
        assert!(bad(booking("k", 0)));
        assert!(bad(booking("k", -5)));
        assert!(bad(booking("k", LIMITS.price_max + 1)));
        let at = |lat, lon| validate(CustomerId(7), "k", "plumber", (lat, lon), 100, &LIMITS);
        assert!(bad(at(f64::NAN, 0.0)));
        assert!(bad(at(0.0, 181.0)));
        assert!(bad(validate(
            CustomerId(7),
            "k",
            "Plumber!",
            (0.0, 0.0),
            100,
            &LIMITS
        )));
        assert!(booking("k", LIMITS.price_max).is_ok());
    }

    #[test]
    fn a_reused_key_replays_the_same_request_and_refuses_another() {
        let first = booking("k", 1_000).unwrap();
        assert_eq!(replay(&first, "k", None).unwrap(), None);
        let seen = || JobRequestRecord {
            request: first.encoded.clone(),
            job: JobId(42),
        };
        assert_eq!(replay(&first, "k", Some(seen())).unwrap(), Some(JobId(42)));
        let other = booking("k", 2_000).unwrap();
        assert!(matches!(
            replay(&other, "k", Some(seen())),
            Err(CoreError::IdempotencyConflict { .. })
        ));
    }

    #[test]
    fn the_hold_is_the_price_and_the_job_takes_the_fee_and_arms_its_timer() {
        let booking = booking("k", 1_000).unwrap();
        assert_eq!(hold(&booking), LedgerOp::Hold { amount: 1_000 });
        let job = new_job(&booking, JobId(3), 5_000, &LIMITS);
        assert_eq!((job.fee, job.status), (100, JobStatus::Requested));
        assert_eq!(job.wake_at_ms, Some(5_250));
        assert_eq!(job.hold_key, "job-request-k");
        assert_eq!((job.customer, job.created_ms), (CustomerId(7), 5_000));
    }

    #[test]
    fn a_zone_multiplies_the_held_price_and_a_retry_still_matches() {
        let base = booking("k", 1_000).unwrap();
        let charge = ZoneCharge {
            zone: "airport".into(),
            multiplier_pct: 150,
            base_price: 1_000,
        };
        let priced = priced(base.clone(), Some(charge.clone()), &LIMITS).unwrap();
        assert_eq!(hold(&priced), LedgerOp::Hold { amount: 1_500 });
        assert_eq!(
            priced.encoded, base.encoded,
            "the key compares the customer's request"
        );
        let job = new_job(&priced, JobId(3), 5_000, &LIMITS);
        assert_eq!((job.request.price, job.fee), (1_500, 150));
        assert_eq!(job.zone, Some(charge.clone()));
        let dear = booking("k", LIMITS.price_max).unwrap();
        assert!(matches!(
            super::priced(dear, Some(charge), &LIMITS),
            Err(CoreError::Conflict(_))
        ));
    }
}
