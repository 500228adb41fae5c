//! What a granted token may do: SMART Backend Services scopes (`system/<Type>.<perms>`),
//! enforced per resource type and interaction, as a real EHR does. Checked here on the
//! EHR side, independently of how the gateway narrows its requests.

/// The interaction a request asks for, as a SMART v2 permission letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    Create,
    Read,
    Search,
}

impl Interaction {
    fn letter(self) -> char {
        match self {
            Interaction::Create => 'c',
            Interaction::Read => 'r',
            Interaction::Search => 's',
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Interaction::Create => "create",
            Interaction::Read => "read",
            Interaction::Search => "search",
        }
    }
}

/// The SMART v2 letters a permission suffix grants (`read` = rs, `write` = cud,
/// `*` = cruds, or v2 letters); empty for anything else.
fn letters(perm: &str) -> String {
    match perm {
        "read" => "rs".into(),
        "write" => "cud".into(),
        "*" => "cruds".into(),
        p if p.chars().all(|c| "cruds".contains(c)) => p.into(),
        _ => String::new(),
    }
}

/// Does the space-separated `granted` scope string allow `what` on `ty`? Only the
/// `system/` context counts (this is a backend-services server).
pub fn allows(granted: &str, ty: &str, what: Interaction) -> bool {
    granted.split_whitespace().any(|s| {
        let Some(rest) = s.strip_prefix("system/") else { return false };
        let Some((res, perm)) = rest.rsplit_once('.') else { return false };
        (res == "*" || res == ty) && letters(perm).contains(what.letter())
    })
}

/// The refusal's diagnostics when `granted` does not allow `what` on `ty`.
pub fn refusal(granted: &str, ty: &str, what: Interaction) -> String {
    let shown = if granted.is_empty() { "none".to_string() } else { granted.to_string() };
    format!(
        "the access token's scopes ({shown}) do not allow {} on {ty}: system/{ty}.{} (or system/*) is needed",
        what.verb(),
        match what {
            Interaction::Create => "c or .write",
            _ => "rs or .read",
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_scopes_per_type() {
        assert!(allows("system/Patient.read", "Patient", Interaction::Read));
        assert!(allows("system/Patient.read", "Patient", Interaction::Search));
        assert!(!allows("system/Patient.read", "Observation", Interaction::Read));
        assert!(!allows("system/Patient.read", "Patient", Interaction::Create));
        assert!(allows("system/*.read system/Task.c", "Task", Interaction::Create));
        assert!(!allows("system/*.read", "Task", Interaction::Create));
        assert!(allows("system/*.rs", "Condition", Interaction::Search));
        assert!(!allows("system/Observation.r", "Observation", Interaction::Search), "read without search");
        assert!(allows("system/Task.write", "Task", Interaction::Create));
        assert!(!allows("patient/*.read", "Patient", Interaction::Read), "only system/ scopes");
        assert!(!allows("", "Patient", Interaction::Read));
        assert!(!allows("system/Patient.bogus", "Patient", Interaction::Read));
    }
}
