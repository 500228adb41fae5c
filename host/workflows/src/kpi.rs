//! Per workflow: runs, success and error rates, event-to-completion latency
//! percentiles and the share completed within the SLA, from the runs' current
//! states.

use std::collections::BTreeMap;

use ehrgate_lake::WorkflowRunRow;

/// The KPIs of one workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct Kpi {
    pub workflow: String,
    pub runs: usize,
    pub succeeded: usize,
    pub failed: usize,
    /// Pending or retrying.
    pub open: usize,
    pub cancelled: usize,
    /// Of the finished runs (succeeded + failed).
    pub success_rate: f64,
    pub error_rate: f64,
    /// Trigger received -> succeeded, milliseconds (succeeded runs).
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Share of all runs (open ones count as late once past the SLA, and failed
    /// ones always) that succeeded within `sla_s` of their trigger.
    pub within_sla: f64,
    pub sla_s: u64,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

/// KPIs per workflow of `runs` (current states); `sla_s` by workflow name (default
/// 300 s); `now` in micros (an open run past its SLA at `now` is late).
pub fn compute(runs: &[WorkflowRunRow], sla_s: &BTreeMap<String, u64>, now: i64) -> Vec<Kpi> {
    let mut by: BTreeMap<&str, Vec<&WorkflowRunRow>> = BTreeMap::new();
    for r in runs {
        by.entry(r.workflow.as_str()).or_default().push(r);
    }
    by.into_iter()
        .map(|(w, rs)| {
            let sla = sla_s.get(w).copied().unwrap_or(300);
            let count = |s: &str| rs.iter().filter(|r| r.status == s).count();
            let (succeeded, failed, cancelled) = (count("succeeded"), count("failed"), count("cancelled"));
            let open = rs.len() - succeeded - failed - cancelled;
            let mut lat: Vec<f64> = rs
                .iter()
                .filter(|r| r.status == "succeeded")
                .filter_map(|r| r.completed_at.map(|c| (c - r.received_at) as f64 / 1000.0))
                .collect();
            lat.sort_by(|a, b| a.total_cmp(b));
            let sla_ms = sla as f64 * 1000.0;
            let in_sla = lat.iter().filter(|l| **l <= sla_ms).count();
            // Runs that can still make it (open, not yet past the SLA) are not counted.
            let undecided = rs.iter().filter(|r| !r.is_final() && ((now - r.received_at) as f64 / 1000.0) <= sla_ms).count();
            let decided = (rs.len() - undecided - cancelled).max(1);
            let finished = (succeeded + failed).max(1);
            Kpi {
                workflow: w.to_string(),
                runs: rs.len(),
                succeeded,
                failed,
                open,
                cancelled,
                success_rate: succeeded as f64 / finished as f64,
                error_rate: failed as f64 / finished as f64,
                p50_ms: percentile(&lat, 50.0),
                p95_ms: percentile(&lat, 95.0),
                p99_ms: percentile(&lat, 99.0),
                within_sla: in_sla as f64 / decided as f64,
                sla_s: sla,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(w: &str, status: &str, received: i64, completed: Option<i64>) -> WorkflowRunRow {
        WorkflowRunRow {
            run_id: format!("{w}-{received}"),
            recorded_at: completed.unwrap_or(received),
            workflow: w.into(),
            status: status.into(),
            attempts: 1,
            trigger: "ADT^A03".into(),
            source: "mllp:main".into(),
            lineage: "l".into(),
            received_at: received,
            patient_ref: None,
            encounter_ref: None,
            adapter: "epic".into(),
            action: "a".into(),
            input: "{}".into(),
            deadline_at: i64::MAX,
            next_attempt_at: None,
            completed_at: completed,
            error: None,
            response: None,
        }
    }

    #[test]
    fn rates_percentiles_and_the_sla() {
        let s = 1_000_000;
        let mut runs: Vec<WorkflowRunRow> = (0..98).map(|i| run("d", "succeeded", i * s, Some(i * s + (i + 1) * 1000))).collect();
        runs.push(run("d", "succeeded", 0, Some(400 * s)));
        runs.push(run("d", "failed", 5, Some(6)));
        let k = &compute(&runs, &BTreeMap::new(), 1_000 * s)[0];
        assert_eq!((k.runs, k.succeeded, k.failed, k.open), (100, 99, 1, 0));
        assert!((k.success_rate - 99.0 / 100.0).abs() < 1e-9);
        assert_eq!(k.p50_ms, Some(50.0));
        assert_eq!(k.p99_ms, Some(400_000.0), "the one late run");
        assert!((k.within_sla - 0.98).abs() < 1e-9, "98 of 100: one too late, one failed");
        // An open run within its SLA is not counted yet; past it, it is late.
        let open = vec![run("d", "succeeded", 0, Some(1000)), run("d", "retrying", 10 * s, None)];
        assert_eq!(compute(&open, &BTreeMap::new(), 20 * s)[0].within_sla, 1.0);
        assert_eq!(compute(&open, &BTreeMap::new(), 400 * s)[0].within_sla, 0.5);
    }
}
