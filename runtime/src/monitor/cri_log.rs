//! The CRI container log format, written by the steady-state monitor.
//!
//! One record per line: `<RFC3339Nano UTC> <stdout|stderr> <F|P> <content>\n`.
//! A line longer than [`MAX_LINE`] is split into `P` (partial) records, the last
//! part tagged `F`; a partial line at EOF is written tagged `F` (it is the final
//! part). Core and `alloc` only: `berth-monitor-serve` has no standard library.

use alloc::vec::Vec;

/// Longest content of one record.
pub const MAX_LINE: usize = 16 * 1024;

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout = 0,
    Stderr = 1,
}

impl Stream {
    fn name(self) -> &'static [u8] {
        match self {
            Stream::Stdout => b"stdout",
            Stream::Stderr => b"stderr",
        }
    }
}

/// Where finished records go (the monitor: appended to the log file).
pub trait Sink {
    /// One whole record, newline included.
    fn append(&mut self, record: &[u8]);
    /// Now, in unix nanoseconds: each record's timestamp.
    fn now_nanos(&mut self) -> i64;
}

/// Assembles lines per stream and hands records to a [`Sink`].
#[derive(Debug, Default)]
pub struct Lines {
    pending: [Vec<u8>; 2],
    record: Vec<u8>,
}

impl Lines {
    pub fn new() -> Self {
        Self::default()
    }

    fn emit(&mut self, sink: &mut dyn Sink, stream: Stream, tag: u8, content: &[u8]) {
        let ts = super::rfc3339::format(sink.now_nanos());
        let rec = &mut self.record;
        rec.clear();
        rec.extend_from_slice(&ts);
        rec.push(b' ');
        rec.extend_from_slice(stream.name());
        rec.push(b' ');
        rec.push(tag);
        rec.push(b' ');
        rec.extend_from_slice(content);
        rec.push(b'\n');
        sink.append(rec);
    }

    /// Feeds bytes read from a stream.
    pub fn write(&mut self, sink: &mut dyn Sink, stream: Stream, mut data: &[u8]) {
        let idx = stream as usize;
        while !data.is_empty() {
            match data.iter().position(|b| *b == b'\n') {
                Some(nl) => {
                    let mut line = core::mem::take(&mut self.pending[idx]);
                    line.extend_from_slice(&data[..nl]);
                    data = &data[nl + 1..];
                    let mut rest: &[u8] = &line;
                    while rest.len() > MAX_LINE {
                        self.emit(sink, stream, b'P', &rest[..MAX_LINE]);
                        rest = &rest[MAX_LINE..];
                    }
                    self.emit(sink, stream, b'F', rest);
                    // Keep the allocation for the next line.
                    line.clear();
                    self.pending[idx] = line;
                }
                None => {
                    self.pending[idx].extend_from_slice(data);
                    data = &[];
                    while self.pending[idx].len() > MAX_LINE {
                        let rest = self.pending[idx].split_off(MAX_LINE);
                        let part = core::mem::replace(&mut self.pending[idx], rest);
                        self.emit(sink, stream, b'P', &part);
                    }
                }
            }
        }
    }

    /// The stream reached EOF: writes what is left of its last line.
    pub fn eof(&mut self, sink: &mut dyn Sink, stream: Stream) {
        let idx = stream as usize;
        let rest = core::mem::take(&mut self.pending[idx]);
        if !rest.is_empty() {
            self.emit(sink, stream, b'F', &rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records in memory, with a clock that ticks one second per record.
    #[derive(Default)]
    struct Memory {
        out: Vec<u8>,
        t: i64,
    }

    impl Sink for Memory {
        fn append(&mut self, record: &[u8]) {
            self.out.extend_from_slice(record);
        }
        fn now_nanos(&mut self) -> i64 {
            self.t += 1_000_000_000;
            self.t
        }
    }

    fn records(m: &Memory) -> Vec<(String, String, String)> {
        String::from_utf8(m.out.clone())
            .unwrap()
            .lines()
            .map(|l| {
                let mut it = l.splitn(4, ' ');
                let ts = it.next().unwrap();
                assert!(ts.ends_with('Z') && ts.len() == 30, "{ts}");
                (
                    it.next().unwrap().to_string(),
                    it.next().unwrap().to_string(),
                    it.next().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn splits_lines_streams_and_long_lines() {
        let mut m = Memory::default();
        let mut l = Lines::new();
        l.write(&mut m, Stream::Stdout, b"hello\nwor");
        l.write(&mut m, Stream::Stderr, b"oops\n");
        l.write(&mut m, Stream::Stdout, b"ld\n\n");
        let long = vec![b'x'; MAX_LINE * 2 + 5];
        l.write(&mut m, Stream::Stdout, &long);
        l.write(&mut m, Stream::Stdout, b"\ntail");
        l.eof(&mut m, Stream::Stdout);
        l.eof(&mut m, Stream::Stderr);
        let r = records(&m);
        let short: Vec<(&str, &str, usize)> = r
            .iter()
            .map(|(s, t, c)| (s.as_str(), t.as_str(), c.len()))
            .collect();
        assert_eq!(
            short,
            vec![
                ("stdout", "F", 5),
                ("stderr", "F", 4),
                ("stdout", "F", 5),
                ("stdout", "F", 0),
                ("stdout", "P", MAX_LINE),
                ("stdout", "P", MAX_LINE),
                ("stdout", "F", 5),
                ("stdout", "F", 4),
            ]
        );
        assert_eq!(r[2].2, "world");
        assert_eq!(r[7].2, "tail");
        assert!(m
            .out
            .starts_with(b"1970-01-01T00:00:01.000000000Z stdout F hello\n"));
    }

    #[test]
    fn a_long_line_ending_in_one_write_is_split_into_partials() {
        let mut m = Memory::default();
        let mut l = Lines::new();
        let mut data = vec![b'y'; MAX_LINE + 3];
        data.push(b'\n');
        l.write(&mut m, Stream::Stderr, &data);
        let r = records(&m);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].1.as_str(), r[0].2.len()), ("P", MAX_LINE));
        assert_eq!((r[1].1.as_str(), r[1].2.as_str()), ("F", "yyy"));
    }
}
