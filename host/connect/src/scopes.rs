//! Minimum necessary scopes: what a caller declares, narrowed to what the connection
//! allows.

/// The declared scopes that some allowed scope covers, in declared order, without
/// duplicates, each written in the form of the allowed scope that covers it (the
/// form the connection, and so the EHR, speaks). `system/*.read` covers
/// `system/Patient.read`; SMART v2 permissions cover subsets (`system/*.cruds`
/// covers `system/Task.c`); v1 and v2 cover each other (`read` = `rs`, `write` =
/// `cud`, `*` = `cruds`), so a caller declaring `system/*.read` on a connection
/// allowing `system/*.rs` asks for `system/*.rs`. Anything else must match exactly.
pub fn intersect(declared: &[String], allowed: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in declared {
        if let Some(a) = allowed.iter().find(|a| covers(a, d)) {
            let asked = in_form_of(d, a);
            if !out.contains(&asked) {
                out.push(asked);
            }
        }
    }
    out
}

/// The permissions a scope's suffix grants, as SMART v2 letters; `None` when it
/// is neither v1 (`read`, `write`, `*`) nor v2 (letters of `cruds`, in order).
fn perms(p: &str) -> Option<String> {
    match p {
        "read" => Some("rs".into()),
        "write" => Some("cud".into()),
        "*" => Some("cruds".into()),
        _ if !p.is_empty() && p.chars().all(|c| "cruds".contains(c)) => Some("cruds".chars().filter(|c| p.contains(*c)).collect()),
        _ => None,
    }
}

fn is_v1(p: &str) -> bool {
    matches!(p, "read" | "write" | "*")
}

/// `wanted` rewritten in the form (v1 or v2) of `allowed`, which covers it.
fn in_form_of(wanted: &str, allowed: &str) -> String {
    let (Some((wc, wr, wp)), Some((_, _, ap))) = (split(wanted), split(allowed)) else { return wanted.to_string() };
    let Some(set) = perms(wp) else { return wanted.to_string() };
    let perm = match (is_v1(wp), is_v1(ap)) {
        (false, true) if set.chars().all(|c| "rs".contains(c)) => "read".to_string(),
        (false, true) if set.chars().all(|c| "cud".contains(c)) => "write".to_string(),
        (false, true) => "*".to_string(),
        (true, false) => set,
        _ => wp.to_string(),
    };
    format!("{wc}/{wr}.{perm}")
}

fn split(scope: &str) -> Option<(&str, &str, &str)> {
    let (ctx, rest) = scope.split_once('/')?;
    let (res, perm) = rest.rsplit_once('.')?;
    Some((ctx, res, perm))
}

/// Does `allowed` grant at least what `wanted` asks?
pub fn covers(allowed: &str, wanted: &str) -> bool {
    if allowed == wanted {
        return true;
    }
    let (Some((ac, ar, ap)), Some((wc, wr, wp))) = (split(allowed), split(wanted)) else {
        return false;
    };
    if ac != wc || (ar != "*" && ar != wr) {
        return false;
    }
    match (perms(ap), perms(wp)) {
        (Some(a), Some(w)) => w.chars().all(|c| a.contains(c)),
        _ => ap == wp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn narrows_to_what_both_sides_allow() {
        let allowed = v(&["system/*.read", "system/Task.cruds"]);
        let declared = v(&["system/Patient.read", "system/Task.c", "system/Task.write", "user/Patient.read", "launch"]);
        // `write` is `cud` in v2: covered by `cruds`, and asked as the connection speaks.
        assert_eq!(intersect(&declared, &allowed), v(&["system/Patient.read", "system/Task.c", "system/Task.cud"]));
        assert_eq!(intersect(&v(&["system/*.read"]), &v(&["system/Patient.read"])), Vec::<String>::new());
        assert!(covers("system/*.*", "system/Observation.write"));
        assert!(!covers("system/Patient.rs", "system/Patient.cruds"));
    }

    #[test]
    fn smart_v1_and_v2_scopes_cover_each_other_and_are_asked_in_the_connections_form() {
        // What SMART's reference Bulk Data server grants (v2), with the v1 form the
        // bulk client declares: asked as the connection speaks.
        assert_eq!(intersect(&v(&["system/*.read"]), &v(&["system/*.rs"])), v(&["system/*.rs"]));
        assert_eq!(intersect(&v(&["system/Patient.read"]), &v(&["system/*.rs"])), v(&["system/Patient.rs"]));
        assert_eq!(intersect(&v(&["system/Task.c", "system/Task.rs"]), &v(&["system/*.write", "system/*.read"])), v(&["system/Task.write", "system/Task.read"]));
        assert_eq!(intersect(&v(&["system/*.*"]), &v(&["system/*.cruds"])), v(&["system/*.cruds"]));
        assert!(covers("system/*.rs", "system/Patient.read"));
        assert!(covers("system/*.read", "system/Patient.r"));
        assert!(!covers("system/*.r", "system/Patient.read"), "v1 read is r and s");
        assert!(!covers("system/*.rs", "system/Patient.write"));
        assert!(!covers("system/*.read", "system/Patient.cruds"));
        assert!(covers("system/*.cruds", "system/Observation.*"));
        assert!(!covers("system/*.xyz", "system/Observation.abc"), "unknown suffixes match only exactly");
        assert!(covers("system/*.xyz", "system/*.xyz"));
    }
}
