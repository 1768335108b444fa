//! UDP sockets for QUIC endpoints, with kernel buffers raised so handshake bursts
//! are not dropped (see docs/PERFORMANCE.md).

use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;

/// Kernel send and receive buffer asked for each endpoint socket, in bytes. The
/// kernel may cap it (`net.core.rmem_max`); the granted size is logged.
pub const UDP_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// A non-blocking UDP socket bound to `addr` with [`UDP_BUFFER_BYTES`] buffers.
pub(crate) fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    raise_buffers(&socket);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Asks for bigger buffers; a refusal only costs throughput, so it is logged, not fatal.
fn raise_buffers(socket: &Socket) {
    if let Err(error) = socket.set_recv_buffer_size(UDP_BUFFER_BYTES) {
        tracing::warn!(%error, "could not raise the UDP receive buffer");
    }
    if let Err(error) = socket.set_send_buffer_size(UDP_BUFFER_BYTES) {
        tracing::warn!(%error, "could not raise the UDP send buffer");
    }
    tracing::debug!(
        receive_bytes = socket.recv_buffer_size().unwrap_or(0),
        send_bytes = socket.send_buffer_size().unwrap_or(0),
        "UDP socket buffers"
    );
}
