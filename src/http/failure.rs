//! An error answer: the status of the [`ApiError`], its [`ErrorBody`] as JSON, and a
//! `Retry-After` header (whole seconds, rounded up) when a retry can help.

use super::request_id::RequestId;
use crate::api::{ApiError, ErrorBody};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error on its way to the client.
#[derive(Debug)]
pub(crate) struct Failure {
    error: ApiError,
    status: Option<StatusCode>,
    request_id: RequestId,
}

impl Failure {
    /// `error` answering request `request_id`, with the error's own status.
    pub(crate) fn new(error: ApiError, request_id: &RequestId) -> Failure {
        Failure {
            error,
            status: None,
            request_id: request_id.clone(),
        }
    }

    /// A `bad_request` answer.
    pub(crate) fn bad_request(detail: impl Into<String>, request_id: &RequestId) -> Failure {
        Failure::new(ApiError::BadRequest(detail.into()), request_id)
    }

    /// The same error under another status (e.g. 413 for an over-limit body).
    pub(crate) fn with_status(mut self, status: StatusCode) -> Failure {
        self.status = Some(status);
        self
    }

    fn status(&self) -> StatusCode {
        self.status.unwrap_or_else(|| {
            StatusCode::from_u16(self.error.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        })
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody::new(&self.error, self.request_id.as_str());
        let mut response = (status, Json(body)).into_response();
        if let Some(wait_ms) = self.error.retry_after_ms() {
            let seconds = wait_ms.div_ceil(1_000).max(1);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fixit_actors::error::CoreError;

    fn answer(error: ApiError) -> Response {
        Failure::new(error, &RequestId("r-1".into())).into_response()
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        let limited = answer(ApiError::RateLimited {
            retry_after_ms: 1_001,
        });
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[header::RETRY_AFTER], "2");
        let busy = answer(ApiError::Core(CoreError::Busy { retry_after_ms: 20 }));
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
        let refused = answer(ApiError::Forbidden("no".into()));
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert!(refused.headers().get(header::RETRY_AFTER).is_none());
    }
}
