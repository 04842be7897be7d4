//! SPDY/3 header blocks: the name/value list encoding and the zlib contexts
//! that compress them. Each direction of a connection has one context that
//! lives as long as the connection (every block is a sync-flushed piece of a
//! single zlib stream primed with [`dictionary`]), so frames must be encoded
//! and decoded in wire order.

// SPDY/3.1 writes lengths and counts as fixed 24- and 32-bit fields. What is
// encoded here is bounded far below that: frames by the session's MAX_CHUNK
// and window, header blocks by the few headers the server sends, the
// dictionary by its constant words.
#![allow(clippy::cast_possible_truncation)]

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

use super::dictionary::dictionary;
use crate::error::{Error, Result};

/// Header names (lower-case on the wire) with their values, in wire order.
pub type HeaderList = Vec<(String, String)>;

/// Upper bound of a decompressed header block; a client needs a few hundred bytes.
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// The first value of header `name` (compared case-insensitively).
pub fn get<'a>(headers: &'a HeaderList, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn protocol(msg: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("spdy protocol error: {msg}"))
}

/// Serialises headers into an uncompressed block; repeated names are joined
/// with NUL into one entry as the spec requires.
pub fn encode_block(headers: &HeaderList) -> Vec<u8> {
    let mut merged: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push(0);
                v.extend_from_slice(value.as_bytes());
            }
            None => merged.push((name, value.as_bytes().to_vec())),
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(&(merged.len() as u32).to_be_bytes());
    for (n, v) in merged {
        out.extend_from_slice(&(n.len() as u32).to_be_bytes());
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(&v);
    }
    out
}

/// Parses an uncompressed header block; names are lower-cased, NUL-separated
/// values become separate entries.
pub fn decode_block(mut data: &[u8]) -> Result<HeaderList> {
    fn take<'a>(data: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
        if data.len() < n {
            return Err(protocol("header block truncated"));
        }
        let (head, rest) = data.split_at(n);
        *data = rest;
        Ok(head)
    }
    fn len(data: &mut &[u8]) -> Result<usize> {
        let b = take(data, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    let count = len(&mut data)?;
    let mut out = Vec::new();
    for _ in 0..count {
        let n = len(&mut data)?;
        let name = take(&mut data, n)?;
        let name = std::str::from_utf8(name)
            .map_err(|_| protocol("header name is not utf-8"))?
            .to_ascii_lowercase();
        if name.is_empty() {
            return Err(protocol("empty header name"));
        }
        let n = len(&mut data)?;
        let value = take(&mut data, n)?;
        let value =
            std::str::from_utf8(value).map_err(|_| protocol("header value is not utf-8"))?;
        for v in value.split('\0') {
            out.push((name.clone(), v.to_string()));
        }
    }
    if !data.is_empty() {
        return Err(protocol("trailing bytes after header block"));
    }
    Ok(out)
}

/// The compressing side of one direction of a connection.
#[derive(Debug)]
pub struct Deflater {
    z: Compress,
}

impl Default for Deflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Deflater {
    /// A fresh context primed with the SPDY dictionary.
    pub fn new() -> Self {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(dictionary())
            .expect("zlib accepts a dictionary before the first byte");
        Deflater { z }
    }

    /// Compresses one header block and sync-flushes it.
    pub fn compress(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        let start = self.z.total_in();
        loop {
            let consumed = usize::try_from(self.z.total_in() - start).unwrap_or(usize::MAX);
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            self.z
                .compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| Error::Internal(format!("spdy header compression: {e}")))?;
            let consumed = usize::try_from(self.z.total_in() - start).unwrap_or(usize::MAX);
            // Done once all input is in and zlib left room in the buffer,
            // i.e. the sync flush marker is out.
            if consumed == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// The decompressing side of one direction of a connection.
#[derive(Debug)]
pub struct Inflater {
    z: Decompress,
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Inflater {
    /// A fresh context; the dictionary is supplied when the stream asks for it.
    pub fn new() -> Self {
        Inflater {
            z: Decompress::new(true),
        }
    }

    /// Decompresses one header block (a sync-flushed piece of the stream).
    pub fn decompress(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let start = self.z.total_in();
        loop {
            let consumed = usize::try_from(self.z.total_in() - start).unwrap_or(usize::MAX);
            let before = (consumed, out.len());
            if out.capacity() - out.len() < 256 {
                out.reserve(1024);
            }
            match self
                .z
                .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z
                        .set_dictionary(dictionary())
                        .map_err(|e| protocol(format!("header dictionary: {e}")))?;
                    continue;
                }
                Err(e) => return Err(protocol(format!("header decompression: {e}"))),
            }
            let consumed = usize::try_from(self.z.total_in() - start).unwrap_or(usize::MAX);
            if out.len() > MAX_HEADER_BLOCK {
                return Err(protocol("header block too large"));
            }
            if consumed == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if (consumed, out.len()) == before {
                return Err(protocol("header block does not decompress"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderList {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn block_encoding_follows_the_spec_layout() {
        let raw = encode_block(&h(&[("streamType", "error")]));
        let mut want = vec![0, 0, 0, 1, 0, 0, 0, 10];
        want.extend_from_slice(b"streamtype");
        want.extend_from_slice(&[0, 0, 0, 5]);
        want.extend_from_slice(b"error");
        assert_eq!(raw, want);
    }

    #[test]
    fn repeated_names_travel_as_nul_separated_values() {
        let headers = h(&[("a", "1"), ("b", "x"), ("a", "2")]);
        let raw = encode_block(&headers);
        assert_eq!(
            decode_block(&raw).unwrap(),
            h(&[("a", "1"), ("a", "2"), ("b", "x")])
        );
    }

    #[test]
    fn truncated_or_padded_blocks_are_errors_not_panics() {
        let raw = encode_block(&h(&[("port", "8080")]));
        for cut in 0..raw.len() {
            assert!(decode_block(&raw[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = raw.clone();
        long.push(0);
        decode_block(&long).unwrap_err();
        decode_block(&[0xff, 0xff, 0xff, 0xff]).unwrap_err();
    }

    #[test]
    fn compression_round_trips_across_blocks_of_one_context() {
        let mut d = Deflater::new();
        let mut i = Inflater::new();
        for n in 0..5 {
            let headers = h(&[("streamtype", "stdout"), ("requestid", &n.to_string())]);
            let z = d.compress(&encode_block(&headers)).unwrap();
            // A sync flush ends with an empty stored block.
            assert!(z.ends_with(&[0, 0, 0xff, 0xff]));
            let back = decode_block(&i.decompress(&z).unwrap()).unwrap();
            assert_eq!(back, headers);
        }
    }

    #[test]
    fn first_block_declares_the_spdy_dictionary() {
        let z = Deflater::new()
            .compress(&encode_block(&Vec::new()))
            .unwrap();
        // zlib header with FDICT set, followed by the dictionary's Adler-32.
        assert_eq!(z[1] & 0x20, 0x20);
        assert_eq!(&z[2..6], &[0xe3, 0xc6, 0xa7, 0xc2]);
    }

    #[test]
    fn a_fresh_inflater_rejects_a_block_cut_from_the_middle_of_a_stream() {
        let mut d = Deflater::new();
        d.compress(&encode_block(&h(&[("a", "b")]))).unwrap();
        let second = d.compress(&encode_block(&h(&[("c", "d")]))).unwrap();
        Inflater::new().decompress(&second).unwrap_err();
    }
}
