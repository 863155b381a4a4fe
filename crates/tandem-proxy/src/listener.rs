//! Listening sockets: one per worker and service, bound with `SO_REUSEPORT` so the kernel
//! spreads new connections across workers without a shared accept lock.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

const BACKLOG: i32 = 4096;

/// `reuseport` only when several workers share the address: with one worker, a second
/// process on the same port is an error the operator must see, not a silent traffic split.
///
/// `freebind` lets the socket bind an address this host does not have (yet): a VRRP virtual
/// IP, which a backup only gets when it becomes master. Only for VIPs: any other address
/// that is not local is a typo the operator must hear about.
pub(crate) fn bind(
    addr: SocketAddr,
    reuseport: bool,
    freebind: bool,
) -> io::Result<std::net::TcpListener> {
    let socket = bound(addr, Type::STREAM, Protocol::TCP, reuseport, freebind)?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// The UDP socket of a `mode = "udp"` service: like [`bind`] (`SO_REUSEPORT` between workers,
/// IPv6 only for IPv6 addresses, `IP_FREEBIND` for VIPs). With several workers the kernel
/// hashes each datagram's addresses and ports onto one socket, so all datagrams of a flow
/// reach the same worker.
pub(crate) fn bind_udp(
    addr: SocketAddr,
    reuseport: bool,
    freebind: bool,
) -> io::Result<std::net::UdpSocket> {
    Ok(bound(addr, Type::DGRAM, Protocol::UDP, reuseport, freebind)?.into())
}

/// A non-blocking socket of `kind` bound to `addr` with the options of [`bind`].
fn bound(
    addr: SocketAddr,
    kind: Type,
    protocol: Protocol,
    reuseport: bool,
    freebind: bool,
) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    socket.set_reuse_address(true)?;
    if reuseport {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        // "[::]:80" must not silently also take IPv4: the operator lists each family.
        socket.set_only_v6(true)?;
        if freebind {
            socket.set_freebind_v6(true)?;
        }
    } else if freebind {
        socket.set_freebind_v4(true)?;
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// A listening socket of either protocol, as bound before the workers start.
pub(crate) enum Bound {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

impl Bound {
    pub(crate) fn bind(
        addr: SocketAddr,
        udp: bool,
        reuseport: bool,
        freebind: bool,
    ) -> io::Result<Bound> {
        if udp {
            bind_udp(addr, reuseport, freebind).map(Bound::Udp)
        } else {
            bind(addr, reuseport, freebind).map(Bound::Tcp)
        }
    }

    /// A second descriptor of the same socket (for a process taking over).
    pub(crate) fn dup(&self) -> io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        match self {
            Bound::Tcp(s) => s.as_fd().try_clone_to_owned(),
            Bound::Udp(s) => s.as_fd().try_clone_to_owned(),
        }
    }

    /// A socket handed over by the process this one replaces: used as it is (bound,
    /// listening, with the options it was made with).
    pub(crate) fn adopt(fd: std::os::fd::OwnedFd, udp: bool) -> io::Result<Bound> {
        if udp {
            let s = std::net::UdpSocket::from(fd);
            s.set_nonblocking(true)?;
            Ok(Bound::Udp(s))
        } else {
            let s = std::net::TcpListener::from(fd);
            s.set_nonblocking(true)?;
            Ok(Bound::Tcp(s))
        }
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Bound::Tcp(s) => s.local_addr(),
            Bound::Udp(s) => s.local_addr(),
        }
    }
}
