//! `map-fhir` for Epic's FHIR R4 (REST reads and Bulk NDJSON): Epic specifics to
//! canonical FHIR.
//!
//! - **Contained resources** (Epic returns e.g. a Medication contained in a
//!   MedicationRequest) become resources of their own with a deterministic id (from
//!   the container's type and id and the contained id), and the `#local` references to
//!   them are rewritten to `Type/<id>`, so that the lake holds one table row per
//!   resource.
//! - **Epic extensions** (URLs under `http://open.epic.com/FHIR/StructureDefinition/`)
//!   are renamed through `fhir.extension-map` (JSON object: Epic URL -> URL), and the
//!   rest dropped unless `fhir.epic-extensions` = `keep`. Dropped counts are warnings.
//! - **Identifier systems**: `fhir.system-map` (JSON object: system -> system)
//!   rewrites `Identifier.system` values, e.g. an Epic MRN OID to the enterprise MRN
//!   system the HL7 feed is configured with, so both land on the same identifiers.

use std::collections::BTreeMap;

use ehrgate_sdk::ids;
use ehrgate_sdk::site::config;
use ehrgate_sdk::{AdapterError, Output};
use serde_json::{Map, Value};

/// The URL prefix of Epic's own FHIR extensions.
pub const EPIC_EXTENSION_PREFIX: &str = "http://open.epic.com/FHIR/StructureDefinition/";

#[derive(Debug, Clone, Default)]
pub struct FhirConfig {
    pub keep_epic_extensions: bool,
    pub extension_map: BTreeMap<String, String>,
    pub system_map: BTreeMap<String, String>,
    pub problems: Vec<String>,
}

impl FhirConfig {
    pub fn from_config() -> FhirConfig {
        let mut c = FhirConfig {
            keep_epic_extensions: config("fhir.epic-extensions").is_some_and(|v| v.eq_ignore_ascii_case("keep")),
            ..Default::default()
        };
        for (key, slot) in [("fhir.extension-map", &mut c.extension_map), ("fhir.system-map", &mut c.system_map)] {
            if let Some(json) = config(key) {
                match serde_json::from_str::<BTreeMap<String, String>>(&json) {
                    Ok(m) => *slot = m,
                    Err(_) => c.problems.push(format!("config `{key}` is not a JSON object of strings; ignored")),
                }
            }
        }
        c
    }
}

/// Normalise a batch (see the module docs). Each line is checked first as the
/// default `map-fhir` does; the first bad one fails the batch at its index.
pub fn normalise(batch: Vec<String>, cfg: &FhirConfig) -> Result<Output, AdapterError> {
    let checked = ehrgate_sdk::fhir::passthrough(batch)?;
    let mut out = Output { warnings: cfg.problems.clone(), ..Default::default() };
    let mut dropped = 0usize;
    let mut hoisted = 0usize;
    for line in checked.resources {
        let mut v: Value = serde_json::from_str(&line).map_err(|_| AdapterError::invalid("not valid JSON", None))?;
        let contained = hoist_contained(&mut v);
        hoisted += contained.len();
        for mut r in std::iter::once(v).chain(contained) {
            dropped += rewrite(&mut r, cfg, None);
            out.resources.push(r.to_string());
        }
    }
    if dropped > 0 {
        out.warn(format!("{dropped} Epic extensions without a configured mapping dropped"));
        ehrgate_sdk::host::counter_add("epic_extensions_dropped", dropped as u64);
    }
    if hoisted > 0 {
        ehrgate_sdk::host::counter_add("contained_resources_hoisted", hoisted as u64);
    }
    Ok(out)
}

/// Take `contained` out of `v`: each contained resource gets the id of
/// (its type, `urn:ehrgate:contained:<Type>/<id>` of the container, its local id), and
/// every `"reference": "#local"` in the container and the contained resources points
/// at it. Returns the contained resources.
pub fn hoist_contained(v: &mut Value) -> Vec<Value> {
    let Some(Value::Array(contained)) = v.as_object_mut().and_then(|o| o.remove("contained")) else {
        return Vec::new();
    };
    let scope = format!(
        "urn:ehrgate:contained:{}/{}",
        v["resourceType"].as_str().unwrap_or_default(),
        v["id"].as_str().unwrap_or_default()
    );
    let mut renames = BTreeMap::new();
    let mut out = Vec::new();
    for mut c in contained {
        let (Some(rt), Some(local)) = (c["resourceType"].as_str().map(str::to_owned), c["id"].as_str().map(str::to_owned)) else {
            continue;
        };
        let id = ids::resource_id(&rt, &scope, &local);
        renames.insert(format!("#{local}"), format!("{rt}/{id}"));
        c["id"] = Value::String(id);
        if let Some(src) = v.pointer("/meta/source").cloned() {
            c["meta"]["source"] = src;
        }
        out.push(c);
    }
    rename_refs(v, &renames);
    for c in &mut out {
        rename_refs(c, &renames);
    }
    out
}

fn rename_refs(v: &mut Value, renames: &BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("reference")
                && let Some(new) = renames.get(r.as_str())
            {
                *r = new.clone();
            }
            m.values_mut().for_each(|c| rename_refs(c, renames));
        }
        Value::Array(a) => a.iter_mut().for_each(|c| rename_refs(c, renames)),
        _ => {}
    }
}

/// Extensions and identifier systems, recursively; returns dropped extensions.
fn rewrite(v: &mut Value, cfg: &FhirConfig, parent: Option<&str>) -> usize {
    let mut dropped = 0;
    match v {
        Value::Object(m) => {
            for key in ["extension", "modifierExtension"] {
                if let Some(Value::Array(a)) = m.get_mut(key) {
                    let before = a.len();
                    a.retain_mut(|e| keep_extension(e, cfg));
                    dropped += before - a.len();
                    if a.is_empty() {
                        m.remove(key);
                    }
                }
            }
            if parent == Some("identifier") {
                map_system(m, cfg);
            }
            for (k, child) in m.iter_mut() {
                dropped += rewrite(child, cfg, Some(k));
            }
        }
        Value::Array(a) => {
            for child in a {
                dropped += rewrite(child, cfg, parent);
            }
        }
        _ => {}
    }
    dropped
}

fn keep_extension(e: &mut Value, cfg: &FhirConfig) -> bool {
    let Some(url) = e.get("url").and_then(Value::as_str) else { return true };
    if let Some(to) = cfg.extension_map.get(url) {
        e["url"] = Value::String(to.clone());
        return true;
    }
    !url.starts_with(EPIC_EXTENSION_PREFIX) || cfg.keep_epic_extensions
}

fn map_system(identifier: &mut Map<String, Value>, cfg: &FhirConfig) {
    if let Some(Value::String(s)) = identifier.get_mut("system")
        && let Some(to) = cfg.system_map.get(s.as_str())
    {
        *s = to.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn contained_are_hoisted_with_stable_ids_and_refs_rewritten() {
        let mut v = json!({"resourceType": "MedicationRequest", "id": "mr1",
            "contained": [{"resourceType": "Medication", "id": "med1"}],
            "medicationReference": {"reference": "#med1"}});
        let c = hoist_contained(&mut v);
        assert_eq!(c.len(), 1);
        let id = c[0]["id"].as_str().unwrap().to_owned();
        assert_eq!(v["medicationReference"]["reference"], format!("Medication/{id}"));
        assert!(v.get("contained").is_none());
        let mut again = json!({"resourceType": "MedicationRequest", "id": "mr1",
            "contained": [{"resourceType": "Medication", "id": "med1"}]});
        assert_eq!(hoist_contained(&mut again)[0]["id"], id.as_str());
    }

    #[test]
    fn epic_extensions_dropped_or_renamed() {
        let mut cfg = FhirConfig::default();
        cfg.extension_map.insert(format!("{EPIC_EXTENSION_PREFIX}extension/a"), "http://example.org/a".into());
        let mut v = json!({"extension": [
            {"url": format!("{EPIC_EXTENSION_PREFIX}extension/a"), "valueString": "x"},
            {"url": format!("{EPIC_EXTENSION_PREFIX}extension/b"), "valueString": "y"},
            {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race", "extension": []}]});
        assert_eq!(rewrite(&mut v, &cfg, None), 1);
        assert_eq!(v["extension"][0]["url"], "http://example.org/a");
        assert_eq!(v["extension"].as_array().unwrap().len(), 2);
    }
}
