//! The adapter's stdout/stderr: captured per call (bounded) and written to the log.

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

/// A bounded in-memory sink for one call's stdout or stderr.
#[derive(Clone)]
pub(crate) struct Captured(pub MemoryOutputPipe);

impl Captured {
    pub fn new(capacity: usize) -> Self {
        Captured(MemoryOutputPipe::new(capacity))
    }

    /// Emit what was written, a log line per line of output.
    pub fn flush_to_log(&self, adapter: &str, stream: &'static str) {
        let bytes = self.0.contents();
        if bytes.is_empty() {
            return;
        }
        for line in String::from_utf8_lossy(&bytes).lines().filter(|l| !l.trim().is_empty()) {
            // Adapters are untrusted and their output may carry PHI: debug level only.
            tracing::debug!(target: "ehrgate::adapter", adapter, stream, "{line}");
        }
    }

    /// The first lines written, for a trap message: a Rust panic prints
    /// `thread '..' panicked at file:line:col:` and then its message.
    pub fn summary(&self) -> Option<String> {
        let bytes = self.0.contents();
        let text = String::from_utf8_lossy(&bytes);
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let first = lines.next()?;
        let mut s = first.to_string();
        if first.ends_with(':') {
            if let Some(next) = lines.next() {
                s.push(' ');
                s.push_str(next);
            }
        }
        Some(s.chars().take(400).collect())
    }
}

impl IsTerminal for Captured {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Captured {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.0.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.0.clone())
    }
}
