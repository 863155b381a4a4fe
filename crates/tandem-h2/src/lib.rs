//! HTTP/2 as pure state for tandem: the frame codec, HPACK, and the connection and stream
//! rules of RFC 9113, with no sockets or clocks inside. tandem-proxy drives it.

pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod hpack;
pub mod request;
pub mod server;
