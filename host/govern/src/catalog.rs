//! `ehrgate catalog sql --catalog NAME`: Databricks SQL that registers every Delta
//! table in Unity Catalog (external locations), creates masking functions that do
//! what the configured profiles do (the resource masker as a Python UDF with the same
//! operations as `mask.rs`), sets them as column masks that switch on the reader's
//! group (`ehrgate_<principal>`), and grants each principal's group its tables.
//! Principals grant whole tables; there are no row filters to emit.

use std::collections::{BTreeMap, BTreeSet};

use ehrgate_lake::arrow::datatypes::{DataType, SchemaRef};
use serde_json::json;

use crate::mask::Op;
use crate::policy::{Policy, Principal, Profile};
use crate::sql::{ColumnMask, column_mask};

/// The Python body of `ehrgate_mask_resource` (its profiles filled in).
const MASK_RESOURCE_PY: &str = include_str!("../uc/mask_resource.py");

/// One table to register.
pub struct CatalogTable {
    /// `silver/patient`
    pub path: String,
    /// Where the table lives (`s3://bucket/prefix/silver/patient`).
    pub location: String,
    pub schema: SchemaRef,
}

/// Where the pseudonym key lives in Databricks: `secret(scope, key)`.
pub struct CatalogOptions {
    pub catalog: String,
    pub secret_scope: String,
    pub secret_key: String,
}

fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The Databricks type of an Arrow column.
fn sql_type(dt: &DataType) -> &'static str {
    match dt {
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => "STRING",
        DataType::Int64 => "BIGINT",
        DataType::Int32 => "INT",
        DataType::Boolean => "BOOLEAN",
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BINARY",
        DataType::Timestamp(..) => "TIMESTAMP",
        DataType::Float64 => "DOUBLE",
        _ => "STRING",
    }
}

/// A profile as the JSON the Python masker reads.
fn profile_json(p: &Profile) -> serde_json::Value {
    let op = |o: Op| serde_json::to_value(o).unwrap_or_default();
    json!({
        "ids": op(p.ids),
        "dates": op(p.dates),
        "rules": p.rules.iter().map(|r| json!({"type": r.resource_type, "steps": r.steps, "op": op(r.op)})).collect::<Vec<_>>(),
    })
}

/// The statements, one per line group, each ending in `;`.
pub fn catalog_sql(policy: &Policy, tables: &[CatalogTable], opts: &CatalogOptions, shift_range: i64) -> Vec<String> {
    let shift_range = shift_range.max(1);
    let cat = ident(&opts.catalog);
    let gov = format!("{cat}.{}", ident("governance"));
    let key = format!("secret({}, {})", literal(&opts.secret_scope), literal(&opts.secret_key));
    let mut out = vec![format!("CREATE CATALOG IF NOT EXISTS {cat}")];
    let schemas: BTreeSet<&str> = tables.iter().filter_map(|t| t.path.split('/').next()).chain(["governance"]).collect();
    for s in &schemas {
        out.push(format!("CREATE SCHEMA IF NOT EXISTS {cat}.{}", ident(s)));
    }
    let name_of = |t: &CatalogTable| {
        let (schema, table) = t.path.split_once('/').unwrap_or(("default", t.path.as_str()));
        format!("{cat}.{}.{}", ident(schema), ident(table))
    };
    for t in tables {
        out.push(format!("CREATE TABLE IF NOT EXISTS {} USING DELTA LOCATION {}", name_of(t), literal(&t.location)));
    }

    // The masking functions.
    let profiles: BTreeMap<String, serde_json::Value> = policy.profiles.iter().map(|(n, p)| (n.clone(), profile_json(p))).collect();
    let body = MASK_RESOURCE_PY.replace("__PROFILES__", &format!("{:?}", serde_json::to_string(&profiles).unwrap_or_default()));
    out.push(format!(
        "CREATE OR REPLACE FUNCTION {gov}.ehrgate_mask_resource(resource STRING, profile STRING, k STRING, shift_range INT, this_year INT)\nRETURNS STRING\nLANGUAGE PYTHON\nAS $$\n{body}\nreturn mask(resource, profile, k, shift_range, this_year)\n$$"
    ));
    let py_head = "import hashlib, hmac\ndef mac(k, domain, value):\n    return hmac.new(k.encode(), domain.encode() + b\"\\0\" + value.encode(), hashlib.sha256).digest()";
    out.push(format!(
        "CREATE OR REPLACE FUNCTION {gov}.ehrgate_pseudonym(v STRING, k STRING)\nRETURNS STRING\nLANGUAGE PYTHON\nAS $$\n{py_head}\nreturn None if v is None else \"ps_\" + mac(k, \"id\", v)[:12].hex()\n$$"
    ));
    out.push(format!(
        "CREATE OR REPLACE FUNCTION {gov}.ehrgate_pseudonym_ref(v STRING, k STRING)\nRETURNS STRING\nLANGUAGE PYTHON\nAS $$\n{py_head}\nif v is None:\n    return None\nty, sep, rest = v.partition(\"/\")\nif sep and ty[:1].isupper():\n    return ty + \"/ps_\" + mac(k, \"id\", rest.split(\"/\")[0])[:12].hex()\nreturn \"ps_\" + mac(k, \"id\", v)[:12].hex()\n$$"
    ));
    out.push(format!(
        "CREATE OR REPLACE FUNCTION {gov}.ehrgate_shift_days(patient STRING, k STRING, shift_range INT)\nRETURNS INT\nLANGUAGE PYTHON\nAS $$\n{py_head}\nreturn int.from_bytes(mac(k, \"shift\", patient or \"\")[:8], \"big\") % (2 * shift_range + 1) - shift_range\n$$"
    ));

    // Column masks: per column, what each principal's profile does to it.
    let principals: Vec<&Principal> = policy.principals.values().collect();
    let mut masks: Vec<String> = Vec::new();
    for t in tables {
        let sql_name = t.path.replace('/', "_");
        let has_patient = t.schema.fields().iter().any(|f| f.name() == "patient_ref");
        for f in t.schema.fields() {
            let readers: Vec<(&Principal, ColumnMask)> = principals
                .iter()
                .filter(|p| p.may_read(&sql_name))
                .map(|p| (*p, p.profile.as_ref().map(|prof| column_mask(prof, &sql_name, f.name(), f.data_type(), has_patient)).unwrap_or(ColumnMask::Keep)))
                .collect();
            if readers.iter().all(|(_, m)| *m == ColumnMask::Keep) {
                continue;
            }
            let ty = sql_type(f.data_type());
            let v = "v";
            let mut case = String::from("CASE");
            for (p, m) in &readers {
                let profile = p.profile.as_ref().map(|x| x.name.clone()).unwrap_or_default();
                let expr = match m {
                    ColumnMask::Keep => v.to_string(),
                    ColumnMask::Redact => format!("CAST(NULL AS {ty})"),
                    // (a mask returns its column's type: only strings get pseudonyms)
                    ColumnMask::Pseudonym | ColumnMask::PseudonymRef if ty != "STRING" => format!("CAST(NULL AS {ty})"),
                    ColumnMask::Pseudonym => format!("{gov}.ehrgate_pseudonym({v}, {key})"),
                    ColumnMask::PseudonymRef => format!("{gov}.ehrgate_pseudonym_ref({v}, {key})"),
                    ColumnMask::Year if ty == "TIMESTAMP" => format!("date_trunc('YEAR', {v})"),
                    ColumnMask::Year => format!("substring({v}, 1, 4)"),
                    ColumnMask::Shift => {
                        let patient = if has_patient { "patient" } else { "''" };
                        format!("timestampadd(DAY, {gov}.ehrgate_shift_days({patient}, {key}, {shift_range}), {v})")
                    }
                    ColumnMask::Resource => format!("{gov}.ehrgate_mask_resource({v}, {}, {key}, {shift_range}, year(current_date()))", literal(&profile)),
                };
                case.push_str(&format!(" WHEN is_account_group_member({}) THEN {expr}", literal(&format!("ehrgate_{}", p.name))));
            }
            case.push_str(&format!(" ELSE {v} END"));
            let function = format!("{gov}.{}", ident(&format!("mask_{sql_name}_{}", f.name())));
            let shifts = readers.iter().any(|(_, m)| *m == ColumnMask::Shift) && has_patient;
            let params = if shifts { format!("v {ty}, patient STRING") } else { format!("v {ty}") };
            out.push(format!("CREATE OR REPLACE FUNCTION {function}({params})\nRETURNS {ty}\nRETURN {case}"));
            let using = if shifts { " USING COLUMNS (patient_ref)" } else { "" };
            masks.push(format!("ALTER TABLE {} ALTER COLUMN {} SET MASK {function}{using}", name_of(t), ident(f.name())));
        }
    }
    out.extend(masks);

    // Grants: each principal's group reads its tables.
    for p in &principals {
        let group = ident(&format!("ehrgate_{}", p.name));
        out.push(format!("GRANT USE CATALOG ON CATALOG {cat} TO {group}"));
        let mut used: BTreeSet<&str> = BTreeSet::new();
        for t in tables.iter().filter(|t| p.may_read(&t.path.replace('/', "_"))) {
            let schema = t.path.split('/').next().unwrap_or("default");
            if used.insert(schema) {
                out.push(format!("GRANT USE SCHEMA ON SCHEMA {cat}.{} TO {group}", ident(schema)));
            }
            out.push(format!("GRANT SELECT ON TABLE {} TO {group}", name_of(t)));
        }
        out.push(format!("GRANT USE SCHEMA ON SCHEMA {gov} TO {group}"));
        out.push(format!("GRANT EXECUTE ON SCHEMA {gov} TO {group}"));
    }
    out
}
