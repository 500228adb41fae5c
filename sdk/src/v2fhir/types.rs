//! HL7v2 datatypes (CWE, CX, EI, HD, XPN, XAD, XTN, XCN, PL) -> FHIR datatypes, and
//! the standard code system / identifier system tables.
//!
//! These run for nearly every field of every message, so they read components in
//! one pass ([`Rep::first_components`]) and allocate only what ends up in the
//! resource ([`text_cow`] borrows for everything that is only looked at).

use std::borrow::Cow;

use super::Context;
use crate::fhir::{
    Address, CodeableConcept, Coding, ContactPoint, HumanName, Identifier, Quantity, Reference,
    decimal, prefixed_uri,
};
use crate::hl7::{Component, Message, Rep};

/// A component's text: decoded, trimmed; `None` when empty or the explicit null `""`.
pub fn text(c: Component<'_>) -> Option<String> {
    text_cow(c).map(Cow::into_owned)
}

/// [`text`], borrowed from the message unless escapes had to be decoded.
pub fn text_cow<'a>(c: Component<'a>) -> Option<Cow<'a, str>> {
    trimmed(c.opt()?)
}

/// Subcomponent `n` of a component, trimmed; `None` when empty.
pub fn sub(c: Component<'_>, n: usize) -> Option<String> {
    sub_cow(c, n).map(Cow::into_owned)
}

/// [`sub`], borrowed unless escapes had to be decoded.
pub fn sub_cow<'a>(c: Component<'a>, n: usize) -> Option<Cow<'a, str>> {
    trimmed(c.sub(n)?).filter(|t| t != "\"\"")
}

/// `v` trimmed; `None` when that leaves nothing.
fn trimmed(v: Cow<'_, str>) -> Option<Cow<'_, str>> {
    let t = match v {
        Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
        Cow::Owned(o) if o.trim().len() == o.len() => Cow::Owned(o),
        Cow::Owned(o) => Cow::Owned(o.trim().to_owned()),
    };
    (!t.is_empty()).then_some(t)
}

/// Join the present `parts` with `sep`; `None` when none is present.
fn join<'a>(parts: impl IntoIterator<Item = Option<Cow<'a, str>>>, sep: &str) -> Option<String> {
    let mut out: Option<String> = None;
    for p in parts.into_iter().flatten() {
        match &mut out {
            Some(s) => {
                s.push_str(sep);
                s.push_str(&p);
            }
            None => out = Some(p.into_owned()),
        }
    }
    out
}

/// `s` in ASCII upper case, in `buf`; `None` when longer than `buf` (no code this
/// module looks for is that long).
fn ascii_upper<'b>(s: &str, buf: &'b mut [u8; 16]) -> Option<&'b str> {
    let b = buf.get_mut(..s.len())?;
    b.copy_from_slice(s.as_bytes());
    b.make_ascii_uppercase();
    // Upper-casing ASCII bytes keeps UTF-8 valid.
    std::str::from_utf8(b).ok()
}

/// MSH-3 (namespace, else universal id), then `/` MSH-4 if present.
pub fn standard_source_system(msg: &Message<'_>) -> String {
    let hd = |n: usize| {
        let c = msg.msh().field(n);
        text_cow(c.component(1)).or_else(|| text_cow(c.component(2)))
    };
    join([hd(3), hd(4)], "/").unwrap_or_else(|| "unknown".to_owned())
}

/// The standard HL7 coding system name (table 0396) -> FHIR system URI table.
pub fn standard_code_system(name: &str) -> Option<String> {
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let mut buf = [0u8; 16];
    if let Some(upper) = ascii_upper(name, &mut buf) {
        if let Some(uri) = known_code_system(upper) {
            return Some(uri.to_owned());
        }
        if let Some(t) = upper.strip_prefix("HL7")
            && t.len() == 4
            && t.bytes().all(|b| b.is_ascii_digit())
        {
            return Some(["http://terminology.hl7.org/CodeSystem/v2-", t].concat());
        }
    }
    Some(prefixed_uri("urn:ehrgate:codesystem:", name))
}

/// The URI of a coding system name in upper case, if it is one of the known ones.
fn known_code_system(upper: &str) -> Option<&'static str> {
    Some(match upper {
        "LN" | "LOINC" => "http://loinc.org",
        "SCT" | "SNM" | "SNM3" | "SCT2" | "SNOMED" | "SNOMEDCT" | "SNOMED-CT" | "SNOMED CT" => {
            "http://snomed.info/sct"
        }
        "I10" | "I10C" | "ICD10" | "ICD10CM" | "ICD-10-CM" => "http://hl7.org/fhir/sid/icd-10-cm",
        "I10P" | "ICD10PCS" => "http://www.cms.gov/Medicare/Coding/ICD10",
        "I9" | "I9C" | "I9CDX" | "ICD9" | "ICD9CM" | "ICD-9-CM" => {
            "http://hl7.org/fhir/sid/icd-9-cm"
        }
        "UCUM" => "http://unitsofmeasure.org",
        "C4" | "C5" | "CPT" | "CPT4" | "CPT-4" => "http://www.ama-assn.org/go/cpt",
        "HCPCS" | "HCPT" => "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
        "RXN" | "RXNORM" => "http://www.nlm.nih.gov/research/umls/rxnorm",
        "NDC" => "http://hl7.org/fhir/sid/ndc",
        "CVX" => "http://hl7.org/fhir/sid/cvx",
        "MVX" => "http://terminology.hl7.org/CodeSystem/MVX",
        "CDCREC" => "urn:oid:2.16.840.1.113883.6.238",
        "ISO3166_1" | "ISO3166-1" => "urn:iso:std:iso:3166",
        "ISO639" | "ISO 639" => "urn:ietf:bcp:47",
        "NUCC" | "NUCCPT" => "http://nucc.org/provider-taxonomy",
        "NCIT" | "NCI" => "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl",
        "HL70078" => "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
        _ => return None,
    })
}

/// HD (namespace, universal id, universal id type) -> an `Identifier.system`:
/// `urn:oid:` for an OID, `urn:uuid:` for a UUID, a URI as is, else
/// `urn:ehrgate:id:<namespace>`.
pub fn standard_identifier_system(
    namespace: &str,
    universal_id: &str,
    universal_id_type: &str,
) -> Option<String> {
    let (ns, uid, ty) = (
        namespace.trim(),
        universal_id.trim(),
        universal_id_type.trim(),
    );
    if !uid.is_empty() {
        if is_oid(uid) {
            return Some(["urn:oid:", uid].concat());
        }
        if ty.eq_ignore_ascii_case("UUID")
            && uid.len() == 36
            && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        {
            return Some(["urn:uuid:", &uid.to_ascii_lowercase()].concat());
        }
        if (ty.eq_ignore_ascii_case("URI") || ty.eq_ignore_ascii_case("URL"))
            && uid.contains(':')
            && !uid.contains(char::is_whitespace)
        {
            return Some(uid.to_owned());
        }
    }
    let name = if ns.is_empty() { uid } else { ns };
    (!name.is_empty()).then(|| prefixed_uri("urn:ehrgate:id:", name))
}

fn is_oid(s: &str) -> bool {
    let mut arcs = s.split('.');
    let first_ok = matches!(arcs.next(), Some("0" | "1" | "2"));
    let mut rest = 0;
    first_ok
        && arcs.all(|a| {
            rest += 1;
            !a.is_empty()
                && a.bytes().all(|b| b.is_ascii_digit())
                && (a.len() == 1 || !a.starts_with('0'))
        })
        && rest > 0
}

impl Context<'_, '_> {
    /// A system URI for an HL7 coding system name via the mapper.
    pub fn code_system(&self, name: &str) -> Option<String> {
        self.mapper.code_system(name)
    }

    /// CWE/CE/CNE -> CodeableConcept (primary and alternate codings; text from CWE-9,
    /// or CWE-2 when nothing is coded). `None` when empty.
    pub fn concept(&self, cwe: Rep<'_>) -> Option<CodeableConcept> {
        self.concept_in(cwe, "")
    }

    /// Like [`concept`](Self::concept), reading codes without a CWE-3 as from the
    /// table `default_system` (e.g. `HL70004`).
    pub fn concept_in(&self, cwe: Rep<'_>, default_system: &str) -> Option<CodeableConcept> {
        if cwe.is_empty() {
            return None;
        }
        let c: [Component<'_>; 9] = cwe.first_components();
        let t = |n: usize| text(c[n - 1]);
        let coding = |code: usize, display: usize, system: usize, version: usize, default: &str| {
            let code = t(code)?;
            let system = match text_cow(c[system - 1]) {
                Some(name) => self.code_system(&name),
                None => self.code_system(default),
            };
            Some(Coding {
                system,
                version: t(version),
                code: Some(code),
                display: t(display),
            })
        };
        let mut cc = CodeableConcept::default();
        cc.coding.extend(coding(1, 2, 3, 7, default_system));
        cc.coding.extend(coding(4, 5, 6, 8, ""));
        cc.text = t(9).or_else(|| if cc.coding.is_empty() { t(2) } else { None });
        (!cc.is_empty()).then_some(cc)
    }

    /// A plain code (ID/IS) from table `table` (e.g. `HL70004`) -> CodeableConcept.
    pub fn table_concept(&self, code: Option<String>, table: &str) -> Option<CodeableConcept> {
        let code = code?;
        Some(CodeableConcept {
            coding: vec![Coding {
                system: self.code_system(table),
                code: Some(code),
                ..Default::default()
            }],
            text: None,
        })
    }

    /// HD subcomponents of a component (e.g. CX-4) -> identifier system.
    pub fn hd_system(&self, hd: Component<'_>) -> Option<String> {
        let part = |n| sub_cow(hd, n).unwrap_or_default();
        self.mapper.identifier_system(&part(1), &part(2), &part(3))
    }

    /// HD as a whole field/rep (components, e.g. MSH-4, EI-2..4 at component level).
    fn hd_components(&self, rep: Rep<'_>, first: usize) -> Option<String> {
        let part = |n| text_cow(rep.component(n)).unwrap_or_default();
        self.mapper
            .identifier_system(&part(first), &part(first + 1), &part(first + 2))
    }

    /// CX -> Identifier (value, system from CX-4, type from CX-5, period CX-7/8).
    pub fn identifier(&mut self, cx: Rep<'_>) -> Option<Identifier> {
        if cx.is_empty() {
            return None;
        }
        let c: [Component<'_>; 8] = cx.first_components();
        let value = text(c[0])?;
        let mut id = Identifier::new(self.hd_system(c[3]), value);
        if let Some(t) = text_cow(c[4]) {
            id = id.with_v2_type(&t);
        }
        let start = self.date(text_cow(c[6]).as_deref(), "CX-7");
        let end = self.date(text_cow(c[7]).as_deref(), "CX-8");
        if start.is_some() || end.is_some() {
            id.period = Some(crate::fhir::Period { start, end });
        }
        Some(id)
    }

    /// EI (entity id, namespace, universal id, type) -> Identifier.
    pub fn ei_identifier(&self, ei: Rep<'_>) -> Option<Identifier> {
        if ei.is_empty() {
            return None;
        }
        let value = text(ei.component(1))?;
        Some(Identifier::new(self.hd_components(ei, 2), value))
    }

    /// XPN -> HumanName. `None` without family or given names.
    pub fn name(&self, xpn: Rep<'_>) -> Option<HumanName> {
        if xpn.is_empty() {
            return None;
        }
        let c: [Component<'_>; 7] = xpn.first_components();
        let family = text(c[0]);
        let given: Vec<String> = [c[1], c[2]].into_iter().filter_map(text).collect();
        if family.is_none() && given.is_empty() {
            return None;
        }
        let use_ = text_cow(c[6]).and_then(|t| {
            Some(match &*t {
                "L" => "official",
                "D" | "A" => "usual",
                "M" | "B" => "maiden",
                "N" => "nickname",
                "S" | "P" => "anonymous",
                "T" => "temp",
                _ => return None,
            })
        });
        Some(HumanName {
            use_: use_.map(str::to_owned),
            family,
            given,
            prefix: text(c[4]).into_iter().collect(),
            suffix: [c[3], c[5]].into_iter().filter_map(text).collect(),
            ..Default::default()
        })
    }

    /// XAD -> Address. `None` when empty.
    pub fn address(&self, xad: Rep<'_>) -> Option<Address> {
        if xad.is_empty() {
            return None;
        }
        let c: [Component<'_>; 9] = xad.first_components();
        let street = join((1..=3).map(|n| sub_cow(c[0], n)), " ");
        let (use_, type_) = match text_cow(c[6]).as_deref() {
            Some("H" | "P" | "L") => (Some("home"), None),
            Some("B" | "O") => (Some("work"), None),
            Some("C") => (Some("temp"), None),
            Some("BA") => (Some("old"), None),
            Some("M" | "SH") => (None, Some("postal")),
            _ => (None, None),
        };
        let a = Address {
            use_: use_.map(str::to_owned),
            type_: type_.map(str::to_owned),
            line: street.into_iter().chain(text(c[1])).collect(),
            city: text(c[2]),
            state: text(c[3]),
            postal_code: text(c[4]),
            country: text(c[5]),
            district: text(c[8]),
            ..Default::default()
        };
        let empty = a.line.is_empty()
            && a.city.is_none()
            && a.state.is_none()
            && a.postal_code.is_none()
            && a.country.is_none();
        (!empty || a.district.is_some()).then_some(a)
    }

    /// XTN -> ContactPoint; `default_use` when XTN-2 says nothing (home for PID-13,
    /// work for PID-14). `None` without a value.
    pub fn telecom(&self, xtn: Rep<'_>, default_use: Option<&str>) -> Option<ContactPoint> {
        let c: [Component<'_>; 12] = xtn.first_components();
        let use_code = text_cow(c[1]).unwrap_or_default();
        let mut buf = [0u8; 16];
        let equipment = text_cow(c[2]).unwrap_or_default();
        // Longer than any code looked for: matches none, like an empty one.
        let equipment = ascii_upper(&equipment, &mut buf).unwrap_or_default();
        let is_email = equipment == "INTERNET" || equipment == "X.400" || use_code == "NET";
        let value = if is_email {
            text(c[3]).or_else(|| text(c[0]))
        } else {
            text(c[11]).or_else(|| text(c[0])).or_else(|| {
                let local = text_cow(c[6])?;
                let mut s = String::new();
                if let Some(cc) = text_cow(c[4]) {
                    s.push('+');
                    s.push_str(&cc);
                    s.push(' ');
                }
                if let Some(area) = text_cow(c[5]) {
                    s.push('(');
                    s.push_str(&area);
                    s.push_str(") ");
                }
                s.push_str(&local);
                if let Some(ext) = text_cow(c[7]) {
                    s.push_str(" ext. ");
                    s.push_str(&ext);
                }
                Some(s)
            })
        }?;
        let email = is_email || value.contains('@');
        let system = match equipment {
            _ if email => "email",
            "FX" => "fax",
            "BP" => "pager",
            "MD" | "TDD" | "TTY" => "other",
            _ => "phone",
        };
        let use_ = match (equipment, &*use_code) {
            ("CP", _) => Some("mobile"),
            (_, "PRN" | "ORN") => Some("home"),
            (_, "WPN") => Some("work"),
            (_, "VHN") => Some("temp"),
            _ => default_use,
        };
        Some(ContactPoint {
            system: Some(system.to_owned()),
            value: Some(value),
            use_: use_.map(str::to_owned),
            ..Default::default()
        })
    }

    /// XCN (a provider) -> Reference by identifier and display (no Practitioner
    /// resource is made).
    pub fn practitioner(&self, xcn: Rep<'_>) -> Option<Reference> {
        if xcn.is_empty() {
            return None;
        }
        let c: [Component<'_>; 13] = xcn.first_components();
        let id = text(c[0]);
        // Prefix, given, middle, family, suffix.
        let display = join(
            [
                text_cow(c[5]),
                text_cow(c[2]),
                text_cow(c[3]),
                sub_cow(c[1], 1),
                text_cow(c[4]),
            ],
            " ",
        );
        if id.is_none() && display.is_none() {
            return None;
        }
        let system = if text_cow(c[12]).as_deref() == Some("NPI") {
            Some("http://hl7.org/fhir/sid/us-npi".to_owned())
        } else {
            self.hd_system(c[8])
        };
        Some(Reference {
            type_: Some("Practitioner".to_owned()),
            identifier: id.map(|v| Box::new(Identifier::new(system, v))),
            display,
            ..Default::default()
        })
    }

    /// PL (a location) -> Reference by display (`point of care / room / bed /
    /// facility`, or PL-9's description).
    pub fn location(&self, pl: Rep<'_>) -> Option<Reference> {
        if pl.is_empty() {
            return None;
        }
        let c: [Component<'_>; 9] = pl.first_components();
        let display = text(c[8]).or_else(|| {
            join(
                [c[0], c[1], c[2], c[3], c[6], c[7]].map(|p| sub_cow(p, 1)),
                " / ",
            )
        })?;
        Some(Reference {
            type_: Some("Location".to_owned()),
            display: Some(display),
            ..Default::default()
        })
    }

    /// A unit (CWE, e.g. OBX-6) onto a Quantity: UCUM (or another named system)
    /// gives `system` + `code`; without a system only `unit` text is set.
    pub fn quantity(&self, value: &str, unit: Option<Rep<'_>>) -> Option<Quantity> {
        let mut q = Quantity {
            value: Some(decimal(value)?),
            ..Default::default()
        };
        if let Some(u) = unit {
            let c: [Component<'_>; 3] = u.first_components();
            let code = text(c[0]);
            q.unit = text(c[1]).or_else(|| code.clone());
            if let Some(sys) = text_cow(c[2]).and_then(|s| self.code_system(&s)) {
                q.system = Some(sys);
                q.code = code;
            }
        }
        Some(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_systems() {
        assert_eq!(standard_code_system("LN").unwrap(), "http://loinc.org");
        assert_eq!(
            standard_code_system("sct").unwrap(),
            "http://snomed.info/sct"
        );
        assert_eq!(
            standard_code_system("I10").unwrap(),
            "http://hl7.org/fhir/sid/icd-10-cm"
        );
        assert_eq!(
            standard_code_system("I9C").unwrap(),
            "http://hl7.org/fhir/sid/icd-9-cm"
        );
        assert_eq!(
            standard_code_system("UCUM").unwrap(),
            "http://unitsofmeasure.org"
        );
        assert_eq!(
            standard_code_system("HL70203").unwrap(),
            "http://terminology.hl7.org/CodeSystem/v2-0203"
        );
        assert_eq!(
            standard_code_system("99 USI").unwrap(),
            "urn:ehrgate:codesystem:99%20USI"
        );
        assert_eq!(standard_code_system(" "), None);
    }

    #[test]
    fn identifier_systems() {
        assert_eq!(
            standard_identifier_system("AccMgr", "1.3.6.1.4.1.44750.1.2.2", "ISO").unwrap(),
            "urn:oid:1.3.6.1.4.1.44750.1.2.2"
        );
        assert_eq!(
            standard_identifier_system("MSH_MRN", "", "").unwrap(),
            "urn:ehrgate:id:MSH_MRN"
        );
        assert_eq!(
            standard_identifier_system("NTH", "rt23", "HCD").unwrap(),
            "urn:ehrgate:id:NTH"
        );
        assert_eq!(
            standard_identifier_system("X", "9.8", "ISO").unwrap(),
            "urn:ehrgate:id:X"
        );
        assert_eq!(
            standard_identifier_system("", "https://x.org/ids", "URI").unwrap(),
            "https://x.org/ids"
        );
        assert_eq!(standard_identifier_system("", "", ""), None);
        assert!(
            is_oid("2.16.840.1.113883.19") && !is_oid("2.016") && !is_oid("3.1") && !is_oid("1")
        );
    }
}
