//! `ehrgate sql` under governance: the principal's tables only, each seen through its
//! masking profile, and one audit row per query (text, principal, purpose, tables,
//! rows returned, outcome) whether it ran or was refused.

use std::sync::Arc;

use ehrgate_lake::arrow::array::{Array, ArrayRef, StringArray, TimestampMicrosecondArray};
use ehrgate_lake::arrow::compute::cast;
use ehrgate_lake::arrow::datatypes::DataType;
use ehrgate_lake::datafusion::common::ScalarValue;
use ehrgate_lake::datafusion::error::DataFusionError;
use ehrgate_lake::datafusion::functions::expr_fn::concat;
use ehrgate_lake::datafusion::logical_expr::{ColumnarValue, Expr, ScalarUDF, Volatility, create_udf};
use ehrgate_lake::datafusion::prelude::{DataFrame, col, lit, when};
use ehrgate_lake::sql::Gate;
use ehrgate_lake::{AuditRow, Lake, LakeError, arrow::array::RecordBatch};

use crate::GovernError;
use crate::mask::{Masker, Op};
use crate::policy::{Policy, Principal, Profile};

/// Who runs the query.
pub struct Reader<'a> {
    /// `None`: the operator at the console, reading as stored (allowed unless
    /// `require_principal`).
    pub principal: Option<&'a Principal>,
    /// For the audit row when there is no principal (the OS user).
    pub operator: String,
    pub purpose: Option<String>,
}

/// Run `query` for `reader`, audited. Refusals are audited too, then returned.
pub async fn query(lake: &Lake, policy: &Policy, reader: &Reader<'_>, query: &str) -> Result<Vec<RecordBatch>, GovernError> {
    let actor = match reader.principal {
        Some(p) => format!("sql:{}", p.name),
        None => format!("sql:{} (no principal)", reader.operator),
    };
    let profile = reader.principal.and_then(|p| p.profile.clone());
    let mut detail = serde_json::json!({"query": query, "profile": profile.as_ref().map(|p| p.name.clone()).unwrap_or_else(|| "none".into())});
    let result = run(lake, policy, reader, query).await;
    let (outcome, tables) = match &result {
        Ok((batches, tables)) => {
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            detail["rows"] = rows.into();
            (format!("ok: {rows} rows"), tables.clone())
        }
        Err(GovernError::Refused(why)) | Err(GovernError::Lake(LakeError::Refused(why))) => (format!("refused: {why}"), vec![]),
        Err(e) => (format!("error: {e}"), vec![]),
    };
    detail["tables"] = tables.clone().into();
    let row = AuditRow {
        at: ehrgate_lake::now_micros(),
        actor,
        action: "sql.query".into(),
        path: (!tables.is_empty()).then(|| tables.join(",")),
        outcome,
        purpose: reader.purpose.clone(),
        detail: Some(detail.to_string()),
        ..Default::default()
    };
    lake.audit(vec![row]).await?;
    result.map(|(b, _)| b)
}

async fn run(lake: &Lake, policy: &Policy, reader: &Reader<'_>, query: &str) -> Result<(Vec<RecordBatch>, Vec<String>), GovernError> {
    let Some(p) = reader.principal else {
        if policy.require_principal {
            return Err(GovernError::Refused("[governance] require_principal is set: name a principal with --as NAME".into()));
        }
        return Ok(ehrgate_lake::sql::query_gated(lake, query, &ehrgate_lake::sql::AsStored).await?);
    };
    if let Some(purpose) = &reader.purpose
        && !p.may_declare(purpose)
    {
        return Err(GovernError::Refused(format!("principal `{}` may not declare purpose `{purpose}` (allowed: {})", p.name, p.purposes.join(", "))));
    }
    if !p.purposes.is_empty() && reader.purpose.is_none() {
        return Err(GovernError::Refused(format!("principal `{}` must declare a purpose of use (--purpose; allowed: {})", p.name, p.purposes.join(", "))));
    }
    let masking = match &p.profile {
        Some(prof) => Some(Masking::new(prof.clone(), policy.masker(prof)?)),
        None => None,
    };
    let gate = PrincipalGate { principal: p, masking };
    Ok(ehrgate_lake::sql::query_gated(lake, query, &gate).await?)
}

struct PrincipalGate<'a> {
    principal: &'a Principal,
    masking: Option<Masking>,
}

impl Gate for PrincipalGate<'_> {
    fn check(&self, sql_name: &str) -> Result<(), String> {
        if self.principal.may_read(sql_name) {
            Ok(())
        } else {
            Err(format!("principal `{}` may not read {sql_name} (it may read: {})", self.principal.name, self.principal.tables.join(", ")))
        }
    }

    fn view(&self, sql_name: &str, stored: DataFrame) -> Result<DataFrame, DataFusionError> {
        match &self.masking {
            Some(m) => m.view(sql_name, stored),
            None => Ok(stored),
        }
    }
}

/// What `p` does to column `name` of table `sql_name` (also what `ehrgate catalog
/// sql` writes as Unity Catalog column masks).
pub(crate) fn column_mask(p: &Profile, sql_name: &str, name: &str, dt: &DataType, has_patient: bool) -> ColumnMask {
    let by_op = |op: Op| match op {
        Op::Keep => ColumnMask::Keep,
        Op::Pseudonym if name.ends_with("_ref") => ColumnMask::PseudonymRef,
        Op::Pseudonym => ColumnMask::Pseudonym,
        Op::Year => ColumnMask::Year,
        Op::Shift if matches!(dt, DataType::Timestamp(..)) => ColumnMask::Shift,
        // (redact, or an op meant for elements, or a shift of a non-timestamp)
        _ => ColumnMask::Redact,
    };
    if let Some(op) = p.columns.get(name) {
        return by_op(*op);
    }
    // Dates are masked where they are about a patient: the clinical tables, and any
    // table with a patient column (workflow runs).
    let clinical = has_patient || ["silver_", "bronze_", "quarantine_"].iter().any(|x| sql_name.starts_with(x));
    let masks_anything = p.ids != Op::Keep || p.dates != Op::Keep || !p.rules.is_empty() || p.columns.values().any(|o| *o != Op::Keep);
    match name {
        "resource" if sql_name.starts_with("silver_") => ColumnMask::Resource,
        // (the message as received, and action inputs and answers, hold everything a
        // profile hides elsewhere: removed unless the profile keeps them by name)
        "raw" | "input" | "response" if masks_anything => ColumnMask::Redact,
        "patient_ref" | "encounter_ref" if p.ids == Op::Pseudonym => ColumnMask::PseudonymRef,
        "id" if p.ids == Op::Pseudonym && sql_name.starts_with("silver_") => ColumnMask::Pseudonym,
        _ if clinical && matches!(dt, DataType::Timestamp(..)) && p.dates != Op::Keep => by_op(p.dates),
        _ => ColumnMask::Keep,
    }
}

/// What happens to one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnMask {
    Keep,
    Redact,
    Pseudonym,
    /// `Type/id` keeps its type.
    PseudonymRef,
    Year,
    Shift,
    /// The FHIR resource JSON, through the profile's element rules.
    Resource,
}

/// A profile as DataFusion expressions over a table's columns.
pub struct Masking {
    profile: Arc<Profile>,
    resource: ScalarUDF,
    pseudonym: ScalarUDF,
    pseudonym_ref: ScalarUDF,
    year: ScalarUDF,
    year_ts: ScalarUDF,
    shift: ScalarUDF,
}

impl Masking {
    pub fn new(profile: Arc<Profile>, masker: Masker) -> Masking {
        let key = masker.key.clone();
        let masker = Arc::new(masker);
        let k1 = key.clone();
        let k2 = key.clone();
        Masking {
            profile,
            resource: string_udf("ehrgate_mask_resource", move |s| masker.resource(s)),
            pseudonym: string_udf("ehrgate_pseudonym", move |s| Some(k1.pseudonym(s))),
            pseudonym_ref: string_udf("ehrgate_pseudonym_ref", move |s| Some(k2.pseudonym_ref(s))),
            year: string_udf("ehrgate_year", |s| Some(crate::mask::year_of(s))),
            shift: ts_udf("ehrgate_shift", move |t, patient| t + key.shift_days(patient) * crate::mask::DAY_MICROS),
            year_ts: ts_udf("ehrgate_year_ts", |t, _| crate::mask::year_start_micros(t)),
        }
    }

    /// `stored` with every column masked as the profile says (names and order kept).
    pub fn view(&self, sql_name: &str, stored: DataFrame) -> Result<DataFrame, DataFusionError> {
        let schema = stored.schema().clone();
        let has = |c: &str| schema.fields().iter().any(|f| f.name() == c);
        // Whose dates a shift follows: the row's patient.
        let patient = if has("patient_ref") {
            if sql_name == "silver_patient" && has("id") {
                concat(vec![lit("Patient/"), col("id")])
            } else {
                when(col("patient_ref").is_null(), lit("")).otherwise(col("patient_ref"))?
            }
        } else {
            lit("")
        };
        let mut exprs: Vec<Expr> = Vec::new();
        for f in schema.fields() {
            let name = f.name().as_str();
            let c = col(format!("\"{name}\""));
            let text = || ehrgate_lake::datafusion::prelude::cast(c.clone(), DataType::Utf8);
            let e = match column_mask(&self.profile, sql_name, name, f.data_type(), has("patient_ref")) {
                ColumnMask::Keep => c.clone(),
                ColumnMask::Redact => lit(ScalarValue::try_from(f.data_type())?),
                ColumnMask::Resource => self.resource.call(vec![text()]),
                ColumnMask::PseudonymRef => self.pseudonym_ref.call(vec![text()]),
                ColumnMask::Pseudonym => self.pseudonym.call(vec![text()]),
                ColumnMask::Year if matches!(f.data_type(), DataType::Timestamp(..)) => self.year_ts.call(vec![c.clone(), lit("")]),
                ColumnMask::Year => self.year.call(vec![text()]),
                ColumnMask::Shift => self.shift.call(vec![c.clone(), patient.clone()]),
            };
            exprs.push(e.alias(name));
        }
        stored.select(exprs)
    }
}

/// A UDF mapping strings to strings (null stays null; `None` from `f` is null).
fn string_udf(name: &str, f: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> ScalarUDF {
    let label = name.to_string();
    create_udf(
        name,
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let input = cast(&arrays[0], &DataType::Utf8)?;
            let input = input.as_any().downcast_ref::<StringArray>().ok_or_else(|| DataFusionError::Internal(format!("{label}: not strings")))?;
            let out: StringArray = input.iter().map(|v| v.and_then(&f)).collect();
            Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
        }),
    )
}

/// A UDF `(timestamp, patient) -> timestamp` computing in microseconds (no
/// nanosecond range limit: birth dates before 1677 exist).
fn ts_udf(name: &str, f: impl Fn(i64, &str) -> i64 + Send + Sync + 'static) -> ScalarUDF {
    // (the lake's timestamps: microseconds, UTC)
    let ts = DataType::Timestamp(ehrgate_lake::arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into()));
    let label = name.to_string();
    create_udf(
        name,
        vec![ts.clone(), DataType::Utf8],
        ts,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let t = arrays[0].as_any().downcast_ref::<TimestampMicrosecondArray>().ok_or_else(|| DataFusionError::Internal(format!("{label}: not a timestamp")))?;
            let p = cast(&arrays[1], &DataType::Utf8)?;
            let p = p.as_any().downcast_ref::<StringArray>().ok_or_else(|| DataFusionError::Internal(format!("{label}: not strings")))?;
            let out: TimestampMicrosecondArray = (0..t.len()).map(|i| (!t.is_null(i)).then(|| f(t.value(i), if p.is_null(i) { "" } else { p.value(i) }))).collect();
            Ok(ColumnarValue::Array(Arc::new(out.with_timezone_opt(t.timezone())) as ArrayRef))
        }),
    )
}
