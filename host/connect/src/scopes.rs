//! Minimum necessary scopes: what a caller declares, narrowed to what the connection
//! allows.

/// The declared scopes that some allowed scope covers, in declared order, without
/// duplicates. `system/*.read` covers `system/Patient.read`; SMART v2 permissions
/// cover subsets (`system/*.cruds` covers `system/Task.c`); anything else must match
/// exactly.
pub fn intersect(declared: &[String], allowed: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in declared {
        if allowed.iter().any(|a| covers(a, d)) && !out.contains(d) {
            out.push(d.clone());
        }
    }
    out
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
    let v2 = |p: &str| !p.is_empty() && p.chars().all(|c| "cruds".contains(c));
    ap == "*" || ap == wp || (v2(ap) && v2(wp) && wp.chars().all(|c| ap.contains(c)))
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
        assert_eq!(intersect(&declared, &allowed), v(&["system/Patient.read", "system/Task.c"]));
        assert_eq!(intersect(&v(&["system/*.read"]), &v(&["system/Patient.read"])), Vec::<String>::new());
        assert!(covers("system/*.*", "system/Observation.write"));
        assert!(!covers("system/Patient.rs", "system/Patient.cruds"));
    }
}
