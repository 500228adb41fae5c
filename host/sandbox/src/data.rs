//! The sandbox's records: synthetic patients with encounters, observations, conditions
//! and medication requests, deterministic from a seed, plus what clients create, and
//! tombstones of what was deleted (for the `deleted` part of `_since` exports).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::time::{format_date, format_instant};

/// The resource types the sandbox serves.
pub const TYPES: &[&str] = &["Patient", "Encounter", "Observation", "Condition", "MedicationRequest", "Task", "Group"];

/// Types that belong to a patient's compartment (what a Patient/Group export returns).
pub const PATIENT_TYPES: &[&str] = &["Patient", "Encounter", "Observation", "Condition", "MedicationRequest", "Task"];

/// Initial data is stamped at 2024-01-01T00:00:00Z, so it is older than any export.
pub const SEED_TIME_MS: u64 = 1_704_067_200_000;

/// One stored resource.
#[derive(Debug, Clone)]
pub struct Stored {
    pub json: Value,
    pub last_updated_ms: u64,
    /// `Patient/<id>` the resource belongs to (the patient itself for a Patient).
    pub patient: Option<String>,
}

/// What is left of a deleted resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    pub ty: String,
    pub id: String,
    pub deleted_ms: u64,
    /// `Patient/<id>` whose compartment the resource was in (the patient itself for a Patient).
    pub patient: Option<String>,
    /// For a Patient: the Groups that listed it as a member when it was deleted.
    pub groups: Vec<String>,
}

/// All resources by type then id, in id order.
#[derive(Debug, Default)]
pub struct Store {
    pub by_type: BTreeMap<String, BTreeMap<String, Stored>>,
    /// Deleted resources by (type, id).
    pub tombstones: BTreeMap<(String, String), Tombstone>,
    next_patient: usize,
    rng: Rng,
    /// Newest `lastUpdated` handed out, so later writes are strictly newer.
    pub newest_ms: u64,
}

/// splitmix64: small, fast, and the same on every platform.
#[derive(Debug, Default, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const GIVEN: &[&str] = &["Ada", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Luca"];
const FAMILY: &[&str] = &["Okafor", "Lindqvist", "Moreau", "Tanaka", "Silva", "Novak", "Haddad", "Kowalski", "Reyes", "Byrne"];
const VITALS: &[(&str, &str, &str, u64, u64)] = &[
    ("8867-4", "Heart rate", "/min", 55, 110),
    ("8310-5", "Body temperature", "Cel", 36, 39),
    ("8480-6", "Systolic blood pressure", "mm[Hg]", 100, 160),
    ("29463-7", "Body weight", "kg", 45, 120),
    ("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 70, 180),
];
const CONDITIONS: &[(&str, &str)] = &[
    ("44054006", "Diabetes mellitus type 2"),
    ("38341003", "Hypertensive disorder"),
    ("195967001", "Asthma"),
    ("53741008", "Coronary arteriosclerosis"),
    ("35489007", "Depressive disorder"),
];
const MEDS: &[(&str, &str)] = &[
    ("860975", "metformin 500 MG Oral Tablet"),
    ("314076", "lisinopril 10 MG Oral Tablet"),
    ("745679", "albuterol 0.09 MG/ACTUAT Inhaler"),
    ("617312", "atorvastatin 10 MG Oral Tablet"),
];

impl Store {
    /// `patients` synthetic patients from `seed`, all stamped [`SEED_TIME_MS`].
    pub fn generate(patients: usize, seed: u64) -> Store {
        let mut s = Store { rng: Rng(seed), newest_ms: SEED_TIME_MS, ..Default::default() };
        s.add_patients(patients, SEED_TIME_MS);
        s
    }

    /// Adds `n` more patients (with their records), stamped `at_ms` (or just after the
    /// newest stamp, whichever is later). Returns the new patient ids.
    pub fn add_patients(&mut self, n: usize, at_ms: u64) -> Vec<String> {
        let stamp = if self.by_type.is_empty() { at_ms } else { at_ms.max(self.newest_ms + 1) };
        self.newest_ms = self.newest_ms.max(stamp);
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let i = self.next_patient;
            self.next_patient += 1;
            let pid = format!("patient-{i:04}");
            let pref = format!("Patient/{pid}");
            let r = &mut self.rng;
            let gender = if r.below(2) == 0 { "female" } else { "male" };
            let born = SEED_TIME_MS - (18 + r.below(35)) * 365 * 86_400_000 - r.below(365) * 86_400_000;
            let patient = json!({
                "resourceType": "Patient", "id": pid,
                "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.9999.1", "value": format!("MRN{:06}", 100_000 + i)}],
                "name": [{"family": r.pick(FAMILY), "given": [r.pick(GIVEN)]}],
                "gender": gender, "birthDate": format_date(born),
            });
            let mut records = vec![("Patient", pid.clone(), patient)];
            let encounters = 1 + r.below(3);
            for e in 0..encounters {
                let eid = format!("enc-{i:04}-{e}");
                let start = SEED_TIME_MS - (1 + r.below(700)) * 86_400_000;
                records.push((
                    "Encounter",
                    eid.clone(),
                    json!({
                        "resourceType": "Encounter", "id": eid, "status": "finished",
                        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": if r.below(3) == 0 { "IMP" } else { "AMB" }},
                        "subject": {"reference": pref},
                        "period": {"start": format_instant(start), "end": format_instant(start + (1 + r.below(48)) * 3_600_000)},
                    }),
                ));
                for o in 0..(1 + r.below(3)) {
                    let (code, display, unit, lo, hi) = VITALS[r.below(VITALS.len() as u64) as usize];
                    let oid = format!("obs-{i:04}-{e}-{o}");
                    records.push((
                        "Observation",
                        oid.clone(),
                        json!({
                            "resourceType": "Observation", "id": oid, "status": "final",
                            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
                            "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
                            "subject": {"reference": pref}, "encounter": {"reference": format!("Encounter/{eid}")},
                            "effectiveDateTime": format_instant(start + 600_000),
                            "valueQuantity": {"value": lo + r.below(hi - lo + 1), "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
                        }),
                    ));
                }
            }
            for c in 0..(1 + r.below(2)) {
                let (code, display) = CONDITIONS[r.below(CONDITIONS.len() as u64) as usize];
                let cid = format!("cond-{i:04}-{c}");
                records.push((
                    "Condition",
                    cid.clone(),
                    json!({
                        "resourceType": "Condition", "id": cid,
                        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}]},
                        "subject": {"reference": pref},
                    }),
                ));
            }
            for m in 0..r.below(3) {
                let (code, display) = MEDS[r.below(MEDS.len() as u64) as usize];
                let mid = format!("med-{i:04}-{m}");
                records.push((
                    "MedicationRequest",
                    mid.clone(),
                    json!({
                        "resourceType": "MedicationRequest", "id": mid, "status": "active", "intent": "order",
                        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": code, "display": display}]},
                        "subject": {"reference": pref},
                    }),
                ));
            }
            for (ty, id, json) in records {
                self.put(ty, &id, json, stamp);
            }
            ids.push(pid);
        }
        self.refresh_group(stamp);
        ids
    }

    /// The `Group/all` of every patient.
    fn refresh_group(&mut self, stamp: u64) {
        let members: Vec<Value> =
            self.ids("Patient").into_iter().map(|id| json!({"entity": {"reference": format!("Patient/{id}")}})).collect();
        let group = json!({
            "resourceType": "Group", "id": "all", "type": "person", "actual": true,
            "name": "All sandbox patients", "quantity": members.len(), "member": members,
        });
        self.put("Group", "all", group, stamp);
    }

    /// A stamp for a write at `at_ms`: strictly newer than everything stamped (or
    /// exported, see [`Store::mark_exported`]) so far.
    pub fn next_stamp(&mut self, at_ms: u64) -> u64 {
        let stamp = at_ms.max(self.newest_ms + 1);
        self.newest_ms = stamp;
        stamp
    }

    /// Records that an export saw everything up to `transaction_ms`, so later writes are
    /// stamped after it and a `_since=<its transactionTime>` export finds them.
    pub fn mark_exported(&mut self, transaction_ms: u64) {
        self.newest_ms = self.newest_ms.max(transaction_ms);
    }

    /// Deletes `ty/id`, leaving a tombstone stamped `at_ms` (or just after the newest
    /// stamp, whichever is later). Deleting a Patient refreshes `Group/all` (if it
    /// exists); the patient's other resources stay. False when there is no such resource.
    pub fn delete(&mut self, ty: &str, id: &str, at_ms: u64) -> bool {
        let Some(gone) = self.by_type.get_mut(ty).and_then(|m| m.remove(id)) else {
            return false;
        };
        let stamp = self.next_stamp(at_ms);
        let groups = if ty == "Patient" {
            let me = format!("Patient/{id}");
            self.search("Group", None)
                .filter(|g| g.json["member"].as_array().into_iter().flatten().any(|m| m["entity"]["reference"] == me.as_str()))
                .filter_map(|g| g.json["id"].as_str().map(str::to_string))
                .collect()
        } else {
            vec![]
        };
        let tomb = Tombstone { ty: ty.to_string(), id: id.to_string(), deleted_ms: stamp, patient: gone.patient, groups };
        self.tombstones.insert((ty.to_string(), id.to_string()), tomb);
        if ty == "Patient" && self.get("Group", "all").is_some() {
            self.refresh_group(stamp);
        }
        true
    }

    pub fn tombstone(&self, ty: &str, id: &str) -> Option<&Tombstone> {
        self.tombstones.get(&(ty.to_string(), id.to_string()))
    }

    /// Resources per type: every served type (0 when there are none), plus any other.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts: BTreeMap<String, usize> = TYPES.iter().map(|t| (t.to_string(), 0)).collect();
        for (ty, m) in &self.by_type {
            counts.insert(ty.clone(), m.len());
        }
        counts
    }

    pub fn ids(&self, ty: &str) -> Vec<String> {
        self.by_type.get(ty).map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    /// Stores a resource, setting `meta.lastUpdated` and `meta.versionId`.
    pub fn put(&mut self, ty: &str, id: &str, mut json: Value, stamp: u64) -> Value {
        let version = self.get(ty, id).and_then(|s| s.json["meta"]["versionId"].as_str().and_then(|v| v.parse::<u64>().ok())).unwrap_or(0) + 1;
        json["meta"] = json!({"versionId": version.to_string(), "lastUpdated": format_instant(stamp)});
        let patient = if ty == "Patient" { Some(format!("Patient/{id}")) } else { patient_ref(&json) };
        self.newest_ms = self.newest_ms.max(stamp);
        self.tombstones.remove(&(ty.to_string(), id.to_string()));
        self.by_type.entry(ty.to_string()).or_default().insert(id.to_string(), Stored { json: json.clone(), last_updated_ms: stamp, patient });
        json
    }

    pub fn get(&self, ty: &str, id: &str) -> Option<&Stored> {
        self.by_type.get(ty)?.get(id)
    }

    /// Resources of `ty`, optionally of one patient (`Patient/<id>`).
    pub fn search<'a>(&'a self, ty: &str, patient: Option<&'a str>) -> impl Iterator<Item = &'a Stored> + 'a {
        self.by_type.get(ty).into_iter().flat_map(|m| m.values()).filter(move |s| patient.is_none() || s.patient.as_deref() == patient)
    }
}

/// The patient a resource refers to: `subject`, `patient` or (Task) `for`.
fn patient_ref(json: &Value) -> Option<String> {
    ["subject", "patient", "for"]
        .iter()
        .filter_map(|k| json[*k]["reference"].as_str())
        .find(|r| r.starts_with("Patient/"))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_data_and_different_seed_differs() {
        let a = Store::generate(5, 7);
        let b = Store::generate(5, 7);
        let c = Store::generate(5, 8);
        let dump = |s: &Store| format!("{:?}", s.by_type.values().flat_map(|m| m.values().map(|r| r.json.to_string())).collect::<Vec<_>>());
        assert_eq!(dump(&a), dump(&b));
        assert_ne!(dump(&a), dump(&c));
        assert_eq!(a.ids("Patient").len(), 5);
        for ty in ["Encounter", "Observation", "Condition"] {
            assert!(a.search(ty, None).count() >= 5, "{ty}");
        }
        assert!(a.search("Condition", Some("Patient/patient-0000")).count() >= 1);
    }

    #[test]
    fn added_patients_are_newer() {
        let mut s = Store::generate(2, 1);
        let ids = s.add_patients(1, SEED_TIME_MS);
        assert_eq!(ids, vec!["patient-0002".to_string()]);
        assert!(s.get("Patient", "patient-0002").unwrap().last_updated_ms > SEED_TIME_MS);
        assert_eq!(s.get("Group", "all").unwrap().json["quantity"], 3);
    }

    #[test]
    fn delete_leaves_a_newer_tombstone_and_refreshes_the_group() {
        let mut s = Store::generate(3, 1);
        let before = s.newest_ms;
        assert!(!s.delete("Patient", "nobody", SEED_TIME_MS));
        assert!(s.delete("Observation", "obs-0000-0-0", SEED_TIME_MS));
        assert!(s.delete("Patient", "patient-0001", SEED_TIME_MS));
        assert!(s.get("Patient", "patient-0001").is_none());
        let obs = s.tombstone("Observation", "obs-0000-0-0").unwrap();
        let pat = s.tombstone("Patient", "patient-0001").unwrap();
        assert!(obs.deleted_ms > before && pat.deleted_ms > obs.deleted_ms);
        assert_eq!(obs.patient.as_deref(), Some("Patient/patient-0000"));
        assert_eq!(pat.groups, vec!["all".to_string()]);
        let group = s.get("Group", "all").unwrap();
        assert_eq!(group.json["quantity"], 2);
        assert_eq!(group.last_updated_ms, pat.deleted_ms);
        assert_eq!(s.counts()["Patient"], 2);
        assert_eq!(s.counts()["Task"], 0);
    }
}
