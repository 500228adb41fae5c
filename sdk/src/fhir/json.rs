//! Building FHIR JSON without empty values.
//!
//! FHIR forbids empty strings, arrays and objects (and `null` outside arrays of
//! primitives). [`Obj`] skips them as it goes; [`strip_empty`] removes them from any
//! finished value.

use serde_json::{Map, Value};

/// Anything that becomes a FHIR JSON value (datatypes, resources).
pub trait ToFhir {
    fn to_fhir(&self) -> Value;
}

impl ToFhir for Value {
    fn to_fhir(&self) -> Value {
        self.clone()
    }
}

impl<T: ToFhir> ToFhir for Box<T> {
    fn to_fhir(&self) -> Value {
        (**self).to_fhir()
    }
}

impl ToFhir for String {
    fn to_fhir(&self) -> Value {
        Value::String(self.clone())
    }
}

/// A JSON object under construction that never keeps an empty member.
///
/// ```
/// use ehrgate_sdk::fhir::Obj;
/// let v = Obj::new().str("family", Some("Doe")).str("text", None::<&str>).strs("given", &["".to_string()]).build();
/// assert_eq!(v, serde_json::json!({"family": "Doe"}));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Obj(pub Map<String, Value>);

impl Obj {
    pub fn new() -> Self {
        Obj(Map::new())
    }

    /// `{"resourceType": .., "id": ..}`, the start of a resource.
    pub fn resource(resource_type: &str, id: &str) -> Self {
        Obj::new()
            .str("resourceType", Some(resource_type))
            .str("id", Some(id))
    }

    /// A string member; skipped when `None` or blank.
    pub fn str(mut self, key: &str, value: Option<impl AsRef<str>>) -> Self {
        if let Some(v) = value {
            let v = v.as_ref();
            if !is_blank(v) {
                self.0.insert(key.to_owned(), Value::String(v.to_owned()));
            }
        }
        self
    }

    /// A string array member; blank entries are dropped, then the member if empty.
    pub fn strs(mut self, key: &str, values: &[String]) -> Self {
        let arr: Vec<Value> = values
            .iter()
            .filter(|v| !is_blank(v))
            .map(|v| Value::String(v.clone()))
            .collect();
        if !arr.is_empty() {
            self.0.insert(key.to_owned(), Value::Array(arr));
        }
        self
    }

    /// Any JSON member; emptied parts are stripped first, then the member if empty.
    pub fn val(mut self, key: &str, value: impl Into<Value>) -> Self {
        let mut v = value.into();
        if !strip_empty(&mut v) {
            self.0.insert(key.to_owned(), v);
        }
        self
    }

    /// An optional datatype member.
    pub fn opt<T: ToFhir>(self, key: &str, value: &Option<T>) -> Self {
        match value {
            Some(v) => self.put(key, v.to_fhir()),
            None => self,
        }
    }

    /// A repeating datatype member (`[..]`), skipped when empty.
    pub fn list<T: ToFhir>(self, key: &str, values: &[T]) -> Self {
        self.put_list(key, values.iter().map(ToFhir::to_fhir).collect())
    }

    /// A list member from finished values: empty entries dropped, then the member
    /// if empty.
    pub(crate) fn put_list(self, key: &str, mut values: Vec<Value>) -> Self {
        values.retain(|v| !shallow_empty(v));
        self.put(key, Value::Array(values))
    }

    /// A member made by [`ToFhir`] (already free of empties inside): skipped only
    /// when empty itself. Use [`val`](Self::val) for JSON of any other origin.
    pub fn put(mut self, key: &str, v: Value) -> Self {
        if !shallow_empty(&v) {
            self.0.insert(key.to_owned(), v);
        }
        self
    }

    /// A boolean member.
    pub fn bool(mut self, key: &str, value: Option<bool>) -> Self {
        if let Some(b) = value {
            self.0.insert(key.to_owned(), Value::Bool(b));
        }
        self
    }

    /// A choice-type member (`value[x]`, `effective[x]`...): the key is `prefix` plus
    /// the datatype's name, e.g. `valueQuantity`.
    pub fn choice(self, prefix: &str, value: &Option<super::Choice>) -> Self {
        match value {
            Some(c) => {
                let key = format!("{prefix}{}", c.type_suffix());
                self.put(&key, c.to_fhir())
            }
            None => self,
        }
    }

    /// Merge extra members (they win over members already set).
    pub fn extend(mut self, extra: &Map<String, Value>) -> Self {
        for (k, v) in extra {
            self = self.val(k, v.clone());
        }
        self
    }

    pub fn build(self) -> Value {
        Value::Object(self.0)
    }
}

/// Empty or only white space (what FHIR JSON leaves out).
#[inline]
pub(crate) fn is_blank(s: &str) -> bool {
    match s.as_bytes().first() {
        None => true,
        // The common case, decided by the first byte.
        Some(b) if b.is_ascii_graphic() => false,
        _ => s.trim().is_empty(),
    }
}

fn shallow_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Remove empty strings (blank ones too), `null`s, empty arrays and empty objects,
/// recursively. Returns `true` when `value` itself is now empty (the caller should
/// drop it).
///
/// ```
/// use ehrgate_sdk::fhir::strip_empty;
/// let mut v = serde_json::json!({"a": "", "b": [{}, {"c": " "}], "d": {"e": null}, "f": 0});
/// assert!(!strip_empty(&mut v));
/// assert_eq!(v, serde_json::json!({"f": 0}));
/// ```
pub fn strip_empty(value: &mut Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
        Value::Array(a) => {
            a.retain_mut(|v| !strip_empty(v));
            a.is_empty()
        }
        Value::Object(o) => {
            o.retain(|_, v| !strip_empty(v));
            o.is_empty()
        }
    }
}

/// Percent-encode text for use inside a URI (FHIR `uri` may not contain whitespace):
/// keeps `A-Z a-z 0-9 - . _ ~ : / @ !  $ ' ( ) * + , ; =`, encodes the rest as UTF-8.
pub fn uri_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_uri_escaped(&mut out, s);
    out
}

/// `prefix` then [`uri_escape`]`(s)`, in one allocation.
pub(crate) fn prefixed_uri(prefix: &str, s: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + s.len());
    out.push_str(prefix);
    push_uri_escaped(&mut out, s);
    out
}

fn push_uri_escaped(out: &mut String, s: &str) {
    for b in s.trim().bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~:/@!$'()*+,;=".contains(&b);
        if keep {
            out.push(b as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strip_empty_nested() {
        let mut v =
            json!({"a": [{"b": ""}, {"c": []}], "d": {"e": {"f": null}}, "g": false, "h": "x"});
        assert!(!strip_empty(&mut v));
        assert_eq!(v, json!({"g": false, "h": "x"}));
        let mut e = json!({"a": [[], {}]});
        assert!(strip_empty(&mut e));
    }

    #[test]
    fn obj_skips_empties() {
        let v = Obj::resource("Patient", "1")
            .str("gender", Some(""))
            .strs("x", &[" ".into()])
            .val("name", json!([{"given": [""]}]))
            .bool("active", Some(false))
            .build();
        assert_eq!(
            v,
            json!({"resourceType": "Patient", "id": "1", "active": false})
        );
    }

    #[test]
    fn uri_escape_encodes_spaces_and_non_ascii() {
        assert_eq!(uri_escape("GHH LAB"), "GHH%20LAB");
        assert_eq!(uri_escape("a&b#c"), "a%26b%23c");
        assert_eq!(uri_escape("é"), "%C3%A9");
        assert_eq!(uri_escape("2.16.840.1"), "2.16.840.1");
    }
}
