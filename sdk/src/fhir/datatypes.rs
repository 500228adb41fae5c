//! FHIR R4 datatypes as plain structs. Fill the fields you have (`..Default::default()`
//! for the rest) or use the constructors; [`ToFhir::to_fhir`] writes JSON without empty
//! members. Field names follow FHIR; `use_` and `type_` stand for `use` and `type`.

use super::json::ToFhir;
use super::members::{Members, Sink, to_fhir_via_members};
use serde_json::{Number, Value};

/// A `Coding`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Coding {
    pub system: Option<String>,
    pub version: Option<String>,
    pub code: Option<String>,
    pub display: Option<String>,
}

impl Coding {
    pub fn new(system: impl Into<String>, code: impl Into<String>) -> Self {
        Coding {
            system: Some(system.into()),
            code: Some(code.into()),
            ..Default::default()
        }
    }
    pub fn with_display(mut self, display: impl Into<String>) -> Self {
        self.display = Some(display.into());
        self
    }
    pub fn is_empty(&self) -> bool {
        self.code.is_none() && self.display.is_none()
    }
}

impl Members for Coding {
    fn members<S: Sink>(&self, s: &mut S) {
        s.str("code", self.code.as_deref());
        s.str("display", self.display.as_deref());
        s.str("system", self.system.as_deref());
        s.str("version", self.version.as_deref());
    }
}

/// A `CodeableConcept`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CodeableConcept {
    pub coding: Vec<Coding>,
    pub text: Option<String>,
}

impl CodeableConcept {
    /// One coding.
    pub fn code(system: impl Into<String>, code: impl Into<String>, display: Option<&str>) -> Self {
        let mut c = Coding::new(system, code);
        c.display = display.map(str::to_owned);
        CodeableConcept {
            coding: vec![c],
            text: None,
        }
    }
    /// Text only.
    pub fn text(text: impl Into<String>) -> Self {
        CodeableConcept {
            coding: vec![],
            text: Some(text.into()),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.coding.iter().all(Coding::is_empty)
            && self.text.as_deref().is_none_or(|t| t.trim().is_empty())
    }
}

impl Members for CodeableConcept {
    fn members<S: Sink>(&self, s: &mut S) {
        s.list("coding", &self.coding);
        s.str("text", self.text.as_deref());
    }
}

/// A `Period` (FHIR `dateTime` strings).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Period {
    pub start: Option<String>,
    pub end: Option<String>,
}

impl Members for Period {
    fn members<S: Sink>(&self, s: &mut S) {
        s.str("end", self.end.as_deref());
        s.str("start", self.start.as_deref());
    }
}

/// A `Reference`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reference {
    /// `Type/id`.
    pub reference: Option<String>,
    pub type_: Option<String>,
    pub identifier: Option<Box<Identifier>>,
    pub display: Option<String>,
}

impl Reference {
    /// A reference to `Type/id`.
    pub fn to(resource_type: &str, id: &str) -> Self {
        Reference {
            reference: Some(crate::ids::reference(resource_type, id)),
            ..Default::default()
        }
    }
    /// A reference by display text only (no resource to point at).
    pub fn display(display: impl Into<String>) -> Self {
        Reference {
            display: Some(display.into()),
            ..Default::default()
        }
    }
}

impl Members for Reference {
    fn members<S: Sink>(&self, s: &mut S) {
        s.str("display", self.display.as_deref());
        s.obj("identifier", self.identifier.as_deref());
        s.str("reference", self.reference.as_deref());
        s.str("type", self.type_.as_deref());
    }
}

/// An `Identifier`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identifier {
    pub use_: Option<String>,
    pub type_: Option<CodeableConcept>,
    pub system: Option<String>,
    pub value: Option<String>,
    pub period: Option<Period>,
    pub assigner: Option<Reference>,
}

impl Identifier {
    pub fn new(system: Option<String>, value: impl Into<String>) -> Self {
        Identifier {
            system,
            value: Some(value.into()),
            ..Default::default()
        }
    }
    /// Set the type from the v2 table 0203 (`MR`, `VN`, `PLAC`...).
    pub fn with_v2_type(mut self, code: &str) -> Self {
        if !code.trim().is_empty() {
            self.type_ = Some(CodeableConcept::code(
                "http://terminology.hl7.org/CodeSystem/v2-0203",
                code.trim(),
                None,
            ));
        }
        self
    }
}

impl Members for Identifier {
    fn members<S: Sink>(&self, s: &mut S) {
        s.obj("assigner", self.assigner.as_ref());
        s.obj("period", self.period.as_ref());
        s.str("system", self.system.as_deref());
        s.obj("type", self.type_.as_ref());
        s.str("use", self.use_.as_deref());
        s.str("value", self.value.as_deref());
    }
}

/// A `HumanName`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HumanName {
    pub use_: Option<String>,
    pub text: Option<String>,
    pub family: Option<String>,
    pub given: Vec<String>,
    pub prefix: Vec<String>,
    pub suffix: Vec<String>,
    pub period: Option<Period>,
}

impl Members for HumanName {
    fn members<S: Sink>(&self, s: &mut S) {
        s.str("family", self.family.as_deref());
        s.strs("given", &self.given);
        s.obj("period", self.period.as_ref());
        s.strs("prefix", &self.prefix);
        s.strs("suffix", &self.suffix);
        s.str("text", self.text.as_deref());
        s.str("use", self.use_.as_deref());
    }
}

/// An `Address`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Address {
    pub use_: Option<String>,
    pub type_: Option<String>,
    pub text: Option<String>,
    pub line: Vec<String>,
    pub city: Option<String>,
    pub district: Option<String>,
    pub state: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
    pub period: Option<Period>,
}

impl Members for Address {
    fn members<S: Sink>(&self, s: &mut S) {
        s.str("city", self.city.as_deref());
        s.str("country", self.country.as_deref());
        s.str("district", self.district.as_deref());
        s.strs("line", &self.line);
        s.obj("period", self.period.as_ref());
        s.str("postalCode", self.postal_code.as_deref());
        s.str("state", self.state.as_deref());
        s.str("text", self.text.as_deref());
        s.str("type", self.type_.as_deref());
        s.str("use", self.use_.as_deref());
    }
}

/// A `ContactPoint`. FHIR requires `system` whenever `value` is set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContactPoint {
    /// phone | fax | email | pager | url | sms | other
    pub system: Option<String>,
    pub value: Option<String>,
    /// home | work | temp | old | mobile
    pub use_: Option<String>,
    pub rank: Option<u32>,
    pub period: Option<Period>,
}

impl Members for ContactPoint {
    fn members<S: Sink>(&self, s: &mut S) {
        s.obj("period", self.period.as_ref());
        let rank = self.rank.filter(|r| *r > 0).map(Number::from);
        s.number("rank", rank.as_ref());
        s.str("system", self.system.as_deref());
        s.str("use", self.use_.as_deref());
        s.str("value", self.value.as_deref());
    }
}

/// A `Quantity` (also used for `SimpleQuantity`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quantity {
    pub value: Option<Number>,
    /// `<`, `<=`, `>=`, `>`
    pub comparator: Option<String>,
    pub unit: Option<String>,
    pub system: Option<String>,
    pub code: Option<String>,
}

impl Quantity {
    /// A quantity with a UCUM unit code.
    pub fn ucum(value: Number, code: &str) -> Self {
        Quantity {
            value: Some(value),
            unit: Some(code.to_owned()),
            system: Some("http://unitsofmeasure.org".to_owned()),
            code: Some(code.to_owned()),
            ..Default::default()
        }
    }
}

impl Members for Quantity {
    fn members<S: Sink>(&self, s: &mut S) {
        s.str("code", self.code.as_deref());
        s.str("comparator", self.comparator.as_deref());
        s.str("system", self.system.as_deref());
        s.str("unit", self.unit.as_deref());
        s.number("value", self.value.as_ref());
    }
}

/// Parse decimal text as FHIR `decimal` JSON: integers stay integers; `+5`, `05`,
/// `.5` and `5.` are accepted; anything else (text, NaN, empty) gives `None`.
pub fn decimal(s: &str) -> Option<Number> {
    let t = s.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    let body = t.strip_prefix('-').unwrap_or(t);
    if body.is_empty()
        || body == "."
        || !body.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        || body.matches('.').count() > 1
    {
        return None;
    }
    if !body.contains('.')
        && let Ok(i) = t.parse::<i64>()
    {
        return Some(Number::from(i));
    }
    let f: f64 = t.parse().ok()?;
    Number::from_f64(f)
}

/// A `Range`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Range {
    pub low: Option<Quantity>,
    pub high: Option<Quantity>,
}

impl Members for Range {
    fn members<S: Sink>(&self, s: &mut S) {
        s.obj("high", self.high.as_ref());
        s.obj("low", self.low.as_ref());
    }
}

/// A `Ratio`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ratio {
    pub numerator: Option<Quantity>,
    pub denominator: Option<Quantity>,
}

impl Members for Ratio {
    fn members<S: Sink>(&self, s: &mut S) {
        s.obj("denominator", self.denominator.as_ref());
        s.obj("numerator", self.numerator.as_ref());
    }
}

/// An `Annotation` (a note).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotation {
    pub text: String,
    pub author_string: Option<String>,
    pub time: Option<String>,
}

impl Members for Annotation {
    fn members<S: Sink>(&self, s: &mut S) {
        s.str("authorString", self.author_string.as_deref());
        s.str("text", Some(&self.text));
        s.str("time", self.time.as_deref());
    }
}

/// A resource's `Meta`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meta {
    pub version_id: Option<String>,
    /// FHIR `instant`.
    pub last_updated: Option<String>,
    /// FHIR `uri`.
    pub source: Option<String>,
    pub profile: Vec<String>,
    pub security: Vec<Coding>,
    pub tag: Vec<Coding>,
}

impl Members for Meta {
    fn members<S: Sink>(&self, s: &mut S) {
        s.str("lastUpdated", self.last_updated.as_deref());
        s.strs("profile", &self.profile);
        s.list("security", &self.security);
        s.str("source", self.source.as_deref());
        s.list("tag", &self.tag);
        s.str("versionId", self.version_id.as_deref());
    }
}

to_fhir_via_members!(
    Coding,
    CodeableConcept,
    Period,
    Reference,
    Identifier,
    HumanName,
    Address,
    ContactPoint,
    Quantity,
    Range,
    Ratio,
    Annotation,
    Meta,
);

/// The value of a choice element (`value[x]`, `effective[x]`, `onset[x]`...). The JSON
/// key is the element's prefix plus [`Choice::type_suffix`].
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    String(String),
    Boolean(bool),
    Integer(i64),
    Quantity(Quantity),
    CodeableConcept(CodeableConcept),
    Range(Range),
    Ratio(Ratio),
    Period(Period),
    /// FHIR `dateTime` text.
    DateTime(String),
    /// FHIR `date` text.
    Date(String),
    /// FHIR `time` text.
    Time(String),
    Reference(Reference),
}

impl Choice {
    pub fn type_suffix(&self) -> &'static str {
        match self {
            Choice::String(_) => "String",
            Choice::Boolean(_) => "Boolean",
            Choice::Integer(_) => "Integer",
            Choice::Quantity(_) => "Quantity",
            Choice::CodeableConcept(_) => "CodeableConcept",
            Choice::Range(_) => "Range",
            Choice::Ratio(_) => "Ratio",
            Choice::Period(_) => "Period",
            Choice::DateTime(_) => "DateTime",
            Choice::Date(_) => "Date",
            Choice::Time(_) => "Time",
            Choice::Reference(_) => "Reference",
        }
    }
}

impl ToFhir for Choice {
    fn to_fhir(&self) -> Value {
        match self {
            Choice::String(s) | Choice::DateTime(s) | Choice::Date(s) | Choice::Time(s) => {
                Value::String(s.clone())
            }
            Choice::Boolean(b) => Value::Bool(*b),
            Choice::Integer(i) => Value::from(*i),
            Choice::Quantity(q) => q.to_fhir(),
            Choice::CodeableConcept(c) => c.to_fhir(),
            Choice::Range(r) => r.to_fhir(),
            Choice::Ratio(r) => r.to_fhir(),
            Choice::Period(p) => p.to_fhir(),
            Choice::Reference(r) => r.to_fhir(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decimals() {
        assert_eq!(decimal("182"), Some(Number::from(182)));
        assert_eq!(decimal("+5"), Some(Number::from(5)));
        assert_eq!(decimal("4.41").unwrap().as_f64(), Some(4.41));
        assert_eq!(decimal("-0.5").unwrap().as_f64(), Some(-0.5));
        assert_eq!(decimal(".5").unwrap().as_f64(), Some(0.5));
        for bad in ["", "-", ".", "1.2.3", "abc", "1e5", "NaN", "<5", "60~120"] {
            assert_eq!(decimal(bad), None, "{bad}");
        }
    }

    #[test]
    fn datatypes_serialize_without_empties() {
        let id = Identifier::new(Some("urn:oid:1.2".into()), "123").with_v2_type("MR");
        assert_eq!(
            id.to_fhir(),
            json!({"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                   "system": "urn:oid:1.2", "value": "123"})
        );
        let name = HumanName {
            family: Some("Doe".into()),
            given: vec!["".into(), "Jo".into()],
            ..Default::default()
        };
        assert_eq!(name.to_fhir(), json!({"family": "Doe", "given": ["Jo"]}));
        assert_eq!(Period::default().to_fhir(), json!({}));
        let q = Quantity::ucum(Number::from(5), "mg");
        assert_eq!(
            q.to_fhir(),
            json!({"value": 5, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"})
        );
        let cp = ContactPoint {
            system: Some("phone".into()),
            value: Some("555".into()),
            rank: Some(0),
            ..Default::default()
        };
        assert_eq!(cp.to_fhir(), json!({"system": "phone", "value": "555"}));
    }

    #[test]
    fn choice_suffixes() {
        assert_eq!(
            Choice::Quantity(Quantity::default()).type_suffix(),
            "Quantity"
        );
        assert_eq!(Choice::DateTime("2020".into()).to_fhir(), json!("2020"));
    }
}
