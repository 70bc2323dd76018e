//! Retry policies: which failures are retried, and how long to wait before each retry.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::invoke::{FailureKind, TrapKind};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    /// `initialDelay * multiplier^(n-1)`
    Exponential,
    /// `initialDelay * n`
    Linear,
    /// `initialDelay` every time
    Fixed,
}

/// A resolved policy. `max_retries` counts retries, so a step runs at most `max_retries + 1` times.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub name: Option<String>,
    pub max_retries: u32,
    pub strategy: Strategy,
    pub initial_delay: Duration,
    pub max_delay: Duration,
    pub multiplier: f64,
    /// Each delay is scaled by a factor in `[1 - jitter, 1 + jitter]` so that clients failing
    /// together do not retry together.
    pub jitter: f64,
    pub retry_on: RetryOn,
}

/// The failures a policy retries, from its `retryableErrors`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RetryOn {
    pub statuses: BTreeSet<u16>,
    /// Status classes written as `5xx` (stored as 5).
    pub classes: BTreeSet<u16>,
    pub timeout: bool,
    pub connection: bool,
}

impl RetryOn {
    /// What `retryableErrors` means when it is left out: the failures that are transient
    /// by nature (throttling, gateways, unavailability, timeouts, dropped connections).
    pub fn transient() -> Self {
        RetryOn {
            statuses: [429, 502, 503, 504].into(),
            classes: BTreeSet::new(),
            timeout: true,
            connection: true,
        }
    }

    /// Parses one `retryableErrors` entry.
    pub fn add(&mut self, entry: &str) -> Result<(), String> {
        let entry = entry.trim();
        match entry.to_ascii_lowercase().as_str() {
            "timeout" => self.timeout = true,
            "connection" => self.connection = true,
            class if class.len() == 3 && class.ends_with("xx") => {
                let digit = class[..1]
                    .parse::<u16>()
                    .ok()
                    .filter(|d| (1..=5).contains(d))
                    .ok_or_else(|| format!("`{entry}` is not a status class like `5xx`"))?;
                self.classes.insert(digit);
            }
            code => {
                let status = code
                    .parse::<u16>()
                    .ok()
                    .filter(|s| (100..=599).contains(s))
                    .ok_or_else(|| {
                        format!(
                            "`{entry}` is not a retryable error: use an HTTP status code (\"503\"), a class (\"5xx\"), \"timeout\" or \"connection\""
                        )
                    })?;
                self.statuses.insert(status);
            }
        }
        Ok(())
    }

    pub fn matches(&self, kind: FailureKind) -> bool {
        match kind {
            FailureKind::Status(s) => {
                self.statuses.contains(&s) || self.classes.contains(&(s / 100))
            }
            FailureKind::Timeout | FailureKind::Trap(TrapKind::Deadline) => self.timeout,
            FailureKind::Connection => self.connection,
            // A guest that says its error is transient is retried under any policy that
            // retries at all; one that says it is not, never.
            FailureKind::Guest { retryable } => retryable,
            FailureKind::BodyTooLarge | FailureKind::Invalid | FailureKind::Trap(_) => false,
        }
    }
}

impl RetryPolicy {
    /// No retries: what a step gets when no policy applies.
    pub fn none() -> Self {
        RetryPolicy {
            name: None,
            max_retries: 0,
            strategy: Strategy::Exponential,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.0,
            retry_on: RetryOn::default(),
        }
    }

    /// Whether attempt number `attempt` (1-based) that failed with `kind` gets another try.
    pub fn should_retry(&self, attempt: u32, kind: FailureKind) -> bool {
        attempt <= self.max_retries && self.retry_on.matches(kind)
    }

    /// The wait before retry number `retry` (1-based). `jitter_seed` makes the jitter a pure
    /// function of the call (execution, step, attempt), so a replayed decision is identical.
    pub fn delay(&self, retry: u32, jitter_seed: u64) -> Duration {
        let base = self.initial_delay.as_secs_f64();
        let n = f64::from(retry.max(1));
        let raw = match self.strategy {
            Strategy::Exponential => base * self.multiplier.powf(n - 1.0),
            Strategy::Linear => base * n,
            Strategy::Fixed => base,
        };
        let unit = (splitmix64(jitter_seed) >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        let jittered = raw * (1.0 + self.jitter * (2.0 * unit - 1.0));
        let capped = jittered.min(self.max_delay.as_secs_f64()).max(0.0);
        Duration::from_secs_f64(if capped.is_finite() { capped } else { 0.0 })
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed_policy(jitter: f64) -> RetryPolicy {
        let mut retry_on = RetryOn::default();
        for e in ["500", "502", "503", "504"] {
            retry_on.add(e).unwrap();
        }
        RetryPolicy {
            name: Some("orchestration-retry-policy".into()),
            max_retries: 3,
            strategy: Strategy::Exponential,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
            multiplier: 2.0,
            jitter,
            retry_on,
        }
    }

    #[test]
    fn exponential_delays_double_and_cap() {
        let p = seed_policy(0.0);
        let delays: Vec<u64> = (1..=5).map(|n| p.delay(n, 7).as_millis() as u64).collect();
        assert_eq!(delays, vec![1000, 2000, 4000, 8000, 10000]);
    }

    #[test]
    fn jitter_stays_within_bounds_and_never_exceeds_the_cap() {
        let p = seed_policy(0.5);
        for seed in 0..200 {
            let d = p.delay(2, seed).as_secs_f64();
            assert!((1.0..=3.0).contains(&d), "{d}");
            assert!(p.delay(10, seed) <= Duration::from_secs(10));
        }
        assert_ne!(p.delay(2, 1), p.delay(2, 2));
    }

    #[test]
    fn only_listed_failures_are_retried_and_only_max_retries_times() {
        let p = seed_policy(0.0);
        assert!(p.should_retry(1, FailureKind::Status(503)));
        assert!(p.should_retry(3, FailureKind::Status(500)));
        assert!(!p.should_retry(4, FailureKind::Status(500)));
        assert!(!p.should_retry(1, FailureKind::Status(404)));
        assert!(!p.should_retry(1, FailureKind::Timeout));
        let mut on = RetryOn::default();
        on.add("timeout").unwrap();
        on.add("4xx").unwrap();
        assert!(on.matches(FailureKind::Timeout) && on.matches(FailureKind::Status(409)));
        assert!(!on.matches(FailureKind::Connection));
        assert!(on.add("teapot").is_err() && on.add("700").is_err());
    }
}
