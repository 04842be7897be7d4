//! `berth logs`: reads the container's CRI log file directly, as crictl does.
//! Each line is `<RFC3339Nano> <stdout|stderr> <F|P> <text>`; `P` parts are
//! joined up to the next `F` of the same stream.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_proto::v1::{ContainerState, ContainerStatusRequest};
use chrono::{DateTime, FixedOffset};
use clap::Args;

use super::pods::with_id;
use crate::client::CriClient;
use crate::error::{Error, Result};

/// `berth logs ID`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Container id.
    pub id: String,
    /// Keep printing new lines until the container exits.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines (-1: all).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub tail: i64,
    /// Only lines since this time: a duration (e.g. 5m) or RFC3339.
    #[arg(long)]
    pub since: Option<String>,
    /// Prefix each line with its timestamp.
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// The previous instance's logs (not supported).
    #[arg(short = 'p', long)]
    pub previous: bool,
}

/// Which stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// The container's stdout.
    Stdout,
    /// The container's stderr.
    Stderr,
}

/// One line of the file.
#[derive(Debug, PartialEq)]
struct Fragment<'a> {
    ts_raw: &'a str,
    ts: DateTime<FixedOffset>,
    stream: Stream,
    partial: bool,
    text: &'a [u8],
}

fn parse_fragment(line: &[u8]) -> Option<Fragment<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let ts_raw = std::str::from_utf8(parts.next()?).ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    let text = parts.next().unwrap_or(b"");
    let ts = DateTime::parse_from_rfc3339(ts_raw).ok()?;
    Some(Fragment {
        ts_raw,
        ts,
        stream,
        partial,
        text,
    })
}

/// A whole log message (P parts joined), without its newline.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// Timestamp as written in the file (of the message's first part).
    pub ts_raw: String,
    /// Parsed timestamp.
    pub ts: DateTime<FixedOffset>,
    /// Stream.
    pub stream: Stream,
    /// Text.
    pub text: Vec<u8>,
    /// True when the message's final part has not been seen (end of file).
    pub partial: bool,
}

/// Joins fragments into messages, one pending message per stream.
#[derive(Default)]
pub struct Assembler {
    pending: HashMap<Stream, Message>,
}

impl Assembler {
    /// Feeds one line (without its newline); returns a completed message.
    /// Lines that are not in the CRI format are skipped.
    pub fn push(&mut self, line: &[u8]) -> Option<Message> {
        let f = parse_fragment(line)?;
        let msg = self.pending.entry(f.stream).or_insert_with(|| Message {
            ts_raw: f.ts_raw.to_string(),
            ts: f.ts,
            stream: f.stream,
            text: Vec::new(),
            partial: true,
        });
        msg.text.extend_from_slice(f.text);
        if f.partial {
            return None;
        }
        let mut done = self.pending.remove(&f.stream)?;
        done.partial = false;
        Some(done)
    }

    /// Messages whose final part never came, oldest first.
    pub fn drain_pending(&mut self) -> Vec<Message> {
        let mut v: Vec<Message> = self.pending.drain().map(|(_, m)| m).collect();
        v.sort_by_key(|m| m.ts);
        v
    }
}

/// Parses the complete lines of `data`; returns the messages and how many
/// bytes were consumed (up to the last newline).
pub fn parse_chunk(asm: &mut Assembler, data: &[u8]) -> (Vec<Message>, usize) {
    let mut out = Vec::new();
    let mut consumed = 0;
    while let Some(nl) = data[consumed..].iter().position(|b| *b == b'\n') {
        if let Some(m) = asm.push(&data[consumed..consumed + nl]) {
            out.push(m);
        }
        consumed += nl + 1;
    }
    (out, consumed)
}

/// Applies `--since` and `--tail` to the messages of a whole file.
pub fn select(
    messages: Vec<Message>,
    since: Option<DateTime<FixedOffset>>,
    tail: i64,
) -> Vec<Message> {
    let mut v: Vec<Message> = messages
        .into_iter()
        .filter(|m| since.is_none_or(|s| m.ts >= s))
        .collect();
    if tail >= 0 {
        let keep = usize::try_from(tail).unwrap_or(usize::MAX);
        if v.len() > keep {
            v.drain(..v.len() - keep);
        }
    }
    v
}

/// `--since`: an RFC3339 time, or a duration before now.
pub fn parse_since(s: &str, now: DateTime<FixedOffset>) -> Result<DateTime<FixedOffset>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t);
    }
    let d = super::parse_duration(s).map_err(|e| {
        Error::InvalidArgument(format!("since: {e}; expected a duration or RFC3339 time"))
    })?;
    let d = chrono::Duration::from_std(d)
        .map_err(|_| Error::InvalidArgument(format!("since: {s:?} is too long")))?;
    Ok(now - d)
}

fn write_message(m: &Message, timestamps: bool) -> Result<()> {
    let mut buf = Vec::with_capacity(m.text.len() + 40);
    if timestamps {
        buf.extend_from_slice(m.ts_raw.as_bytes());
        buf.push(b' ');
    }
    buf.extend_from_slice(&m.text);
    if !m.partial {
        buf.push(b'\n');
    }
    let res = match m.stream {
        Stream::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(&buf).and_then(|_| out.flush())
        }
        Stream::Stderr => std::io::stderr().lock().write_all(&buf),
    };
    res.map_err(|e| Error::Internal(format!("write log line: {e}")))
}

fn open(path: &Path) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|source| Error::Io {
        op: "open container log",
        path: path.to_path_buf(),
        source,
    })
}

fn read_more(file: &mut std::fs::File, buf: &mut Vec<u8>, path: &Path) -> Result<usize> {
    file.read_to_end(buf).map_err(|source| Error::Io {
        op: "read container log",
        path: path.to_path_buf(),
        source,
    })
}

async fn container_log(cri: &mut CriClient, id: &str) -> Result<(String, bool)> {
    let status = cri
        .runtime
        .container_status(ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: false,
        })
        .await
        .map_err(|e| with_id("container status", id, e))?
        .into_inner()
        .status
        .ok_or_else(|| Error::NotFound(format!("container {id:?}: no status returned")))?;
    let running = matches!(
        ContainerState::try_from(status.state),
        Ok(ContainerState::ContainerRunning) | Ok(ContainerState::ContainerCreated)
    );
    Ok((status.log_path, running))
}

/// `berth logs`.
pub async fn logs(cri: &mut CriClient, a: LogsArgs) -> Result<()> {
    if a.previous {
        return Err(Error::Unimplemented(
            "logs --previous is not supported by the berth cli".into(),
        ));
    }
    let since = a
        .since
        .as_deref()
        .map(|s| parse_since(s, chrono::Local::now().fixed_offset()))
        .transpose()?;
    let (log_path, mut running) = container_log(cri, &a.id).await?;
    if log_path.is_empty() {
        return Err(Error::FailedPrecondition(format!(
            "container {:?} has no log path",
            a.id
        )));
    }
    let path = Path::new(&log_path);
    let mut file = open(path)?;
    let mut asm = Assembler::default();
    let mut buf = Vec::new();
    read_more(&mut file, &mut buf, path)?;
    let (messages, used) = parse_chunk(&mut asm, &buf);
    buf.drain(..used);
    for m in select(messages, since, a.tail) {
        write_message(&m, a.timestamps)?;
    }
    if !a.follow {
        for m in asm.drain_pending() {
            write_message(&m, a.timestamps)?;
        }
        return Ok(());
    }
    // Follow: poll the file; reopen when the path names a new file (rotation);
    // stop once the container has exited and the file is drained.
    let mut last_check = Instant::now();
    let mut exited_seen = !running;
    loop {
        let n = read_more(&mut file, &mut buf, path)?;
        let (messages, used) = parse_chunk(&mut asm, &buf);
        buf.drain(..used);
        for m in messages {
            if since.is_none_or(|s| m.ts >= s) {
                write_message(&m, a.timestamps)?;
            }
        }
        if n > 0 {
            continue;
        }
        let current_ino = file.metadata().map(|m| m.ino()).ok();
        if let Ok(meta) = std::fs::metadata(path) {
            if Some(meta.ino()) != current_ino {
                // Rotated: the writer may have added a last line to the old
                // file between our read and its reopen, so drain it first.
                read_more(&mut file, &mut buf, path)?;
                let (messages, _) = parse_chunk(&mut asm, &buf);
                for m in messages {
                    if since.is_none_or(|s| m.ts >= s) {
                        write_message(&m, a.timestamps)?;
                    }
                }
                file = open(path)?;
                buf.clear();
                continue;
            }
        }
        if exited_seen {
            for m in asm.drain_pending() {
                write_message(&m, a.timestamps)?;
            }
            return Ok(());
        }
        if last_check.elapsed() >= Duration::from_millis(500) {
            last_check = Instant::now();
            (_, running) = container_log(cri, &a.id).await?;
            // One more pass after the exit reads what the monitor wrote last.
            exited_seen = !running;
            if exited_seen {
                continue;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
2024-01-01T00:00:01.000000001Z stdout F one
2024-01-01T00:00:02.5Z stderr P err-
2024-01-01T00:00:03Z stdout P tw
2024-01-01T00:00:03.1Z stdout F o
2024-01-01T00:00:04Z stderr F part
not a log line
2024-01-01T00:00:05+01:00 stdout F five
2024-01-01T00:00:06Z stdout F 
2024-01-01T00:00:07Z stdout P tail";

    fn all() -> (Vec<Message>, Assembler) {
        let mut asm = Assembler::default();
        let (msgs, used) = parse_chunk(&mut asm, LOG.as_bytes());
        assert_eq!(&LOG[used..], "2024-01-01T00:00:07Z stdout P tail");
        (msgs, asm)
    }

    fn texts(m: &[Message]) -> Vec<String> {
        m.iter()
            .map(|m| String::from_utf8_lossy(&m.text).into_owned())
            .collect()
    }

    #[test]
    fn partial_lines_join_per_stream() {
        let (msgs, _) = all();
        assert_eq!(texts(&msgs), ["one", "two", "err-part", "five", ""]);
        assert_eq!(msgs[1].stream, Stream::Stdout);
        assert_eq!(
            msgs[1].ts_raw, "2024-01-01T00:00:03Z",
            "first part's timestamp"
        );
        assert_eq!(msgs[2].stream, Stream::Stderr);
        assert!(msgs.iter().all(|m| !m.partial));
    }

    #[test]
    fn unterminated_partial_is_pending() {
        let mut asm = Assembler::default();
        let (msgs, _) = parse_chunk(&mut asm, b"2024-01-01T00:00:07Z stdout P tail\n");
        assert!(msgs.is_empty());
        let pending = asm.drain_pending();
        assert_eq!(texts(&pending), ["tail"]);
        assert!(pending[0].partial);
    }

    #[test]
    fn tail_keeps_the_last_n() {
        let (msgs, _) = all();
        assert_eq!(texts(&select(msgs.clone(), None, 2)), ["five", ""]);
        assert!(select(msgs.clone(), None, 0).is_empty());
        assert_eq!(select(msgs.clone(), None, -1).len(), 5);
        assert_eq!(select(msgs, None, 100).len(), 5);
    }

    #[test]
    fn since_filters_by_timestamp_with_offsets() {
        let (msgs, _) = all();
        let since = DateTime::parse_from_rfc3339("2024-01-01T00:00:03Z").unwrap();
        // "five" at 00:00:05+01:00 is 23:00:05 the day before, and "err-part"
        // carries its first part's time (00:00:02.5): both excluded.
        assert_eq!(texts(&select(msgs.clone(), Some(since), -1)), ["two", ""]);
        assert_eq!(texts(&select(msgs, Some(since), 1)), [""]);
    }

    #[test]
    fn since_accepts_durations_and_rfc3339() {
        let now = DateTime::parse_from_rfc3339("2024-01-01T01:00:00Z").unwrap();
        assert_eq!(
            parse_since("5m", now).unwrap(),
            DateTime::parse_from_rfc3339("2024-01-01T00:55:00Z").unwrap()
        );
        assert_eq!(
            parse_since("2023-12-31T00:00:00Z", now).unwrap(),
            DateTime::parse_from_rfc3339("2023-12-31T00:00:00Z").unwrap()
        );
        parse_since("yesterday", now).unwrap_err();
    }

    #[test]
    fn fragments_reject_malformed_lines() {
        assert!(parse_fragment(b"2024-01-01T00:00:01Z stdin F x").is_none());
        assert!(parse_fragment(b"2024-01-01T00:00:01Z stdout X x").is_none());
        assert!(parse_fragment(b"yesterday stdout F x").is_none());
        let f = parse_fragment(b"2024-01-01T00:00:01Z stdout F a b  c").unwrap();
        assert_eq!(f.text, b"a b  c");
    }
}
