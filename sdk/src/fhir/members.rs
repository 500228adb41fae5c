//! One description of each builder's JSON members, two outputs.
//!
//! A builder lists its members once, in [`Members::members`], to a [`Sink`]: the
//! [`ValueSink`] here builds a [`serde_json::Value`] (that is [`ToFhir::to_fhir`]),
//! the [`JsonWriter`](super::write::JsonWriter) writes JSON text straight into a
//! `String` (that is what a mapping outputs: no tree of maps, far fewer allocations).
//! Both skip empty members the same way ([`Obj`]'s rules).
//!
//! Members are listed **in key order** (byte order, as serde_json's sorted map
//! writes them), so that the text written directly is exactly the text serde_json
//! writes for the `Value`. Debug builds check the order.

use super::datatypes::Choice;
use super::json::{Obj, ToFhir};
use serde_json::{Map, Number, Value};

/// A FHIR datatype or resource as its JSON members.
pub(crate) trait Members {
    /// Each member, in key order.
    fn members<S: Sink>(&self, s: &mut S);

    /// Members set as JSON (a resource's `extra`): merged last, winning over the
    /// typed ones.
    fn extra(&self) -> Option<&Map<String, Value>> {
        None
    }
}

/// Where members go. Every method skips what is empty: `None`, blank strings, empty
/// lists, objects that come out empty.
pub(crate) trait Sink {
    fn str(&mut self, key: &str, value: Option<&str>);
    /// A string list; blank entries are dropped.
    fn strs(&mut self, key: &str, values: &[String]);
    fn bool(&mut self, key: &str, value: Option<bool>);
    fn number(&mut self, key: &str, value: Option<&Number>);
    fn obj<T: Members>(&mut self, key: &str, value: Option<&T>);
    /// A list of objects; entries that come out empty are dropped.
    fn list<T: Members>(&mut self, key: &str, values: &[T]);
    /// A choice element: the key is `prefix` + the datatype (`valueQuantity`).
    fn choice(&mut self, prefix: &str, value: Option<&Choice>);
}

/// Builds the [`Value`] of a [`Members`], with [`Obj`].
pub(crate) struct ValueSink(Obj);

impl ValueSink {
    fn with(&mut self, f: impl FnOnce(Obj) -> Obj) {
        self.0 = f(std::mem::take(&mut self.0));
    }
}

/// The JSON value of `t`: its members, then its `extra`.
pub(crate) fn to_value<T: Members + ?Sized>(t: &T) -> Value {
    let mut s = ValueSink(Obj::new());
    t.members(&mut s);
    let mut o = s.0;
    if let Some(extra) = t.extra() {
        o = o.extend(extra);
    }
    o.build()
}

impl Sink for ValueSink {
    fn str(&mut self, key: &str, value: Option<&str>) {
        self.with(|o| o.str(key, value));
    }
    fn strs(&mut self, key: &str, values: &[String]) {
        self.with(|o| o.strs(key, values));
    }
    fn bool(&mut self, key: &str, value: Option<bool>) {
        self.with(|o| o.bool(key, value));
    }
    fn number(&mut self, key: &str, value: Option<&Number>) {
        if let Some(n) = value {
            self.with(|o| o.val(key, Value::Number(n.clone())));
        }
    }
    fn obj<T: Members>(&mut self, key: &str, value: Option<&T>) {
        if let Some(v) = value {
            self.with(|o| o.put(key, to_value(v)));
        }
    }
    fn list<T: Members>(&mut self, key: &str, values: &[T]) {
        self.with(|o| o.put_list(key, values.iter().map(to_value).collect()));
    }
    fn choice(&mut self, prefix: &str, value: Option<&Choice>) {
        if let Some(c) = value {
            let key = format!("{prefix}{}", c.type_suffix());
            self.with(|o| o.put(&key, c.to_fhir()));
        }
    }
}

/// `impl ToFhir` through [`Members`] for each type listed.
macro_rules! to_fhir_via_members {
    ($($t:ty),* $(,)?) => {$(
        impl $crate::fhir::ToFhir for $t {
            fn to_fhir(&self) -> serde_json::Value {
                $crate::fhir::members::to_value(self)
            }
        }
    )*};
}
pub(crate) use to_fhir_via_members;
