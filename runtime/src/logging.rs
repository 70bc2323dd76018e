//! Log lines on stderr and, built with `otel`, spans exported over OTLP.

use crate::cli::{Cli, Command, LogFormat};

pub(crate) type BoxedLayer =
    Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// Log lines on stderr as `--log-format` says and, built with `otel` and given an endpoint,
/// spans exported over OTLP.
pub(crate) fn init_tracing(cli: &Cli) -> Result<TracingGuard, String> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let default_level = if matches!(cli.command, Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ORCA_LOG")
        .unwrap_or_else(|_| default_level.into());
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    // The level filter belongs to the log lines, not to the whole subscriber: exported spans
    // are at `info`, below the logs' default `warn`.
    let logs: BoxedLayer = match cli.log_format {
        LogFormat::Text => logs.with_filter(filter).boxed(),
        // Spans' fields (execution, step, component, ...) come along on every line.
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_filter(filter)
            .boxed(),
    };
    #[cfg(feature = "otel")]
    let (export, telemetry) = otel_export(cli)?.unzip();
    #[cfg(not(feature = "otel"))]
    let export: Option<BoxedLayer> = None;
    let layers: Vec<BoxedLayer> = std::iter::once(logs).chain(export).collect();
    tracing_subscriber::registry().with(layers).init();

    #[cfg(not(feature = "otel"))]
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        tracing::info!(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set, but this orca was built without the `otel` \
             feature: no spans are exported"
        );
    }
    Ok(TracingGuard {
        #[cfg(feature = "otel")]
        telemetry,
    })
}

/// The exporting layer when `--otel-endpoint` or the OTLP variables name a collector.
#[cfg(feature = "otel")]
pub(crate) fn otel_export(
    cli: &Cli,
) -> Result<Option<(BoxedLayer, orca_runtime::telemetry::Telemetry)>, String> {
    use orca_runtime::telemetry::{Endpoint, Telemetry};
    use tracing_subscriber::Layer as _;

    let Some(endpoint) = Endpoint::resolve(cli.otel_endpoint.as_deref(), |k| std::env::var(k).ok())
    else {
        return Ok(None);
    };
    let telemetry = Telemetry::start(&endpoint).map_err(|e| e.to_string())?;
    Ok(Some((telemetry.layer().boxed(), telemetry)))
}

/// What must outlive the work whose spans it exports.
pub(crate) struct TracingGuard {
    #[cfg(feature = "otel")]
    pub(crate) telemetry: Option<orca_runtime::telemetry::Telemetry>,
}

impl TracingGuard {
    /// Sends the spans still buffered: they go out in batches every few seconds, and a short
    /// `orca run` ends before the first.
    pub(crate) fn finish(self) {
        #[cfg(feature = "otel")]
        if let Some(telemetry) = self.telemetry
            && let Err(e) = telemetry.shutdown()
        {
            tracing::warn!("{e}");
        }
    }
}
