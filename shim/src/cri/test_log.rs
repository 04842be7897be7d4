//! Unit-test helper: captures what the shim logs, formatted as berthd's text
//! format at berthd's default level (info), so tests can assert which span
//! context a line carries.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// The lines logged while the guard from [`Captured::install`] is held.
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Makes a capturing subscriber this thread's default (the `blocking` and
    /// `detached` helpers carry it into the tasks they start).
    pub(crate) fn install() -> (Captured, tracing::subscriber::DefaultGuard) {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (out, tracing::subscriber::set_default(subscriber))
    }

    /// Every line logged so far.
    pub(crate) fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The one line containing `needle`; panics (listing them all) otherwise.
    pub(crate) fn line(&self, needle: &str) -> String {
        let lines = self.lines();
        let found: Vec<&String> = lines.iter().filter(|l| l.contains(needle)).collect();
        assert_eq!(found.len(), 1, "one line with {needle:?} in {lines:#?}");
        found[0].clone()
    }
}
