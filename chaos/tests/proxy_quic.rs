//! A QUIC round trip through the fault proxy with 20% loss each way: quinn's
//! retransmissions carry it through. Real UDP on loopback, a self-signed
//! certificate, the ring provider.

use fixit_chaos::proxy::{FaultProxy, Faults, ProxyConfig};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::timeout;

const ALPN: &[u8] = b"fixit-chaos-test/1";
const SERVER_NAME: &str = "localhost";
/// The round trip's upper bound: generous, since lost handshake packets wait for
/// quinn's probe timeouts. Never a timing assertion, only a hang guard.
const ROUND_TRIP_MS_MAX: u64 = 60_000;
/// Large enough to need many packets in each direction.
const MESSAGE_BYTES: usize = 64 * 1024;
const SEED: u64 = 20;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server config with a fresh self-signed certificate, and a client config that
/// trusts exactly that certificate.
fn quic_configs() -> (quinn::ServerConfig, quinn::ClientConfig) {
    let made = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()]).unwrap();
    let certificate: CertificateDer<'static> = made.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));

    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certificate.clone()], key)
        .unwrap();
    server.alpn_protocols = vec![ALPN.to_vec()];

    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![ALPN.to_vec()];

    (
        quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(server).unwrap())),
        quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(client).unwrap())),
    )
}

/// Accepts one connection and echoes its first bidirectional stream, then keeps
/// the connection open (dropping it would close it before the echo is delivered)
/// until the test aborts the task.
async fn echo_once(endpoint: quinn::Endpoint) {
    let connection = endpoint.accept().await.unwrap().await.unwrap();
    let (mut send, mut receive) = connection.accept_bi().await.unwrap();
    let message = receive.read_to_end(MESSAGE_BYTES).await.unwrap();
    send.write_all(&message).await.unwrap();
    send.finish().unwrap();
    connection.closed().await;
}

async fn round_trip(client: &quinn::Endpoint, to: SocketAddr) -> Vec<u8> {
    let connection = client.connect(to, SERVER_NAME).unwrap().await.unwrap();
    let (mut send, mut receive) = connection.open_bi().await.unwrap();
    let message: Vec<u8> = (0..MESSAGE_BYTES).map(|i| (i % 251) as u8).collect();
    send.write_all(&message).await.unwrap();
    send.finish().unwrap();
    let echoed = receive.read_to_end(MESSAGE_BYTES).await.unwrap();
    connection.close(0u32.into(), b"done");
    assert_eq!(echoed, message, "the echo matches what was sent");
    echoed
}

#[tokio::test]
async fn a_quic_round_trip_survives_twenty_percent_loss() {
    println!("fault proxy seed {SEED}");
    let (server_config, client_config) = quic_configs();
    let server = quinn::Endpoint::server(server_config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let server_addr = server.local_addr().unwrap();
    let echo = tokio::spawn(echo_once(server.clone()));

    let proxy = FaultProxy::start(ProxyConfig::new(server_addr, SEED), Faults::loss(20))
        .await
        .unwrap();
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    client.set_default_client_config(client_config);

    let bound = Duration::from_millis(ROUND_TRIP_MS_MAX);
    timeout(bound, round_trip(&client, proxy.local_addr()))
        .await
        .expect("the round trip finished");
    // The echo arrived whole, so the server did its part; a lost close frame
    // must not keep its task waiting for the idle timeout.
    echo.abort();
    client.close(0u32.into(), b"done");
    server.close(0u32.into(), b"done");

    let counts = proxy.stop().await;
    println!("proxy counts {counts:?}");
    assert!(counts.to_upstream.dropped_loss > 0, "{counts:?}");
    assert!(counts.from_upstream.dropped_loss > 0, "{counts:?}");
    assert_eq!(counts.flows_opened, 1, "one client, one flow");
}
