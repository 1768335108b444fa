//! The Rust client of the HTTP bridge: the same [`Commands`] as over QUIC, each a
//! JSON request with the caller's bearer token, and the pushes over the
//! `GET /v1/events` WebSocket. Error answers come back as the [`ApiError`] their
//! body names; a failed connection or an unreadable answer as `Core(Unavailable)`.
//!
//! Many clients (one token each) can share one [`HttpTransport`] and so its pool of
//! keep-alive connections.

use super::commands::Commands;
use super::error_body::api_error_from_body;
use fixit_protocol::api::{ApiError, ErrorBody, Push, Request, Response};
use fixit_protocol::command_spec::Method as CommandMethod;
use fixit_protocol::commands::response_of;
use fixit_protocol::error::CoreError;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Map, Value};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

/// Longest wait for a TCP connection to the bridge.
pub const HTTP_CONNECT_TIMEOUT_MS: u64 = 5_000;

/// Longest wait for one answer (a WebSocket's upgrade included).
pub const HTTP_ANSWER_TIMEOUT_MS: u64 = 30_000;

/// Largest answer body read (an error body or a page of history is far smaller).
const ANSWER_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Longest wait for the node to answer a WebSocket close frame.
const PUSH_CLOSE_WAIT_MS: u64 = 1_000;

/// Largest push message accepted on the WebSocket.
const PUSH_BYTES_MAX: usize = 64 * 1024;

/// WebSocket read buffer: pushes are small JSON texts (tungstenite's default of
/// 128 KiB per socket would dominate a client holding thousands).
const PUSH_READ_BUFFER_BYTES: usize = 4 * 1024;

/// Idle keep-alive connections kept per bridge address.
const IDLE_CONNECTIONS_MAX: usize = 1_024;

/// A pool of connections to HTTP bridges, from one local address.
#[derive(Clone)]
pub struct HttpTransport {
    http: reqwest::Client,
    local: Option<IpAddr>,
}

impl HttpTransport {
    /// A pool whose connections (WebSockets included) leave from `local` (any
    /// address when `None`).
    pub fn new(local: Option<IpAddr>) -> Result<HttpTransport, ApiError> {
        let http = reqwest::Client::builder()
            .local_address(local)
            .connect_timeout(Duration::from_millis(HTTP_CONNECT_TIMEOUT_MS))
            .timeout(Duration::from_millis(HTTP_ANSWER_TIMEOUT_MS))
            .pool_max_idle_per_host(IDLE_CONNECTIONS_MAX)
            .tcp_nodelay(true)
            .build()
            .map_err(|error| unavailable(format!("HTTP client: {error}")))?;
        Ok(HttpTransport { http, local })
    }

    /// A client of the bridge at `addr` calling as the holder of `token`.
    pub fn client(&self, addr: SocketAddr, token: &str) -> HttpClient {
        HttpClient {
            transport: self.clone(),
            addr,
            authorization: format!("Bearer {token}"),
        }
    }
}

/// One principal's client of one node's HTTP bridge; cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    transport: HttpTransport,
    addr: SocketAddr,
    authorization: String,
}

impl HttpClient {
    /// Opens the caller's push stream (`GET /v1/events`); refusals (a bad token, an
    /// admin, `busy` at the server's bound) come back as their error.
    pub async fn subscribe(&self) -> Result<HttpPushStream, ApiError> {
        let answer = tokio::time::timeout(
            Duration::from_millis(HTTP_ANSWER_TIMEOUT_MS),
            self.open_websocket(),
        )
        .await;
        answer.unwrap_or_else(|_| Err(unavailable("no WebSocket upgrade in time")))
    }

    async fn open_websocket(&self) -> Result<HttpPushStream, ApiError> {
        let stream = self.tcp().await?;
        let mut request = format!("ws://{}/v1/events", self.addr)
            .into_client_request()
            .map_err(|error| unavailable(format!("WebSocket request: {error}")))?;
        let authorization = HeaderValue::from_str(&self.authorization)
            .map_err(|_| ApiError::Unauthorized("the token is not a header value".into()))?;
        request.headers_mut().insert("authorization", authorization);
        let config = WebSocketConfig::default()
            .read_buffer_size(PUSH_READ_BUFFER_BYTES)
            .max_message_size(Some(PUSH_BYTES_MAX))
            .max_frame_size(Some(PUSH_BYTES_MAX));
        match tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await {
            Ok((socket, _)) => Ok(HttpPushStream { socket }),
            Err(tungstenite::Error::Http(answer)) => {
                let status = answer.status().as_u16();
                Err(error_of(status, answer.body().as_deref().unwrap_or(&[])))
            }
            Err(error) => Err(unavailable(format!("WebSocket upgrade: {error}"))),
        }
    }

    /// A TCP connection to the bridge from the transport's local address.
    async fn tcp(&self) -> Result<TcpStream, ApiError> {
        let failed = |error: std::io::Error| unavailable(format!("connect {}: {error}", self.addr));
        let socket = match self.addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(failed)?;
        if let Some(local) = self.transport.local {
            socket.bind(SocketAddr::new(local, 0)).map_err(failed)?;
        }
        let connect = socket.connect(self.addr);
        let stream = tokio::time::timeout(Duration::from_millis(HTTP_CONNECT_TIMEOUT_MS), connect)
            .await
            .map_err(|_| unavailable(format!("connect {}: timed out", self.addr)))?
            .map_err(failed)?;
        stream.set_nodelay(true).map_err(failed)?;
        Ok(stream)
    }

    /// Sends `request` to its route and decodes the answer as the response the
    /// request expects.
    async fn send(&self, request: Request) -> Result<Response, ApiError> {
        let route = Route::of(request);
        let url = format!(
            "http://{}{}{}",
            self.addr,
            route.path,
            query_string(&route.query)
        );
        let mut builder = self
            .transport
            .http
            .request(route.method, url)
            .header("authorization", &self.authorization);
        if let Some(body) = &route.body {
            builder = builder.json(body);
        }
        let answer = builder
            .send()
            .await
            .map_err(|error| unavailable(format!("HTTP request: {error}")))?;
        let status = answer.status().as_u16();
        let bytes = read_bounded(answer).await?;
        if !(200..300).contains(&status) {
            return Err(error_of(status, &bytes));
        }
        decode(route.answer, &bytes)
    }
}

impl Commands for HttpClient {
    fn call(&self, request: Request) -> impl Future<Output = Result<Response, ApiError>> + Send {
        self.send(request)
    }
}

/// An answer's body, refused unread when its `Content-Length` is over
/// [`ANSWER_BYTES_MAX`] and as soon as a body without one grows past it, so a
/// misbehaving peer cannot make the client buffer without bound.
async fn read_bounded(mut answer: reqwest::Response) -> Result<Vec<u8>, ApiError> {
    let too_large = |bytes: u64| {
        unavailable(format!(
            "answer of {bytes} bytes or more (at most {ANSWER_BYTES_MAX})"
        ))
    };
    let declared = answer.content_length().unwrap_or(0);
    if declared > ANSWER_BYTES_MAX as u64 {
        return Err(too_large(declared));
    }
    let mut bytes = Vec::with_capacity(declared as usize);
    while let Some(chunk) = answer
        .chunk()
        .await
        .map_err(|error| unavailable(format!("HTTP answer: {error}")))?
    {
        if bytes.len() + chunk.len() > ANSWER_BYTES_MAX {
            return Err(too_large((bytes.len() + chunk.len()) as u64));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The error an answer's body names; a body that is not an error body (e.g. a
/// proxy's page) is `unavailable` with its status.
fn error_of(status: u16, body: &[u8]) -> ApiError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(body) => api_error_from_body(&body),
        Err(_) => unavailable(format!("HTTP status {status} without an error body")),
    }
}

fn unavailable(reason: impl Into<String>) -> ApiError {
    CoreError::Unavailable(reason.into()).into()
}

/// Pushes from the node's WebSocket, in order, until it ends. Dropping it closes
/// the connection, which ends the stream at the node.
pub struct HttpPushStream {
    socket: WebSocketStream<TcpStream>,
}

impl HttpPushStream {
    /// The next push; `None` once the node closed the stream or the connection
    /// failed. A message that is not a push this client knows is skipped.
    pub async fn next(&mut self) -> Option<Push> {
        loop {
            match self.socket.next().await? {
                Ok(Message::Text(text)) => match serde_json::from_str::<Push>(&text) {
                    Ok(push) => return Some(push),
                    Err(error) => tracing::debug!(%error, "unknown push skipped"),
                },
                Ok(Message::Close(_)) => return None,
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "push stream ended");
                    return None;
                }
            }
        }
    }

    /// Closes the stream (a close frame, bounded wait).
    pub async fn close(mut self) {
        let timeout = Duration::from_millis(PUSH_CLOSE_WAIT_MS);
        let _ = tokio::time::timeout(timeout, self.socket.close(None)).await;
    }
}

/// A request as the bridge takes it, from the command table: verb, path with the
/// ids filled in, query pairs (reads) or JSON body (actions), and the answer's kind.
struct Route {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    body: Option<Value>,
    answer: &'static str,
}

impl Route {
    fn of(request: Request) -> Route {
        let spec = request.spec();
        let mut fields = request.fields();
        let mut path = spec.path.to_owned();
        for field in spec.fields.iter().filter(|field| spec.in_path(field.name)) {
            if let Some(value) = fields.remove(field.name) {
                path = path.replace(&format!("{{{}}}", field.name), &value.to_string());
            }
        }
        let (method, query, body) = match spec.method {
            CommandMethod::Get => (Method::GET, query_pairs(fields), None),
            CommandMethod::Post => (Method::POST, Vec::new(), body_of(fields)),
            CommandMethod::Put => (Method::PUT, Vec::new(), body_of(fields)),
        };
        Route {
            method,
            path,
            query,
            body,
            answer: spec.answer,
        }
    }
}

fn query_pairs(fields: Map<String, Value>) -> Vec<(String, String)> {
    fields
        .into_iter()
        .map(|(name, value)| match value {
            Value::String(text) => (name, text),
            other => (name, other.to_string()),
        })
        .collect()
}

/// `?name=value&...`, values percent-encoded (empty for no pairs).
fn query_string(pairs: &[(String, String)]) -> String {
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|byte| match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (byte as char).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect()
    };
    let joined: Vec<String> = pairs
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect();
    if joined.is_empty() {
        String::new()
    } else {
        format!("?{}", joined.join("&"))
    }
}

fn body_of(fields: Map<String, Value>) -> Option<Value> {
    (!fields.is_empty()).then_some(Value::Object(fields))
}

fn decode(answer: &str, bytes: &[u8]) -> Result<Response, ApiError> {
    let unreadable = |error: serde_json::Error| -> ApiError {
        CoreError::Internal(format!("unreadable answer: {error}")).into()
    };
    let payload: Value = serde_json::from_slice(bytes).map_err(unreadable)?;
    response_of(answer, payload).map_err(unreadable)
}
