//! The command-line codec under Berth's process boundaries (berthd →
//! `berth-monitor` in `command.rs`, `berth-monitor` → `berth-monitor-serve` in
//! `serve_args.rs`): each boundary's module writes its arguments with
//! [`Writer`] and reads them back with [`Reader`], so a flag's name is spelled
//! once, next to both directions.
//!
//! Flags are `--name value` (or `--name=value`) and bare `--switch`es; values
//! are bytes, as paths are on Linux. Hand-written rather than clap: clap
//! would double the monitor's size and resident memory for a handful of
//! flags, and `berth-monitor-serve` (which builds this file too) has no
//! standard library. Core and `alloc` only, like the rest of `monitor/`.

// Spelled out: `berth-monitor-serve` builds this file without the std prelude.
use alloc::vec::Vec;
use core::fmt;

/// Why a command line was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    /// No subcommand at all.
    MissingCommand,
    /// A subcommand no boundary knows.
    UnknownCommand(Vec<u8>),
    /// An argument that is not a `--flag`.
    NotAFlag(Vec<u8>),
    /// A flag the subcommand does not take.
    UnknownFlag(Vec<u8>),
    /// A value flag at the end of the line.
    MissingValue(&'static str),
    /// A switch given `=value`.
    UnexpectedValue(&'static str),
    /// A required flag is absent.
    Missing(&'static str),
    /// A value that does not parse (not a number, out of range, not UTF-8, ...).
    Invalid(&'static str, Vec<u8>),
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |b: &[u8]| alloc::string::String::from_utf8_lossy(b).into_owned();
        match self {
            ArgError::MissingCommand => write!(f, "missing subcommand"),
            ArgError::UnknownCommand(c) => write!(f, "unknown subcommand {:?}", s(c)),
            ArgError::NotAFlag(a) => write!(f, "unexpected argument {:?}", s(a)),
            ArgError::UnknownFlag(k) => write!(f, "unknown flag {}", s(k)),
            ArgError::MissingValue(k) => write!(f, "{k} needs a value"),
            ArgError::UnexpectedValue(k) => write!(f, "{k} takes no value"),
            ArgError::Missing(k) => write!(f, "missing {k}"),
            ArgError::Invalid(k, v) => write!(f, "{k}: bad value {:?}", s(v)),
        }
    }
}

/// Reads `--flag [value]` arguments one flag at a time.
#[derive(Debug)]
pub struct Reader<'a, I: Iterator<Item = &'a [u8]>> {
    args: I,
    /// The value of the current flag when it came as `--flag=value`.
    inline: Option<&'a [u8]>,
}

impl<'a, I: Iterator<Item = &'a [u8]>> Reader<'a, I> {
    /// Reads the arguments after the subcommand.
    pub fn new(args: I) -> Self {
        Reader { args, inline: None }
    }

    /// The next flag's name (with its dashes), or `None` at the end.
    pub fn next_flag(&mut self) -> Result<Option<&'a [u8]>, ArgError> {
        let Some(a) = self.args.next() else {
            return Ok(None);
        };
        if !a.starts_with(b"--") {
            return Err(ArgError::NotAFlag(a.to_vec()));
        }
        match a.iter().position(|b| *b == b'=') {
            Some(i) => {
                self.inline = Some(&a[i + 1..]);
                Ok(Some(&a[..i]))
            }
            None => {
                self.inline = None;
                Ok(Some(a))
            }
        }
    }

    /// The current flag's value: `=value` or the next argument.
    pub fn value(&mut self, flag: &'static str) -> Result<&'a [u8], ArgError> {
        match self.inline.take() {
            Some(v) => Ok(v),
            None => self.args.next().ok_or(ArgError::MissingValue(flag)),
        }
    }

    /// The current flag is a switch: true, unless it was given `=value`.
    pub fn switch(&mut self, flag: &'static str) -> Result<bool, ArgError> {
        match self.inline.take() {
            Some(_) => Err(ArgError::UnexpectedValue(flag)),
            None => Ok(true),
        }
    }

    /// The current flag's value as an owned byte string.
    pub fn bytes(&mut self, flag: &'static str) -> Result<Vec<u8>, ArgError> {
        self.value(flag).map(<[u8]>::to_vec)
    }

    /// The current flag's value as a decimal `u64`.
    pub fn u64(&mut self, flag: &'static str) -> Result<u64, ArgError> {
        let v = self.value(flag)?;
        parse_u64(v).ok_or_else(|| ArgError::Invalid(flag, v.to_vec()))
    }

    /// The current flag's value as a non-negative `i32` (a pid, an fd).
    pub fn i32(&mut self, flag: &'static str) -> Result<i32, ArgError> {
        let v = self.value(flag)?;
        parse_u64(v)
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| ArgError::Invalid(flag, v.to_vec()))
    }
}

/// Builds a command line: the subcommand, then flags.
#[derive(Debug, Default)]
pub struct Writer {
    args: Vec<Vec<u8>>,
}

impl Writer {
    /// Starts a line with `words` (program name, subcommand).
    pub fn new(words: &[&str]) -> Self {
        Writer {
            args: words.iter().map(|w| w.as_bytes().to_vec()).collect(),
        }
    }

    /// `--flag value`.
    pub fn value(&mut self, flag: &str, value: &[u8]) -> &mut Self {
        self.args.push(flag.as_bytes().to_vec());
        self.args.push(value.to_vec());
        self
    }

    /// `--flag=value`, one word (reads better in `ps`).
    pub fn joined(&mut self, flag: &str, value: &[u8]) -> &mut Self {
        let mut word = flag.as_bytes().to_vec();
        word.push(b'=');
        word.extend_from_slice(value);
        self.args.push(word);
        self
    }

    /// `--flag value` when there is a value.
    pub fn optional(&mut self, flag: &str, value: Option<&[u8]>) -> &mut Self {
        if let Some(v) = value {
            self.value(flag, v);
        }
        self
    }

    /// `--flag N`, in decimal (a negative number is written as such and
    /// refused by [`Reader::i32`]).
    pub fn number(&mut self, flag: &str, n: impl fmt::Display) -> &mut Self {
        self.value(flag, alloc::format!("{n}").as_bytes())
    }

    /// `--flag` when `on`.
    pub fn switch(&mut self, flag: &str, on: bool) -> &mut Self {
        if on {
            self.args.push(flag.as_bytes().to_vec());
        }
        self
    }

    /// The arguments written.
    pub fn finish(&mut self) -> Vec<Vec<u8>> {
        core::mem::take(&mut self.args)
    }
}

/// A non-empty run of ASCII digits that fits a `u64`.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader<'a>(args: &'a [&'a str]) -> Reader<'a, impl Iterator<Item = &'a [u8]>> {
        Reader::new(args.iter().map(|a| a.as_bytes()))
    }

    #[test]
    fn values_come_separate_or_after_an_equals_sign() {
        let line = ["--a", "x", "--b=y=z", "--c"];
        let mut r = reader(&line);
        assert_eq!(r.next_flag().unwrap(), Some(&b"--a"[..]));
        assert_eq!(r.value("--a").unwrap(), b"x");
        assert_eq!(r.next_flag().unwrap(), Some(&b"--b"[..]));
        assert_eq!(r.value("--b").unwrap(), b"y=z");
        assert_eq!(r.next_flag().unwrap(), Some(&b"--c"[..]));
        assert_eq!(r.value("--c"), Err(ArgError::MissingValue("--c")));
        assert_eq!(r.next_flag().unwrap(), None);
    }

    #[test]
    fn numbers_are_checked_for_range_not_truncated() {
        let big = (u64::from(u32::MAX) + 7).to_string();
        let line = ["--n", &big];
        let mut r = reader(&line);
        r.next_flag().unwrap();
        assert!(matches!(r.i32("--n"), Err(ArgError::Invalid("--n", _))));
        let line = [
            "--n",
            "2147483647",
            "--m",
            "-1",
            "--k",
            "18446744073709551616",
        ];
        let mut r = reader(&line);
        r.next_flag().unwrap();
        assert_eq!(r.i32("--n").unwrap(), i32::MAX);
        r.next_flag().unwrap();
        r.i32("--m").unwrap_err();
        r.next_flag().unwrap();
        r.u64("--k").unwrap_err();
    }

    #[test]
    fn a_switch_refuses_a_value_and_a_bare_word_is_refused() {
        let line = ["--tty=1", "word"];
        let mut r = reader(&line);
        r.next_flag().unwrap();
        assert_eq!(r.switch("--tty"), Err(ArgError::UnexpectedValue("--tty")));
        assert_eq!(r.next_flag(), Err(ArgError::NotAFlag(b"word".to_vec())));
    }

    #[test]
    fn numbers_written_read_back() {
        for n in [0, 7, 10, 4096, u64::MAX] {
            let args = Writer::new(&[]).number("--n", n).finish();
            let mut r = Reader::new(args.iter().map(Vec::as_slice));
            r.next_flag().unwrap();
            assert_eq!(r.u64("--n").unwrap(), n);
        }
        let args = Writer::new(&[]).number("--fd", -1).finish();
        let mut r = Reader::new(args.iter().map(Vec::as_slice));
        r.next_flag().unwrap();
        r.i32("--fd").unwrap_err();
    }
}
