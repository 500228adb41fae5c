//! # ehrgate-metrics
//!
//! The instruments behind `/metrics` (docs/operations.md), kept where the work
//! happens and read once per scrape:
//!
//! - [`Histogram`]: a lock-free latency histogram (fixed buckets, atomic counts),
//!   encoded as a Prometheus histogram by `prometheus-client`, with a quantile
//!   estimate for the console;
//! - [`listener`], [`table`], [`workflow`]: the figures of one MLLP or webhook
//!   listener, one lake table, one workflow, found by name in a process-wide
//!   directory (created on first use; the scrape lists them all);
//! - [`Labeled`]: one metric family with one labelled sample per listener, table...,
//!   built at scrape time from those figures.
//!
//! [`set_enabled`]`(false)` (`[admin] metrics = false`) turns the per-unit
//! recording (latency histograms, listener counters) into no-ops, so that its
//! cost on the hot path can be measured against nothing (the commit-duration
//! histograms go quiet too); the per-commit table counters and the flow's own
//! counters (serve's status line) stay.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turn per-unit recording on or off (on by default).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Upper bounds, in seconds, of the latency buckets: 0.5 ms to 5 min.
pub const LATENCY_BUCKETS: [f64; 17] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// A latency histogram: [`LATENCY_BUCKETS`] plus `+Inf`. Observing is a few
/// relaxed atomic adds; no lock.
#[derive(Debug)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last is `+Inf`.
    counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: std::array::from_fn(|_| AtomicU64::new(0)), sum_micros: AtomicU64::new(0) }
    }
}

impl Histogram {
    /// Record `d` unless metrics are off ([`set_enabled`]).
    pub fn observe(&self, d: Duration) {
        if enabled() {
            self.record(d);
        }
    }

    /// Record `d` whatever [`set_enabled`] says (a histogram used for a
    /// computation, not as a metric).
    pub fn record(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS.iter().position(|&b| s <= b).unwrap_or(LATENCY_BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(d.as_micros().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Cumulative (upper bound, count) pairs, `+Inf` last.
    fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut acc = 0;
        self.counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                acc += c.load(Ordering::Relaxed);
                (LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), acc)
            })
            .collect()
    }

    /// The `q` quantile (0..=1) estimated as Prometheus' `histogram_quantile`
    /// does: linear within the bucket that holds it. `None` before any
    /// observation; the largest finite bound when it falls in `+Inf`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let buckets = self.cumulative();
        let total = buckets.last().map(|b| b.1).unwrap_or(0);
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut lower = (0.0, 0u64);
        for &(bound, n) in &buckets {
            if n as f64 >= rank {
                if bound.is_infinite() {
                    return Some(lower.0);
                }
                let within = (n - lower.1) as f64;
                let frac = if within > 0.0 { (rank - lower.1 as f64) / within } else { 1.0 };
                return Some(lower.0 + (bound - lower.0) * frac);
            }
            lower = (bound, n);
        }
        Some(lower.0)
    }
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // (the encoder accumulates: it takes each bucket's own count)
        let buckets: Vec<(f64, u64)> =
            self.counts.iter().enumerate().map(|(i, c)| (LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), c.load(Ordering::Relaxed))).collect();
        let count = buckets.iter().map(|b| b.1).sum();
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// A shared histogram, so a scrape can list it without copying.
#[derive(Debug, Clone, Default)]
pub struct SharedHistogram(pub Arc<Histogram>);

impl EncodeMetric for SharedHistogram {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// A value read at scrape time.
#[derive(Debug, Clone, Copy)]
pub enum Value {
    Counter(u64),
    Gauge(i64),
}

impl EncodeMetric for Value {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        match self {
            Value::Counter(v) => encoder.encode_counter::<NoLabelSet, _, u64>(v, None),
            Value::Gauge(v) => encoder.encode_gauge(v),
        }
    }

    fn metric_type(&self) -> MetricType {
        match self {
            Value::Counter(_) => MetricType::Counter,
            Value::Gauge(_) => MetricType::Gauge,
        }
    }
}

/// One metric family: a sample per label set, all of one type.
#[derive(Debug)]
pub struct Labeled<M> {
    kind: MetricType,
    samples: Vec<(Vec<(String, String)>, M)>,
}

impl<M: EncodeMetric> Labeled<M> {
    pub fn new(kind: MetricType) -> Self {
        Labeled { kind, samples: Vec::new() }
    }

    pub fn add(&mut self, labels: &[(&str, &str)], m: M) {
        self.samples.push((labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), m));
    }
}

impl Labeled<Value> {
    pub fn counters() -> Self {
        Labeled::new(MetricType::Counter)
    }

    pub fn gauges() -> Self {
        Labeled::new(MetricType::Gauge)
    }
}

impl Labeled<SharedHistogram> {
    pub fn histograms() -> Self {
        Labeled::new(MetricType::Histogram)
    }
}

impl<M: EncodeMetric> EncodeMetric for Labeled<M> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, m) in &self.samples {
            m.encode(encoder.encode_family(&labels.as_slice())?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        self.kind
    }

    fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// The answers a listener gives, as counted: HL7 acknowledgement codes, MLLP
/// release 2 commit ACK/NAK, webhook HTTP statuses; `none` when no answer was due
/// (MSH-15 says never).
pub const ANSWERS: [&str; 12] = ["AA", "AE", "AR", "CA", "CE", "CR", "ACK", "NAK", "202", "422", "503", "none"];

/// One listener's figures.
#[derive(Debug, Default)]
pub struct ListenerMetrics {
    /// Units received (frames that became units; batch messages count one each).
    pub received: AtomicU64,
    answers: [AtomicU64; ANSWERS.len()],
    /// From the unit's last byte read to its answer written (MLLP), or to the
    /// HTTP answer decided (webhooks).
    pub answer_latency: SharedHistogram,
    info: Mutex<ListenerInfo>,
}

/// What a listener is, for the console.
#[derive(Debug, Default, Clone)]
pub struct ListenerInfo {
    pub kind: String,
    pub bind: String,
    pub adapter: String,
}

impl ListenerMetrics {
    /// Count one unit received.
    pub fn unit_received(&self) {
        if enabled() {
            self.received.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Count one answer (`code` from [`ANSWERS`]; others count as `none`).
    pub fn answered(&self, code: &str) {
        if !enabled() {
            return;
        }
        let i = ANSWERS.iter().position(|a| *a == code).unwrap_or(ANSWERS.len() - 1);
        self.answers[i].fetch_add(1, Ordering::Relaxed);
    }

    /// (code, count) of every answer given at least once.
    pub fn answers(&self) -> Vec<(&'static str, u64)> {
        ANSWERS.iter().zip(&self.answers).map(|(a, n)| (*a, n.load(Ordering::Relaxed))).filter(|(_, n)| *n > 0).collect()
    }

    pub fn describe(&self, info: ListenerInfo) {
        *self.info.lock().unwrap_or_else(|p| p.into_inner()) = info;
    }

    pub fn info(&self) -> ListenerInfo {
        self.info.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// One lake table's writes.
#[derive(Debug, Default)]
pub struct TableMetrics {
    /// Commits that landed.
    pub commits: AtomicU64,
    /// Commits that failed (after the writer's own retries).
    pub commit_errors: AtomicU64,
    /// Rows in the commits that landed (a MERGE counts the rows it was given).
    pub rows: AtomicU64,
    /// Attempts that lost to another writer and were retried on the new version.
    pub conflicts_retried: AtomicU64,
    /// Silver by deletion vectors: rows of the id index loaded from where it is
    /// stored beside the table, ids read from data files to build or catch it up,
    /// and times it was stored.
    pub id_index_rows_loaded: AtomicU64,
    pub id_index_rows_read: AtomicU64,
    pub id_index_stores: AtomicU64,
    /// Each commit, from its rows collected to its version written (retries included).
    pub commit_latency: SharedHistogram,
}

/// One workflow's runs.
#[derive(Debug, Default)]
pub struct WorkflowMetrics {
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    /// From the trigger's receipt to the run's final state.
    pub completion_latency: SharedHistogram,
}

type Directory<T> = LazyLock<Mutex<BTreeMap<String, Arc<T>>>>;

static LISTENERS: Directory<ListenerMetrics> = LazyLock::new(Default::default);
static TABLES: Directory<TableMetrics> = LazyLock::new(Default::default);
static WORKFLOWS: Directory<WorkflowMetrics> = LazyLock::new(Default::default);

fn entry<T: Default>(dir: &Directory<T>, name: &str) -> Arc<T> {
    let mut d = dir.lock().unwrap_or_else(|p| p.into_inner());
    d.entry(name.to_string()).or_default().clone()
}

fn all<T>(dir: &Directory<T>) -> Vec<(String, Arc<T>)> {
    dir.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The figures of listener `name` (created on first use).
pub fn listener(name: &str) -> Arc<ListenerMetrics> {
    entry(&LISTENERS, name)
}

/// The figures of the lake table at `path` (`silver/patient`).
pub fn table(path: &str) -> Arc<TableMetrics> {
    entry(&TABLES, path)
}

/// The figures of workflow `name`.
pub fn workflow(name: &str) -> Arc<WorkflowMetrics> {
    entry(&WORKFLOWS, name)
}

pub fn listeners() -> Vec<(String, Arc<ListenerMetrics>)> {
    all(&LISTENERS)
}

pub fn tables() -> Vec<(String, Arc<TableMetrics>)> {
    all(&TABLES)
}

pub fn workflows() -> Vec<(String, Arc<WorkflowMetrics>)> {
    all(&WORKFLOWS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    #[test]
    fn histogram_buckets_sum_and_quantiles() {
        let h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for ms in [1, 2, 3, 4, 40] {
            h.observe(Duration::from_millis(ms));
        }
        assert_eq!(h.count(), 5);
        let c = h.cumulative();
        // <= 1 ms: one; <= 2.5 ms: two; <= 5 ms: four; <= 50 ms: five.
        assert_eq!(c[1], (0.001, 1));
        assert_eq!(c[2], (0.0025, 2));
        assert_eq!(c[3], (0.005, 4));
        assert_eq!(c[6], (0.05, 5));
        assert_eq!(c.last().unwrap().1, 5);
        let p50 = h.quantile(0.5).unwrap();
        assert!((0.0025..=0.005).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99).unwrap();
        assert!((0.025..=0.05).contains(&p99), "{p99}");
        h.observe(Duration::from_secs(1000));
        assert_eq!(h.quantile(1.0), Some(300.0), "past the last bound: the last bound");
    }

    #[test]
    fn labelled_families_encode_as_openmetrics() {
        let mut reg = Registry::with_prefix("t");
        let mut c = Labeled::counters();
        c.add(&[("listener", "adt"), ("code", "AA")], Value::Counter(3));
        c.add(&[("listener", "adt"), ("code", "AE")], Value::Counter(1));
        reg.register("acks", "answers", c);
        let mut h = Labeled::histograms();
        let one = SharedHistogram::default();
        one.0.observe(Duration::from_millis(3));
        one.0.observe(Duration::from_millis(30));
        h.add(&[("listener", "adt")], one);
        reg.register("ack_latency_seconds", "latency", h);
        let mut out = String::new();
        encode(&mut out, &reg).unwrap();
        assert!(out.contains("t_acks_total{listener=\"adt\",code=\"AA\"} 3"), "{out}");
        assert!(out.contains("t_acks_total{listener=\"adt\",code=\"AE\"} 1"), "{out}");
        assert!(out.contains("# TYPE t_ack_latency_seconds histogram"), "{out}");
        assert!(out.contains("t_ack_latency_seconds_bucket{le=\"0.005\",listener=\"adt\"} 1") || out.contains("t_ack_latency_seconds_bucket{listener=\"adt\",le=\"0.005\"} 1"), "{out}");
        assert!(out.contains("t_ack_latency_seconds_count{listener=\"adt\"} 2"), "{out}");
        assert!(out.contains("t_ack_latency_seconds_bucket{le=\"+Inf\",listener=\"adt\"} 2") || out.contains("t_ack_latency_seconds_bucket{listener=\"adt\",le=\"+Inf\"} 2"), "cumulative: {out}");
    }

    #[test]
    fn answers_are_counted_by_code() {
        let l = listener("test-answers");
        l.answered("AA");
        l.answered("AA");
        l.answered("XX");
        assert_eq!(l.answers(), vec![("AA", 2), ("none", 1)]);
        assert!(Arc::ptr_eq(&l, &listener("test-answers")));
    }
}
