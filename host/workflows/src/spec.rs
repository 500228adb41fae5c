//! `[[workflows]]`: what triggers what.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One workflow.
///
/// ```toml
/// [[workflows]]
/// name = "discharge-follow-up"
/// on = ["ADT^A03"]                   # and/or: on_resource = [{ type = "Encounter", status = ["finished"] }]
/// when = { "PV1-2" = ["I", "E"] }      # optional: field values that must match (HL7 triggers)
/// adapter = "epic"
/// action = "discharge-checklist"
/// retry = { max_attempts = 8, base_ms = 500, cap_ms = 30000 }
/// deadline_s = 3600
/// sla_s = 300
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSpec {
    pub name: String,
    /// HL7 message types (`ADT^A03`) that trigger it, from the units that go
    /// through the flow (MLLP listeners, webhooks).
    #[serde(default)]
    pub on: Vec<String>,
    /// Mapped FHIR resources that trigger it, from any unit of the flow (an
    /// Encounter `finished` from a webhook event, say): the resource's type and the
    /// statuses that count (empty: any).
    #[serde(default)]
    pub on_resource: Vec<ResourceTrigger>,
    /// Conditions: an HL7 path (`PV1-2`, `PV1-3.1`) and the values it may have
    /// (any of them; `*` any non-empty value). All must hold.
    #[serde(default)]
    pub when: BTreeMap<String, Vec<String>>,
    /// The adapter whose action runs (a name under `[adapters]` or a built-in one).
    pub adapter: String,
    /// The action's name.
    pub action: String,
    /// Extra input members (JSON object) besides `patient` and `encounter`.
    #[serde(default)]
    pub input: Option<serde_json::Value>,
    #[serde(default)]
    pub retry: RetrySpec,
    /// After this long since the trigger arrived, no more attempts: dead letter.
    #[serde(default = "deadline_s")]
    pub deadline_s: u64,
    /// The SLA the KPIs measure against: trigger received -> action completed.
    #[serde(default = "sla_s")]
    pub sla_s: u64,
}

fn deadline_s() -> u64 {
    24 * 3600
}

fn sla_s() -> u64 {
    300
}

/// A FHIR resource trigger: `{ type = "Encounter", status = ["finished"] }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResourceTrigger {
    #[serde(rename = "type")]
    pub resource_type: String,
    #[serde(default)]
    pub status: Vec<String>,
}

/// Retries of transient failures: exponential backoff from `base_ms` to `cap_ms`
/// with full jitter, at most `max_attempts` attempts in all.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    #[serde(default = "max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "base_ms")]
    pub base_ms: u64,
    #[serde(default = "cap_ms")]
    pub cap_ms: u64,
}

fn max_attempts() -> u32 {
    12
}
fn base_ms() -> u64 {
    500
}
fn cap_ms() -> u64 {
    60_000
}

impl Default for RetrySpec {
    fn default() -> Self {
        RetrySpec { max_attempts: max_attempts(), base_ms: base_ms(), cap_ms: cap_ms() }
    }
}

impl RetrySpec {
    /// The wait before attempt `attempt + 1` after `attempt` failed (1-based),
    /// given a random number in [0, 1): full jitter over the exponential step.
    pub fn backoff_ms(&self, attempt: u32, random: f64) -> u64 {
        let step = self.base_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(30)).min(self.cap_ms.max(self.base_ms));
        // Full jitter, but never less than a tenth of the step (no hot loop).
        (step as f64 * (0.1 + 0.9 * random.clamp(0.0, 1.0))) as u64
    }
}

impl WorkflowSpec {
    /// What triggers it, for people: `ADT^A03, Encounter:finished`.
    pub fn triggers(&self) -> String {
        let resources = self.on_resource.iter().map(|t| if t.status.is_empty() { t.resource_type.clone() } else { format!("{}:{}", t.resource_type, t.status.join("|")) });
        self.on.iter().cloned().chain(resources).collect::<Vec<_>>().join(", ")
    }

    /// What is wrong with it, if anything (checked when the gateway starts).
    pub fn check(&self) -> Result<(), String> {
        let bad_name = self.name.is_empty() || !self.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if bad_name {
            return Err(format!("workflow name `{}`: use letters, digits, `-` and `_`", self.name));
        }
        if self.on.is_empty() && self.on_resource.is_empty() {
            return Err(format!("workflow `{}`: `on` names no message type and `on_resource` no resource", self.name));
        }
        if let Some(t) = self.on_resource.iter().find(|t| t.resource_type.is_empty() || !t.resource_type.bytes().all(|b| b.is_ascii_alphabetic())) {
            return Err(format!("workflow `{}`: `{}` is not a FHIR resource type", self.name, t.resource_type));
        }
        for t in &self.on {
            let ok = t.split_once('^').is_some_and(|(c, e)| c.len() == 3 && !e.is_empty() && !e.contains('^'));
            if !ok {
                return Err(format!("workflow `{}`: `{t}` is not a message type like `ADT^A03`", self.name));
            }
        }
        if let Some(i) = &self.input
            && !i.is_object()
        {
            return Err(format!("workflow `{}`: `input` must be a table (JSON object)", self.name));
        }
        if self.retry.max_attempts == 0 {
            return Err(format!("workflow `{}`: retry.max_attempts must be at least 1", self.name));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_and_is_jittered() {
        let r = RetrySpec { max_attempts: 5, base_ms: 100, cap_ms: 1000 };
        assert_eq!(r.backoff_ms(1, 1.0), 100);
        assert_eq!(r.backoff_ms(2, 1.0), 200);
        assert_eq!(r.backoff_ms(4, 1.0), 800);
        assert_eq!(r.backoff_ms(9, 1.0), 1000, "capped");
        assert_eq!(r.backoff_ms(64, 1.0), 1000, "no overflow");
        assert_eq!(r.backoff_ms(2, 0.0), 20, "a tenth at least");
    }

    #[test]
    fn specs_are_checked() {
        let ok: WorkflowSpec = serde_json::from_value(serde_json::json!({"name": "d", "on": ["ADT^A03"], "adapter": "epic", "action": "discharge-checklist"})).unwrap();
        assert!(ok.check().is_ok());
        let by_resource: WorkflowSpec = serde_json::from_value(serde_json::json!({"name": "d", "on_resource": [{"type": "Encounter", "status": ["finished"]}], "adapter": "epic", "action": "x"})).unwrap();
        assert!(by_resource.check().is_ok());
        let bad: WorkflowSpec = serde_json::from_value(serde_json::json!({"name": "d", "on_resource": [{"type": "../x"}], "adapter": "epic", "action": "x"})).unwrap();
        assert!(bad.check().is_err());
        assert_eq!(ok.sla_s, 300);
        for (field, value) in [("on", serde_json::json!(["A03"])), ("on", serde_json::json!([])), ("name", serde_json::json!("a b")), ("input", serde_json::json!([1]))] {
            let mut v = serde_json::to_value(serde_json::json!({"name": "d", "on": ["ADT^A03"], "adapter": "epic", "action": "x"})).unwrap();
            v[field] = value;
            let s: WorkflowSpec = serde_json::from_value(v).unwrap();
            assert!(s.check().is_err(), "{field}");
        }
    }
}
