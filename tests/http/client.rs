//! A minimal HTTP/1.1 (Connection: close) and WebSocket client for the bridge's
//! tests; it only ever talks to 127.0.0.1, and every read has a deadline.

#![allow(dead_code)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest wait for one whole HTTP answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// Largest answer read, in bytes.
const ANSWER_BYTES_MAX: usize = 16 * 1024 * 1024;

/// One HTTP answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    /// The first header called `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {} {}", self.status, self.text()))
    }

    /// The `error` kind of an ErrorBody.
    pub(crate) fn kind(&self) -> String {
        self.json()["error"].as_str().unwrap_or("<none>").to_owned()
    }
}

/// A client of one server.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Http {
    pub(crate) addr: SocketAddr,
}

impl Http {
    /// Sends one request on a fresh connection and reads the whole answer.
    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        let mut stream = TcpStream::connect(self.addr).await.expect("connect");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.unwrap_or_default());
        // The server may answer (and close) before reading an oversized body.
        let _ = stream.write_all(&bytes).await;
        let raw = tokio::time::timeout(ANSWER_TIMEOUT, read_to_end(&mut stream))
            .await
            .expect("answer within the timeout");
        parse(&raw)
    }

    pub(crate) async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let bearer = token.map(|token| format!("Bearer {token}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|b| ("Authorization", b.as_str()))
            .collect();
        self.send("GET", path, &headers, None).await
    }

    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Reply {
        self.raw(method, path, token, body.to_string().as_bytes())
            .await
    }

    pub(crate) async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.call("POST", path, token, body).await
    }

    pub(crate) async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> Reply {
        let bearer = token.map(|token| format!("Bearer {token}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|b| ("Authorization", b.as_str()))
            .collect();
        self.send(method, path, &headers, Some(body)).await
    }
}

async fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while raw.len() < ANSWER_BYTES_MAX {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => raw.extend_from_slice(&chunk[..read]),
        }
    }
    raw
}

fn split_head(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = raw.windows(4).position(|window| window == b"\r\n\r\n")?;
    Some((&raw[..end], &raw[end + 4..]))
}

fn parse_head(head: &[u8]) -> (u16, Vec<(String, String)>) {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    (status, headers)
}

fn parse(raw: &[u8]) -> Reply {
    let (head, rest) = split_head(raw)
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let (status, headers) = parse_head(head);
    let mut reply = Reply {
        status,
        headers,
        body: rest.to_vec(),
    };
    if reply
        .header("transfer-encoding")
        .is_some_and(|value| value.contains("chunked"))
    {
        reply.body = dechunk(rest);
    }
    reply
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    // At most one chunk per byte: bounded.
    for _ in 0..=rest.len() {
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
            break;
        };
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        let end = (start + size).min(rest.len());
        body.extend_from_slice(&rest[start..end]);
        rest = rest.get(end + 2..).unwrap_or_default();
    }
    body
}

/// One WebSocket frame from the server.
#[derive(Debug, PartialEq)]
pub(crate) enum Frame {
    Text(String),
    Close(Option<u16>),
    Other(u8),
}

/// A WebSocket client.
pub(crate) struct WebSocket {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl WebSocket {
    /// Opens `path` (with any query) with optional headers; `Err` is the HTTP answer
    /// when the server refused to upgrade.
    pub(crate) async fn connect(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<WebSocket, Reply> {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let key = STANDARD.encode(*b"fixit-test-key-1");
        let mut head = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream
            .write_all(head.as_bytes())
            .await
            .expect("write upgrade");
        let mut buffer = Vec::new();
        let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
        let mut chunk = [0u8; 4096];
        while split_head(&buffer).is_none() && buffer.len() < ANSWER_BYTES_MAX {
            let read = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
                .await
                .expect("upgrade answer within the timeout")
                .unwrap_or(0);
            if read == 0 {
                break;
            }
            buffer.extend_from_slice(&chunk[..read]);
        }
        let (head, rest) = split_head(&buffer).expect("an HTTP head");
        let (status, _) = parse_head(head);
        if status != 101 {
            // The connection stays open (no `Connection: close`): read the body by length.
            let mut raw = buffer.clone();
            let (head_length, length) = {
                let (head, rest) = split_head(&raw).expect("an HTTP head");
                let (_, headers) = parse_head(head);
                let length = headers
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, value)| value.parse::<usize>().ok())
                    .unwrap_or(0);
                (raw.len() - rest.len(), length.min(ANSWER_BYTES_MAX))
            };
            while raw.len() < head_length + length {
                match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
                    Ok(Ok(read)) if read > 0 => raw.extend_from_slice(&chunk[..read]),
                    _ => break,
                }
            }
            return Err(parse(&raw));
        }
        let buffer = rest.to_vec();
        Ok(WebSocket { stream, buffer })
    }

    /// The next frame, or `None` if none arrives within `wait` or the stream ended.
    pub(crate) async fn next_frame(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut chunk = [0u8; 16 * 1024];
        while self.buffer.len() < ANSWER_BYTES_MAX {
            if let Some(frame) = self.take_frame() {
                return Some(frame);
            }
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(read)) if read > 0 => self.buffer.extend_from_slice(&chunk[..read]),
                _ => return None,
            }
        }
        None
    }

    /// The next text message as JSON, skipping other frames; `None` on close or timeout.
    pub(crate) async fn next_json(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        // Bounded: each round takes a frame or returns.
        for _ in 0..10_000 {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_frame(left).await? {
                Frame::Text(text) => return Some(serde_json::from_str(&text).expect("JSON push")),
                Frame::Close(_) => return None,
                Frame::Other(_) => continue,
            }
        }
        None
    }

    fn take_frame(&mut self) -> Option<Frame> {
        let header = self.buffer.get(..2)?;
        let opcode = header[0] & 0x0f;
        let (length, start) = match header[1] & 0x7f {
            126 => (
                u16::from_be_bytes(self.buffer.get(2..4)?.try_into().ok()?) as usize,
                4,
            ),
            127 => (
                u64::from_be_bytes(self.buffer.get(2..10)?.try_into().ok()?) as usize,
                10,
            ),
            short => (short as usize, 2),
        };
        let payload = self.buffer.get(start..start + length)?.to_vec();
        self.buffer.drain(..start + length);
        Some(match opcode {
            1 => Frame::Text(String::from_utf8_lossy(&payload).into_owned()),
            8 => Frame::Close(
                payload
                    .get(..2)
                    .map(|code| u16::from_be_bytes([code[0], code[1]])),
            ),
            other => Frame::Other(other),
        })
    }

    /// Sends a close frame (masked, as clients must).
    pub(crate) async fn close(&mut self) {
        let mask = [1u8, 2, 3, 4];
        let code = 1000u16.to_be_bytes();
        let frame = [
            0x88,
            0x82,
            mask[0],
            mask[1],
            mask[2],
            mask[3],
            code[0] ^ mask[0],
            code[1] ^ mask[1],
        ];
        let _ = self.stream.write_all(&frame).await;
    }
}
