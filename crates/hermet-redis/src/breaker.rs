//! A circuit breaker around Redis: after [`FAILURES`] failed calls in a row it opens, and
//! for [`COOL_DOWN`] every call fails at once instead of waiting on a server that is away;
//! then one call is let through as a probe, which closes it again or reopens it. Callers
//! serve what they can locally meanwhile (same-node pushes, reads from the database).
//!
//! `redis_breaker_state{role}` is 0 closed, 1 open, 2 half-open (probing);
//! `redis_breaker_opened_total{role}` counts openings.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed calls in a row that open the breaker.
pub const FAILURES: u32 = 3;
/// How long an open breaker refuses calls before it lets a probe through.
pub const COOL_DOWN: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// What a call through the breaker ended as.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("Redis is unavailable (circuit open)")]
    Open,
    #[error("Redis did not answer within {0:?}")]
    TimedOut(Duration),
    #[error(transparent)]
    Failed(#[from] redis::RedisError),
}

pub struct Breaker {
    role: &'static str,
    state: Mutex<State>,
}

impl Breaker {
    pub fn new(role: &'static str) -> Self {
        metrics::gauge!("redis_breaker_state", "role" => role).set(0.0);
        Self { role, state: Mutex::new(State::Closed { failures: 0 }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, s: &mut State, to: State) {
        *s = to;
        let v = match to {
            State::Closed { .. } => 0.0,
            State::Open { .. } => 1.0,
            State::HalfOpen => 2.0,
        };
        metrics::gauge!("redis_breaker_state", "role" => self.role).set(v);
    }

    /// Whether calls go through now (closed), or are refused without waiting.
    pub fn is_closed(&self) -> bool {
        matches!(*self.lock(), State::Closed { .. })
    }

    /// May a call go out now? An open breaker past its cool-down lets exactly one through.
    fn admit(&self, now: Instant) -> bool {
        let mut s = self.lock();
        match *s {
            State::Closed { .. } => true,
            State::Open { until } if now >= until => {
                self.set(&mut s, State::HalfOpen);
                true
            }
            State::Open { .. } | State::HalfOpen => false,
        }
    }

    /// Records a success; true when it closed an open or probing breaker (a recovery).
    fn succeeded(&self) -> bool {
        let mut s = self.lock();
        let recovered = !matches!(*s, State::Closed { .. });
        if recovered {
            tracing::info!(role = self.role, "Redis answers again: circuit closed");
        }
        self.set(&mut s, State::Closed { failures: 0 });
        recovered
    }

    fn failed(&self, now: Instant) {
        let mut s = self.lock();
        let open = match *s {
            State::Closed { failures } if failures + 1 < FAILURES => {
                self.set(&mut s, State::Closed { failures: failures + 1 });
                false
            }
            State::Closed { .. } | State::HalfOpen => true,
            State::Open { .. } => false,
        };
        if open {
            if matches!(*s, State::Closed { .. }) {
                tracing::warn!(role = self.role, cool_down = ?COOL_DOWN, "Redis keeps failing: circuit open");
                metrics::counter!("redis_breaker_opened_total", "role" => self.role).increment(1);
            }
            self.set(&mut s, State::Open { until: now + COOL_DOWN });
        }
    }

    /// Runs `call` unless the breaker is open, giving up after `timeout`. `Ok((value,
    /// recovered))`: `recovered` when this call closed the breaker after an outage, so the
    /// caller can re-establish what the outage lost.
    pub async fn call<T, F>(&self, timeout: Duration, call: F) -> Result<(T, bool), Refused>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if !self.admit(Instant::now()) {
            return Err(Refused::Open);
        }
        let r = match tokio::time::timeout(timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Refused::Failed(e)),
            Err(_) => Err(Refused::TimedOut(timeout)),
        };
        match r {
            Ok(v) => Ok((v, self.succeeded())),
            Err(e) => {
                self.failed(Instant::now());
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fails() -> redis::RedisResult<()> {
        Err(redis::RedisError::from((redis::ErrorKind::IoError, "down")))
    }

    #[tokio::test]
    async fn opens_after_failures_refuses_then_probes_and_closes() {
        let b = Breaker::new("test");
        let t = Duration::from_millis(50);
        for _ in 0..FAILURES {
            assert!(matches!(b.call(t, async { fails() }).await, Err(Refused::Failed(_))));
        }
        assert!(!b.is_closed(), "open after {FAILURES} failures in a row");
        // while open, nothing is even tried
        let tried = std::sync::atomic::AtomicBool::new(false);
        let r = b
            .call(t, async {
                tried.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            })
            .await;
        assert!(matches!(r, Err(Refused::Open)));
        assert!(!tried.load(std::sync::atomic::Ordering::SeqCst));
        // after the cool-down one probe goes through; a failed probe reopens at once
        tokio::time::sleep(COOL_DOWN).await;
        assert!(matches!(b.call(t, async { fails() }).await, Err(Refused::Failed(_))));
        assert!(matches!(b.call(t, async { Ok(()) }).await, Err(Refused::Open)));
        // a successful probe closes it and says it recovered; the next call is normal
        tokio::time::sleep(COOL_DOWN).await;
        assert!(matches!(b.call(t, async { Ok(1) }).await, Ok((1, true))));
        assert!(b.is_closed());
        assert!(matches!(b.call(t, async { Ok(2) }).await, Ok((2, false))));
    }

    #[tokio::test]
    async fn a_success_resets_the_count_and_a_slow_call_is_a_failure() {
        let b = Breaker::new("test");
        let t = Duration::from_millis(20);
        for _ in 0..FAILURES - 1 {
            let _ = b.call(t, async { fails() }).await;
        }
        assert!(b.call(t, async { Ok(()) }).await.is_ok());
        for _ in 0..FAILURES - 1 {
            let _ = b.call(t, async { fails() }).await;
        }
        assert!(b.is_closed(), "failures must be in a row");
        let slow = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        };
        assert!(matches!(b.call(t, slow).await, Err(Refused::TimedOut(_))));
        assert!(!b.is_closed());
    }
}
