//! The UDP socket of a cluster endpoint, with kernel buffers raised so bursts of
//! calls are not dropped.

use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;

/// Kernel send and receive buffer asked for the endpoint socket, in bytes. The
/// kernel may cap it (`net.core.rmem_max`); a refusal is logged, not fatal.
pub const UDP_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// A non-blocking UDP socket bound to `addr` with [`UDP_BUFFER_BYTES`] buffers.
pub(crate) fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(error) = socket.set_recv_buffer_size(UDP_BUFFER_BYTES) {
        tracing::warn!(%error, "could not raise the UDP receive buffer");
    }
    if let Err(error) = socket.set_send_buffer_size(UDP_BUFFER_BYTES) {
        tracing::warn!(%error, "could not raise the UDP send buffer");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}
