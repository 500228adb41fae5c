//! Choosing an adapter for an HL7v2 message: rules on MSH-3 (sending application),
//! MSH-4 (sending facility) and MSH-9 (message type), else the listener's default.

use ehrgate_sdk::hl7::Message;
use serde::Deserialize;

/// One rule: every condition given must match (first component, case-insensitive).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// MSH-3.1, e.g. `EPIC`.
    pub sending_application: Option<String>,
    /// MSH-4.1.
    pub sending_facility: Option<String>,
    /// MSH-9: `ADT` (any trigger) or `ADT^A01`.
    pub message_type: Option<String>,
    pub adapter: String,
}

#[derive(Debug, Clone, Default)]
pub struct Router {
    pub rules: Vec<Rule>,
    pub default: Option<String>,
}

fn eq(want: &Option<String>, got: &str) -> bool {
    want.as_ref().is_none_or(|w| w.eq_ignore_ascii_case(got))
}

impl Router {
    /// The adapter for `m`: the first matching rule, else the default; `None` when
    /// neither applies.
    pub fn pick(&self, m: &Message) -> Option<&str> {
        let app = m.get("MSH-3.1").unwrap_or_default();
        let fac = m.get("MSH-4.1").unwrap_or_default();
        let code = m.message_code();
        let full = format!("{code}^{}", m.trigger_event());
        self.rules
            .iter()
            .find(|r| {
                eq(&r.sending_application, &app)
                    && eq(&r.sending_facility, &fac)
                    && r.message_type.as_ref().is_none_or(|t| if t.contains('^') { t.eq_ignore_ascii_case(&full) } else { t.eq_ignore_ascii_case(code) })
            })
            .map(|r| r.adapter.as_str())
            .or(self.default.as_deref())
    }

    /// Every adapter this router can name.
    pub fn adapters(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.adapter.as_str()).chain(self.default.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_rule_then_default() {
        let r = Router {
            rules: vec![
                Rule { sending_application: Some("EPIC".into()), message_type: Some("ORU".into()), adapter: "epic-lab".into(), ..Default::default() },
                Rule { sending_application: Some("epic".into()), adapter: "epic".into(), ..Default::default() },
                Rule { sending_facility: Some("MEDI".into()), message_type: Some("ADT^A03".into()), adapter: "meditech".into(), ..Default::default() },
            ],
            default: Some("reference".into()),
        };
        let msg = |app: &str, fac: &str, ty: &str| format!("MSH|^~\\&|{app}^x|{fac}|R|F|2024||{ty}|1|P|2.5\r");
        let pick = |m: String| r.pick(&Message::parse(&m).unwrap()).map(str::to_owned);
        assert_eq!(pick(msg("EPIC", "H", "ORU^R01")), Some("epic-lab".into()));
        assert_eq!(pick(msg("EPIC", "H", "ADT^A01")), Some("epic".into()));
        assert_eq!(pick(msg("X", "MEDI", "ADT^A03")), Some("meditech".into()));
        assert_eq!(pick(msg("X", "MEDI", "ADT^A01")), Some("reference".into()));
        let none = Router { rules: vec![], default: None };
        assert_eq!(none.pick(&Message::parse(&msg("X", "Y", "ADT^A01")).unwrap()), None);
    }
}
