//! Binary upgrade without dropping a connection: `tandem run --upgrade` takes the listening
//! sockets over from the running process.
//!
//! The running process listens on a Unix socket (`--upgrade-socket`, default
//! `/run/tandem/upgrade.sock`, mode 0600). The new process connects and asks; the old one
//! answers with a JSON line naming its sockets (service address and mode, the admin listener,
//! the cluster listener) followed by the descriptors themselves (`SCM_RIGHTS`). The new process
//! starts on them — the sockets are the very same kernel objects, so connections waiting in
//! their queues are never refused — and says `READY`; the old one then stops accepting,
//! drains like on SIGTERM and exits. If the new process fails before `READY`, the old one
//! just carries on.
//!
//! VRRP: the old process stops its instances without resigning (no priority-0 advert, the
//! VIPs stay in place) and tells which were master; the new one starts those directly as
//! master, so the VIP never moves and the peer never sees a gap longer than the start-up.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};

/// Where the running process waits for its successor, unless `--upgrade-socket` says.
pub const DEFAULT_SOCKET: &str = "/run/tandem/upgrade.sock";

/// How long the old process waits for the new one to say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// Descriptors per `SCM_RIGHTS` message (the kernel allows 253).
const FDS_PER_MESSAGE: usize = 200;

/// What the old process hands over, in the order of the descriptors that follow.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Offer {
    pub pid: u32,
    pub sockets: Vec<Socket>,
}

/// Sent by the old process once it has stopped its VRRP instances (after `READY`).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Vrrp {
    /// The instances that were master: the new process starts them as master.
    pub master: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Socket {
    Service {
        listen: SocketAddr,
        udp: bool,
        count: usize,
    },
    Admin,
    Cluster,
}

impl Socket {
    fn count(&self) -> usize {
        match self {
            Socket::Service { count, .. } => *count,
            Socket::Admin | Socket::Cluster => 1,
        }
    }
}

/// What the new process received.
pub struct Received {
    pub offer: Offer,
    pub fds: Vec<Vec<OwnedFd>>,
    stream: UnixStream,
}

impl Received {
    /// The descriptors of the service on `listen`, taken out.
    pub fn service(&mut self, listen: SocketAddr, udp: bool) -> Option<Vec<OwnedFd>> {
        self.take(
            |s| matches!(s, Socket::Service { listen: l, udp: u, .. } if *l == listen && *u == udp),
        )
        .map(|(_, fds)| fds)
    }

    pub fn admin(&mut self) -> Option<OwnedFd> {
        self.take(|s| *s == Socket::Admin)
            .and_then(|(_, mut fds)| fds.pop())
    }

    pub fn cluster(&mut self) -> Option<OwnedFd> {
        self.take(|s| *s == Socket::Cluster)
            .and_then(|(_, mut fds)| fds.pop())
    }

    fn take(&mut self, f: impl Fn(&Socket) -> bool) -> Option<(Socket, Vec<OwnedFd>)> {
        let i = self.offer.sockets.iter().position(f)?;
        let s = self.offer.sockets.remove(i);
        Some((s, self.fds.remove(i)))
    }

    /// Tell the old process to hand over: it stops its VRRP instances (answering which were
    /// master), stops accepting and drains.
    pub fn ready(mut self) -> anyhow::Result<Vrrp> {
        self.stream
            .write_all(b"READY\n")
            .context("telling the old process to hand over")?;
        let mut line = String::new();
        BufReader::new(&self.stream).read_line(&mut line)?;
        serde_json::from_str(line.trim())
            .with_context(|| format!("--upgrade: unexpected answer to READY {line:?}"))
    }
}

/// The new process's side: ask the running one for its sockets.
pub fn take_over(path: &Path) -> anyhow::Result<Received> {
    let mut stream = UnixStream::connect(path).with_context(|| {
        format!(
            "--upgrade: no running tandem answers on {} (is it running, with the same \
             --upgrade-socket?)",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(READY_WITHIN))?;
    stream.write_all(b"TAKEOVER\n")?;
    // Byte by byte, never past the newline: the descriptors ride on the bytes after it, and
    // a plain read that reached them would drop them.
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while byte[0] != b'\n' {
        use std::io::Read;
        if stream.read(&mut byte)? == 0 {
            bail!("--upgrade: the old process closed the connection");
        }
        line.push(byte[0]);
        if line.len() > 1 << 20 {
            bail!("--upgrade: the offer is too long");
        }
    }
    let line = String::from_utf8_lossy(&line);
    let offer: Offer = serde_json::from_str(line.trim())
        .with_context(|| format!("--upgrade: unexpected answer {line:?}"))?;
    let total: usize = offer.sockets.iter().map(Socket::count).sum();
    let mut all = Vec::with_capacity(total);
    while all.len() < total {
        let got = recv_fds(stream.as_raw_fd(), FDS_PER_MESSAGE)?;
        if got.is_empty() {
            bail!("--upgrade: the old process closed before sending every socket");
        }
        all.extend(got);
    }
    let mut fds = Vec::with_capacity(offer.sockets.len());
    let mut rest = all.into_iter();
    for s in &offer.sockets {
        fds.push(rest.by_ref().take(s.count()).collect());
    }
    Ok(Received { offer, fds, stream })
}

/// The running process's side: the Unix socket a successor connects to.
pub struct Handover {
    listener: UnixListener,
}

impl Handover {
    /// Listen on `path` (mode 0600). A leftover socket nobody answers on is replaced; one a
    /// live process answers on is left alone (`None`: this process cannot be upgraded in
    /// place, which is logged) unless `replace` (this process took over from that one).
    /// The file is left behind at exit: it may already be the successor's.
    pub fn listen(path: &Path, replace: bool) -> Option<Handover> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if replace {
            let _ = std::fs::remove_file(path);
        } else if path.exists() {
            if UnixStream::connect(path).is_ok() {
                tracing::warn!(path = %path.display(), "another tandem owns the upgrade socket; `tandem run --upgrade` will not reach this one");
                return None;
            }
            let _ = std::fs::remove_file(path);
        }
        let old = unsafe { libc::umask(0o077) };
        let bound = UnixListener::bind(path);
        // SAFETY: umask only swaps the process's file creation mask.
        unsafe { libc::umask(old) };
        match bound {
            Ok(listener) => Some(Handover { listener }),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot listen for upgrades; `tandem run --upgrade` will not work");
                None
            }
        }
    }

    /// Wait for a successor (blocking; run it on a thread of its own). `offer` is called
    /// when one asks, and returns what to hand over; `ready` when it is ready to serve, and
    /// stops this process's VRRP instances. Returns the successor's pid once it was told which
    /// instances to resume, or an error when it went away first (then this process carries
    /// on as before).
    pub fn serve_one(
        &self,
        offer: &dyn Fn() -> anyhow::Result<(Offer, Vec<Vec<OwnedFd>>)>,
        ready: &dyn Fn() -> Vrrp,
    ) -> anyhow::Result<u32> {
        let (stream, _) = self.listener.accept()?;
        stream.set_read_timeout(Some(READY_WITHIN))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line.trim() != "TAKEOVER" {
            bail!("unexpected upgrade request {line:?}");
        }
        let (offer, fds) = offer()?;
        let pid = offer.pid;
        let mut w = stream.try_clone()?;
        w.write_all(serde_json::to_string(&offer)?.as_bytes())?;
        w.write_all(b"\n")?;
        let flat: Vec<RawFd> = fds.iter().flatten().map(AsRawFd::as_raw_fd).collect();
        for chunk in flat.chunks(FDS_PER_MESSAGE) {
            send_fds(stream.as_raw_fd(), chunk)?;
        }
        line.clear();
        reader.read_line(&mut line)?;
        if line.trim() != "READY" {
            bail!("the new process went away before it was ready");
        }
        let vrrp = ready();
        w.write_all(serde_json::to_string(&vrrp)?.as_bytes())?;
        w.write_all(b"\n")?;
        Ok(pid)
    }
}

/// One `sendmsg` with one byte of data and `fds` as `SCM_RIGHTS`.
fn send_fds(sock: RawFd, fds: &[RawFd]) -> anyhow::Result<()> {
    let mut byte = [b'F'];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let payload = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(payload as u32) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: the control buffer is CMSG_SPACE(payload) bytes, so the first header and its
    // data fit; the descriptors are copied in with their exact length.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            bail!("no room for the descriptors");
        }
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(payload as u32) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(cmsg), payload);
        if libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) < 0 {
            return Err(std::io::Error::last_os_error()).context("sending the sockets");
        }
    }
    Ok(())
}

/// One `recvmsg`: the descriptors it carried (close-on-exec), empty at end of stream.
fn recv_fds(sock: RawFd, max: usize) -> anyhow::Result<Vec<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let payload = max * std::mem::size_of::<RawFd>();
    // SAFETY: a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(payload as u32) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: as in send_fds.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: recvmsg writes at most msg_controllen bytes of control data into our buffer.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(std::io::Error::last_os_error()).context("receiving the sockets");
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(anyhow!("receiving the sockets: control data truncated"));
    }
    let mut out = Vec::new();
    // SAFETY: walking the control messages the kernel wrote, with the libc macros; each
    // SCM_RIGHTS payload is an array of descriptors now owned by this process.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let len = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                let count = len / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    out.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_cross_a_socket_pair() {
        let (a, b) = UnixStream::pair().expect("pair");
        let l1 = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let l2 = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        send_fds(a.as_raw_fd(), &[l1.as_raw_fd(), l2.as_raw_fd()]).expect("send");
        let got = recv_fds(b.as_raw_fd(), 8).expect("recv");
        assert_eq!(got.len(), 2);
        let r1 = std::net::TcpListener::from(got.into_iter().next().expect("fd"));
        assert_eq!(
            r1.local_addr().expect("addr"),
            l1.local_addr().expect("addr")
        );
    }
}
