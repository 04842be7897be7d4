//! SPDY/3 frames (draft 3 section 2.2 and 2.6) and their wire codec.
//!
//! Control frame: `1 | version(15) | type(16)`, `flags(8) | length(24)`, payload.
//! Data frame:    `0 | stream-id(31)`,          `flags(8) | length(24)`, payload.
//! SYN_STREAM, SYN_REPLY and HEADERS carry a header block compressed with the
//! connection's per-direction zlib context, so one [`FrameCodec`] must see
//! every frame of its connection in order.

// SPDY/3.1 writes lengths and counts as fixed 24- and 32-bit fields. What is
// encoded here is bounded far below that: frames by the session's MAX_CHUNK
// and window, header blocks by the few headers the server sends, the
// dictionary by its constant words.
#![allow(clippy::cast_possible_truncation)]

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::headers::{decode_block, encode_block, Deflater, HeaderList, Inflater};
use crate::error::{Error, Result};

/// The only protocol version spoken.
pub const VERSION: u16 = 3;
/// Last frame the sender sends on this stream (DATA, SYN_STREAM, SYN_REPLY, HEADERS).
pub const FLAG_FIN: u8 = 0x01;
/// SYN_STREAM: the recipient may not send on this stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// SETTINGS id of the initial per-stream window.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;
/// Largest payload the 24-bit length field can describe.
pub const MAX_FRAME_PAYLOAD: usize = 0xff_ffff;
/// Size of every frame header.
pub const FRAME_HEADER_LEN: usize = 8;

/// RST_STREAM status codes.
pub mod rst {
    /// Generic protocol violation.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// Frame for a stream that is not active.
    pub const INVALID_STREAM: u32 = 2;
    /// Stream refused before any processing.
    pub const REFUSED_STREAM: u32 = 3;
    /// The stream is no longer needed.
    pub const CANCEL: u32 = 5;
    /// Sender exceeded the flow-control window.
    pub const FLOW_CONTROL_ERROR: u32 = 7;
    /// SYN_STREAM reused an active stream id.
    pub const STREAM_IN_USE: u32 = 8;
    /// Data on a half-closed stream.
    pub const STREAM_ALREADY_CLOSED: u32 = 9;
}

/// GOAWAY status codes.
pub mod goaway {
    /// Normal session teardown.
    pub const OK: u32 = 0;
    /// The peer violated the protocol.
    pub const PROTOCOL_ERROR: u32 = 1;
}

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// One SETTINGS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Per-entry flags (persist/persisted).
    pub flags: u8,
    /// 24-bit setting id.
    pub id: u32,
    /// The value.
    pub value: u32,
}

/// A decoded SPDY/3 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Opens a stream.
    SynStream {
        /// Odd for client-initiated streams.
        stream_id: u32,
        /// Server push parent; 0 otherwise.
        associated_to: u32,
        /// 0 (highest) to 7.
        priority: u8,
        /// Credential slot.
        slot: u8,
        /// FIN / UNIDIRECTIONAL.
        flags: u8,
        /// Stream headers.
        headers: HeaderList,
    },
    /// Accepts a stream.
    SynReply {
        /// The stream.
        stream_id: u32,
        /// FIN.
        flags: u8,
        /// Reply headers.
        headers: HeaderList,
    },
    /// Aborts a stream.
    RstStream {
        /// The stream.
        stream_id: u32,
        /// One of [`rst`].
        status: u32,
    },
    /// Connection parameters.
    Settings {
        /// CLEAR_SETTINGS.
        flags: u8,
        /// The entries.
        entries: Vec<Setting>,
    },
    /// Liveness check; echoed by the receiver.
    Ping {
        /// Odd from clients, even from servers.
        id: u32,
    },
    /// Ends the session.
    GoAway {
        /// Last stream the sender processed.
        last_good_stream_id: u32,
        /// One of [`goaway`].
        status: u32,
    },
    /// Extra headers for a stream.
    Headers {
        /// The stream.
        stream_id: u32,
        /// FIN.
        flags: u8,
        /// The headers.
        headers: HeaderList,
    },
    /// Grants the peer more send window (stream 0: the whole session, SPDY/3.1).
    WindowUpdate {
        /// The stream, or 0.
        stream_id: u32,
        /// Bytes added to the window.
        delta: u32,
    },
    /// Stream payload.
    Data {
        /// The stream.
        stream_id: u32,
        /// FIN.
        flags: u8,
        /// The bytes.
        data: Bytes,
    },
    /// A control frame type this implementation does not know; skipped as the spec asks.
    Unknown {
        /// Its type.
        frame_type: u16,
    },
}

fn protocol(msg: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("spdy protocol error: {msg}"))
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Encodes and decodes frames for one connection (one zlib context per direction).
#[derive(Debug, Default)]
pub struct FrameCodec {
    deflater: Deflater,
    inflater: Inflater,
}

impl FrameCodec {
    /// A codec for a new connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one frame off the front of `buf`; `Ok(None)` when more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>> {
        if buf.len() < FRAME_HEADER_LEN {
            return Ok(None);
        }
        let first = be32(&buf[0..4]);
        let flags = buf[4];
        let len = (be32(&buf[4..8]) & 0xff_ffff) as usize;
        if buf.len() < FRAME_HEADER_LEN + len {
            buf.reserve(FRAME_HEADER_LEN + len - buf.len());
            return Ok(None);
        }
        buf.advance(FRAME_HEADER_LEN);
        let payload = buf.split_to(len).freeze();
        if first & 0x8000_0000 == 0 {
            let stream_id = first & 0x7fff_ffff;
            if stream_id == 0 {
                return Err(protocol("data frame on stream 0"));
            }
            return Ok(Some(Frame::Data {
                stream_id,
                flags,
                data: payload,
            }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        let frame_type = (first & 0xffff) as u16;
        if version != VERSION {
            return Err(protocol(format!("unsupported version {version}")));
        }
        self.decode_control(frame_type, flags, &payload).map(Some)
    }

    fn header_block(&mut self, block: &[u8]) -> Result<HeaderList> {
        decode_block(&self.inflater.decompress(block)?)
    }

    fn decode_control(&mut self, frame_type: u16, flags: u8, p: &[u8]) -> Result<Frame> {
        let need = |n: usize, exact: bool| {
            if p.len() < n || (exact && p.len() != n) {
                Err(protocol(format!(
                    "control frame type {frame_type} has bad length {}",
                    p.len()
                )))
            } else {
                Ok(())
            }
        };
        let stream_id = |b: &[u8]| -> Result<u32> {
            match be32(b) & 0x7fff_ffff {
                0 => Err(protocol(format!("frame type {frame_type} on stream 0"))),
                id => Ok(id),
            }
        };
        Ok(match frame_type {
            TYPE_SYN_STREAM => {
                need(10, false)?;
                Frame::SynStream {
                    stream_id: stream_id(&p[0..4])?,
                    associated_to: be32(&p[4..8]) & 0x7fff_ffff,
                    priority: p[8] >> 5,
                    slot: p[9],
                    flags,
                    headers: self.header_block(&p[10..])?,
                }
            }
            TYPE_SYN_REPLY => {
                need(4, false)?;
                Frame::SynReply {
                    stream_id: stream_id(&p[0..4])?,
                    flags,
                    headers: self.header_block(&p[4..])?,
                }
            }
            TYPE_HEADERS => {
                need(4, false)?;
                Frame::Headers {
                    stream_id: stream_id(&p[0..4])?,
                    flags,
                    headers: self.header_block(&p[4..])?,
                }
            }
            TYPE_RST_STREAM => {
                need(8, true)?;
                Frame::RstStream {
                    stream_id: stream_id(&p[0..4])?,
                    status: be32(&p[4..8]),
                }
            }
            TYPE_SETTINGS => {
                need(4, false)?;
                let n = be32(&p[0..4]) as usize;
                if n.checked_mul(8).and_then(|b| b.checked_add(4)) != Some(p.len()) {
                    return Err(protocol("settings entry count does not match length"));
                }
                let entries = p[4..]
                    .chunks_exact(8)
                    .map(|e| Setting {
                        flags: e[0],
                        id: be32(&e[0..4]) & 0xff_ffff,
                        value: be32(&e[4..8]),
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            TYPE_PING => {
                need(4, true)?;
                Frame::Ping { id: be32(p) }
            }
            TYPE_GOAWAY => {
                need(8, true)?;
                Frame::GoAway {
                    last_good_stream_id: be32(&p[0..4]) & 0x7fff_ffff,
                    status: be32(&p[4..8]),
                }
            }
            TYPE_WINDOW_UPDATE => {
                need(8, true)?;
                Frame::WindowUpdate {
                    stream_id: be32(&p[0..4]) & 0x7fff_ffff,
                    delta: be32(&p[4..8]) & 0x7fff_ffff,
                }
            }
            other => Frame::Unknown { frame_type: other },
        })
    }

    /// Appends the wire form of `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<()> {
        let mut p = BytesMut::new();
        let (frame_type, flags) = match frame {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if data.len() > MAX_FRAME_PAYLOAD {
                    return Err(Error::Internal("spdy data frame too large".into()));
                }
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32((*flags as u32) << 24 | data.len() as u32);
                out.put_slice(data);
                return Ok(());
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                slot,
                flags,
                headers,
            } => {
                p.put_u32(stream_id & 0x7fff_ffff);
                p.put_u32(associated_to & 0x7fff_ffff);
                p.put_u8((priority & 7) << 5);
                p.put_u8(*slot);
                p.put_slice(&self.deflater.compress(&encode_block(headers))?);
                (TYPE_SYN_STREAM, *flags)
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                p.put_u32(stream_id & 0x7fff_ffff);
                p.put_slice(&self.deflater.compress(&encode_block(headers))?);
                (TYPE_SYN_REPLY, *flags)
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                p.put_u32(stream_id & 0x7fff_ffff);
                p.put_slice(&self.deflater.compress(&encode_block(headers))?);
                (TYPE_HEADERS, *flags)
            }
            Frame::RstStream { stream_id, status } => {
                p.put_u32(stream_id & 0x7fff_ffff);
                p.put_u32(*status);
                (TYPE_RST_STREAM, 0)
            }
            Frame::Settings { flags, entries } => {
                p.put_u32(entries.len() as u32);
                for e in entries {
                    p.put_u32((e.flags as u32) << 24 | (e.id & 0xff_ffff));
                    p.put_u32(e.value);
                }
                (TYPE_SETTINGS, *flags)
            }
            Frame::Ping { id } => {
                p.put_u32(*id);
                (TYPE_PING, 0)
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                p.put_u32(last_good_stream_id & 0x7fff_ffff);
                p.put_u32(*status);
                (TYPE_GOAWAY, 0)
            }
            Frame::WindowUpdate { stream_id, delta } => {
                p.put_u32(stream_id & 0x7fff_ffff);
                p.put_u32(delta & 0x7fff_ffff);
                (TYPE_WINDOW_UPDATE, 0)
            }
            Frame::Unknown { frame_type } => (*frame_type, 0),
        };
        if p.len() > MAX_FRAME_PAYLOAD {
            return Err(Error::Internal("spdy control frame too large".into()));
        }
        out.put_u32(0x8000_0000 | (VERSION as u32) << 16 | frame_type as u32);
        out.put_u32((flags as u32) << 24 | p.len() as u32);
        out.put_slice(&p);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frames: Vec<Frame>) {
        let mut tx = FrameCodec::new();
        let mut rx = FrameCodec::new();
        let mut wire = BytesMut::new();
        for f in &frames {
            tx.encode(f, &mut wire).unwrap();
        }
        // Feed the bytes one at a time: decoding must wait for whole frames.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in wire.iter() {
            buf.put_u8(*b);
            while let Some(f) = rx.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
        assert!(buf.is_empty());
    }

    fn hdrs(pairs: &[(&str, &str)]) -> HeaderList {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn every_frame_type_round_trips() {
        round_trip(vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                slot: 0,
                flags: 0,
                headers: hdrs(&[("streamtype", "error")]),
            },
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: vec![],
            },
            Frame::Data {
                stream_id: 1,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Headers {
                stream_id: 3,
                flags: FLAG_FIN,
                headers: hdrs(&[("x", "y")]),
            },
            Frame::RstStream {
                stream_id: 3,
                status: rst::CANCEL,
            },
            Frame::Settings {
                flags: 0,
                entries: vec![Setting {
                    flags: 0,
                    id: SETTINGS_INITIAL_WINDOW_SIZE,
                    value: 1 << 20,
                }],
            },
            Frame::Ping { id: 7 },
            Frame::WindowUpdate {
                stream_id: 0,
                delta: 4096,
            },
            Frame::GoAway {
                last_good_stream_id: 3,
                status: goaway::OK,
            },
        ]);
    }

    #[test]
    fn hand_built_syn_stream_parses() {
        // Header block {"streamtype": "stdin"} compressed with an independent
        // zlib stream: stored (uncompressed) deflate blocks are valid deflate, so
        // build one by hand: zlib header with FDICT, dictionary id, one stored
        // block, sync marker.
        let raw = encode_block(&hdrs(&[("streamtype", "stdin")]));
        let mut z = vec![0x78, 0xbb, 0xe3, 0xc6, 0xa7, 0xc2];
        z.push(0x00); // BFINAL=0, BTYPE=00 (stored)
        z.extend_from_slice(&(raw.len() as u16).to_le_bytes());
        z.extend_from_slice(&(!(raw.len() as u16)).to_le_bytes());
        z.extend_from_slice(&raw);
        z.extend_from_slice(&[0x00, 0x00, 0x00, 0xff, 0xff]);
        let mut wire = BytesMut::new();
        // Control bit, version 3, type 1 (SYN_STREAM); flags FIN; length.
        wire.put_slice(&[0x80, 0x03, 0x00, 0x01, 0x01]);
        let len = 10 + z.len();
        wire.put_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8]);
        wire.put_slice(&[0, 0, 0, 5]); // stream id 5
        wire.put_slice(&[0, 0, 0, 0]); // associated-to
        wire.put_slice(&[0x60, 0]); // priority 3, slot 0
        wire.put_slice(&z);
        let frame = FrameCodec::new().decode(&mut wire).unwrap().unwrap();
        assert_eq!(
            frame,
            Frame::SynStream {
                stream_id: 5,
                associated_to: 0,
                priority: 3,
                slot: 0,
                flags: FLAG_FIN,
                headers: hdrs(&[("streamtype", "stdin")]),
            }
        );
    }

    #[test]
    fn data_frame_layout_matches_the_spec() {
        let mut out = BytesMut::new();
        FrameCodec::new()
            .encode(
                &Frame::Data {
                    stream_id: 0x0102_0304,
                    flags: FLAG_FIN,
                    data: Bytes::from_static(b"abc"),
                },
                &mut out,
            )
            .unwrap();
        assert_eq!(&out[..], &[1, 2, 3, 4, 1, 0, 0, 3, b'a', b'b', b'c']);
        let mut out = BytesMut::new();
        FrameCodec::new()
            .encode(
                &Frame::WindowUpdate {
                    stream_id: 3,
                    delta: 0x10000,
                },
                &mut out,
            )
            .unwrap();
        assert_eq!(
            &out[..],
            &[0x80, 3, 0, 9, 0, 0, 0, 8, 0, 0, 0, 3, 0, 1, 0, 0]
        );
    }

    #[test]
    fn malformed_frames_are_errors() {
        let cases: &[&[u8]] = &[
            // data on stream 0
            &[0, 0, 0, 0, 0, 0, 0, 0],
            // version 2
            &[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1],
            // ping with 3-byte payload
            &[0x80, 3, 0, 6, 0, 0, 0, 3, 0, 0, 1],
            // rst on stream 0
            &[0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1],
            // settings count larger than the payload
            &[0x80, 3, 0, 4, 0, 0, 0, 4, 0, 0, 0, 9],
            // syn_stream whose header block is not zlib
            &[
                0x80, 3, 0, 1, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2,
            ],
        ];
        for c in cases {
            let mut b = BytesMut::from(*c);
            assert!(FrameCodec::new().decode(&mut b).is_err(), "{c:?}");
        }
    }

    #[test]
    fn unknown_control_types_are_skipped() {
        let mut b = BytesMut::from(
            &[
                0x80, 3, 0, 10, 0, 0, 0, 2, 9, 9, 0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1,
            ][..],
        );
        let mut c = FrameCodec::new();
        assert_eq!(
            c.decode(&mut b).unwrap(),
            Some(Frame::Unknown { frame_type: 10 })
        );
        assert_eq!(c.decode(&mut b).unwrap(), Some(Frame::Ping { id: 1 }));
    }
}
