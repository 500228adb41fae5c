//! `[governance]`: principals (who may read which tables, through which masking
//! profile, for which purposes) and masking profiles; `safe-harbor` is built in.

use std::collections::BTreeMap;
use std::sync::Arc;

use ehrgate_connect::SecretRef;
use serde::Deserialize;

use crate::GovernError;
use crate::keys;
use crate::mask::{ElementRule, MaskKey, Masker, Op};

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct GovernanceSettings {
    /// The key behind pseudonyms and date shifts, by reference (`env:`/`file:`).
    /// Needed by any profile that pseudonymises or shifts; keep it as secret as the
    /// data (with it, pseudonyms can be recomputed from known ids).
    pub pseudonym_key: Option<SecretRef>,
    /// Date shifts are within ± this many days.
    #[serde(default = "shift_days")]
    pub date_shift_days: i64,
    /// `ehrgate sql` without `--as` is refused.
    #[serde(default)]
    pub require_principal: bool,
    #[serde(default)]
    pub principals: Vec<PrincipalEntry>,
    /// Masking profiles by name (besides the built-in `safe-harbor` and `none`).
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileSettings>,
    /// Retention rules (`ehrgate lake retain`).
    #[serde(default)]
    pub retention: Vec<crate::retention::RetentionRule>,
    /// `ehrgate serve` applies the retention rules this often (minutes; none: only
    /// `ehrgate lake retain` does).
    #[serde(default)]
    pub retain_every_minutes: Option<u64>,
    /// Files a scheduled retention run vacuums must be at least this old (minutes),
    /// so that a commit under way in `serve` still finds the files it read (else it
    /// fails and is retried from the log).
    #[serde(default = "serve_vacuum_minutes")]
    pub retain_vacuum_minutes: u64,
}

fn serve_vacuum_minutes() -> u64 {
    10
}

impl Default for GovernanceSettings {
    fn default() -> Self {
        GovernanceSettings {
            pseudonym_key: None,
            date_shift_days: shift_days(),
            require_principal: false,
            principals: vec![],
            profiles: BTreeMap::new(),
            retention: vec![],
            retain_every_minutes: None,
            retain_vacuum_minutes: serve_vacuum_minutes(),
        }
    }
}

fn shift_days() -> i64 {
    365
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalEntry {
    pub name: String,
    /// `sha256:<hex>` of the principal's key (`ehrgate door key` makes one), or
    /// env:/file: holding it. Without it, naming the principal is enough (a local
    /// role rather than a credential).
    pub key_hash: Option<String>,
    /// Tables it may read, by SQL name; `*` at the end matches a prefix
    /// (`silver_*`).
    pub tables: Vec<String>,
    /// Masking profile: `none` (default), `safe-harbor`, or one of `[governance.profiles]`.
    #[serde(default)]
    pub profile: Option<String>,
    /// Purposes of use it may declare; empty: any.
    #[serde(default)]
    pub purposes: Vec<String>,
}

/// A profile as configured.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSettings {
    /// Resource ids, references and the id / patient_ref / encounter_ref columns:
    /// `keep` (default) or `pseudonym`.
    #[serde(default)]
    pub ids: Option<Op>,
    /// Every date in resources and the timestamp columns of clinical tables: `keep`
    /// (default), `year` or `shift`.
    #[serde(default)]
    pub dates: Option<Op>,
    /// Column name -> op (`redact`, `pseudonym`, `year`, `shift`, `keep`), in any table.
    #[serde(default)]
    pub columns: BTreeMap<String, Op>,
    /// FHIR element path (`Patient.name`, `*.telecom`) -> op, inside `resource`.
    #[serde(default)]
    pub elements: BTreeMap<String, Op>,
}

/// A resolved masking profile.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub ids: Op,
    pub dates: Op,
    pub columns: BTreeMap<String, Op>,
    pub rules: Vec<ElementRule>,
}

/// The elements the built-in `safe-harbor` profile removes or generalises, with
/// the HIPAA Safe Harbor identifier (45 CFR 164.514(b)(2)(i)) each stands for.
/// docs/governance.md lists them; keep the two in step.
pub const SAFE_HARBOR_ELEMENTS: &[(&str, Op, &str)] = &[
    ("Patient.name", Op::Redact, "A names"),
    ("RelatedPerson.name", Op::Redact, "A names (relatives)"),
    ("Person.name", Op::Redact, "A names"),
    ("Practitioner.name", Op::Redact, "A names (household, employers: conservatively all persons)"),
    ("Patient.contact", Op::Redact, "A names, B addresses, D-F telecom of relatives"),
    ("RelatedPerson.address", Op::Redact, "B addresses of relatives"),
    ("*.address", Op::Address, "B geographic subdivisions smaller than a state (ZIP to 3 digits, 000 for small areas)"),
    ("Patient.birthDate", Op::BirthYear, "C dates (birth year kept; 90 and over grouped)"),
    ("*.telecom", Op::Redact, "D telephone, E fax, F email, N URLs"),
    ("*.identifier", Op::Redact, "G SSN, H MRN, I health plan, J account, K licence, L vehicle, M device numbers"),
    ("*.subscriberId", Op::Redact, "I health plan beneficiary numbers"),
    ("Coverage.class", Op::Redact, "I, J plan and group numbers"),
    ("Device.udiCarrier", Op::Redact, "M device identifiers"),
    ("Device.serialNumber", Op::Redact, "M device serial numbers"),
    ("Device.lotNumber", Op::Redact, "M device identifiers"),
    ("Patient.photo", Op::Redact, "Q full-face photographs"),
    ("Patient.extension", Op::Redact, "A names (mother's maiden name), R other identifying characteristics"),
    ("*.text", Op::Redact, "free-text narrative"),
    ("*.note", Op::Redact, "free-text notes"),
    ("Observation.valueString", Op::Redact, "free-text results"),
    ("Observation.comment", Op::Redact, "free-text comments"),
    ("DiagnosticReport.conclusion", Op::Redact, "free-text conclusions"),
    ("DiagnosticReport.presentedForm", Op::Redact, "free-text reports"),
    ("DocumentReference.content", Op::Redact, "free-text documents"),
    ("DocumentReference.description", Op::Redact, "free-text descriptions"),
    ("*.meta.source", Op::Redact, "R other unique numbers (the source message's control id)"),
];

/// Columns the built-in `safe-harbor` profile removes (ids, references and
/// timestamps follow `ids = pseudonym` and `dates = year`).
pub const SAFE_HARBOR_COLUMNS: &[(&str, Op)] = &[
    ("raw", Op::Redact),
    // (sending application and facility, and the message's control id)
    ("source_system", Op::Redact),
    ("lineage", Op::Redact),
    ("control_id", Op::Redact),
    ("content_hash", Op::Redact),
    ("error_message", Op::Redact),
    ("location", Op::Redact),
    ("detail", Op::Redact),
    ("path", Op::Redact),
    ("input", Op::Redact),
    ("response", Op::Redact),
    ("error", Op::Redact),
];

impl Profile {
    pub fn safe_harbor() -> Profile {
        Profile {
            name: "safe-harbor".into(),
            ids: Op::Pseudonym,
            dates: Op::Year,
            columns: SAFE_HARBOR_COLUMNS.iter().map(|(c, op)| (c.to_string(), *op)).collect(),
            rules: SAFE_HARBOR_ELEMENTS.iter().map(|(p, op, _)| ElementRule::parse(p, *op).expect("built-in paths parse")).collect(),
        }
    }

    fn from_settings(name: &str, s: &ProfileSettings) -> Result<Profile, GovernError> {
        let bad = |what: &str, op: Op| GovernError::Config(format!("profile `{name}`: {what} cannot be `{op:?}`"));
        let ids = s.ids.unwrap_or(Op::Keep);
        if !matches!(ids, Op::Keep | Op::Pseudonym) {
            return Err(bad("ids", ids));
        }
        let dates = s.dates.unwrap_or(Op::Keep);
        if !matches!(dates, Op::Keep | Op::Year | Op::Shift) {
            return Err(bad("dates", dates));
        }
        for (c, op) in &s.columns {
            if !matches!(op, Op::Keep | Op::Redact | Op::Pseudonym | Op::Year | Op::Shift) {
                return Err(bad(&format!("column `{c}`"), *op));
            }
        }
        let rules = s.elements.iter().map(|(p, op)| ElementRule::parse(p, *op).map_err(|e| GovernError::Config(format!("profile `{name}`: {e}")))).collect::<Result<_, _>>()?;
        Ok(Profile { name: name.to_string(), ids, dates, columns: s.columns.clone(), rules })
    }

    /// Does anything in it need the pseudonym key?
    fn needs_key(&self) -> bool {
        self.ids == Op::Pseudonym
            || self.dates == Op::Shift
            || self.columns.values().any(|o| matches!(o, Op::Pseudonym | Op::Shift))
            || self.rules.iter().any(|r| matches!(r.op, Op::Pseudonym | Op::Shift))
    }

    /// The resource masker of this profile.
    pub fn masker(&self, key: MaskKey) -> Masker {
        Masker { key, rules: self.rules.clone(), ids: self.ids, dates: self.dates, this_year: this_year() }
    }
}

fn this_year() -> i64 {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    crate::mask::this_year_of(secs)
}

/// A declared purpose of use: 1-64 printable characters without spaces (HL7 v3
/// PurposeOfUse codes such as `TREAT`, `HOPERAT`, `HPAYMT` are the intended values).
pub fn valid_purpose(p: &str) -> bool {
    !p.is_empty() && p.len() <= 64 && p.chars().all(|c| c.is_ascii_graphic())
}

/// `s` kept to what a name in an audit row may hold (A-Z a-z 0-9 - _ ., at most 64).
pub fn clean_name(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).take(64).collect()
}

/// A principal, resolved.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    key: Option<[u8; 32]>,
    pub tables: Vec<String>,
    pub profile: Option<Arc<Profile>>,
    pub purposes: Vec<String>,
}

impl Principal {
    /// May it read the table named `sql_name`?
    pub fn may_read(&self, sql_name: &str) -> bool {
        Self::pattern_matcher(&self.tables)(sql_name)
    }

    /// Does a table name match one of `patterns` (exact names, or `prefix*`)?
    pub fn pattern_matcher(patterns: &[String]) -> impl Fn(&str) -> bool + '_ {
        move |name| {
            patterns.iter().any(|t| match t.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => t == name,
            })
        }
    }

    pub fn may_declare(&self, purpose: &str) -> bool {
        self.purposes.is_empty() || self.purposes.iter().any(|p| p == purpose)
    }
}

/// `[governance]`, resolved and checked: principals, profiles, the masking key.
#[derive(Debug, Clone)]
pub struct Policy {
    pub principals: BTreeMap<String, Principal>,
    pub profiles: BTreeMap<String, Arc<Profile>>,
    /// The pseudonym key, resolved when a masked read needs it (an operator reading
    /// as stored does not need the secret).
    key: Option<SecretRef>,
    shift_days: i64,
    pub require_principal: bool,
}

impl Policy {
    pub fn new(s: &GovernanceSettings) -> Result<Policy, GovernError> {
        let mut profiles: BTreeMap<String, Arc<Profile>> = BTreeMap::new();
        profiles.insert("safe-harbor".into(), Arc::new(Profile::safe_harbor()));
        for (name, p) in &s.profiles {
            if name == "safe-harbor" || name == "none" {
                return Err(GovernError::Config(format!("profile name `{name}` is built in; choose another")));
            }
            profiles.insert(name.clone(), Arc::new(Profile::from_settings(name, p)?));
        }
        let key = s.pseudonym_key.clone();
        for rule in &s.retention {
            if Principal::pattern_matcher(&rule.tables)("audit_access_log") {
                return Err(GovernError::Config(format!(
                    "[[governance.retention]] tables {:?} include audit_access_log: the audit is never retained (its hash chain starts at its first row)",
                    rule.tables
                )));
            }
        }
        let mut principals = BTreeMap::new();
        for e in &s.principals {
            let valid = !e.name.is_empty() && e.name.len() <= 64 && e.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !valid {
                return Err(GovernError::Config(format!("principal name `{}` must be 1-64 of A-Z a-z 0-9 - _ .", e.name.escape_debug())));
            }
            let profile = match e.profile.as_deref() {
                None | Some("none") => None,
                Some(p) => Some(profiles.get(p).cloned().ok_or_else(|| {
                    GovernError::Config(format!("principal `{}`: no profile `{p}` (safe-harbor, none, or one of [governance.profiles])", e.name))
                })?),
            };
            if profile.as_ref().is_some_and(|p| p.needs_key()) && key.is_none() {
                return Err(GovernError::Config(format!(
                    "principal `{}`: profile `{}` pseudonymises or shifts dates: set [governance] pseudonym_key = \"env:NAME\" or \"file:/path\"",
                    e.name,
                    e.profile.as_deref().unwrap_or_default()
                )));
            }
            let key_hash = e.key_hash.as_deref().map(|h| keys::resolve_hash(&format!("principal `{}`", e.name), h)).transpose().map_err(GovernError::Config)?;
            let p = Principal { name: e.name.clone(), key: key_hash, tables: e.tables.clone(), profile, purposes: e.purposes.clone() };
            if principals.insert(e.name.clone(), p).is_some() {
                return Err(GovernError::Config(format!("principal `{}` is configured twice", e.name)));
            }
        }
        Ok(Policy { principals, profiles, key, shift_days: s.date_shift_days, require_principal: s.require_principal })
    }

    /// The principal `name`, admitted with `key` when it has a key hash.
    pub fn admit(&self, name: &str, key: Option<&str>) -> Result<&Principal, GovernError> {
        let p = self.principals.get(name).ok_or_else(|| GovernError::Refused(format!("no principal `{name}` in [governance] principals")))?;
        match (&p.key, key) {
            (None, _) => Ok(p),
            (Some(_), None) => Err(GovernError::Refused(format!("principal `{name}` needs its key (--key env:NAME or file:/path)"))),
            (Some(h), Some(k)) if *h == keys::digest(k.trim()) => Ok(p),
            (Some(_), Some(_)) => Err(GovernError::Refused(format!("the key given is not principal `{name}`'s"))),
        }
    }

    /// The masker for `profile`, with the pseudonym key read now (a profile that
    /// needs none gets an empty key it never uses).
    pub fn masker(&self, profile: &Profile) -> Result<Masker, GovernError> {
        let key = match (&self.key, profile.needs_key()) {
            (Some(r), true) => MaskKey::new(r.resolve("[governance] pseudonym_key").map_err(|e| GovernError::Config(e.to_string()))?.expose().as_bytes(), self.shift_days),
            _ => MaskKey::new(b"", self.shift_days),
        };
        Ok(profile.masker(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_list_every_safe_harbor_element() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/governance.md")).unwrap();
        for (path, _, _) in SAFE_HARBOR_ELEMENTS {
            assert!(doc.contains(&format!("| `{path}` |")), "docs/governance.md does not list {path}");
        }
    }

    #[test]
    fn principals_profiles_and_keys_are_checked_at_start() {
        let (key, hash) = keys::new_key();
        let toml_text = format!(
            "pseudonym_key = \"env:NOPE\"\n[[principals]]\nname = \"a\"\ntables = [\"silver_*\", \"gold_kpi\"]\nkey_hash = \"{hash}\"\nprofile = \"safe-harbor\"\n"
        );
        let s: GovernanceSettings = toml::from_str(&toml_text).unwrap();
        let p = Policy::new(&s).unwrap();
        let a = p.admit("a", Some(&key)).unwrap();
        assert!(a.may_read("silver_patient") && a.may_read("gold_kpi") && !a.may_read("gold_kpi_minute") && !a.may_read("audit_access_log"));
        assert!(p.admit("a", None).is_err() && p.admit("a", Some("ehrgk_wrong")).is_err() && p.admit("b", Some(&key)).is_err());
        // The key is read only when a masked read needs it.
        assert!(p.masker(&Profile::safe_harbor()).is_err());
        let no_key: GovernanceSettings = toml::from_str("[[principals]]\nname = \"a\"\ntables = []\nprofile = \"safe-harbor\"\n").unwrap();
        assert!(Policy::new(&no_key).unwrap_err().to_string().contains("pseudonym_key"));
        let unknown: GovernanceSettings = toml::from_str("[[principals]]\nname = \"a\"\ntables = []\nprofile = \"nope\"\n").unwrap();
        assert!(Policy::new(&unknown).unwrap_err().to_string().contains("no profile `nope`"));
        let pasted: GovernanceSettings = toml::from_str(&format!("[[principals]]\nname = \"a\"\ntables = []\nkey_hash = \"{key}\"\n")).unwrap();
        let e = Policy::new(&pasted).unwrap_err().to_string();
        assert!(e.contains("not its hash") && !e.contains(&key), "{e}");
    }
}
