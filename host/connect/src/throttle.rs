//! Per-connection pacing: a token bucket (governor), a cap on requests in flight, and
//! a pause for the whole connection when the upstream says Retry-After.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

pub(crate) struct Throttle {
    limiter: DefaultDirectRateLimiter,
    slots: Arc<Semaphore>,
    paused_until: Mutex<Option<Instant>>,
}

impl Throttle {
    pub fn new(per_second: u32, burst: u32, max_concurrency: u32) -> Self {
        let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Throttle {
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            slots: Arc::new(Semaphore::new(max_concurrency.max(1) as usize)),
            paused_until: Mutex::new(None),
        }
    }

    fn paused(&self) -> Option<Instant> {
        let p = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        p.filter(|t| *t > Instant::now())
    }

    /// Waits out any pause, a slot, and the rate; the slot is held by the permit.
    pub async fn admit(&self) -> OwnedSemaphorePermit {
        loop {
            while let Some(until) = self.paused() {
                tokio::time::sleep_until(until).await;
            }
            let permit = self.slots.clone().acquire_owned().await.expect("the semaphore is never closed");
            self.limiter.until_ready().await;
            // A Retry-After may have arrived while this request waited its turn.
            if self.paused().is_none() {
                return permit;
            }
        }
    }

    /// How much longer the connection is paused, if it is.
    pub fn paused_for(&self) -> Option<Duration> {
        self.paused().map(|t| t - Instant::now())
    }

    /// Pauses the whole connection for `d` (never shortens an existing pause).
    pub fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut p = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none_or(|t| t < until) {
            *p = Some(until);
        }
    }
}
