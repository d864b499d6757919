//! Logs, traces and metrics for every binary, set up once.
//!
//! Logs always go to stderr (`RUST_LOG`, `TAGRELAY_LOG_FORMAT=json`).
//! Metrics are always readable in Prometheus' text format ([`render_metrics`],
//! served at `/metrics` beside `/healthz`), from the same instruments.
//! Traces and metrics are exported by OTLP/HTTP only when the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or the per-signal `…_TRACES_ENDPOINT` /
//! `…_METRICS_ENDPOINT`) variables are set; otherwise nothing is exported and
//! nothing fails. The exporters run on their own threads with a blocking HTTP
//! client (the async one panics outside a reactor, NOTES.md).

use std::sync::OnceLock;

use crate::event::FailureReason;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Keeps the exporters alive; flushes and shuts them down when dropped, so
/// the last spans of a stopping service are not lost.
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Telemetry {
    /// Whether traces are being exported.
    pub fn exporting(&self) -> bool {
        self.tracer.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(tracer) = self.tracer.take() {
            let _ = tracer.shutdown();
        }
        if let Some(meter) = self.meter.take() {
            let _ = meter.shutdown();
        }
    }
}

fn configured(signal: &str) -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    set("OTEL_EXPORTER_OTLP_ENDPOINT") || set(&format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"))
}

/// Installs logging and, when configured, OTLP trace and metric export, for
/// the process named `service` (the OpenTelemetry `service.name`, overridden
/// by `OTEL_SERVICE_NAME`).
pub fn init(service: &str) -> Telemetry {
    let name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service.to_string());
    let resource = Resource::builder().with_service_name(name).build();
    let tracer = if configured("TRACES") {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource.clone())
                    .build(),
            ),
            Err(e) => {
                eprintln!("OTLP trace export disabled: {e}");
                None
            }
        }
    } else {
        None
    };
    let mut meter = SdkMeterProvider::builder().with_resource(resource);
    match opentelemetry_prometheus::exporter()
        .with_registry(prometheus_registry().clone())
        .build()
    {
        Ok(reader) => meter = meter.with_reader(reader),
        Err(e) => eprintln!("Prometheus metrics disabled: {e}"),
    }
    if configured("METRICS") {
        match opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => meter = meter.with_periodic_exporter(exporter),
            Err(e) => eprintln!("OTLP metric export disabled: {e}"),
        }
    }
    let meter = meter.build();
    opentelemetry::global::set_meter_provider(meter.clone());
    let meter = Some(meter);

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("TAGRELAY_LOG_FORMAT").is_ok_and(|f| f == "json");
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed()
    };
    let traces = tracer.as_ref().map(|provider| {
        opentelemetry::global::set_tracer_provider(provider.clone());
        tracing_opentelemetry::layer().with_tracer(provider.tracer("tagrelay"))
    });
    let registry = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces);
    if let Err(e) = registry.try_init() {
        eprintln!("logging already initialised: {e}");
    }
    Telemetry { tracer, meter }
}

/// The registry the Prometheus reader fills on every scrape.
fn prometheus_registry() -> &'static prometheus::Registry {
    static REGISTRY: OnceLock<prometheus::Registry> = OnceLock::new();
    REGISTRY.get_or_init(prometheus::Registry::new)
}

/// Every instrument of this process in Prometheus' text exposition format
/// (`tagrelay_scans_total`, `tagrelay_scan_duration_seconds_bucket`, …),
/// read now: what `/metrics` answers a scrape with.
pub fn render_metrics() -> String {
    use prometheus::Encoder;
    let mut text = Vec::new();
    let encoder = prometheus::TextEncoder::new();
    if let Err(e) = encoder.encode(&prometheus_registry().gather(), &mut text) {
        return format!("# metrics could not be encoded: {e}\n");
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// Instrument name `tagrelay.scans`.
pub const SCANS: &str = "tagrelay.scans";
/// Instrument name `tagrelay.scan.duration`.
pub const SCAN_DURATION: &str = "tagrelay.scan.duration";
/// Instrument name `tagrelay.scan.tags`.
pub const SCAN_TAGS: &str = "tagrelay.scan.tags";
/// Instrument name `tagrelay.resolutions`.
pub const RESOLUTIONS: &str = "tagrelay.resolutions";
/// Instrument name `tagrelay.commits`.
pub const COMMITS: &str = "tagrelay.commits";
/// Instrument name `tagrelay.failures`.
pub const FAILURES: &str = "tagrelay.failures";
/// Instrument name `tagrelay.consumer.lag`.
pub const CONSUMER_LAG: &str = "tagrelay.consumer.lag";
/// Instrument name `tagrelay.push_to_commit.latency`.
pub const PUSH_TO_COMMIT: &str = "tagrelay.push_to_commit.latency";
/// Instrument name `tagrelay.config.polls`.
pub const CONFIG_POLLS: &str = "tagrelay.config.polls";
/// Instrument name `tagrelay.notifications`.
pub const NOTIFICATIONS: &str = "tagrelay.notifications";
/// Instrument name `tagrelay.notification.latency`.
pub const NOTIFICATION_LATENCY: &str = "tagrelay.notification.latency";
/// Every instrument name, for dashboards and their test.
pub const METRIC_NAMES: [&str; 11] = [
    SCANS,
    SCAN_DURATION,
    SCAN_TAGS,
    RESOLUTIONS,
    COMMITS,
    FAILURES,
    CONSUMER_LAG,
    PUSH_TO_COMMIT,
    CONFIG_POLLS,
    NOTIFICATIONS,
    NOTIFICATION_LATENCY,
];

/// The instruments an operator needs, created once from the global meter
/// (a no-op meter when export is not configured).
pub struct Metrics {
    /// Scans, by `outcome` (`changed`, `unchanged`, `failed`).
    pub scans: Counter<u64>,
    /// Scan duration in seconds.
    pub scan_duration: Histogram<f64>,
    /// Tags per repository after the last good scan, by `repository`.
    pub tags: Gauge<u64>,
    /// Policy evaluations, by `outcome` (`moved`, `unchanged`, `failed`).
    pub resolutions: Counter<u64>,
    /// Commits pushed.
    pub commits: Counter<u64>,
    /// Failures, by `stage` (`scan`, `resolve`, `commit`) and `reason`
    /// (a [`FailureReason`]): see [`Metrics::record_failure`].
    pub failures: Counter<u64>,
    /// Messages waiting for a stage's durable consumer, by `consumer`.
    pub consumer_lag: Gauge<u64>,
    /// Seconds from an image's push (its scan) to the commit that wrote it.
    pub push_to_commit: Histogram<f64>,
    /// Polls of a configuration source, by `source` and `outcome`
    /// (`synced`, `unchanged`, `rejected`: the tip is refused, counted at
    /// every poll while it is; `failed`: Git or the bus failed).
    pub config_polls: Counter<u64>,
    /// Notifications delivered, by provider `type`.
    pub notifications: Counter<u64>,
    /// Seconds from an event to its notification's delivery.
    pub notification_latency: Histogram<f64>,
}

impl Metrics {
    /// Counts one failure event of `stage`, labelled as the event is, so an
    /// alert can fire on rate limiting without firing on a bad policy.
    pub fn record_failure(&self, stage: &'static str, reason: FailureReason) {
        self.failures.add(
            1,
            &[
                KeyValue::new("stage", stage),
                KeyValue::new("reason", reason.as_str()),
            ],
        );
    }
}

impl Metrics {
    /// Counts one poll of the configuration source `source` with its
    /// `outcome`, so an alert can tell a refused configuration from an
    /// unreadable repository.
    pub fn record_config_poll(&self, source: &str, outcome: &'static str) {
        self.config_polls.add(
            1,
            &[
                KeyValue::new("source", source.to_string()),
                KeyValue::new("outcome", outcome),
            ],
        );
    }
}

/// The process's instruments.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let meter: Meter = opentelemetry::global::meter("tagrelay");
        Metrics {
            scans: meter
                .u64_counter(SCANS)
                .with_description("Registry scans")
                .build(),
            scan_duration: meter
                .f64_histogram(SCAN_DURATION)
                .with_unit("s")
                .with_description("Duration of one repository scan")
                .build(),
            tags: meter
                .u64_gauge(SCAN_TAGS)
                .with_description("Tags per repository")
                .build(),
            resolutions: meter
                .u64_counter(RESOLUTIONS)
                .with_description("Policy evaluations")
                .build(),
            commits: meter
                .u64_counter(COMMITS)
                .with_description("Commits pushed")
                .build(),
            failures: meter
                .u64_counter(FAILURES)
                .with_description("Failure events by stage and reason")
                .build(),
            consumer_lag: meter
                .u64_gauge(CONSUMER_LAG)
                .with_description("Messages pending for a stage's consumer")
                .build(),
            push_to_commit: meter
                .f64_histogram(PUSH_TO_COMMIT)
                .with_unit("s")
                .with_description("From the scan that found a tag to the commit that wrote it")
                .build(),
            config_polls: meter
                .u64_counter(CONFIG_POLLS)
                .with_description("Configuration source polls by outcome")
                .build(),
            notifications: meter
                .u64_counter(NOTIFICATIONS)
                .with_description("Notifications delivered, by provider type")
                .build(),
            notification_latency: meter
                .f64_histogram(NOTIFICATION_LATENCY)
                .with_unit("s")
                .with_description("From an event to the delivery of its notification")
                .build(),
        }
    })
}

/// A single attribute, for the instruments above.
pub fn attribute(key: &'static str, value: impl Into<opentelemetry::Value>) -> [KeyValue; 1] {
    [KeyValue::new(key, value)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Prometheus name the collector gives an OpenTelemetry instrument.
    fn prometheus_base(name: &str) -> String {
        name.replace('.', "_")
    }

    #[test]
    fn the_dashboard_reads_only_metrics_we_export_and_shows_them_all() {
        let dashboard = include_str!("../../deploy/grafana/tagrelay.json");
        let json: serde_json::Value = serde_json::from_str(dashboard).unwrap();
        let exprs: Vec<String> = json["panels"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["targets"].as_array().unwrap().iter())
            .map(|t| t["expr"].as_str().unwrap().to_string())
            .collect();
        let used: Vec<&str> = exprs
            .iter()
            .flat_map(|e| e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
            .filter(|w| w.starts_with("tagrelay_"))
            .collect();
        let known: Vec<String> = METRIC_NAMES.iter().map(|n| prometheus_base(n)).collect();
        for name in &used {
            let base = ["_seconds_bucket", "_total", "_bucket"]
                .iter()
                .fold(name.to_string(), |n, suffix| {
                    n.strip_suffix(suffix).map(str::to_string).unwrap_or(n)
                });
            assert!(
                known.contains(&base),
                "dashboard uses {name}, which no instrument exports"
            );
        }
        for name in &known {
            assert!(
                used.iter().any(|u| u.starts_with(name.as_str())),
                "{name} is exported but not on the dashboard"
            );
        }
    }
}
