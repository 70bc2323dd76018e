//! OpenTelemetry export of Orca's spans (the `otel` cargo feature, off by default).
//!
//! The spans Orca already records for its logs (`execution`, `attempt`, `compensation`,
//! `wasm_invocation`) become OpenTelemetry spans, batched and sent over OTLP/HTTP (protobuf)
//! with the resource `service.name = orca`. Nothing is exported unless an endpoint is named,
//! so a build with the feature behaves like one without until it is configured.

use opentelemetry::InstrumentationScope;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{ExporterBuildError, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

/// The OTLP variables that name a collector, most specific first. The exporter reads them
/// itself, with the specification's rules; Orca only needs to know whether one is set.
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// Where spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A collector's base URL, taken the way `OTEL_EXPORTER_OTLP_ENDPOINT` is: spans are
    /// posted to `/v1/traces` under it.
    Base(String),
    /// Whatever the standard variables say (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` verbatim,
    /// else `OTEL_EXPORTER_OTLP_ENDPOINT` plus `/v1/traces`), resolved by the exporter.
    Environment,
}

impl Endpoint {
    /// `flag` (`--otel-endpoint`) wins over the environment. `None` when neither names a
    /// collector: then nothing is exported. Empty values count as unset, as the OTLP
    /// specification says.
    pub fn resolve(flag: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Option<Endpoint> {
        if let Some(url) = flag.filter(|u| !u.is_empty()) {
            return Some(Endpoint::Base(url.to_string()));
        }
        ENDPOINT_VARS
            .iter()
            .any(|var| env(var).is_some_and(|v| !v.is_empty()))
            .then_some(Endpoint::Environment)
    }

    /// The URL given to the exporter, which uses it verbatim; `None` lets it read the
    /// environment.
    fn traces_url(&self) -> Option<String> {
        match self {
            Endpoint::Base(base) => Some(format!("{}/v1/traces", base.trim_end_matches('/'))),
            Endpoint::Environment => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OpenTelemetry exporter: {0}")]
    Build(#[from] ExporterBuildError),
    #[error("flushing OpenTelemetry spans: {0}")]
    Shutdown(#[from] OTelSdkError),
}

/// Exports spans while it lives. [`Telemetry::shutdown`], or dropping it, sends what is still
/// buffered: spans are batched for seconds, and a short `orca run` ends well before that.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    tracer: SdkTracer,
}

impl Telemetry {
    /// Builds the exporter; nothing is sent until spans end.
    pub fn start(endpoint: &Endpoint) -> Result<Telemetry, TelemetryError> {
        let builder = SpanExporter::builder().with_http();
        let builder = match endpoint.traces_url() {
            Some(url) => builder.with_endpoint(url),
            None => builder,
        };
        let exporter = builder.build()?;
        let provider = SdkTracerProvider::builder()
            // The builder's detectors keep OTEL_RESOURCE_ATTRIBUTES; the service is Orca.
            .with_resource(Resource::builder().with_service_name("orca").build())
            // The batch processor exports from its own thread, so no tokio runtime is needed
            // and the CLI's runtime can be dropped before the last spans are flushed.
            .with_batch_exporter(exporter)
            .build();
        let scope = InstrumentationScope::builder(env!("CARGO_PKG_NAME"))
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let tracer = provider.tracer_with_scope(scope);
        Ok(Telemetry {
            provider: Some(provider),
            tracer,
        })
    }

    /// A layer turning Orca's spans into OpenTelemetry spans for this exporter.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        // Only Orca's own spans: the exporter's HTTP client and the SDK log through `tracing`
        // too, and exporting those would feed the exporter its own traffic.
        let orca_only = Targets::new()
            .with_target("orca_runtime", tracing::Level::INFO)
            .with_target("orca", tracing::Level::INFO);
        tracing_opentelemetry::layer()
            .with_tracer(self.tracer.clone())
            .with_filter(orca_only)
    }

    /// Sends the buffered spans and stops the exporter, waiting at most the SDK's 5 seconds
    /// when the collector does not answer.
    pub fn shutdown(mut self) -> Result<(), TelemetryError> {
        match self.provider.take() {
            Some(provider) => Ok(provider.shutdown()?),
            None => Ok(()),
        }
    }
}

impl Drop for Telemetry {
    /// The safety net for paths that never reach `shutdown` (an early return, a panic).
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn nothing_is_exported_without_an_endpoint() {
        assert_eq!(Endpoint::resolve(None, env(&[])), None);
        assert_eq!(
            Endpoint::resolve(Some(""), env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")])),
            None
        );
    }

    #[test]
    fn the_flag_overrides_the_environment() {
        let vars = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318")];
        let endpoint = Endpoint::resolve(Some("http://flag:4318/"), env(&vars)).unwrap();
        assert_eq!(endpoint, Endpoint::Base("http://flag:4318/".into()));
        assert_eq!(
            endpoint.traces_url().as_deref(),
            Some("http://flag:4318/v1/traces")
        );
    }

    #[test]
    fn either_standard_variable_turns_export_on() {
        for var in ENDPOINT_VARS {
            let vars = [(var, "http://collector:4318")];
            let endpoint = Endpoint::resolve(None, env(&vars)).unwrap();
            assert_eq!(endpoint, Endpoint::Environment);
            assert_eq!(endpoint.traces_url(), None);
        }
    }
}
