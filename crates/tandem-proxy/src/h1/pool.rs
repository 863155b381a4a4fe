//! Idle keep-alive connections to backends, per worker thread and backend address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use tokio::net::TcpStream;

/// Idle connections kept per backend and worker; beyond this a finished connection is closed.
const MAX_IDLE_PER_BACKEND: usize = 256;

pub(crate) struct BackendPool {
    idle: HashMap<SocketAddr, Mutex<Vec<TcpStream>>>,
}

impl BackendPool {
    pub(crate) fn new(addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        BackendPool {
            idle: addrs
                .into_iter()
                .map(|a| (a, Mutex::new(Vec::new())))
                .collect(),
        }
    }

    /// The most recently used idle connection that the backend has not closed.
    pub(crate) fn checkout(&self, addr: SocketAddr) -> Option<TcpStream> {
        let mut idle = self
            .idle
            .get(&addr)?
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        while let Some(s) = idle.pop() {
            if still_idle(&s) {
                return Some(s);
            }
        }
        None
    }

    pub(crate) fn checkin(&self, addr: SocketAddr, s: TcpStream) {
        if let Some(idle) = self.idle.get(&addr) {
            let mut idle = idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE_PER_BACKEND {
                idle.push(s);
            }
        }
    }
}

/// An idle connection must have nothing to read: readable means the backend closed it (or
/// sent something unsolicited), either way it cannot carry a request. This asks the runtime's
/// cached readiness, which epoll keeps current, so it costs no syscall.
pub(crate) fn still_idle(s: &TcpStream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    matches!(s.poll_read_ready(&mut cx), Poll::Pending)
}
