//! The attach socket protocol (`<state-dir>/attach.sock`, SOCK_STREAM).
//!
//! Every message in either direction is a frame: one type byte, a big-endian u32
//! payload length, then the payload.
//!
//! | type | direction | payload |
//! |------|-----------|---------|
//! | 0x01 `STDIN` | client → monitor | bytes for the container's stdin |
//! | 0x02 `STDIN_CLOSE` | client → monitor | empty; closes the container's stdin (sends ^D on a tty) |
//! | 0x03 `RESIZE` | client → monitor | rows u16 BE, cols u16 BE (tty only) |
//! | 0x04 `REOPEN_LOG` | client → monitor | empty; reopens the log file (like SIGUSR1) |
//! | 0x11 `STDOUT` | monitor → client | container stdout (everything, with a tty) |
//! | 0x12 `STDERR` | monitor → client | container stderr |
//! | 0x13 `EXIT` | monitor → client | exit code i32 BE; the monitor then closes |
//!
//! Output is sent to every connected client from the moment it connects; a
//! client that cannot keep up (its socket buffer is full) is disconnected rather
//! than allowed to stall the container. Payloads are at most [`MAX_PAYLOAD`].

// Spelled out: `berth-monitor-serve` builds this file without the std prelude.
use alloc::{format, string::String, vec::Vec};

/// Frame types.
pub const STDIN: u8 = 0x01;
pub const STDIN_CLOSE: u8 = 0x02;
pub const RESIZE: u8 = 0x03;
pub const REOPEN_LOG: u8 = 0x04;
pub const STDOUT: u8 = 0x11;
pub const STDERR: u8 = 0x12;
pub const EXIT: u8 = 0x13;

/// Largest accepted payload.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// Encodes one frame.
pub fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + payload.len());
    v.push(kind);
    debug_assert!(payload.len() <= MAX_PAYLOAD, "writers chunk to MAX_PAYLOAD");
    // At most MAX_PAYLOAD (1 MiB): every writer chunks its data to it, and
    // the reader refuses anything longer.
    #[allow(clippy::cast_possible_truncation)]
    let len = payload.len() as u32;
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// Takes complete frames off the front of `buf`. `Err` on an oversized frame.
pub fn decode(buf: &mut Vec<u8>) -> Result<Vec<(u8, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let mut off = 0;
    while buf.len() - off >= 5 {
        let len =
            u32::from_be_bytes([buf[off + 1], buf[off + 2], buf[off + 3], buf[off + 4]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(format!("frame of {len} bytes is too large"));
        }
        if buf.len() - off < 5 + len {
            break;
        }
        out.push((buf[off], buf[off + 5..off + 5 + len].to_vec()));
        off += 5 + len;
    }
    buf.drain(..off);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keeps_partial_frames() {
        let mut buf = encode(STDIN, b"abc");
        buf.extend(encode(RESIZE, &[0, 24, 0, 80]));
        let tail = encode(STDIN_CLOSE, b"");
        buf.extend_from_slice(&tail[..3]);
        let frames = decode(&mut buf).unwrap();
        assert_eq!(
            frames,
            vec![(STDIN, b"abc".to_vec()), (RESIZE, vec![0, 24, 0, 80])]
        );
        assert_eq!(buf.len(), 3);
        buf.extend_from_slice(&tail[3..]);
        assert_eq!(decode(&mut buf).unwrap(), vec![(STDIN_CLOSE, vec![])]);
        let mut huge = vec![STDIN, 0xff, 0xff, 0xff, 0xff];
        decode(&mut huge).unwrap_err();
    }
}
