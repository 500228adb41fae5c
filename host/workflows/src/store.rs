//! The runs' states read back from `ops/workflow_runs`.

use std::collections::HashMap;

use ehrgate_lake::arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use ehrgate_lake::arrow::compute::cast;
use ehrgate_lake::arrow::datatypes::DataType;
use ehrgate_lake::{Lake, LakeError, Table, WorkflowRunRow, sql};

const COLUMNS: &str = "run_id, CAST(recorded_at AS BIGINT) AS recorded_at, workflow, status, attempts, \"trigger\", source, lineage, \
    CAST(received_at AS BIGINT) AS received_at, patient_ref, encounter_ref, adapter, action, input, \
    CAST(deadline_at AS BIGINT) AS deadline_at, CAST(next_attempt_at AS BIGINT) AS next_attempt_at, CAST(completed_at AS BIGINT) AS completed_at, error, response";

fn column(b: &RecordBatch, name: &str, ty: &DataType) -> Result<ArrayRef, LakeError> {
    let c = b.column_by_name(name).ok_or_else(|| LakeError::Sql(format!("ops/workflow_runs has no column {name}")))?;
    cast(c, ty).map_err(|e| LakeError::Sql(e.to_string()))
}

/// Every state row (all of a run's history), in no particular order.
pub async fn all_rows(lake: &Lake) -> Result<Vec<WorkflowRunRow>, LakeError> {
    if lake.table(Table::WorkflowRuns.path()).await?.is_none() {
        return Ok(Vec::new());
    }
    let batches = sql::query_one(lake, Table::WorkflowRuns.path(), &format!("SELECT {COLUMNS} FROM ops_workflow_runs")).await?;
    let mut out = Vec::new();
    for b in &batches {
        let s = |n: &str| -> Result<StringArray, LakeError> {
            Ok(column(b, n, &DataType::Utf8)?.as_any().downcast_ref::<StringArray>().cloned().expect("cast to Utf8"))
        };
        let i = |n: &str| -> Result<Int64Array, LakeError> {
            Ok(column(b, n, &DataType::Int64)?.as_any().downcast_ref::<Int64Array>().cloned().expect("cast to Int64"))
        };
        let (run_id, recorded_at, workflow, status, attempts) = (s("run_id")?, i("recorded_at")?, s("workflow")?, s("status")?, i("attempts")?);
        let (trigger, source, lineage, received_at) = (s("trigger")?, s("source")?, s("lineage")?, i("received_at")?);
        let (patient_ref, encounter_ref, adapter, action, input) = (s("patient_ref")?, s("encounter_ref")?, s("adapter")?, s("action")?, s("input")?);
        let (deadline_at, next_attempt_at, completed_at, error, response) = (i("deadline_at")?, i("next_attempt_at")?, i("completed_at")?, s("error")?, s("response")?);
        let opt_s = |a: &StringArray, k: usize| (!a.is_null(k)).then(|| a.value(k).to_string());
        let opt_i = |a: &Int64Array, k: usize| (!a.is_null(k)).then(|| a.value(k));
        for k in 0..b.num_rows() {
            out.push(WorkflowRunRow {
                run_id: run_id.value(k).into(),
                recorded_at: recorded_at.value(k),
                workflow: workflow.value(k).into(),
                status: status.value(k).into(),
                attempts: attempts.value(k),
                trigger: trigger.value(k).into(),
                source: source.value(k).into(),
                lineage: lineage.value(k).into(),
                received_at: received_at.value(k),
                patient_ref: opt_s(&patient_ref, k),
                encounter_ref: opt_s(&encounter_ref, k),
                adapter: adapter.value(k).into(),
                action: action.value(k).into(),
                input: input.value(k).into(),
                deadline_at: deadline_at.value(k),
                next_attempt_at: opt_i(&next_attempt_at, k),
                completed_at: opt_i(&completed_at, k),
                error: opt_s(&error, k),
                response: opt_s(&response, k),
            });
        }
    }
    Ok(out)
}

/// Each run's current state: its latest row (on a tie, a final state wins).
pub fn latest(rows: Vec<WorkflowRunRow>) -> Vec<WorkflowRunRow> {
    let mut by_run: HashMap<String, WorkflowRunRow> = HashMap::new();
    for r in rows {
        match by_run.get(&r.run_id) {
            Some(cur) if (cur.recorded_at, cur.is_final()) >= (r.recorded_at, r.is_final()) => {}
            _ => {
                by_run.insert(r.run_id.clone(), r);
            }
        }
    }
    let mut v: Vec<WorkflowRunRow> = by_run.into_values().collect();
    v.sort_by(|a, b| (a.received_at, &a.run_id).cmp(&(b.received_at, &b.run_id)));
    v
}

/// Each run's current state, read from the lake.
pub async fn current(lake: &Lake) -> Result<Vec<WorkflowRunRow>, LakeError> {
    Ok(latest(all_rows(lake).await?))
}
