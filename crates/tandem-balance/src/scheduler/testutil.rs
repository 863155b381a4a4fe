//! Helpers shared by the schedulers' unit tests.

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr};

use super::{Candidate, LoadView, RequestKey};

/// A `LoadView` over plain vectors, indexed by backend id. Ids beyond the vectors read as idle
/// and unmeasured.
#[derive(Debug, Default, Clone)]
pub struct Loads {
    pub active: Vec<u32>,
    pub latency: Vec<u64>,
}

impl Loads {
    pub fn idle() -> Self {
        Self::default()
    }
    pub fn active(active: &[u32]) -> Self {
        Self {
            active: active.to_vec(),
            latency: Vec::new(),
        }
    }
    pub fn with_latency(active: &[u32], latency: &[u64]) -> Self {
        Self {
            active: active.to_vec(),
            latency: latency.to_vec(),
        }
    }
}

impl LoadView for Loads {
    fn active(&self, id: usize) -> u32 {
        self.active.get(id).copied().unwrap_or(0)
    }
    fn latency_ewma_ns(&self, id: usize) -> u64 {
        self.latency.get(id).copied().unwrap_or(0)
    }
}

/// Candidates with ids `0..weights.len()` and the given weights.
pub fn cands(weights: &[u32]) -> Vec<Candidate> {
    weights
        .iter()
        .enumerate()
        .map(|(id, &weight)| Candidate { id, weight })
        .collect()
}

pub fn all(_: usize) -> bool {
    true
}

pub fn no_key() -> RequestKey {
    RequestKey {
        client: None,
        hash: None,
    }
}

pub fn key_v4(i: u32) -> RequestKey {
    RequestKey {
        client: Some(IpAddr::V4(Ipv4Addr::from(i))),
        hash: None,
    }
}

/// The i-th of a spread of client addresses: 10.0.0.0/8 walked with an odd stride, so that
/// consecutive test keys differ in many bits (like real client populations, unlike a counter).
pub fn client(i: u32) -> RequestKey {
    key_v4(0x0a00_0000 | (i.wrapping_mul(2_654_435_761) & 0x00ff_ffff))
}

/// Count picks per id over `rounds` calls.
pub fn histogram(
    s: &dyn super::Scheduler,
    n_ids: usize,
    rounds: usize,
    load: &dyn LoadView,
    key: impl Fn(usize) -> RequestKey,
    accept: &dyn Fn(usize) -> bool,
) -> Vec<usize> {
    let mut h = vec![0usize; n_ids];
    for r in 0..rounds {
        let id = s.pick(&key(r), load, accept).expect("a pick");
        h[id] += 1;
    }
    h
}

/// Pearson's chi-square statistic of `observed` against expected shares `weights`.
pub fn chi_square(observed: &[usize], weights: &[u32]) -> f64 {
    let total: usize = observed.iter().sum();
    let wsum: f64 = weights.iter().map(|&w| f64::from(w)).sum();
    observed
        .iter()
        .zip(weights)
        .map(|(&o, &w)| {
            let e = total as f64 * f64::from(w) / wsum;
            (o as f64 - e).powi(2) / e
        })
        .sum()
}

// ---- allocation counting (to prove `pick` does not allocate) ----

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

/// Forwards to the system allocator and counts allocations made by the current thread.
pub struct CountingAlloc;

// SAFETY: forwards every call unchanged to `System`; the counter is a const-initialized
// thread-local `Cell` without destructor, which never allocates.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Allocations made by this thread while running `f`.
pub fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}
