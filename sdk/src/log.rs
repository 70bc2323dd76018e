//! Structured logging into the host's log, tagged by the host with the execution and step.
//!
//! Use the macros ([`crate::info!`], [`crate::warn!`], ...) with `format!`-style arguments and,
//! after a `;`, `key = value` fields (any `Display` value):
//!
//! ```no_run
//! let (order_id, score) = ("o-1", 42);
//! orca_sdk::info!("scored order {order_id}");
//! orca_sdk::warn!("high score"; order_id = order_id, score = score);
//! ```
//!
//! or the functions ([`info`], [`log`], ...). Outside a component (unit tests on the host) the
//! lines go to stderr.

use std::fmt::Display;

use crate::__bindings::orca::plugin::log as wit;

/// A log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal events.
    Info,
    /// Something unexpected that the component handled.
    Warn,
    /// A failure.
    Error,
}

impl Level {
    fn to_wit(self) -> wit::Level {
        match self {
            Level::Trace => wit::Level::Trace,
            Level::Debug => wit::Level::Debug,
            Level::Info => wit::Level::Info,
            Level::Warn => wit::Level::Warn,
            Level::Error => wit::Level::Error,
        }
    }

    /// The level's name in lower case.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Logs `message` with `fields` at `level`.
pub fn log(level: Level, message: &str, fields: &[(&str, &dyn Display)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.to_string()))
        .collect();
    if cfg!(target_arch = "wasm32") {
        wit::log(level.to_wit(), message, &fields);
    } else {
        let fields: String = fields.iter().map(|(k, v)| format!(" {k}={v}")).collect();
        eprintln!("[{}] {message}{fields}", level.as_str());
    }
}

/// Logs at `trace`.
pub fn trace(message: &str, fields: &[(&str, &dyn Display)]) {
    log(Level::Trace, message, fields)
}

/// Logs at `debug`.
pub fn debug(message: &str, fields: &[(&str, &dyn Display)]) {
    log(Level::Debug, message, fields)
}

/// Logs at `info`.
pub fn info(message: &str, fields: &[(&str, &dyn Display)]) {
    log(Level::Info, message, fields)
}

/// Logs at `warn`.
pub fn warn(message: &str, fields: &[(&str, &dyn Display)]) {
    log(Level::Warn, message, fields)
}

/// Logs at `error`.
pub fn error(message: &str, fields: &[(&str, &dyn Display)]) {
    log(Level::Error, message, fields)
}

#[doc(hidden)]
#[macro_export]
macro_rules! __orca_log {
    ($level:expr, $fmt:literal $(, $arg:expr)* ; $($key:ident = $value:expr),+ $(,)?) => {
        $crate::log::log(
            $level,
            &::std::format!($fmt $(, $arg)*),
            &[$((::std::stringify!($key), &$value as &dyn ::std::fmt::Display)),+],
        )
    };
    ($level:expr, $fmt:literal $(, $arg:expr)* $(,)?) => {
        $crate::log::log($level, &::std::format!($fmt $(, $arg)*), &[])
    };
}

/// Logs at `trace`: `trace!("fmt {}", args; key = value, ...)`.
#[macro_export]
macro_rules! trace {
    ($($t:tt)+) => { $crate::__orca_log!($crate::log::Level::Trace, $($t)+) };
}

/// Logs at `debug`: `debug!("fmt {}", args; key = value, ...)`.
#[macro_export]
macro_rules! debug {
    ($($t:tt)+) => { $crate::__orca_log!($crate::log::Level::Debug, $($t)+) };
}

/// Logs at `info`: `info!("fmt {}", args; key = value, ...)`.
#[macro_export]
macro_rules! info {
    ($($t:tt)+) => { $crate::__orca_log!($crate::log::Level::Info, $($t)+) };
}

/// Logs at `warn`: `warn!("fmt {}", args; key = value, ...)`.
#[macro_export]
macro_rules! warn {
    ($($t:tt)+) => { $crate::__orca_log!($crate::log::Level::Warn, $($t)+) };
}

/// Logs at `error`: `error!("fmt {}", args; key = value, ...)`.
#[macro_export]
macro_rules! error {
    ($($t:tt)+) => { $crate::__orca_log!($crate::log::Level::Error, $($t)+) };
}

#[cfg(test)]
mod tests {
    #[test]
    fn macros_expand() {
        let id = "o-1";
        crate::info!("plain");
        crate::info!("inline {id}");
        crate::warn!("args {} {}", 1, 2; order_id = id, n = 3);
        crate::error!("fields only"; reason = "x",);
        crate::log::debug("fn form", &[("k", &1)]);
    }
}
