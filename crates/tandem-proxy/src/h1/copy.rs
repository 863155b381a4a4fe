//! Forwarding one message body from one socket to the other, delimited by its framing, so the
//! connection stays in sync for the next message.

use std::io;

use tokio::io::AsyncRead;

use super::chunked::{ChunkError, Chunked};
use super::head::BodyLen;
use super::io::{read_into, Buf, Limit, Sink};

#[derive(Debug, thiserror::Error)]
pub(crate) enum CopyError {
    #[error("reading: {0}")]
    Read(io::Error),
    #[error("writing: {0}")]
    Write(io::Error),
    #[error("connection closed inside a body")]
    Truncated,
    #[error("chunked body: {0}")]
    Chunked(ChunkError),
    #[error("body larger than max_request_body")]
    TooLarge,
}

/// Forward a body from `src` (its first bytes may already be in `buf`) to `dst`. `head` is
/// written before the body, in the same syscall when body bytes are at hand. With `dechunk`,
/// a chunked body is sent as plain data (for HTTP/1.0 clients). `max` bounds the data of a
/// chunked body (declared lengths are checked with the head); the chunk that would cross it is
/// not forwarded. Returns the body bytes sent.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn copy_body<R: AsyncRead + Unpin, W: Sink>(
    src: &mut R,
    buf: &mut Buf,
    dst: &mut W,
    len: BodyLen,
    dechunk: bool,
    head: &[u8],
    idle: Limit,
    max: Option<u64>,
) -> Result<u64, CopyError> {
    let mut head = head;
    let mut sent = 0u64;
    match len {
        BodyLen::None => {
            dst.write_all2(head, &[], idle)
                .await
                .map_err(CopyError::Write)?;
        }
        BodyLen::Length(mut rem) => loop {
            let take = buf
                .filled()
                .len()
                .min(usize::try_from(rem).unwrap_or(usize::MAX));
            if take > 0 || !head.is_empty() {
                dst.write_all2(head, &buf.filled()[..take], idle)
                    .await
                    .map_err(CopyError::Write)?;
                head = &[];
                buf.consume(take);
                rem -= take as u64;
                sent += take as u64;
            }
            if rem == 0 {
                break;
            }
            if read_into(src, buf, idle).await.map_err(CopyError::Read)? == 0 {
                return Err(CopyError::Truncated);
            }
        },
        BodyLen::Chunked => {
            let mut scanner = Chunked::default();
            let mut plain = Vec::new();
            let mut data = 0u64;
            loop {
                if !buf.is_empty() {
                    plain.clear();
                    let filled = buf.filled();
                    let used = scanner
                        .scan(filled, |r| {
                            data += r.len() as u64;
                            if dechunk {
                                plain.extend_from_slice(&filled[r]);
                            }
                        })
                        .map_err(CopyError::Chunked)?;
                    if max.is_some_and(|m| data > m) {
                        return Err(CopyError::TooLarge);
                    }
                    let out = if dechunk { &plain[..] } else { &filled[..used] };
                    dst.write_all2(head, out, idle)
                        .await
                        .map_err(CopyError::Write)?;
                    head = &[];
                    sent += out.len() as u64;
                    buf.consume(used);
                    if scanner.is_done() {
                        break;
                    }
                } else if !head.is_empty() {
                    dst.write_all2(head, &[], idle)
                        .await
                        .map_err(CopyError::Write)?;
                    head = &[];
                }
                if read_into(src, buf, idle).await.map_err(CopyError::Read)? == 0 {
                    return Err(CopyError::Truncated);
                }
            }
        }
        BodyLen::UntilClose => loop {
            if !buf.is_empty() || !head.is_empty() {
                let n = buf.len();
                dst.write_all2(head, buf.filled(), idle)
                    .await
                    .map_err(CopyError::Write)?;
                head = &[];
                buf.consume(n);
                sent += n as u64;
            }
            if read_into(src, buf, idle).await.map_err(CopyError::Read)? == 0 {
                break;
            }
        },
    }
    Ok(sent)
}
