//! Request ids: taken from a valid `x-request-id` header or generated, carried in a
//! tracing span around the request, and echoed in the `x-request-id` response header.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::Instrument;

/// Longest client-supplied request id kept, in bytes; longer ones are replaced.
pub const REQUEST_ID_BYTES_MAX: usize = 64;

/// The header carrying the request id both ways.
pub(crate) const HEADER: &str = "x-request-id";

/// The id of the request being served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RequestId(pub(crate) String);

impl RequestId {
    /// The id the middleware put in `parts` (a fresh one if it did not run).
    pub(crate) fn of(parts: &Parts) -> RequestId {
        RequestId::from_extensions(&parts.extensions)
    }

    /// The id the middleware put in `extensions` (a fresh one if it did not run).
    pub(crate) fn from_extensions(extensions: &Extensions) -> RequestId {
        extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(generate)
    }

    /// The id as text.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<RequestId, Infallible> {
        Ok(RequestId::of(parts))
    }
}

/// Middleware: picks the id, runs the request inside a span carrying it, and sets
/// the response header.
pub(crate) async fn assign(mut request: Request, next: Next) -> Response {
    let id = from_headers(request.headers()).unwrap_or_else(generate);
    request.extensions_mut().insert(id.clone());
    let span = tracing::info_span!(
        "http",
        request_id = %id.0,
        method = %request.method(),
        path = %request.uri().path(),
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| tracing::debug!(status = response.status().as_u16(), "answered"));
    if let Ok(value) = HeaderValue::from_str(&id.0) {
        response.headers_mut().insert(HEADER, value);
    }
    // No answer of the bridge is to be read as anything but its declared type.
    response.headers_mut().insert(
        axum::http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The client's id, if it is 1 to [`REQUEST_ID_BYTES_MAX`] printable ASCII
/// characters without spaces.
fn from_headers(headers: &HeaderMap) -> Option<RequestId> {
    let text = headers.get(HEADER)?.to_str().ok()?;
    valid(text).then(|| RequestId(text.to_owned()))
}

fn valid(text: &str) -> bool {
    fixit_protocol::ids::is_printable_ascii(text, REQUEST_ID_BYTES_MAX)
}

/// A fresh id: random when the OS offers randomness, else a process-wide counter.
fn generate() -> RequestId {
    static FALLBACK: AtomicU64 = AtomicU64::new(0);
    let number = getrandom::u64().unwrap_or_else(|_| FALLBACK.fetch_add(1, Ordering::Relaxed));
    RequestId(format!("req-{number:016x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_printable_ids_are_kept() {
        assert!(valid("abc-123_XYZ:/."));
        assert!(valid(&"a".repeat(REQUEST_ID_BYTES_MAX)));
        assert!(!valid(""));
        assert!(!valid(&"a".repeat(REQUEST_ID_BYTES_MAX + 1)));
        assert!(!valid("has space"));
        assert!(!valid("tab\there"));
        assert!(!valid("é"));
    }

    #[test]
    fn generated_ids_are_valid_and_differ() {
        let (a, b) = (generate(), generate());
        assert!(valid(a.as_str()) && valid(b.as_str()));
        assert_ne!(a, b);
    }
}
