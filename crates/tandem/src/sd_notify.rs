//! systemd's readiness protocol (`Type=notify`): `READY=1` once every listener is open,
//! `RELOADING=1` … `READY=1` around a reload, `STOPPING=1` when draining starts. A datagram to
//! `$NOTIFY_SOCKET`; without that variable (not started by systemd) nothing is sent. Written
//! out rather than pulled from a crate: it is one `sendto`.

use std::os::unix::net::UnixDatagram;

fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = (|| -> std::io::Result<()> {
        let socket = UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            socket.send_to(state.as_bytes(), &path)?;
        }
        Ok(())
    })();
    if let Err(e) = sent {
        tracing::warn!(error = %e, state, "cannot notify systemd");
    }
}

pub fn ready() {
    send("READY=1\nSTATUS=serving");
}

/// systemd wants the monotonic time with `RELOADING=1` (`Type=notify-reload`).
pub fn reloading() {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let usec = (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000;
    send(&format!(
        "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading"
    ));
}

pub fn stopping() {
    send("STOPPING=1\nSTATUS=draining");
}

/// After `--upgrade`: this process is the service's main process now (needs
/// `NotifyAccess=all` in the unit, since the old main process started it).
pub fn main_pid() {
    send(&format!("MAINPID={}", std::process::id()));
}
