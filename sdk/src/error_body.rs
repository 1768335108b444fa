//! Error bodies back into [`ApiError`]: the kind picks the variant, the retry hint
//! and the message fill it. Kinds this client does not know become `internal`.

use fixit_protocol::api::{ApiError, ErrorBody};
use fixit_protocol::error::CoreError;

/// The error an [`ErrorBody`] describes. Variants with only a text get the detail
/// of the message; `insufficient_funds` and `idempotency_conflict` get their fields
/// from it when they can be read there (zero or the whole message otherwise).
pub fn api_error_from_body(body: &ErrorBody) -> ApiError {
    let message = body.message.as_str();
    let detail = |prefix: &str| message.strip_prefix(prefix).unwrap_or(message).to_owned();
    let retry_after_ms = body.retry_after_ms.unwrap_or(0);
    match body.error.as_str() {
        "unauthorized" => ApiError::Unauthorized(detail("unauthorized: ")),
        "forbidden" => ApiError::Forbidden(detail("forbidden: ")),
        "rate_limited" => ApiError::RateLimited { retry_after_ms },
        "bad_request" => ApiError::BadRequest(detail("bad request: ")),
        "unsupported_version" => ApiError::UnsupportedVersion(unsupported_version(message)),
        "invalid" => CoreError::Invalid(detail("invalid input: ")).into(),
        "insufficient_funds" => insufficient_funds(message).into(),
        "idempotency_conflict" => CoreError::IdempotencyConflict {
            key: quoted(message).unwrap_or(message).to_owned(),
        }
        .into(),
        "not_found" => CoreError::NotFound(
            message
                .strip_suffix(" not found")
                .unwrap_or(message)
                .to_owned(),
        )
        .into(),
        "conflict" => CoreError::Conflict(detail("conflict: ")).into(),
        "busy" => CoreError::Busy { retry_after_ms }.into(),
        "unavailable" => CoreError::Unavailable(detail("temporarily unavailable: ")).into(),
        "internal" => CoreError::Internal(detail("internal error: ")).into(),
        "outside_service_area" => {
            CoreError::OutsideServiceArea(detail("outside the service area: ")).into()
        }
        other => CoreError::Internal(format!("unknown error kind {other:?}: {message}")).into(),
    }
}

/// The version in "unsupported protocol version N (...)".
fn unsupported_version(message: &str) -> u16 {
    message
        .strip_prefix("unsupported protocol version ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|number| number.parse().ok())
        .unwrap_or(0)
}

/// The amounts in "insufficient funds: A available, N needed".
fn insufficient_funds(message: &str) -> CoreError {
    let mut numbers = message
        .split(|c: char| !(c.is_ascii_digit() || c == '-'))
        .filter_map(|word| word.parse::<i64>().ok());
    CoreError::InsufficientFunds {
        available: numbers.next().unwrap_or(0),
        needed: numbers.next().unwrap_or(0),
    }
}

/// The text between the first and the last double quote.
fn quoted(message: &str) -> Option<&str> {
    let start = message.find('"')? + 1;
    let end = message.rfind('"')?;
    message.get(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_comes_back_as_the_error_that_made_it() {
        let errors: Vec<ApiError> = vec![
            ApiError::Unauthorized("token expired".into()),
            ApiError::Forbidden("wallet 7 is not yours".into()),
            ApiError::RateLimited { retry_after_ms: 40 },
            ApiError::BadRequest("frame truncated".into()),
            ApiError::UnsupportedVersion(9),
            CoreError::Invalid("latitude NaN".into()).into(),
            CoreError::InsufficientFunds {
                available: 5,
                needed: 10_000,
            }
            .into(),
            CoreError::IdempotencyConflict {
                key: "book-1".into(),
            }
            .into(),
            CoreError::NotFound("job 12".into()).into(),
            CoreError::Conflict("job is completed".into()).into(),
            CoreError::Busy { retry_after_ms: 20 }.into(),
            CoreError::Unavailable("wallet restarting".into()).into(),
            CoreError::Internal("bug".into()).into(),
        ];
        for error in errors {
            let body = ErrorBody::new(&error, "r1");
            assert_eq!(api_error_from_body(&body), error, "{body:?}");
        }
        let unknown = ErrorBody {
            error: "from_the_future".into(),
            message: "?".into(),
            retry_after_ms: None,
            request_id: "r2".into(),
        };
        assert_eq!(api_error_from_body(&unknown).kind(), "internal");
    }
}
