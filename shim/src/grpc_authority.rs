//! Accepting the `:authority` that gRPC clients send on a unix socket.
//!
//! HTTP/2 carries the request's host in the `:authority` pseudo-header. On a
//! unix socket there is no host, and clients fill it in differently: grpc-go
//! (kubelet, crictl) sends `localhost`, gRPC C-core (Python, C++, Ruby, PHP)
//! the %-encoded socket path (`%2Frun%2Fberth%2Fberth.sock`), grpc-java and
//! grpcurl the raw path, some clients an empty string. hyper's HTTP/2 server
//! (the `h2` crate under tonic) parses the value as a URI authority and
//! answers anything else with `RST_STREAM(PROTOCOL_ERROR)`, so those clients
//! fail on every call; `h2` has no option to relax this (its pull request 487
//! has been open for years).
//!
//! [`AuthorityFix`] sits between each accepted connection and hyper and
//! rewrites only the client-to-server direction:
//!
//! - Every frame but HEADERS and CONTINUATION is forwarded byte for byte, as
//!   is everything before the connection preface is recognised; a stream that
//!   does not start with the HTTP/2 preface is passed through untouched (hyper
//!   refuses it as before).
//! - A header block (HEADERS plus its CONTINUATIONs) is decoded with an HPACK
//!   decoder that mirrors the client's encoder, an `:authority` that is not a
//!   valid URI authority is replaced by `localhost` (what grpc-go sends on a
//!   unix socket; berthd never looks at it), and the block is written anew as
//!   plain literals "without indexing". hyper's HPACK decoder therefore never
//!   gets a dynamic-table entry, so its table stays empty and consistent with
//!   our output whatever the client's encoder did; the client's table lives
//!   in our decoder only. END_STREAM and the priority fields are kept; padding
//!   is dropped; the new block is cut into frames of at most 16 KiB, the size
//!   every HTTP/2 peer must accept.
//! - Header blocks are bounded ([`MAX_BLOCK`] encoded, [`MAX_HEADER_LIST`]
//!   decoded, four times what hyper advertises): a client past them, or one
//!   whose block cannot be decoded or whose CONTINUATIONs are out of order
//!   (all connection errors in HTTP/2), has its connection closed.
//!
//! The server-to-client direction is not touched, so responses, flow control
//! and everything else about HTTP/2 stay hyper's. Why not rewrite the
//! authority bytes in place: they may be Huffman-coded or a reference into
//! the client's dynamic table, and any change in a field's length would make
//! the two ends' tables diverge; re-encoding without indexing sidesteps the
//! shared state entirely. The HPACK decoder is the `loona-hpack` crate.

use std::borrow::Cow;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What every HTTP/2 connection starts with (RFC 9113 section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The smallest SETTINGS_MAX_FRAME_SIZE a peer may advertise.
const MAX_FRAME: usize = 16 * 1024;
/// The HPACK dynamic table size the client may use: the protocol default, as
/// berthd's server does not change SETTINGS_HEADER_TABLE_SIZE.
const TABLE_SIZE: usize = 4096;
/// Largest encoded header block (all of its frames) accepted.
pub const MAX_BLOCK: usize = 64 * 1024;
/// Largest decoded header list accepted, counted as HTTP/2 does (name +
/// value + 32 per field).
pub const MAX_HEADER_LIST: usize = 64 * 1024;
/// What an unusable `:authority` becomes.
const REPLACEMENT: &[u8] = b"localhost";

/// Wraps one accepted connection; see the module doc.
pub struct AuthorityFix<S> {
    inner: S,
    /// Bytes read from the client, not yet processed.
    input: BytesMut,
    /// Processed bytes waiting to be handed to hyper.
    output: BytesMut,
    state: State,
    /// The header block being collected, and what its HEADERS frame said.
    open: Option<OpenBlock>,
    hpack: loona_hpack::Decoder<'static>,
    eof: bool,
}

// By hand: it holds handles (tasks, streams, callbacks, stores) with no useful
// Debug of their own.
impl<S> std::fmt::Debug for AuthorityFix<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorityFix").finish_non_exhaustive()
    }
}

enum State {
    /// Matching the connection preface; `usize` bytes of it seen.
    Preface(usize),
    /// At a frame boundary.
    FrameHeader,
    /// Forwarding the rest of a frame that is not rewritten.
    Payload(usize),
    /// Not HTTP/2 with prior knowledge: everything passes unchanged.
    Raw,
}

struct OpenBlock {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

impl<S> AuthorityFix<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        let mut hpack = loona_hpack::Decoder::new();
        hpack.set_max_allowed_table_size(TABLE_SIZE);
        AuthorityFix {
            inner,
            input: BytesMut::with_capacity(8 * 1024),
            output: BytesMut::new(),
            state: State::Preface(0),
            open: None,
            hpack,
            eof: false,
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Moves as much of `input` to `output` as can be decided now; false when
    /// more input is needed.
    fn process(&mut self) -> io::Result<bool> {
        match self.state {
            State::Raw => {
                if self.input.is_empty() {
                    return Ok(false);
                }
                let all = self.input.split();
                self.output.unsplit(all);
                Ok(true)
            }
            State::Preface(seen) => {
                if self.input.is_empty() {
                    return Ok(false);
                }
                let want = &PREFACE[seen..];
                let n = want.len().min(self.input.len());
                if self.input[..n] != want[..n] {
                    self.state = State::Raw;
                    return Ok(true);
                }
                let part = self.input.split_to(n);
                self.output.unsplit(part);
                self.state = if seen + n == PREFACE.len() {
                    State::FrameHeader
                } else {
                    State::Preface(seen + n)
                };
                Ok(true)
            }
            State::Payload(0) => {
                self.state = State::FrameHeader;
                Ok(true)
            }
            State::Payload(left) => {
                if self.input.is_empty() {
                    return Ok(false);
                }
                let n = left.min(self.input.len());
                let part = self.input.split_to(n);
                self.output.unsplit(part);
                self.state = State::Payload(left - n);
                Ok(true)
            }
            State::FrameHeader => {
                if self.input.len() < FRAME_HEADER {
                    return Ok(false);
                }
                let h = &self.input[..FRAME_HEADER];
                let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
                let kind = h[3];
                let flags = h[4];
                let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                if kind != HEADERS && kind != CONTINUATION {
                    if self.open.is_some() {
                        return Err(refuse("a frame interrupts a header block"));
                    }
                    let header = self.input.split_to(FRAME_HEADER);
                    self.output.unsplit(header);
                    self.state = State::Payload(len);
                    return Ok(true);
                }
                let collected = self.open.as_ref().map_or(0, |b| b.fragment.len());
                if collected + len > MAX_BLOCK {
                    return Err(refuse("header block larger than 64 KiB"));
                }
                if self.input.len() < FRAME_HEADER + len {
                    self.input.reserve(FRAME_HEADER + len - self.input.len());
                    return Ok(false);
                }
                self.input.advance(FRAME_HEADER);
                let payload = self.input.split_to(len);
                self.header_frame(kind, flags, stream, &payload)?;
                Ok(true)
            }
        }
    }

    /// Collects one HEADERS or CONTINUATION frame; re-encodes the block when
    /// it is complete.
    fn header_frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> io::Result<()> {
        if kind == HEADERS {
            if self.open.is_some() {
                return Err(refuse("HEADERS inside a header block"));
            }
            let mut p = payload;
            if flags & PADDED != 0 {
                let (&pad, rest) = p.split_first().ok_or_else(|| refuse("HEADERS padding"))?;
                let keep = rest
                    .len()
                    .checked_sub(usize::from(pad))
                    .ok_or_else(|| refuse("HEADERS padding"))?;
                p = &rest[..keep];
            }
            let priority = if flags & PRIORITY != 0 {
                let (prio, rest) = p
                    .split_first_chunk::<5>()
                    .ok_or_else(|| refuse("HEADERS priority"))?;
                p = rest;
                Some(*prio)
            } else {
                None
            };
            self.open = Some(OpenBlock {
                stream,
                end_stream: flags & END_STREAM != 0,
                priority,
                fragment: p.to_vec(),
            });
        } else {
            match &mut self.open {
                Some(b) if b.stream == stream => b.fragment.extend_from_slice(payload),
                _ => return Err(refuse("CONTINUATION without its HEADERS")),
            }
        }
        if flags & END_HEADERS != 0 {
            // Both branches above leave a block open; no panic on a client's
            // bytes even if that changes.
            let block = self
                .open
                .take()
                .ok_or_else(|| refuse("END_HEADERS without a header block"))?;
            self.rewrite(block)?;
        }
        Ok(())
    }

    /// Decodes a complete block and appends its re-encoded frames to `output`.
    fn rewrite(&mut self, block: OpenBlock) -> io::Result<()> {
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut size = 0usize;
        self.hpack
            .decode_with_cb(&block.fragment, |name: Cow<[u8]>, value: Cow<[u8]>| {
                // Keep decoding past the limit (the table must stay in step)
                // but stop storing.
                size = size.saturating_add(name.len() + value.len() + 32);
                if size <= MAX_HEADER_LIST {
                    fields.push((name.into_owned(), value.into_owned()));
                }
            })
            .map_err(|e| refuse(&format!("undecodable header block: {e}")))?;
        if size > MAX_HEADER_LIST {
            return Err(refuse("header list larger than 64 KiB"));
        }
        let mut encoded = Vec::with_capacity(block.fragment.len() + 64);
        for (name, value) in &fields {
            let value = if name == b":authority" && !is_valid_authority(value) {
                REPLACEMENT
            } else {
                value.as_slice()
            };
            // Literal header field without indexing, new name (RFC 7541 6.2.2),
            // strings without Huffman coding.
            encoded.push(0);
            put_string(&mut encoded, name);
            put_string(&mut encoded, value);
        }
        let mut first = Vec::with_capacity(5 + encoded.len().min(MAX_FRAME));
        let mut flags = 0;
        if block.end_stream {
            flags |= END_STREAM;
        }
        if let Some(prio) = block.priority {
            flags |= PRIORITY;
            first.extend_from_slice(&prio);
        }
        let take = encoded.len().min(MAX_FRAME - first.len());
        first.extend_from_slice(&encoded[..take]);
        let mut rest = &encoded[take..];
        let last = rest.is_empty();
        self.put_frame(
            HEADERS,
            flags | if last { END_HEADERS } else { 0 },
            block.stream,
            &first,
        );
        while !rest.is_empty() {
            let n = rest.len().min(MAX_FRAME);
            let end = if n == rest.len() { END_HEADERS } else { 0 };
            self.put_frame(CONTINUATION, end, block.stream, &rest[..n]);
            rest = &rest[n..];
        }
        Ok(())
    }

    // Payloads are at most MAX_FRAME: the length fits 24 bits.
    #[allow(clippy::cast_possible_truncation)]
    fn put_frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = payload.len() as u32;
        self.output.extend_from_slice(&len.to_be_bytes()[1..]);
        self.output.extend_from_slice(&[kind, flags]);
        self.output.extend_from_slice(&stream.to_be_bytes());
        self.output.extend_from_slice(payload);
    }
}

/// The connections `listener` accepts, each behind an [`AuthorityFix`].
pub fn incoming(
    listener: tokio::net::UnixListener,
) -> impl futures::Stream<Item = io::Result<AuthorityFix<tokio::net::UnixStream>>> {
    use tokio_stream::StreamExt as _;
    tokio_stream::wrappers::UnixListenerStream::new(listener)
        .map(|conn| conn.map(AuthorityFix::new))
}

/// What h2 accepts as `:authority`.
fn is_valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// An HPACK string literal without Huffman coding: 7-bit-prefix length, bytes.
fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_int(out, 0x00, 7, s.len());
    out.extend_from_slice(s);
}

/// An HPACK integer (RFC 7541 5.1) with an `n`-bit prefix after `flags`.
// Every byte cast below is below 2^n (n <= 8) or masked to 7 bits.
#[allow(clippy::cast_possible_truncation)]
fn put_int(out: &mut Vec<u8>, flags: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | max as u8);
    v -= max;
    while v >= 0x80 {
        out.push((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn refuse(why: &str) -> io::Error {
    tracing::warn!(
        reason = why,
        "closing a CRI connection: malformed HTTP/2 header block"
    );
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("http/2 header block: {why}"),
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.output.is_empty() {
                let n = buf.remaining().min(this.output.len());
                buf.put_slice(&this.output[..n]);
                this.output.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.process()? {
                continue;
            }
            if this.eof {
                // A stream cut inside a frame: hand hyper what there is, and
                // let it report the truncation.
                if !this.input.is_empty() {
                    this.state = State::Raw;
                    continue;
                }
                return Poll::Ready(Ok(()));
            }
            if this.input.capacity() - this.input.len() < 4096 {
                this.input.reserve(8 * 1024);
            }
            let n = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.inner),
                cx,
                &mut this.input
            ))?;
            if n == 0 {
                this.eof = true;
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for AuthorityFix<tokio::net::UnixStream> {
    type ConnectInfo = <tokio::net::UnixStream as tonic::transport::server::Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    type Fields = Vec<(Vec<u8>, Vec<u8>)>;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = u32::try_from(payload.len()).unwrap().to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// A header block of plain literals, as a minimal client would write it.
    fn literal_block(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut b = Vec::new();
        for (n, v) in fields {
            b.push(0);
            put_string(&mut b, n.as_bytes());
            put_string(&mut b, v.as_bytes());
        }
        b
    }

    fn request(authority: &str) -> Vec<(&'static str, String)> {
        vec![
            (":method", "POST".into()),
            (":scheme", "http".into()),
            (":path", "/runtime.v1.RuntimeService/Version".into()),
            (":authority", authority.into()),
            ("content-type", "application/grpc".into()),
            ("te", "trailers".into()),
        ]
    }

    /// Sends `input` through an [`AuthorityFix`] in chunks of at most `chunk`
    /// bytes and returns what hyper would read.
    async fn through(input: Vec<u8>, chunk: usize) -> io::Result<Vec<u8>> {
        let (mut client, server) = tokio::io::duplex(chunk);
        let writer = tokio::spawn(async move {
            // The reader may stop early on a refused block.
            let _ = client.write_all(&input).await;
            let _ = client.shutdown().await;
        });
        let mut out = Vec::new();
        let r = AuthorityFix::new(server).read_to_end(&mut out).await;
        writer.abort();
        r.map(|_| out)
    }

    /// Splits a server-side byte stream (after the preface) into frames.
    fn frames(mut b: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut v = Vec::new();
        while !b.is_empty() {
            let len = (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]);
            let stream = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
            v.push((b[3], b[4], stream, b[9..9 + len].to_vec()));
            b = &b[9 + len..];
        }
        v
    }

    /// The header lists in `frames`, joined across CONTINUATIONs and decoded
    /// with a fresh decoder, as hyper's would be.
    fn header_lists(frames: &[(u8, u8, u32, Vec<u8>)]) -> Vec<Fields> {
        let mut decoder = loona_hpack::Decoder::new();
        let mut lists = Vec::new();
        let mut block = Vec::new();
        for (kind, flags, _, payload) in frames {
            match *kind {
                HEADERS => {
                    let skip = if flags & PRIORITY != 0 { 5 } else { 0 };
                    assert_eq!(flags & PADDED, 0, "padding is dropped");
                    block.extend_from_slice(&payload[skip..]);
                }
                CONTINUATION => block.extend_from_slice(payload),
                _ => continue,
            }
            assert!(payload.len() <= MAX_FRAME);
            if flags & END_HEADERS != 0 {
                lists.push(decoder.decode(&block).unwrap());
                block.clear();
            }
        }
        lists
    }

    fn owned(fields: &[(&str, String)]) -> Fields {
        fields
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[tokio::test]
    async fn unusable_authorities_become_localhost_and_the_rest_is_kept() {
        // A client encoder with a dynamic table: the second and third blocks
        // refer to entries the first one inserted.
        let mut enc = loona_hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        let cases = [
            ("%2Frun%2Fberth%2Fberth.sock", "localhost"),
            ("%2Frun%2Fberth%2Fberth.sock", "localhost"),
            ("/run/berth/berth.sock", "localhost"),
            ("", "localhost"),
            ("localhost", "localhost"),
            ("berth.example:8080", "berth.example:8080"),
        ];
        let data = frame(0x0, END_STREAM, 1, b"\0\0\0\0\0");
        for (i, (sent, _)) in cases.iter().enumerate() {
            let fields = request(sent);
            let block = enc.encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
            let stream = 1 + 2 * u32::try_from(i).unwrap();
            input.extend(frame(HEADERS, END_HEADERS, stream, &block));
            input.extend(frame(0x0, END_STREAM, stream, b"\0\0\0\0\0"));
        }
        for chunk in [1, 7, 64 * 1024] {
            let out = through(input.clone(), chunk).await.unwrap();
            assert_eq!(&out[..PREFACE.len()], PREFACE);
            let fr = frames(&out[PREFACE.len()..]);
            assert_eq!(fr[0], (0x4, 0, 0, vec![]), "SETTINGS unchanged");
            let lists = header_lists(&fr);
            let want: Vec<Fields> = cases.iter().map(|(_, got)| owned(&request(got))).collect();
            assert_eq!(lists, want, "chunk {chunk}");
            let datas: Vec<_> = fr.iter().filter(|f| f.0 == 0x0).collect();
            assert_eq!(datas.len(), cases.len());
            assert_eq!(frame(0, datas[0].1, 1, &datas[0].3), data);
        }
    }

    #[tokio::test]
    async fn huffman_and_dynamic_table_references_are_decoded() {
        // RFC 7541 C.4.1 and C.4.2: Huffman-coded literals, then an indexed
        // reference to the :authority the first block inserted.
        let first = [
            0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab,
            0x90, 0xf4, 0xff,
        ];
        let second = [
            0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf,
        ];
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &first));
        input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &second));
        let out = through(input, 5).await.unwrap();
        let fr = frames(&out[PREFACE.len()..]);
        assert_eq!(fr.len(), 2);
        assert!(fr.iter().all(|f| f.1 == END_HEADERS | END_STREAM));
        let lists = header_lists(&fr);
        let base = vec![
            (":method", "GET".to_string()),
            (":scheme", "http".into()),
            (":path", "/".into()),
            (":authority", "www.example.com".into()),
        ];
        assert_eq!(lists[0], owned(&base));
        let mut with_cache = base;
        with_cache.push(("cache-control", "no-cache".into()));
        assert_eq!(lists[1], owned(&with_cache));
    }

    #[tokio::test]
    async fn continuations_priority_and_padding() {
        let big = "x".repeat(40_000);
        let mut fields = request("%2Ftmp%2Fs.sock");
        fields.push(("x-big", big.clone()));
        let refs: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let block = literal_block(&refs);
        // The client sends HEADERS (padded, with priority) + 2 CONTINUATIONs.
        let mut headers = vec![3u8]; // pad length
        headers.extend_from_slice(&[0x80, 0, 0, 1, 15]); // exclusive, depends on 1, weight 15
        headers.extend_from_slice(&block[..10_000]);
        headers.extend_from_slice(&[0, 0, 0]);
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, PADDED | PRIORITY | END_STREAM, 5, &headers));
        input.extend(frame(CONTINUATION, 0, 5, &block[10_000..30_000]));
        input.extend(frame(CONTINUATION, END_HEADERS, 5, &block[30_000..]));
        input.extend(frame(0x8, 0, 0, &[0, 0, 1, 0])); // WINDOW_UPDATE after the block
        let out = through(input, 4096).await.unwrap();
        let fr = frames(&out[PREFACE.len()..]);
        assert_eq!(fr[0].0, HEADERS);
        assert_eq!(
            fr[0].1,
            PRIORITY | END_STREAM,
            "flags kept, padding dropped"
        );
        assert_eq!(&fr[0].3[..5], &[0x80, 0, 0, 1, 15]);
        assert!(fr[1..3].iter().all(|f| f.0 == CONTINUATION && f.2 == 5));
        assert_eq!(fr[2].1, END_HEADERS);
        assert_eq!(fr[3], (0x8, 0, 0, vec![0, 0, 1, 0]));
        let mut want = request("localhost");
        want.push(("x-big", big));
        assert_eq!(header_lists(&fr), vec![owned(&want)]);
    }

    #[tokio::test]
    async fn malformed_or_oversized_blocks_close_the_connection() {
        let block = literal_block(&[(":method", "GET")]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "CONTINUATION without HEADERS",
                frame(CONTINUATION, END_HEADERS, 1, &block),
            ),
            ("a frame inside a block", {
                let mut v = frame(HEADERS, 0, 1, &block);
                v.extend(frame(0x8, 0, 0, &[0, 0, 1, 0]));
                v
            }),
            ("CONTINUATION of another stream", {
                let mut v = frame(HEADERS, 0, 1, &block);
                v.extend(frame(CONTINUATION, END_HEADERS, 3, &block));
                v
            }),
            (
                "bad padding",
                frame(HEADERS, PADDED | END_HEADERS, 1, &[200, 0x82]),
            ),
            (
                "index out of the table",
                frame(HEADERS, END_HEADERS, 1, &[0xff, 0x7f]),
            ),
            ("block over 64 KiB", {
                let big = literal_block(&[("x-big", &"y".repeat(MAX_BLOCK))]);
                let mut v = frame(HEADERS, 0, 1, &big[..MAX_FRAME]);
                for part in big[MAX_FRAME..].chunks(MAX_FRAME) {
                    v.extend(frame(CONTINUATION, 0, 1, part));
                }
                v
            }),
            ("list over 64 KiB through table references", {
                // One 3 KiB entry, then 30 one-byte references to it: a block of
                // 3 KiB that decodes to 90 KiB.
                let mut b = vec![0x40];
                put_string(&mut b, b"x-bomb");
                put_string(&mut b, "z".repeat(3000).as_bytes());
                b.extend(std::iter::repeat_n(0xbe, 30));
                frame(HEADERS, END_HEADERS, 1, &b)
            }),
        ];
        for (what, frames) in cases {
            let mut input = PREFACE.to_vec();
            input.extend(frames);
            let err = through(input, 1024).await.expect_err(what);
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{what}: {err}");
        }
    }

    #[tokio::test]
    async fn what_is_not_http2_passes_unchanged() {
        for input in [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            b"PRI * HTTP/1.1\r\n".to_vec(),
            PREFACE[..10].to_vec(),
            Vec::new(),
        ] {
            assert_eq!(through(input.clone(), 3).await.unwrap(), input);
        }
        // A stream cut inside a frame reaches hyper as it is.
        let mut cut = PREFACE.to_vec();
        cut.extend(&frame(HEADERS, END_HEADERS, 1, &literal_block(&[(":path", "/")]))[..12]);
        assert_eq!(through(cut.clone(), 1024).await.unwrap(), cut);
    }

    #[tokio::test]
    async fn arbitrary_frames_never_panic() {
        // xorshift: deterministic, no dependency.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..300 {
            let mut input = PREFACE.to_vec();
            for _ in 0..(next() % 6) {
                let kind = [HEADERS, CONTINUATION, 0x0, 0x8][(next() % 4) as usize];
                let flags = (next() % 64) as u8;
                let len = (next() % 40) as usize;
                let payload: Vec<u8> = (0..len).map(|_| next().to_le_bytes()[0]).collect();
                input.extend(frame(kind, flags, (next() % 4) as u32, &payload));
            }
            let _ = through(input, 13).await;
        }
    }

    /// The oracle: hyper's own HTTP/2 server, which resets a stream whose
    /// :authority it cannot parse, answers every one of these through the fix.
    #[tokio::test]
    async fn hyper_answers_socket_path_and_empty_authorities() {
        let authorities = [
            "%2Frun%2Fberth%2Fberth.sock",
            "/run/berth/berth.sock",
            "",
            "localhost",
        ];
        let bare = answers(false, &authorities).await;
        assert_eq!(
            bare,
            [false, false, false, true],
            "without the fix hyper refuses all but localhost; if this changed, h2 learned to accept them"
        );
        assert_eq!(answers(true, &authorities).await, [true; 4]);
    }

    /// For each authority, whether hyper answered its request with HEADERS
    /// (rather than RST_STREAM).
    async fn answers(fix: bool, authorities: &[&str]) -> Vec<bool> {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let service = hyper::service::service_fn(|_req| async {
            Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Empty::<
                bytes::Bytes,
            >::new()))
        });
        let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        let conn = if fix {
            tokio::spawn(builder.serve_connection(TokioIo::new(AuthorityFix::new(server)), service))
        } else {
            tokio::spawn(builder.serve_connection(TokioIo::new(server), service))
        };
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[]));
        for (i, a) in authorities.iter().enumerate() {
            let fields = [
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", a),
            ];
            let stream = 1 + 2 * u32::try_from(i).unwrap();
            input.extend(frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                stream,
                &literal_block(&fields),
            ));
        }
        client.write_all(&input).await.unwrap();
        let mut answered: Vec<Option<bool>> = vec![None; authorities.len()];
        while answered.iter().any(Option::is_none) {
            let mut h = [0u8; 9];
            client.read_exact(&mut h).await.unwrap();
            let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
            let mut payload = vec![0; len];
            client.read_exact(&mut payload).await.unwrap();
            let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) as usize;
            if stream == 0 {
                continue;
            }
            let slot = &mut answered[(stream - 1) / 2];
            match h[3] {
                HEADERS => *slot = Some(true),
                0x3 => *slot = Some(false), // RST_STREAM
                _ => {}
            }
        }
        conn.abort();
        answered.into_iter().map(Option::unwrap).collect()
    }
}
