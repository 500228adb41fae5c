//! A circuit breaker per connection: closed -> (threshold consecutive failures) ->
//! open -> (open_ms) -> half-open, one probe -> closed on success, open on failure.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// What callers see of the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

pub(crate) struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    open_for: Duration,
}

/// The right to make one attempt. Report its outcome; dropping it unreported (a
/// cancelled call) frees a half-open probe slot without judging the upstream.
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    done: bool,
}

impl Breaker {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Breaker { state: Mutex::new(State::Closed { failures: 0 }), threshold: threshold.max(1), open_for }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if Instant::now() >= until => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// A permit, or `Err(remaining open time)` while the circuit is open (or its one
    /// half-open probe is out).
    pub fn acquire(&self) -> Result<Permit<'_>, Duration> {
        let mut s = self.lock();
        let now = Instant::now();
        match *s {
            State::Closed { .. } => Ok(Permit { breaker: self, probe: false, done: false }),
            State::Open { until } if now < until => Err(until - now),
            State::Open { .. } | State::HalfOpen { probing: false } => {
                *s = State::HalfOpen { probing: true };
                Ok(Permit { breaker: self, probe: true, done: false })
            }
            State::HalfOpen { probing: true } => Err(Duration::ZERO),
        }
    }
}

impl Permit<'_> {
    pub fn success(mut self) {
        self.done = true;
        *self.breaker.lock() = State::Closed { failures: 0 };
    }

    pub fn failure(mut self) {
        self.done = true;
        let b = self.breaker;
        let mut s = b.lock();
        let open = State::Open { until: Instant::now() + b.open_for };
        *s = match *s {
            _ if self.probe => open,
            State::Closed { failures } if failures + 1 >= b.threshold => {
                tracing::warn!(failures = failures + 1, "circuit opened");
                open
            }
            State::Closed { failures } => State::Closed { failures: failures + 1 },
            other => other,
        };
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done && self.probe {
            let mut s = self.breaker.lock();
            if *s == (State::HalfOpen { probing: true }) {
                *s = State::HalfOpen { probing: false };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_fails_fast_and_probes_back() {
        let b = Breaker::new(3, Duration::from_millis(1000));
        for _ in 0..2 {
            b.acquire().unwrap().failure();
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.acquire().unwrap().success();
        for _ in 0..3 {
            b.acquire().unwrap().failure();
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.acquire().is_err());
        tokio::time::advance(Duration::from_millis(1001)).await;
        let probe = b.acquire().unwrap();
        assert!(b.acquire().is_err(), "only one probe while half-open");
        probe.failure();
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_millis(1001)).await;
        drop(b.acquire().unwrap());
        b.acquire().unwrap().success();
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
