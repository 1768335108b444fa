//! UDP sockets for QUIC endpoints, with kernel buffers raised so handshake bursts
//! are not dropped (see docs/PERFORMANCE.md).

use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;

/// Kernel send and receive buffer asked for each endpoint socket, in bytes. The
/// kernel may cap it (`net.core.rmem_max`); the granted size is logged.
pub const UDP_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// A non-blocking UDP socket bound to `addr` with [`UDP_BUFFER_BYTES`] buffers.
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = new_udp(addr)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// `count` sockets like [`bind_udp`] sharing one address through `SO_REUSEPORT`
/// (the kernel spreads senders over them by their address). Port 0 picks a free
/// port. One socket where `SO_REUSEPORT` does not exist.
///
/// A port already in use — even by another such group, e.g. a second node
/// started with the same config — is refused (`AddrInUse`) as a plain bind
/// would be: a socket without `SO_REUSEPORT` is bound first to check, then
/// released for the group.
pub fn bind_udp_group(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::UdpSocket>> {
    let count = if cfg!(unix) { count.max(1) } else { 1 };
    let probe = bind_udp(addr)?;
    if count == 1 {
        return Ok(vec![probe]);
    }
    let mut bound = probe.local_addr()?;
    drop(probe);
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = new_udp(addr)?;
        #[cfg(unix)]
        socket.set_reuse_port(true)?;
        socket.bind(&bound.into())?;
        let socket: std::net::UdpSocket = socket.into();
        bound = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(sockets)
}

fn new_udp(addr: SocketAddr) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    raise_buffers(&socket);
    socket.set_nonblocking(true)?;
    Ok(socket)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_group_shares_one_port_and_a_taken_port_is_refused() {
        let group = bind_udp_group("127.0.0.1:0".parse().expect("addr"), 3).expect("bound");
        let addrs: Vec<SocketAddr> = group
            .iter()
            .map(|s| s.local_addr().expect("addr"))
            .collect();
        assert_eq!(addrs.len(), 3);
        assert_ne!(addrs[0].port(), 0);
        assert!(addrs.iter().all(|addr| *addr == addrs[0]), "{addrs:?}");
        // Neither a plain socket nor a second group (a second node on the same
        // port) can join.
        assert!(bind_udp(addrs[0]).is_err());
        let second = bind_udp_group(addrs[0], 3).map(|group| group.len());
        assert_eq!(
            second.map_err(|error| error.kind()),
            Err(std::io::ErrorKind::AddrInUse)
        );
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bound");
        let port = taken.local_addr().expect("addr");
        assert!(bind_udp_group(port, 2).is_err());
        assert_eq!(
            bind_udp_group(port, 1).map(|_| ()).map_err(|e| e.kind()),
            Err(std::io::ErrorKind::AddrInUse)
        );
    }
}
