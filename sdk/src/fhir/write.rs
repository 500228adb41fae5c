//! Writing FHIR JSON text straight from the builders.
//!
//! The text is exactly what serde_json writes for the builder's [`ToFhir`] value
//! (keys sorted, empty members left out, the same string escapes and number
//! formats), without building that value. An object or list that comes out empty is
//! taken back out of the text after the fact, so emptiness is decided as for values.
//!
//! [`ToFhir`]: super::ToFhir

use super::datatypes::Choice;
use super::json::is_blank;
use super::members::{Members, Sink, to_value};
use serde_json::Number;
use std::fmt::Write as _;

/// The JSON text of `t` (a resource, or any builder).
pub(crate) fn to_json<T: Members + ?Sized>(t: &T) -> String {
    let mut w = JsonWriter::new(String::with_capacity(1024));
    w.object(t);
    w.out
}

/// Writes members into a JSON text.
pub(crate) struct JsonWriter {
    out: String,
    /// The last key of each open object, to check key order.
    #[cfg(debug_assertions)]
    keys: Vec<String>,
}

impl JsonWriter {
    fn new(out: String) -> Self {
        JsonWriter {
            out,
            #[cfg(debug_assertions)]
            keys: Vec::new(),
        }
    }

    /// `{...}` for `t`; `{}` when it has nothing to write.
    fn object<T: Members + ?Sized>(&mut self, t: &T) {
        if t.extra().is_some_and(|e| !e.is_empty()) {
            // JSON members merged in: let serde_json write the merged value.
            let v = to_value(t);
            self.out
                .push_str(&serde_json::to_string(&v).unwrap_or_default());
            return;
        }
        self.out.push('{');
        #[cfg(debug_assertions)]
        self.keys.push(String::new());
        t.members(self);
        #[cfg(debug_assertions)]
        self.keys.pop();
        self.out.push('}');
    }

    /// A `,` unless this is the first entry of an object or list.
    fn comma(&mut self) {
        if !matches!(self.out.as_bytes().last(), Some(b'{' | b'[')) {
            self.out.push(',');
        }
    }

    /// Start a member named by `parts` joined; returns where it starts, for
    /// [`drop_if_empty`](Self::drop_if_empty).
    fn key(&mut self, parts: &[&str]) -> usize {
        let mark = self.out.len();
        self.comma();
        self.out.push('"');
        for p in parts {
            debug_assert!(p.bytes().all(|b| b.is_ascii_alphanumeric()), "key {p}");
            self.out.push_str(p);
        }
        self.out.push_str("\":");
        #[cfg(debug_assertions)]
        {
            let key = parts.concat();
            let last = self.keys.last_mut().expect("a key outside an object");
            assert!(
                *last < key,
                "members must be listed in key order: `{key}` after `{last}`"
            );
            *last = key;
        }
        mark
    }

    /// Take a member back out when its value (from `start`) is `{}` or `[]`.
    fn drop_if_empty(&mut self, mark: usize, start: usize) {
        if matches!(&self.out[start..], "{}" | "[]") {
            self.out.truncate(mark);
        }
    }

    fn obj_parts<T: Members + ?Sized>(&mut self, parts: &[&str], value: &T) {
        let mark = self.key(parts);
        let start = self.out.len();
        self.object(value);
        self.drop_if_empty(mark, start);
    }

    fn str_parts(&mut self, parts: &[&str], value: &str) {
        if !is_blank(value) {
            self.key(parts);
            push_json_string(&mut self.out, value);
        }
    }
}

impl Sink for JsonWriter {
    fn str(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.str_parts(&[key], v);
        }
    }

    fn strs(&mut self, key: &str, values: &[String]) {
        if values.iter().all(|v| is_blank(v)) {
            return;
        }
        self.key(&[key]);
        self.out.push('[');
        for v in values.iter().filter(|v| !is_blank(v)) {
            self.comma();
            push_json_string(&mut self.out, v);
        }
        self.out.push(']');
    }

    fn bool(&mut self, key: &str, value: Option<bool>) {
        if let Some(b) = value {
            self.key(&[key]);
            self.out.push_str(if b { "true" } else { "false" });
        }
    }

    fn number(&mut self, key: &str, value: Option<&Number>) {
        if let Some(n) = value {
            self.key(&[key]);
            let _ = write!(self.out, "{n}");
        }
    }

    fn obj<T: Members>(&mut self, key: &str, value: Option<&T>) {
        if let Some(v) = value {
            self.obj_parts(&[key], v);
        }
    }

    fn list<T: Members>(&mut self, key: &str, values: &[T]) {
        if values.is_empty() {
            return;
        }
        let mark = self.key(&[key]);
        let start = self.out.len();
        self.out.push('[');
        for v in values {
            let entry = self.out.len();
            self.comma();
            let at = self.out.len();
            self.object(v);
            if &self.out[at..] == "{}" {
                self.out.truncate(entry);
            }
        }
        self.out.push(']');
        self.drop_if_empty(mark, start);
    }

    fn choice(&mut self, prefix: &str, value: Option<&Choice>) {
        let Some(c) = value else { return };
        let key = [prefix, c.type_suffix()];
        match c {
            Choice::String(s) | Choice::DateTime(s) | Choice::Date(s) | Choice::Time(s) => {
                self.str_parts(&key, s)
            }
            Choice::Boolean(b) => {
                self.key(&key);
                self.out.push_str(if *b { "true" } else { "false" });
            }
            Choice::Integer(i) => {
                self.key(&key);
                let _ = write!(self.out, "{i}");
            }
            Choice::Quantity(q) => self.obj_parts(&key, q),
            Choice::CodeableConcept(cc) => self.obj_parts(&key, cc),
            Choice::Range(r) => self.obj_parts(&key, r),
            Choice::Ratio(r) => self.obj_parts(&key, r),
            Choice::Period(p) => self.obj_parts(&key, p),
            Choice::Reference(r) => self.obj_parts(&key, r),
        }
    }
}

/// Whether any byte of `w` is `"`, `\` or a control character (< 0x20).
#[inline(always)]
fn any_to_escape(w: u64) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(LO) & !x & HI;
    let control = w.wrapping_sub(LO * 0x20) & !w & HI;
    (control | zero_byte(w ^ (LO * u64::from(b'"'))) | zero_byte(w ^ (LO * u64::from(b'\\')))) != 0
}

/// `s` as a JSON string literal, escaped as serde_json does: `"` `\` and control
/// characters only (`\n` `\r` `\t` `\b` `\f`, else `\u00XX`).
fn push_json_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    if needs_escapes(s.as_bytes()) {
        push_escaped(out, s);
    } else {
        out.push_str(s);
    }
    out.push('"');
}

/// Whether `b` has anything to escape, looked at 8 bytes at a time.
fn needs_escapes(b: &[u8]) -> bool {
    let word = |c: &[u8]| u64::from_le_bytes(c.try_into().expect("8 bytes"));
    if b.len() < 8 {
        return b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
    }
    let mut chunks = b.chunks_exact(8);
    if chunks.any(|c| any_to_escape(word(c))) {
        return true;
    }
    // The last (overlapping) 8 bytes cover what `chunks_exact` left over.
    any_to_escape(word(&b[b.len() - 8..]))
}

fn push_escaped(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        // `b` is ASCII, so `i` is a char boundary.
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::*;
    use serde_json::json;

    /// The text written directly is serde_json's text of the builder's value.
    fn same<T: Members + ToFhir>(t: &T) {
        assert_eq!(to_json(t), serde_json::to_string(&t.to_fhir()).unwrap());
    }

    #[test]
    fn direct_json_is_serde_json_of_the_value() {
        let blank = || Some(" ".to_string());
        let s = |v: &str| Some(v.to_string());
        let cc = CodeableConcept {
            coding: vec![
                Coding::new("http://loinc.org", "1").with_display("One"),
                Coding::default(),
                Coding {
                    code: blank(),
                    version: s("2"),
                    ..Default::default()
                },
            ],
            text: s("t \"quoted\"\n"),
        };
        let q = Quantity {
            value: decimal("-1.50"),
            comparator: s("<"),
            ..Quantity::ucum(decimal("12").unwrap(), "mg")
        };
        let period = Period {
            start: s("2024"),
            end: blank(),
        };
        let reference = Reference {
            reference: s("Patient/1"),
            type_: s("Patient"),
            identifier: Some(Box::new(
                Identifier::new(s("urn:x"), "v").with_v2_type("MR"),
            )),
            display: s("Doe, J"),
        };
        let id = Identifier {
            use_: s("usual"),
            period: Some(Period::default()),
            assigner: Some(Reference::display("Org")),
            ..Identifier::new(None, "id1")
        };
        let meta = Meta {
            version_id: s("1"),
            last_updated: s("2024-01-01T00:00:00Z"),
            source: s("urn:ehrgate:x#1"),
            profile: vec!["p".into(), "".into()],
            security: vec![Coding::new("s", "R")],
            tag: vec![Coding::default()],
        };
        let mut extra = serde_json::Map::new();
        extra.insert("zz".into(), json!({"a": [], "b": "x"}));
        extra.insert("id".into(), json!(""));
        same(&cc);
        same(&q);
        same(&period);
        same(&reference);
        same(&id);
        same(&meta);
        same(&Range {
            low: Some(q.clone()),
            high: Some(Quantity::default()),
        });
        same(&Ratio {
            numerator: Some(q.clone()),
            denominator: None,
        });
        same(&Annotation {
            text: "n\t".into(),
            author_string: s("a"),
            time: blank(),
        });
        same(&HumanName {
            use_: s("official"),
            text: s("J Doe"),
            family: s("Doe"),
            given: vec!["J".into(), " ".into(), "K".into()],
            prefix: vec![" ".into()],
            suffix: vec!["Jr".into()],
            period: Some(period.clone()),
        });
        same(&Address {
            use_: s("home"),
            type_: s("postal"),
            text: blank(),
            line: vec!["1 Main St".into()],
            city: s("X"),
            district: s("D"),
            state: s("S"),
            postal_code: s("1"),
            country: s("C"),
            period: None,
        });
        same(&ContactPoint {
            system: s("phone"),
            value: s("555"),
            use_: s("home"),
            rank: Some(2),
            period: Some(period.clone()),
        });
        let patient = Patient {
            id: "p1".into(),
            meta: meta.clone(),
            identifier: vec![id.clone(), Identifier::default()],
            active: Some(false),
            name: vec![HumanName::default()],
            telecom: vec![ContactPoint::default()],
            gender: s("male"),
            birth_date: s("2000-01-01"),
            deceased: Some(Choice::DateTime("2020-01-01".into())),
            address: vec![],
            marital_status: Some(cc.clone()),
            multiple_birth: Some(Choice::Integer(2)),
            contact: vec![
                PatientContact::default(),
                PatientContact {
                    relationship: vec![cc.clone()],
                    name: Some(HumanName {
                        family: s("Roe"),
                        ..Default::default()
                    }),
                    gender: s("female"),
                    organization: Some(reference.clone()),
                    period: Some(period.clone()),
                    ..Default::default()
                },
            ],
            communication: vec![PatientCommunication {
                language: cc.clone(),
                preferred: Some(true),
            }],
            general_practitioner: vec![reference.clone()],
            managing_organization: Some(Reference::default()),
            link: vec![PatientLink {
                other: reference.clone(),
                type_: "seealso".into(),
            }],
            extra: Default::default(),
        };
        same(&patient);
        same(&Patient {
            extra: extra.clone(),
            ..patient.clone()
        });
        same(&Encounter {
            id: "e1".into(),
            meta: meta.clone(),
            identifier: vec![id.clone()],
            status: "finished".into(),
            class: Coding::new("c", "IMP"),
            type_: vec![cc.clone()],
            service_type: Some(cc.clone()),
            priority: Some(CodeableConcept::default()),
            subject: Some(reference.clone()),
            participant: vec![EncounterParticipant {
                type_: vec![cc.clone()],
                period: Some(period.clone()),
                individual: Some(reference.clone()),
            }],
            period: Some(period.clone()),
            reason_code: vec![cc.clone()],
            hospitalization: Some(EncounterHospitalization {
                pre_admission_identifier: Some(id.clone()),
                admit_source: Some(cc.clone()),
                re_admission: None,
                diet_preference: vec![cc.clone()],
                special_courtesy: vec![],
                destination: Some(reference.clone()),
                discharge_disposition: Some(cc.clone()),
            }),
            location: vec![EncounterLocation {
                location: reference.clone(),
                status: s("active"),
                period: None,
            }],
            service_provider: Some(reference.clone()),
            extra: Default::default(),
        });
        same(&Task {
            id: "t1".into(),
            meta: meta.clone(),
            status: "requested".into(),
            intent: "order".into(),
            priority: s("routine"),
            code: Some(cc.clone()),
            description: s("d"),
            focus: Some(reference.clone()),
            for_: Some(reference.clone()),
            encounter: Some(reference.clone()),
            execution_period: Some(period.clone()),
            authored_on: s("2024"),
            last_modified: blank(),
            requester: Some(reference.clone()),
            owner: Some(reference.clone()),
            reason_code: Some(cc.clone()),
            business_status: Some(cc.clone()),
            based_on: vec![reference.clone()],
            identifier: vec![id.clone()],
            note: vec![Annotation::default()],
            extra: Default::default(),
        });
        let obs = Observation {
            id: "o1".into(),
            meta: meta.clone(),
            identifier: vec![id.clone()],
            based_on: vec![reference.clone()],
            status: "final".into(),
            category: vec![cc.clone()],
            code: cc.clone(),
            subject: Some(reference.clone()),
            encounter: Some(reference.clone()),
            effective: Some(Choice::Period(period.clone())),
            issued: s("2024-01-01T00:00:00Z"),
            performer: vec![reference.clone()],
            value: Some(Choice::Quantity(q.clone())),
            data_absent_reason: Some(cc.clone()),
            interpretation: vec![cc.clone()],
            note: vec![Annotation {
                text: "n".into(),
                ..Default::default()
            }],
            body_site: Some(cc.clone()),
            method: Some(cc.clone()),
            specimen: Some(reference.clone()),
            reference_range: vec![ReferenceRange {
                low: Some(q.clone()),
                high: None,
                type_: Some(cc.clone()),
                text: s("< 5"),
            }],
            has_member: vec![reference.clone()],
            component: vec![ObservationComponent { code: cc.clone(), value: Some(Choice::Boolean(true)) }],
            extra: Default::default(),
        };
        same(&obs);
        for value in [
            Choice::String(" ".into()),
            Choice::Boolean(true),
            Choice::Integer(-3),
            Choice::CodeableConcept(CodeableConcept::default()),
            Choice::Range(Range::default()),
            Choice::Ratio(Ratio {
                numerator: Some(q.clone()),
                denominator: Some(q.clone()),
            }),
            Choice::Time("10:00:00".into()),
            Choice::Date("2024".into()),
            Choice::Reference(reference.clone()),
        ] {
            same(&Observation {
                value: Some(value),
                ..obs.clone()
            });
        }
        same(&DiagnosticReport {
            id: "r1".into(),
            meta: meta.clone(),
            identifier: vec![id.clone()],
            based_on: vec![reference.clone()],
            status: "final".into(),
            category: vec![cc.clone()],
            code: cc.clone(),
            subject: Some(reference.clone()),
            encounter: Some(reference.clone()),
            effective: Some(Choice::DateTime("2024".into())),
            issued: s("2024-01-01T00:00:00Z"),
            performer: vec![reference.clone()],
            results_interpreter: vec![reference.clone()],
            specimen: vec![reference.clone()],
            result: vec![reference.clone()],
            conclusion: s("c"),
            conclusion_code: vec![cc.clone()],
            extra: Default::default(),
        });
        same(&Condition {
            id: "c1".into(),
            meta: meta.clone(),
            identifier: vec![id.clone()],
            clinical_status: Some(cc.clone()),
            verification_status: Some(cc.clone()),
            category: vec![cc.clone()],
            severity: Some(cc.clone()),
            code: Some(cc.clone()),
            body_site: vec![cc.clone()],
            subject: reference.clone(),
            encounter: Some(reference.clone()),
            onset: Some(Choice::DateTime("2024".into())),
            abatement: Some(Choice::Boolean(false)),
            recorded_date: s("2024"),
            recorder: Some(reference.clone()),
            asserter: Some(reference.clone()),
            note: vec![],
            extra: Default::default(),
        });
        same(&AllergyIntolerance {
            id: "a1".into(),
            meta: meta.clone(),
            identifier: vec![id.clone()],
            clinical_status: Some(cc.clone()),
            verification_status: Some(cc.clone()),
            type_: s("allergy"),
            category: vec!["food".into(), "".into()],
            criticality: s("low"),
            code: Some(cc.clone()),
            patient: reference.clone(),
            encounter: Some(reference.clone()),
            onset: Some(Choice::String("childhood".into())),
            recorded_date: s("2024"),
            recorder: Some(reference.clone()),
            asserter: Some(reference.clone()),
            note: vec![],
            reaction: vec![AllergyReaction {
                substance: Some(cc.clone()),
                manifestation: vec![cc.clone()],
                description: s("d"),
                onset: s("2024"),
                severity: s("mild"),
            }],
            extra: Default::default(),
        });
        same(&Procedure {
            id: "pr1".into(),
            meta: meta.clone(),
            identifier: vec![id.clone()],
            based_on: vec![reference.clone()],
            status: "completed".into(),
            category: Some(cc.clone()),
            code: Some(cc.clone()),
            subject: reference.clone(),
            encounter: Some(reference.clone()),
            performed: Some(Choice::DateTime("2024".into())),
            recorder: Some(reference.clone()),
            asserter: Some(reference.clone()),
            performer: vec![Performer {
                function: Some(cc.clone()),
                actor: reference.clone(),
            }],
            location: Some(reference.clone()),
            reason_code: vec![cc.clone()],
            body_site: vec![cc.clone()],
            outcome: Some(cc.clone()),
            note: vec![],
            part_of: vec![reference.clone()],
            extra: Default::default(),
        });
        same(&Immunization {
            id: "i1".into(),
            meta: meta.clone(),
            identifier: vec![id.clone()],
            status: "completed".into(),
            status_reason: Some(cc.clone()),
            vaccine_code: cc.clone(),
            patient: reference.clone(),
            encounter: Some(reference.clone()),
            occurrence: Some(Choice::DateTime("2024".into())),
            recorded: s("2024"),
            primary_source: Some(true),
            manufacturer: Some(reference.clone()),
            lot_number: s("L1"),
            expiration_date: s("2025"),
            site: Some(cc.clone()),
            route: Some(cc.clone()),
            dose_quantity: Some(q.clone()),
            performer: vec![],
            note: vec![],
            reason_code: vec![cc.clone()],
            extra: Default::default(),
        });
        let dosage = Dosage {
            text: s("1 daily"),
            route: Some(cc.clone()),
            dose: Some(q.clone()),
            extra: Default::default(),
        };
        let mr = MedicationRequest {
            id: "m1".into(),
            meta,
            identifier: vec![id],
            status: "active".into(),
            intent: "order".into(),
            category: vec![cc.clone()],
            priority: s("stat"),
            medication: Some(Choice::CodeableConcept(cc.clone())),
            subject: reference.clone(),
            encounter: Some(reference.clone()),
            authored_on: s("2024"),
            requester: Some(reference),
            reason_code: vec![cc.clone()],
            note: vec![],
            dosage_instruction: vec![
                dosage.clone(),
                Dosage {
                    dose: Some(Quantity::default()),
                    ..Default::default()
                },
                Dosage {
                    extra: extra.clone(),
                    ..dosage
                },
            ],
            extra: Default::default(),
        };
        same(&mr);
        same(&MedicationRequest { extra, ..mr });
    }

    #[test]
    fn strings_escape_like_serde_json() {
        for s in [
            "plain",
            "quote \" and \\ backslash",
            "lines\nand\rtabs\t\u{8}\u{c}",
            "\u{0}\u{1f}\u{7f} é ✓ 𝄞 </script>",
            "eight by tes then a \" quote, and a tab\tafter é✓𝄞 multi-byte text",
            "1234567é\\",
            "",
        ] {
            let mut out = String::new();
            push_json_string(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap());
        }
    }
}
