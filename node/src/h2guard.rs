//! A budget on empty HTTP/2 DATA frames, read off the connection before h2 sees it.
//!
//! actix-http pins h2 0.3, which queues every DATA frame of a stream until the
//! handler reads the body (RUSTSEC-2026-0258, fixed only in h2 0.4.16). A DATA frame
//! with no payload costs the peer no flow-control window, so while a stream's body
//! is not being read — the proxy waits for a slow upstream to take what it already
//! sent — a client can queue millions of them: measured here, 4.7 million 9-byte
//! frames in 10 s grew one node from 85 MB to 2.2 GB.
//!
//! [`H2Guard`] wraps the connection's byte stream (TCP for h2c, the decrypted
//! stream for TLS) and follows the frame boundaries of what h2 is about to parse.
//! A connection that sends more than [`MAX_EMPTY_DATA_FRAMES`] DATA frames with no
//! payload and no END_STREAM flag gets a read error: h2 drops the connection and its
//! queue. No client has a use for such frames (an empty DATA frame that ends a stream
//! carries END_STREAM and is not counted), so the budget only meets a flood.
//! HTTP/1.1 connections pass through untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Empty, non-final DATA frames one connection may send over its lifetime.
pub const MAX_EMPTY_DATA_FRAMES: u32 = 1024;

/// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`: what a client sends before its first frame.
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const DATA: u8 = 0x0;
const END_STREAM: u8 = 0x1;

/// Follows frame boundaries in a client's HTTP/2 byte stream and counts empty DATA
/// frames. Pure: fed the bytes as they are read.
#[derive(Debug)]
pub struct FrameCounter {
    /// Preface bytes still to pass.
    preface: usize,
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    /// Payload bytes of the current frame still to pass.
    payload: usize,
    empty_data: u32,
    limit: u32,
}

impl FrameCounter {
    pub fn new(limit: u32) -> Self {
        FrameCounter {
            preface: PREFACE_LEN,
            header: [0; FRAME_HEADER_LEN],
            header_len: 0,
            payload: 0,
            empty_data: 0,
            limit,
        }
    }

    /// Follows `bytes`; `false` once the connection has spent its budget.
    pub fn feed(&mut self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            if self.preface > 0 {
                let n = self.preface.min(bytes.len());
                self.preface -= n;
                bytes = &bytes[n..];
            } else if self.payload > 0 {
                let n = self.payload.min(bytes.len());
                self.payload -= n;
                bytes = &bytes[n..];
            } else {
                let n = (FRAME_HEADER_LEN - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                self.header_len += n;
                bytes = &bytes[n..];
                if self.header_len == FRAME_HEADER_LEN {
                    self.header_len = 0;
                    self.frame();
                }
            }
        }
        self.empty_data <= self.limit
    }

    fn frame(&mut self) {
        let h = &self.header;
        let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        let (kind, flags) = (h[3], h[4]);
        if kind == DATA && len == 0 && flags & END_STREAM == 0 {
            self.empty_data = self.empty_data.saturating_add(1);
        }
        self.payload = len;
    }
}

/// A connection's byte stream, with [`FrameCounter`] on what is read when it
/// speaks HTTP/2.
pub struct H2Guard<IO> {
    io: IO,
    counter: Option<FrameCounter>,
    /// Counts the connections cut for a flood (`gateway_h2_floods_refused_total`).
    refused: prometheus::IntCounter,
    cut: bool,
}

impl<IO> H2Guard<IO> {
    pub fn new(io: IO, http2: bool, refused: prometheus::IntCounter) -> Self {
        H2Guard {
            io,
            counter: http2.then(|| FrameCounter::new(MAX_EMPTY_DATA_FRAMES)),
            refused,
            cut: false,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for H2Guard<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(counter)) = (&polled, this.counter.as_mut()) {
            if !counter.feed(&buf.filled()[before..]) {
                // Every later read fails too: the budget never comes back.
                if !std::mem::replace(&mut this.cut, true) {
                    this.refused.inc();
                    tracing::debug!("connection cut: too many empty HTTP/2 DATA frames");
                }
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "too many empty HTTP/2 DATA frames",
                )));
            }
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for H2Guard<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.extend([kind, flags]);
        f.extend(stream.to_be_bytes());
        f.extend(payload);
        f
    }

    fn conversation(empty: usize) -> Vec<u8> {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(0x4, 0, 0, &[0, 4, 0, 1, 0, 0]));
        bytes.extend(frame(0x1, 0x4, 1, b"headers"));
        // A payload that looks like an empty DATA frame header must not count.
        bytes.extend(frame(DATA, 0, 1, &frame(DATA, 0, 1, &[])));
        for _ in 0..empty {
            bytes.extend(frame(DATA, 0, 1, &[]));
        }
        bytes.extend(frame(DATA, END_STREAM, 1, &[]));
        bytes
    }

    #[test]
    fn counts_only_empty_non_final_data_frames() {
        let mut c = FrameCounter::new(3);
        assert!(c.feed(&conversation(3)));
        assert_eq!(c.empty_data, 3);
        let mut c = FrameCounter::new(3);
        assert!(!c.feed(&conversation(4)));
    }

    #[test]
    fn frame_boundaries_survive_any_split() {
        let bytes = conversation(5);
        for chunk in [1, 2, 7, 9, 10, 23, 24, 25, 64] {
            let mut c = FrameCounter::new(100);
            for piece in bytes.chunks(chunk) {
                assert!(c.feed(piece));
            }
            assert_eq!(c.empty_data, 5, "read in pieces of {chunk}");
            assert_eq!((c.header_len, c.payload), (0, 0));
        }
    }

    #[test]
    fn large_frames_are_skipped_whole() {
        let mut c = FrameCounter::new(0);
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(DATA, 0, 1, &vec![0u8; 70_000]));
        assert!(c.feed(&bytes));
        assert!(!c.feed(&frame(DATA, 0, 1, &[])));
    }
}
