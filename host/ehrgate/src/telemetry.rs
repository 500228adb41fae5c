//! Logs and traces (docs/operations.md, "Logs and traces").
//!
//! - Logs go to stderr, filtered by `EHRGATE_LOG` (an `EnvFilter`), as text, or
//!   as one JSON object per line with `EHRGATE_LOG_FORMAT=json`.
//! - Traces: with `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) set, the
//!   spans of the data path (a unit from receipt to its answer, the log append,
//!   the map of a group, the lake commit and each table's write) are exported to
//!   that OpenTelemetry collector over OTLP/HTTP (protobuf), batched, filtered by
//!   `EHRGATE_TRACE` (default `info`). The service name is `ehrgate` unless
//!   `OTEL_SERVICE_NAME` says otherwise.

use opentelemetry::trace::TracerProvider as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

const DEFAULT_LOG: &str = "warn,deltalake_core=error,buoyant_kernel=off,delta_kernel=off";
const DEFAULT_TRACE: &str = "info,deltalake_core=warn,buoyant_kernel=off,delta_kernel=off,opentelemetry=off,reqwest=off,hyper=off,h2=off";

/// Flushes the spans not yet exported when dropped (at the end of `main`).
pub struct Telemetry(Option<opentelemetry_sdk::trace::SdkTracerProvider>);

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.0.take()
            && let Err(e) = p.shutdown()
        {
            eprintln!("warning: flushing traces to the OTLP collector failed: {e}");
        }
    }
}

fn otlp_configured() -> bool {
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"].iter().any(|k| std::env::var(k).is_ok_and(|v| !v.trim().is_empty()))
}

/// Set up logging (and tracing when configured). Call before any async runtime
/// starts (the exporter's HTTP client is a blocking one, on its own thread).
pub fn init() -> Telemetry {
    let filter = EnvFilter::try_from_env("EHRGATE_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG));
    let json = std::env::var("EHRGATE_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().with_current_span(false).with_span_list(false).boxed()
    } else {
        fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).boxed()
    };
    let mut provider = None;
    let otel = if otlp_configured() {
        match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
            Ok(exporter) => {
                let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "ehrgate".into());
                let p = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(opentelemetry_sdk::Resource::builder().with_service_name(service).build())
                    .build();
                let tracer = p.tracer("ehrgate");
                provider = Some(p);
                let trace_filter = EnvFilter::try_from_env("EHRGATE_TRACE").unwrap_or_else(|_| EnvFilter::new(DEFAULT_TRACE));
                Some(tracing_opentelemetry::layer().with_tracer(tracer).with_filter(trace_filter))
            }
            Err(e) => {
                eprintln!("warning: OTLP trace export is configured but cannot start: {e}; no traces are exported");
                None
            }
        }
    } else {
        None
    };
    tracing_subscriber::registry().with(fmt.with_filter(filter)).with(otel).init();
    Telemetry(provider)
}
