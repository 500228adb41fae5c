//! Per-call limits and the resource limiter that enforces the memory one.

use std::time::Duration;

/// Limits for one call into an adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum linear memory of the instance, in bytes.
    pub memory_bytes: usize,
    /// Maximum wall time of one call (or one batch), host imports included.
    pub wall_time: Duration,
    /// Maximum size of a call's output, in bytes (resources + warnings).
    pub output_bytes: usize,
    /// Maximum bytes of stdout/stderr kept per call for the adapter's log.
    pub stdio_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            wall_time: Duration::from_secs(5),
            output_bytes: 16 << 20,
            stdio_bytes: 16 << 10,
        }
    }
}

/// Enforces the memory limit and remembers that it was hit, so that the trap it
/// causes is reported as a limit, not as a generic trap.
pub(crate) struct MemoryLimiter {
    pub max_bytes: usize,
    pub hit: Option<usize>,
}

/// The error a refused memory grow raises inside the guest.
#[derive(Debug)]
pub(crate) struct MemoryLimitHit;

impl std::fmt::Display for MemoryLimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("memory limit")
    }
}

impl std::error::Error for MemoryLimitHit {}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = Some(desired);
            // Trap now rather than let the guest's allocator abort later: the trap
            // then names the limit.
            return Err(wasmtime::Error::new(MemoryLimitHit));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
