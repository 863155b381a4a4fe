//! Replication between tandem nodes (`[cluster]`): each node streams its sticky-table changes
//! and its operators' backend actions to its peers as an ordered, authenticated log; a peer
//! resumes from the position it last applied, or takes a snapshot when the source no longer
//! holds it. See `docs/cluster.md`.
//!
//! - [`record`]: what is replicated, and its encoding;
//! - [`frame`]: the authenticated frames and messages on the wire;
//! - [`log`]: the source's ordered log with sequence numbers;
//! - [`checkpoint`]: what a replica keeps on disk to resume after a restart;
//! - [`node`]: the async shell.

pub mod checkpoint;
pub mod frame;
pub mod log;
pub mod node;
pub mod record;

pub use node::{Node, PeerStatus, ServerStatus};
pub use record::{BackendAction, Record};
