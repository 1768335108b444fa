//! Cluster links on real QUIC over 127.0.0.1, with certificates made in temp dirs.

use fixit_actors::clock::{SharedClock, SystemClock};
use fixit_actors::codec::{decode, encode, encode_frame, read_frame};
use fixit_cluster::backoff::BackoffPolicy;
use fixit_cluster::{
    CallHandler, ClusterCa, ClusterEndpoint, Envelope, LinkError, LinkLimits, LinkState,
    NodeIdentity, Peers, Reply, Target,
};
use quinn::crypto::rustls::QuicClientConfig;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Bound of every wait loop below.
const WAIT_ROUNDS: u32 = 100;
const WAIT_STEP_MS: u64 = 100;
const FRAME_BYTES_MAX: usize = 64 * 1024;

/// Records each call; `hold` commands wait for a release permit.
struct Recorder {
    seen: Mutex<Vec<(String, String)>>,
    entered: Arc<Semaphore>,
    release: Arc<Semaphore>,
}

impl CallHandler for Recorder {
    async fn handle(&self, from: &str, envelope: Envelope) -> Result<Vec<u8>, LinkError> {
        self.seen
            .lock()
            .unwrap()
            .push((from.to_owned(), envelope.request_id.clone()));
        let command: String =
            decode(&envelope.command).map_err(|e| LinkError::Refused(e.to_string()))?;
        if command == "hold" {
            self.entered.add_permits(1);
            let _ = self.release.acquire().await.map(|permit| permit.forget());
        }
        encode(&format!("done {command}")).map_err(|e| LinkError::Refused(e.to_string()))
    }
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder {
            seen: Mutex::default(),
            entered: Arc::new(Semaphore::new(0)),
            release: Arc::new(Semaphore::new(0)),
        }
    }
}

impl Recorder {
    fn request_ids(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, id)| id.clone())
            .collect()
    }
}

fn now_ms() -> u64 {
    fixit_actors::clock::Clock::now_ms(&SystemClock)
}

fn clock() -> SharedClock {
    Arc::new(SystemClock)
}

fn limits() -> LinkLimits {
    LinkLimits {
        frame_bytes_max: FRAME_BYTES_MAX as u32,
        calls_per_peer_max: 2,
        connect_timeout_ms: 2_000,
        backoff: BackoffPolicy {
            initial_ms: 50,
            max_ms: 300,
        },
        ..LinkLimits::default()
    }
}

/// A CA in `dir` with certificates for `names`.
fn cluster_dir(dir: &Path, names: &[&str]) {
    let ca = ClusterCa::create(dir).unwrap();
    for name in names {
        ca.issue_node(name, dir).unwrap();
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn bind(dir: &Path, name: &str, listen: SocketAddr, handler: Arc<Recorder>) -> ClusterEndpoint {
    ClusterEndpoint::bind(
        &NodeIdentity::in_dir(dir, name),
        listen,
        limits(),
        handler,
        clock(),
    )
    .unwrap()
}

fn peers_of(endpoint: &ClusterEndpoint, peer: &str, addr: SocketAddr) -> Peers {
    let seed = 7;
    println!("jitter seed {seed}");
    Peers::new(endpoint, BTreeMap::from([(peer.to_owned(), addr)]), seed)
}

fn envelope(request_id: &str, command: &str, deadline_ms: u64) -> Envelope {
    Envelope {
        target: Target::Wallet(42),
        command: encode(&command.to_owned()).unwrap(),
        idempotency_key: Some(format!("key-{request_id}")),
        request_id: request_id.to_owned(),
        deadline_ms,
        from: String::new(),
    }
}

fn soon() -> u64 {
    now_ms() + 5_000
}

/// A bare QUIC client with the given TLS config, for handshake and frame tests.
fn raw_client(crypto: Arc<QuicClientConfig>) -> quinn::Endpoint {
    let mut endpoint = quinn::Endpoint::client(loopback()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(crypto));
    endpoint
}

/// Writes `bytes` on a new stream of `connection`, finishes it, reads one reply.
async fn raw_call(connection: &quinn::Connection, bytes: &[u8]) -> Reply {
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    send.finish().unwrap();
    read_frame::<Reply, _>(&mut recv, FRAME_BYTES_MAX)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_call_round_trips_and_its_request_id_reaches_the_remote_handler() {
    let dir = tempfile::tempdir().unwrap();
    cluster_dir(dir.path(), &["a", "b"]);
    let handler_b = Arc::new(Recorder::default());
    let b = bind(dir.path(), "b", loopback(), handler_b.clone());
    let a = bind(dir.path(), "a", loopback(), Arc::new(Recorder::default()));
    let peers = peers_of(&a, "b", b.local_addr());
    assert_eq!(peers.peer_states()[0].state, LinkState::Idle);

    let reply = peers
        .call("b", envelope("req-1", "debit", soon()))
        .await
        .unwrap();
    assert_eq!(decode::<String>(&reply).unwrap(), "done debit");
    assert_eq!(
        *handler_b.seen.lock().unwrap(),
        [("a".to_owned(), "req-1".to_owned())]
    );
    let state = &peers.peer_states()[0];
    assert_eq!((state.name.as_str(), &state.state), ("b", &LinkState::Up));
    assert!(state.rtt_ms.is_some());
    assert_eq!(
        peers.call("zz", envelope("req-2", "debit", soon())).await,
        Err(LinkError::Unavailable {
            peer: "zz".to_owned(),
            reason: "not a known member of the cluster".to_owned()
        })
    );
}

/// Connects with a hand-made client config and returns the error that ends the
/// connection (at the handshake or right after the client's half of it).
async fn refusal_of(crypto: rustls::ClientConfig, server: SocketAddr) -> quinn::ConnectionError {
    let endpoint = raw_client(Arc::new(QuicClientConfig::try_from(crypto).unwrap()));
    let attempt = async {
        let connection = endpoint.connect(server, "b").unwrap().await?;
        // TLS 1.3: the client may finish first; the server's refusal then closes it.
        let (mut send, _recv) = connection.open_bi().await?;
        let _ = send.write_all(b"hello").await;
        Err::<(), _>(connection.closed().await)
    };
    let outcome = tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .unwrap();
    outcome.unwrap_err()
}

fn client_builder(
    ca_dir: &Path,
) -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in fixit_cluster::tls::read_certificates(&ca_dir.join("ca-cert.pem")).unwrap() {
        roots.add(cert).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
}

fn with_alpn(mut config: rustls::ClientConfig) -> rustls::ClientConfig {
    config.alpn_protocols = vec![fixit_cluster::tls::ALPN.to_vec()];
    config
}

#[tokio::test]
async fn peers_from_another_ca_or_without_a_certificate_are_refused_at_the_handshake() {
    use rustls::pki_types::pem::PemObject;
    let good = tempfile::tempdir().unwrap();
    cluster_dir(good.path(), &["a", "b"]);
    let rogue = tempfile::tempdir().unwrap();
    cluster_dir(rogue.path(), &["a", "b"]);
    let handler_b = Arc::new(Recorder::default());
    let b = bind(good.path(), "b", loopback(), handler_b.clone());

    // A client trusting the real CA but presenting a rogue-CA certificate named "a".
    let rogue_a = NodeIdentity::in_dir(rogue.path(), "a");
    let rogue_chain = fixit_cluster::tls::read_certificates(&rogue_a.cert).unwrap();
    let rogue_key = rustls::pki_types::PrivateKeyDer::from_pem_file(&rogue_a.key).unwrap();
    let other_ca = client_builder(good.path())
        .with_client_auth_cert(rogue_chain, rogue_key)
        .unwrap();
    let error = refusal_of(with_alpn(other_ca), b.local_addr()).await;
    println!("client with another CA's certificate: {error}");
    assert!(
        matches!(
            error,
            quinn::ConnectionError::ConnectionClosed(_) | quinn::ConnectionError::TransportError(_)
        ),
        "{error:?}"
    );

    let no_certificate = client_builder(good.path()).with_no_client_auth();
    let error = refusal_of(with_alpn(no_certificate), b.local_addr()).await;
    println!("client without a certificate: {error}");
    assert!(
        matches!(
            error,
            quinn::ConnectionError::ConnectionClosed(_) | quinn::ConnectionError::TransportError(_)
        ),
        "{error:?}"
    );
    assert!(handler_b.request_ids().is_empty(), "no call got through");

    // The other way round: a real node refuses a server certified by another CA.
    let rogue_b = bind(rogue.path(), "b", loopback(), Arc::new(Recorder::default()));
    let a = bind(good.path(), "a", loopback(), Arc::new(Recorder::default()));
    let peers = peers_of(&a, "b", rogue_b.local_addr());
    let refused = peers
        .call("b", envelope("req-rogue", "debit", soon()))
        .await;
    println!("call to a server from another CA: {refused:?}");
    assert!(
        matches!(refused, Err(LinkError::Unavailable { ref reason, .. }) if reason.contains("handshake")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_stopped_peer_is_unavailable_before_the_deadline_and_comes_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    cluster_dir(dir.path(), &["a", "b"]);
    let b = bind(dir.path(), "b", loopback(), Arc::new(Recorder::default()));
    let b_addr = b.local_addr();
    let a = bind(dir.path(), "a", loopback(), Arc::new(Recorder::default()));
    let peers = peers_of(&a, "b", b_addr);
    peers
        .call("b", envelope("before", "debit", soon()))
        .await
        .unwrap();

    b.stop().await;
    for _ in 0..WAIT_ROUNDS {
        if peers.peer_states()[0].state != LinkState::Up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(WAIT_STEP_MS)).await;
    }
    for attempt in 0..3 {
        let deadline_ms = soon();
        let result = peers
            .call(
                "b",
                envelope(&format!("down-{attempt}"), "debit", deadline_ms),
            )
            .await;
        assert!(
            matches!(result, Err(LinkError::Unavailable { .. })),
            "{result:?}"
        );
        assert!(now_ms() < deadline_ms, "answered before the deadline");
    }
    assert!(matches!(
        peers.peer_states()[0].state,
        LinkState::Down { .. } | LinkState::Connecting
    ));

    let handler_b = Arc::new(Recorder::default());
    let mut restarted = None;
    for _ in 0..WAIT_ROUNDS {
        let identity = NodeIdentity::in_dir(dir.path(), "b");
        match ClusterEndpoint::bind(&identity, b_addr, limits(), handler_b.clone(), clock()) {
            Ok(endpoint) => {
                restarted = Some(endpoint);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(WAIT_STEP_MS)).await,
        }
    }
    let _b = restarted.expect("b rebinds its address");
    let mut answered = None;
    for round in 0..WAIT_ROUNDS {
        match peers
            .call("b", envelope(&format!("after-{round}"), "debit", soon()))
            .await
        {
            Ok(reply) => {
                answered = Some(reply);
                break;
            }
            Err(LinkError::Unavailable { .. }) => {
                tokio::time::sleep(Duration::from_millis(WAIT_STEP_MS)).await
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        decode::<String>(&answered.expect("reconnected")).unwrap(),
        "done debit"
    );
    assert_eq!(peers.peer_states()[0].state, LinkState::Up);
}

#[tokio::test]
async fn calls_past_the_per_peer_bound_are_busy_while_the_handler_is_held() {
    let dir = tempfile::tempdir().unwrap();
    cluster_dir(dir.path(), &["a", "b"]);
    let handler_b = Arc::new(Recorder::default());
    let b = bind(dir.path(), "b", loopback(), handler_b.clone());
    let a = bind(dir.path(), "a", loopback(), Arc::new(Recorder::default()));
    let peers = Arc::new(peers_of(&a, "b", b.local_addr()));
    let bound = limits().calls_per_peer_max;
    let held: Vec<_> = (0..bound)
        .map(|i| {
            let peers = peers.clone();
            tokio::spawn(async move {
                peers
                    .call("b", envelope(&format!("held-{i}"), "hold", soon()))
                    .await
            })
        })
        .collect();
    let entered = tokio::time::timeout(
        Duration::from_secs(10),
        handler_b.entered.acquire_many(bound),
    )
    .await;
    assert!(entered.is_ok(), "both held calls reached b");

    let busy = peers
        .call("b", envelope("one-too-many", "debit", soon()))
        .await;
    assert!(
        matches!(busy, Err(LinkError::Busy { retry_after_ms }) if retry_after_ms > 0),
        "{busy:?}"
    );

    handler_b.release.add_permits(bound as usize);
    for call in held {
        assert_eq!(
            decode::<String>(&call.await.unwrap().unwrap()).unwrap(),
            "done hold"
        );
    }
    assert!(peers
        .call("b", envelope("after", "debit", soon()))
        .await
        .is_ok());
}

#[tokio::test]
async fn an_envelope_past_its_deadline_is_refused_by_both_ends() {
    let dir = tempfile::tempdir().unwrap();
    cluster_dir(dir.path(), &["a", "b"]);
    let handler_b = Arc::new(Recorder::default());
    let b = bind(dir.path(), "b", loopback(), handler_b.clone());
    let a = bind(dir.path(), "a", loopback(), Arc::new(Recorder::default()));
    let peers = peers_of(&a, "b", b.local_addr());
    let past = now_ms() - 1_000;
    assert_eq!(
        peers.call("b", envelope("late", "debit", past)).await,
        Err(LinkError::DeadlineExceeded)
    );

    // Straight onto the wire, so the receiving side's check is the one tested.
    let client = raw_client(
        fixit_cluster::tls::client_crypto(&NodeIdentity::in_dir(dir.path(), "a")).unwrap(),
    );
    let connection = client.connect(b.local_addr(), "b").unwrap().await.unwrap();
    let mut late = envelope("late-on-wire", "debit", past);
    late.from = "a".to_owned();
    let reply = raw_call(&connection, &encode_frame(&late, FRAME_BYTES_MAX).unwrap()).await;
    assert_eq!(
        reply,
        Reply {
            request_id: "late-on-wire".to_owned(),
            result: Err(LinkError::DeadlineExceeded)
        }
    );
    assert!(handler_b.request_ids().is_empty(), "the handler never ran");
}

#[tokio::test]
async fn garbage_oversized_and_misattributed_frames_are_bad_frames_and_the_link_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    cluster_dir(dir.path(), &["a", "b"]);
    let handler_b = Arc::new(Recorder::default());
    let b = bind(dir.path(), "b", loopback(), handler_b.clone());
    let client = raw_client(
        fixit_cluster::tls::client_crypto(&NodeIdentity::in_dir(dir.path(), "a")).unwrap(),
    );
    let connection = client.connect(b.local_addr(), "b").unwrap().await.unwrap();

    let garbage = raw_call(&connection, &[0, 0, 0, 3, 0xff, 0xff, 0xff]).await;
    assert!(
        matches!(garbage.result, Err(LinkError::BadFrame(_))),
        "{garbage:?}"
    );
    let mut oversized = u32::MAX.to_be_bytes().to_vec();
    oversized.extend_from_slice(&[0xab; 64]);
    let oversized = raw_call(&connection, &oversized).await;
    assert!(
        matches!(oversized.result, Err(LinkError::BadFrame(ref reason)) if reason.contains("maximum")),
        "{oversized:?}"
    );
    let mut impostor = envelope("impostor", "debit", soon());
    impostor.from = "c".to_owned();
    let impostor = raw_call(
        &connection,
        &encode_frame(&impostor, FRAME_BYTES_MAX).unwrap(),
    )
    .await;
    assert!(
        matches!(impostor.result, Err(LinkError::BadFrame(_))),
        "{impostor:?}"
    );

    let mut good = envelope("good", "debit", soon());
    good.from = "a".to_owned();
    let reply = raw_call(&connection, &encode_frame(&good, FRAME_BYTES_MAX).unwrap()).await;
    assert_eq!(reply.request_id, "good");
    assert_eq!(
        decode::<String>(&reply.result.unwrap()).unwrap(),
        "done debit"
    );
    assert_eq!(handler_b.request_ids(), ["good"]);
}
