//! The range of every number and duration a definition may hold, in one place. Each bound
//! says why it is there; the README's "Ranges" table lists them for users. A value outside
//! its range is a load error naming the file, line and field, never a panic or an overflow
//! later (a wait of 1e30 seconds does not fit in a `Duration`).

use std::time::Duration;

use serde_saphyr::Spanned;

use crate::definition::{DocPosition, LoadError, Text};

/// An inclusive range and how to show its bounds.
pub(crate) struct Range<T> {
    pub(crate) min: T,
    pub(crate) max: T,
}

const fn seconds(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A call's `timeout`: long enough for any synchronous API, short enough that a stuck call
/// is noticed the same day.
pub(crate) const CALL_TIMEOUT: Range<Duration> = Range {
    min: Duration::from_millis(1),
    max: seconds(3_600),
};
/// `backoff.initialDelay` and `backoff.maxDelay`: a retry later than a day is a new attempt
/// at the business process, not a retry.
pub(crate) const RETRY_DELAY: Range<Duration> = Range {
    min: Duration::ZERO,
    max: seconds(86_400),
};
/// `maxRetries`: each retry is an execution's work and a call on a service.
pub(crate) const MAX_RETRIES: Range<u32> = Range { min: 0, max: 100 };
/// `backoff.multiplier`: below 1 delays would shrink.
pub(crate) const MULTIPLIER: Range<f64> = Range {
    min: 1.0,
    max: 100.0,
};
/// `backoff.jitter`: a fraction of each delay.
pub(crate) const JITTER: Range<f64> = Range { min: 0.0, max: 1.0 };
/// A `wait` state's `seconds`: up to a year, as Step Functions allows.
pub(crate) const WAIT_SECONDS: Range<f64> = Range {
    min: 0.0,
    max: 31_536_000.0,
};
/// An orchestration step's `step` number (it names the result `stepN`).
pub(crate) const STEP_NUMBER: Range<u32> = Range {
    min: 0,
    max: 1_000_000,
};
/// A `StateStore`'s `ttl`.
pub(crate) const STORE_TTL: Range<Duration> = Range {
    min: seconds(1),
    max: seconds(366 * 86_400),
};
/// A component's `limits.deadline` per call (a server may set a lower ceiling).
pub(crate) const COMPONENT_DEADLINE: Range<Duration> = Range {
    min: Duration::from_millis(1),
    max: seconds(3_600),
};
/// A component's `limits.memory`: one Wasm page up to what the host's pool reserves.
pub(crate) const COMPONENT_MEMORY: Range<u64> = Range {
    min: 64 << 10,
    max: crate::component::MAX_MEMORY_BYTES,
};
/// A component's `limits.fuel`: at least one instruction.
pub(crate) const COMPONENT_FUEL: Range<u64> = Range {
    min: 1,
    max: u64::MAX,
};
/// A component's `limits.maxResult`.
pub(crate) const COMPONENT_RESULT: Range<u64> = Range {
    min: 1,
    max: 64 << 20,
};

/// How a bound is written back to the user: in the unit they wrote it in.
pub(crate) trait Shown: PartialOrd + Copy {
    fn shown(self) -> String;
}

impl Shown for Duration {
    fn shown(self) -> String {
        if self.is_zero() {
            "0s".to_string()
        } else {
            humantime::format_duration(self).to_string()
        }
    }
}

macro_rules! shown_as_display {
    ($($t:ty),*) => {$(
        impl Shown for $t {
            fn shown(self) -> String {
                self.to_string()
            }
        }
    )*};
}
shown_as_display!(u32, u64, f64);

impl<T: Shown> Range<T> {
    /// `value` if it lies within the range (a NaN lies nowhere); else an error at `at`.
    pub(crate) fn check<S>(
        &self,
        pos: &DocPosition,
        at: &Spanned<S>,
        field: impl Into<String>,
        value: T,
    ) -> Result<T, LoadError> {
        if self.min <= value && value <= self.max {
            return Ok(value);
        }
        Err(pos
            .error_at(
                at,
                field,
                format!(
                    "{} is out of range: it must be from {} to {}",
                    value.shown(),
                    self.min.shown(),
                    self.max.shown()
                ),
            )
            .with_hint(format!(
                "use a value from {} to {}",
                self.min.shown(),
                self.max.shown()
            )))
    }
}

/// Parses `30s`, `1m30s`, `250ms`, `24h`, within `range`.
pub(crate) fn duration(
    pos: &DocPosition,
    text: &Text,
    field: &str,
    range: &Range<Duration>,
) -> Result<Duration, LoadError> {
    let parsed = humantime::parse_duration(text.value.trim()).map_err(|e| {
        pos.error_at(
            text,
            field,
            format!("`{}` is not a duration: {e}", text.value),
        )
        .with_hint("write a number with a unit, like `500ms`, `10s` or `24h`")
    })?;
    range.check(pos, text, field, parsed)
}
