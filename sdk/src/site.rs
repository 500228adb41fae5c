//! Site conventions an operator configures per adapter: which PID-3 repetition is the
//! MRN, the identifier system (e.g. a site OID) of each assigning authority, where the
//! visit number is, the UTC offset of local times, and a concept map for local codes.
//!
//! These are facts about one hospital's deployment rather than about a vendor, so the
//! vendor adapters read them from configuration ([`crate::host::config_get`]) instead of
//! hard-coding them. Every key is optional; with none set the standard mapping is
//! unchanged.
//!
//! | key | meaning |
//! |---|---|
//! | `mrn.authority` | CX-4 namespace of the MRN repetition of PID-3 (e.g. `MRN`) |
//! | `mrn.type` | CX-5 type code of the MRN repetition (default `MR`) |
//! | `mrn.system` | `Identifier.system` of the MRN (e.g. `urn:oid:1.2.3`) |
//! | `visit.authority` / `visit.system` | namespace and system of the visit / account number |
//! | `visit.from-account` | `true`: PID-18 is the visit number when PV1-19 is empty |
//! | `visit.prefer-account` | `true`: PID-18 is the visit number even when PV1-19 holds something (e.g. a visit sequence such as `01`) |
//! | `identifier-systems` | JSON object: namespace -> system, for any other authority |
//! | `utc-offset` | offset of times sent without one, e.g. `-05:00` |
//! | `concept-map` | JSON array of `{"system": <HL7 coding system>, "code", "target": {"system", "code", "display"}}` |
//! | `concept-map.keep-source` | `false`: drop the local coding after translating it (default `true`) |

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

use crate::fhir::Resource;
use crate::hl7::{Message, Rep, Segment};
use crate::host;
use crate::v2fhir::types::{standard_identifier_system, text};
use crate::v2fhir::{Context, MapResult};

/// Which PID-3 repetition holds the MRN.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MrnRule {
    /// CX-4 namespace id to match (case-insensitive); `None`: any.
    pub authority: Option<String>,
    /// CX-5 identifier type code to match; `None`: any.
    pub id_type: Option<String>,
}

/// One concept-map entry: a local code (HL7 coding system name + code) and the
/// canonical coding it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConceptRule {
    pub system: String,
    pub code: String,
    pub target_system: String,
    pub target_code: String,
    pub target_display: Option<String>,
}

/// The configured conventions of one site (see the module docs for the keys).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Site {
    pub mrn: Option<MrnRule>,
    /// Namespace (upper case) -> identifier system.
    pub systems: BTreeMap<String, String>,
    pub visit_from_account: bool,
    /// The message types mapped, when fewer than the standard set (`ADT^A01`, ...).
    pub message_types: Option<&'static [&'static str]>,
    /// PID-18 replaces a non-empty PV1-19 too.
    pub visit_prefer_account: bool,
    pub utc_offset: Option<String>,
    pub concepts: Vec<ConceptRule>,
    pub keep_source_coding: bool,
    /// Problems found in the configuration (reported as warnings, never fatal).
    pub config_problems: Vec<String>,
}

/// A configuration value, trimmed; `None` when absent or blank.
pub fn config(key: &str) -> Option<String> {
    host::config_get(key).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// A yes/no configuration value (`true`/`yes`/`1` or `false`/`no`/`0`).
pub fn config_flag(key: &str, default: bool) -> bool {
    match config(key).map(|v| v.to_ascii_lowercase()).as_deref() {
        Some("true" | "yes" | "1" | "on") => true,
        Some("false" | "no" | "0" | "off") => false,
        _ => default,
    }
}

impl Site {
    /// Read the site conventions from configuration. `default_mrn` is the vendor's
    /// usual MRN repetition, used when `mrn.authority` / `mrn.type` are not set.
    pub fn from_config(default_mrn: Option<MrnRule>) -> Site {
        let mut site = Site { keep_source_coding: config_flag("concept-map.keep-source", true), ..Default::default() };
        let authority = config("mrn.authority");
        let id_type = config("mrn.type");
        site.mrn = if authority.is_some() || id_type.is_some() {
            Some(MrnRule { authority: authority.clone(), id_type })
        } else {
            default_mrn
        };
        if let Some(json) = config("identifier-systems") {
            match serde_json::from_str::<BTreeMap<String, String>>(&json) {
                Ok(m) => site.systems.extend(m.into_iter().map(|(k, v)| (k.to_ascii_uppercase(), v))),
                Err(_) => site.config_problems.push("config `identifier-systems` is not a JSON object of strings; ignored".into()),
            }
        }
        for (ns, sys) in [("mrn.authority", "mrn.system"), ("visit.authority", "visit.system")] {
            if let (Some(ns), Some(sys)) = (config(ns), config(sys)) {
                site.systems.insert(ns.to_ascii_uppercase(), sys);
            }
        }
        site.visit_from_account = config_flag("visit.from-account", false);
        site.visit_prefer_account = config_flag("visit.prefer-account", false);
        site.utc_offset = config("utc-offset");
        if let Some(json) = config("concept-map") {
            match parse_concepts(&json) {
                Some(c) => site.concepts = c,
                None => site.config_problems.push("config `concept-map` is not a JSON array of {system, code, target}; ignored".into()),
            }
        }
        site
    }

    /// The identifier system of an assigning authority: the configured one for the
    /// namespace (or universal id), else the standard rule.
    pub fn identifier_system(&self, namespace: &str, universal_id: &str, universal_id_type: &str) -> Option<String> {
        for key in [namespace, universal_id] {
            let key = key.trim();
            if !key.is_empty()
                && let Some(s) = self.systems.get(&key.to_ascii_uppercase())
            {
                return Some(s.clone());
            }
        }
        standard_identifier_system(namespace, universal_id, universal_id_type)
    }

    /// The PID-3 repetition that is the MRN under the configured rule.
    pub fn mrn_rep<'a>(&self, pid: &Segment<'a>) -> Option<Rep<'a>> {
        self.mrn_in(pid.field(3))
    }

    /// The repetition of a CX list (PID-3, MRG-1) that is the MRN under the rule.
    pub fn mrn_in<'a>(&self, ids: crate::hl7::Field<'a>) -> Option<Rep<'a>> {
        let rule = self.mrn.as_ref()?;
        ids.repetitions().find(|r| {
            let matches = |want: &Option<String>, got: Option<String>| match want {
                None => true,
                Some(w) => got.is_some_and(|g| g.eq_ignore_ascii_case(w)),
            };
            text(r.component(1)).is_some()
                && matches(&rule.authority, text(r.component(4)))
                && matches(&rule.id_type, text(r.component(5)))
        })
    }

    /// Re-key a Patient mapped by the standard PID map on the configured MRN: its id
    /// becomes the id of (MRN system, MRN) and that identifier is typed `MR`. Nothing
    /// changes when no repetition matches (with a warning).
    pub fn rekey_patient(&self, ctx: &mut Context<'_, '_>, pid: &Segment<'_>, r: &mut Option<Resource>) {
        if self.mrn.is_none() {
            return;
        }
        let Some(rep) = self.mrn_rep(pid) else {
            ctx.warn("PID-3: no repetition matches the configured MRN authority/type; patient keyed by the standard rule");
            return;
        };
        let Some(value) = text(rep.component(1)) else { return };
        let system = ctx.hd_system(rep.component(4)).unwrap_or_else(|| ctx.source_urn());
        let id = ctx.id("Patient", &system, &[&value]);
        if let Some(Resource::Patient(p)) = r {
            p.id = id;
            for ident in &mut p.identifier {
                if ident.system.as_deref() == Some(system.as_str()) && ident.value.as_deref() == Some(value.as_str()) {
                    *ident = std::mem::take(ident).with_v2_type("MR");
                }
            }
        } else if let Some(r) = r {
            r.set_id(id);
        }
    }

    /// The standard MRG map (A40, A34, A39), with the merged patient keyed by the
    /// configured MRN rule on MRG-1, as the surviving one is on PID-3: the link then
    /// points at the id the merged patient's own messages gave it.
    pub fn map_merged_patient(&self, ctx: &mut Context<'_, '_>, mrg: &Segment<'_>, surviving_id: &str) -> MapResult {
        let mut r = crate::v2fhir::patient::map_merged_patient(ctx, mrg, surviving_id)?;
        if self.mrn.is_none() {
            return Ok(r);
        }
        let Some(rep) = self.mrn_in(mrg.field(1)) else {
            ctx.warn("MRG-1: no repetition matches the configured MRN authority/type; merged patient keyed by the standard rule");
            return Ok(r);
        };
        if let Some(value) = text(rep.component(1)) {
            let system = ctx.hd_system(rep.component(4)).unwrap_or_else(|| ctx.source_urn());
            let id = ctx.id("Patient", &system, &[&value]);
            if id == surviving_id {
                ctx.warn("MRG-1 names the surviving patient itself; merge ignored");
                return Ok(None);
            }
            if let Some(r) = r.as_mut() {
                r.set_id(id);
            }
        }
        Ok(r)
    }

    /// The standard PID map, re-keyed on the configured MRN.
    pub fn map_patient(&self, ctx: &mut Context<'_, '_>, pid: &Segment<'_>) -> MapResult {
        let mut r = crate::v2fhir::patient::map_patient(ctx, pid)?;
        self.rekey_patient(ctx, pid, &mut r);
        Ok(r)
    }

    /// The message text to map: with `visit.from-account`, PID-18 (the account number)
    /// copied into an empty PV1-19 so that the standard Encounter map keys on it.
    /// Borrowed unchanged when there is nothing to do.
    pub fn prepare<'t>(&self, raw: &'t str) -> Cow<'t, str> {
        if !self.visit_from_account && !self.visit_prefer_account {
            return Cow::Borrowed(raw);
        }
        let Ok(msg) = Message::parse(raw) else {
            return Cow::Borrowed(raw);
        };
        let (Some(pid), Some(pv1)) = (msg.segment("PID"), msg.segment("PV1")) else {
            return Cow::Borrowed(raw);
        };
        let account = pid.field(18).raw();
        if account.trim().is_empty() || (!self.visit_prefer_account && !pv1.field(19).raw().trim().is_empty()) {
            return Cow::Borrowed(raw);
        }
        let sep = msg.delimiters().field;
        Cow::Owned(set_field(raw, pv1.raw(), sep, 19, account))
    }

    /// Translate local codes through the concept map, in every `coding` of every
    /// resource mapped so far (call from [`Mapper::finish`](crate::v2fhir::Mapper::finish)).
    pub fn apply_concept_map(&self, ctx: &mut Context<'_, '_>) {
        for p in &self.config_problems {
            ctx.warn(p.clone());
        }
        if self.concepts.is_empty() {
            return;
        }
        let rules: Vec<(Option<String>, &ConceptRule)> =
            self.concepts.iter().map(|c| (ctx.code_system(&c.system), c)).collect();
        let mut translated = 0usize;
        for r in &mut ctx.resources {
            translated += translate(r.json_mut(), &rules, self.keep_source_coding);
        }
        if translated > 0 {
            host::counter_add("concept_map_translations", translated as u64);
        }
    }
}

/// A site's conventions over the standard mapping: configured identifier systems,
/// the MRN re-key, the default UTC offset and the concept map. Vendor mappers that
/// need nothing else use a `Site` as their [`Mapper`](crate::v2fhir::Mapper); the others
/// forward these methods to one.
impl crate::v2fhir::Mapper for Site {
    fn supports(&self, code: &str, trigger: &str) -> bool {
        let types = self.message_types.unwrap_or(crate::v2fhir::STANDARD_MESSAGE_TYPES);
        types.iter().any(|t| t.split_once('^') == Some((code, trigger)))
    }
    fn default_utc_offset(&self) -> Option<String> {
        self.utc_offset.clone()
    }
    fn identifier_system(&self, namespace: &str, universal_id: &str, universal_id_type: &str) -> Option<String> {
        Site::identifier_system(self, namespace, universal_id, universal_id_type)
    }
    fn map_patient(&self, ctx: &mut Context<'_, '_>, pid: &Segment<'_>) -> MapResult {
        Site::map_patient(self, ctx, pid)
    }
    fn map_merged_patient(&self, ctx: &mut Context<'_, '_>, mrg: &Segment<'_>, surviving_id: &str) -> MapResult {
        Site::map_merged_patient(self, ctx, mrg, surviving_id)
    }
    fn finish(&self, ctx: &mut Context<'_, '_>) -> Result<(), crate::adapter::AdapterError> {
        self.apply_concept_map(ctx);
        Ok(())
    }
}

/// Map one message with `mapper` after [`Site::prepare`].
pub fn map_with(site: &Site, mapper: &impl crate::v2fhir::Mapper, input: &crate::adapter::Hl7Input) -> Result<crate::adapter::Output, crate::adapter::AdapterError> {
    match site.prepare(&input.raw) {
        Cow::Borrowed(_) => crate::v2fhir::map_message(mapper, input),
        Cow::Owned(raw) => crate::v2fhir::map_message(mapper, &crate::adapter::Hl7Input { raw, ..input.clone() }),
    }
}

fn parse_concepts(json: &str) -> Option<Vec<ConceptRule>> {
    let v: Value = serde_json::from_str(json).ok()?;
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    v.as_array()?
        .iter()
        .map(|e| {
            let t = e.get("target")?;
            Some(ConceptRule {
                system: s(e, "system")?,
                code: s(e, "code")?,
                target_system: s(t, "system")?,
                target_code: s(t, "code")?,
                target_display: s(t, "display"),
            })
        })
        .collect()
}

/// Translate matching codings under `v`; returns how many were translated.
fn translate(v: &mut Value, rules: &[(Option<String>, &ConceptRule)], keep_source: bool) -> usize {
    let mut n = 0;
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(codings)) = map.get_mut("coding") {
                let mut out = Vec::with_capacity(codings.len() + 1);
                for c in codings.drain(..) {
                    let hit = rules.iter().find(|(sys, rule)| {
                        sys.is_some()
                            && c.get("system").and_then(Value::as_str) == sys.as_deref()
                            && c.get("code").and_then(Value::as_str) == Some(rule.code.as_str())
                    });
                    match hit {
                        Some((_, rule)) => {
                            n += 1;
                            let mut t = serde_json::Map::new();
                            t.insert("code".into(), rule.target_code.clone().into());
                            if let Some(d) = &rule.target_display {
                                t.insert("display".into(), d.clone().into());
                            }
                            t.insert("system".into(), rule.target_system.clone().into());
                            out.push(Value::Object(t));
                            if keep_source {
                                out.push(c);
                            }
                        }
                        None => out.push(c),
                    }
                }
                *codings = out;
            }
            for (k, child) in map.iter_mut() {
                if k != "coding" {
                    n += translate(child, rules, keep_source);
                }
            }
        }
        Value::Array(a) => {
            for child in a {
                n += translate(child, rules, keep_source);
            }
        }
        _ => {}
    }
    n
}

/// `raw` with field `n` of the segment whose text is `segment` (a slice of `raw`)
/// replaced by `value` (already encoded), padding with separators as needed.
///
/// # Panics
/// When `segment` is not a slice of `raw`.
pub fn set_field(raw: &str, segment: &str, sep: char, n: usize, value: &str) -> String {
    let start = (segment.as_ptr() as usize).checked_sub(raw.as_ptr() as usize).expect("segment is a slice of raw");
    assert!(start + segment.len() <= raw.len(), "segment is a slice of raw");
    let end = start + segment.len();
    let mut fields: Vec<&str> = segment.split(sep).collect();
    while fields.len() <= n {
        fields.push("");
    }
    fields[n] = value;
    let joined = fields.join(&sep.to_string());
    [&raw[..start], &joined, &raw[end..]].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_field_pads_and_replaces() {
        let raw = "MSH|^~\\&|A\rPV1|1|I\rOBX|1";
        let msg = Message::parse(raw).unwrap();
        let pv1 = msg.segment("PV1").unwrap();
        let out = set_field(raw, pv1.raw(), '|', 5, "X^Y");
        assert_eq!(out, "MSH|^~\\&|A\rPV1|1|I|||X^Y\rOBX|1");
        let msg = Message::parse(&out).unwrap();
        assert_eq!(msg.get("PV1-5.2").as_deref(), Some("Y"));
    }

    #[test]
    fn concept_translation_keeps_or_drops_source() {
        let rule = ConceptRule {
            system: "99CV".into(),
            code: "2823".into(),
            target_system: "http://loinc.org".into(),
            target_code: "2823-3".into(),
            target_display: None,
        };
        let rules = vec![(Some("urn:ehrgate:codesystem:99CV".to_string()), &rule)];
        let mut v = serde_json::json!({"code": {"coding": [{"system": "urn:ehrgate:codesystem:99CV", "code": "2823"}]}});
        assert_eq!(translate(&mut v, &rules, true), 1);
        assert_eq!(v["code"]["coding"][0]["code"], "2823-3");
        assert_eq!(v["code"]["coding"][1]["code"], "2823");
        let mut v = serde_json::json!({"code": {"coding": [{"system": "urn:ehrgate:codesystem:99CV", "code": "2823"}]}});
        translate(&mut v, &rules, false);
        assert_eq!(v["code"]["coding"].as_array().unwrap().len(), 1);
        let mut v = serde_json::json!({"code": {"coding": [{"system": "other", "code": "2823"}]}});
        assert_eq!(translate(&mut v, &rules, true), 0);
    }

    #[test]
    fn a_merged_patient_is_keyed_by_the_site_mrn_rule_like_the_surviving_one() {
        let site = Site { mrn: Some(MrnRule { authority: Some("EPI".into()), id_type: None }), ..Default::default() };
        // The site's MRN (authority EPI) is the second repetition in both PID-3 and
        // MRG-1; the first is typed MR by another authority (the standard rule's pick).
        let raw = "MSH|^~\\&|EPIC|H|||20240101120000+0000||ADT^A40|1|P|2.5.1\rPID|1||X-1^^^OTHER^MR~NEW-1^^^EPI^PI\rMRG|X-2^^^OTHER^MR~OLD-1^^^EPI^PI\r";
        let out = crate::v2fhir::map_message(&site, &crate::adapter::Hl7Input::new(raw)).unwrap();
        let rs: Vec<serde_json::Value> = out.resources.iter().map(|r| serde_json::from_str(r).unwrap()).collect();
        let (surviving, merged) = (&rs[0], &rs[1]);
        assert_eq!(merged["active"], false);
        assert_eq!(surviving["link"][0]["other"]["reference"], format!("Patient/{}", merged["id"].as_str().unwrap()).as_str());
        // Keyed like a PID whose MRN is OLD-1: the id that patient's own messages got.
        let own = String::from("MSH|^~\\&|EPIC|H|||20240101120000+0000||ADT^A08|2|P|2.5.1\rPID|1||X-2^^^OTHER^MR~OLD-1^^^EPI^PI\r");
        let own = crate::v2fhir::map_message(&site, &crate::adapter::Hl7Input::new(own)).unwrap();
        let own: serde_json::Value = serde_json::from_str(&own.resources[0]).unwrap();
        assert_eq!(merged["id"], own["id"]);
        // (the standard rule alone would have keyed it on the first repetition)
        let std = crate::v2fhir::map_message(&crate::v2fhir::Standard, &crate::adapter::Hl7Input::new(raw)).unwrap();
        let std: serde_json::Value = serde_json::from_str(&std.resources[1]).unwrap();
        assert_ne!(std["id"], own["id"]);
    }
}
