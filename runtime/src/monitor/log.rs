//! The CRI container log writer.
//!
//! Format, one record per line: `<RFC3339Nano UTC> <stdout|stderr> <F|P> <content>\n`.
//! A line longer than [`MAX_LINE`] is split into `P` (partial) records, the last
//! part tagged `F`; a partial line at EOF is written tagged `F` (it is the final part).

use crate::timefmt::{now_nanos, rfc3339_nanos};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

/// Longest content of one record.
pub const MAX_LINE: usize = 16 * 1024;

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout = 0,
    Stderr = 1,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Assembles lines per stream and appends records to the log file.
pub struct CriLog {
    path: Option<PathBuf>,
    file: Option<File>,
    pending: [Vec<u8>; 2],
}

impl CriLog {
    /// Opens (creates, appends to) `path`; `None` discards output.
    pub fn open(path: Option<PathBuf>) -> std::io::Result<Self> {
        let mut l = CriLog {
            path,
            file: None,
            pending: [Vec::new(), Vec::new()],
        };
        l.reopen()?;
        Ok(l)
    }

    /// Reopens the file at the same path (after kubelet rotated it).
    pub fn reopen(&mut self) -> std::io::Result<()> {
        if let Some(p) = &self.path {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir)?;
            }
            self.file = Some(OpenOptions::new().create(true).append(true).open(p)?);
        }
        Ok(())
    }

    fn emit(&mut self, stream: Stream, tag: char, content: &[u8]) {
        let Some(f) = self.file.as_mut() else {
            return;
        };
        let ts = rfc3339_nanos(now_nanos());
        let mut rec = Vec::with_capacity(ts.len() + content.len() + 12);
        rec.extend_from_slice(ts.as_bytes());
        rec.push(b' ');
        rec.extend_from_slice(stream.name().as_bytes());
        rec.push(b' ');
        rec.push(tag as u8);
        rec.push(b' ');
        rec.extend_from_slice(content);
        rec.push(b'\n');
        // A full disk must not kill the container's monitor: drop the record.
        let _ = f.write_all(&rec);
    }

    /// Feeds bytes read from a stream.
    pub fn write(&mut self, stream: Stream, mut data: &[u8]) {
        let idx = stream as usize;
        while !data.is_empty() {
            match data.iter().position(|b| *b == b'\n') {
                Some(nl) => {
                    let mut buf = std::mem::take(&mut self.pending[idx]);
                    buf.extend_from_slice(&data[..nl]);
                    data = &data[nl + 1..];
                    self.flush_full(stream, buf);
                }
                None => {
                    self.pending[idx].extend_from_slice(data);
                    data = &[];
                    while self.pending[idx].len() > MAX_LINE {
                        let rest = self.pending[idx].split_off(MAX_LINE);
                        let part = std::mem::replace(&mut self.pending[idx], rest);
                        self.emit(stream, 'P', &part);
                    }
                }
            }
        }
    }

    fn flush_full(&mut self, stream: Stream, mut line: Vec<u8>) {
        while line.len() > MAX_LINE {
            let rest = line.split_off(MAX_LINE);
            self.emit(stream, 'P', &line);
            line = rest;
        }
        self.emit(stream, 'F', &line);
    }

    /// The stream reached EOF: writes what is left of its last line.
    pub fn eof(&mut self, stream: Stream) {
        let idx = stream as usize;
        let rest = std::mem::take(&mut self.pending[idx]);
        if !rest.is_empty() {
            self.emit(stream, 'F', &rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(path: &std::path::Path) -> Vec<(String, String, String)> {
        std::fs::read_to_string(path)
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
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut l = CriLog::open(Some(p.clone())).unwrap();
        l.write(Stream::Stdout, b"hello\nwor");
        l.write(Stream::Stderr, b"oops\n");
        l.write(Stream::Stdout, b"ld\n\n");
        let long = vec![b'x'; MAX_LINE * 2 + 5];
        l.write(Stream::Stdout, &long);
        l.write(Stream::Stdout, b"\ntail");
        l.eof(Stream::Stdout);
        let r = records(&p);
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
    }

    #[test]
    fn reopen_follows_a_rotated_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut l = CriLog::open(Some(p.clone())).unwrap();
        l.write(Stream::Stdout, b"one\n");
        std::fs::rename(&p, d.path().join("c.log.1")).unwrap();
        l.reopen().unwrap();
        l.write(Stream::Stdout, b"two\n");
        assert_eq!(records(&p)[0].2, "two");
        assert_eq!(records(&d.path().join("c.log.1"))[0].2, "one");
    }
}
