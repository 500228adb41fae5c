//! Deterministic resource ids (UUIDv5 over source system + natural key).
//!
//! The same source fact always yields the same id, so replays, retries and duplicate
//! sends MERGE onto one silver row instead of adding rows. An id is the UUIDv5, in the
//! fixed project namespace [`NAMESPACE`], of the resource type, the system that scopes
//! the key (an identifier system URI, or the sending system) and the natural key parts.
//!
//! Every part is length-prefixed (`<bytes>:<text>`) before hashing, so no choice of
//! separators inside the parts can make two different inputs hash the same text:
//! `("a|b", "c")` and `("a", "b|c")` give different ids.
//!
//! ```
//! use ehrgate_sdk::ids::{resource_id, reference};
//! let id = resource_id("Patient", "urn:oid:2.16.840.1.113883.19.5", "12345");
//! assert_eq!(id, resource_id("Patient", "urn:oid:2.16.840.1.113883.19.5", "12345"));
//! assert_ne!(id, resource_id("Encounter", "urn:oid:2.16.840.1.113883.19.5", "12345"));
//! assert_eq!(reference("Patient", &id), format!("Patient/{id}"));
//! ```

use uuid::Uuid;

/// The project namespace: UUIDv5 of the URL `urn:ehrgate:ids` in the standard URL
/// namespace. Fixed forever: changing it would change every id in every lake.
pub const NAMESPACE: Uuid = Uuid::from_bytes([
    0xbc, 0x4c, 0x22, 0x07, 0x84, 0xff, 0x5b, 0x78, 0x9b, 0x74, 0xde, 0xd6, 0x7d, 0x81, 0x81, 0x22,
]);

/// The id of a resource of `resource_type` whose natural key is `key` within `system`
/// (e.g. `("Patient", "urn:oid:1.2.3", "MRN123")`). Lower-case hyphenated UUID text,
/// a valid FHIR id.
pub fn resource_id(resource_type: &str, system: &str, key: &str) -> String {
    resource_id_parts(resource_type, system, &[key])
}

/// Like [`resource_id`] for a composite natural key (e.g. order number + OBX set id).
/// `["a", "b"]` and `["a/b"]` are different keys.
pub fn resource_id_parts(resource_type: &str, system: &str, key: &[&str]) -> String {
    let mut name = String::with_capacity(
        resource_type.len() + system.len() + key.iter().map(|k| k.len() + 4).sum::<usize>() + 12,
    );
    for part in [resource_type, system].iter().chain(key.iter()) {
        push_part(&mut name, part);
    }
    let mut buf = Uuid::encode_buffer();
    Uuid::new_v5(&NAMESPACE, name.as_bytes())
        .hyphenated()
        .encode_lower(&mut buf)
        .to_owned()
}

/// `Type/id`, the relative reference FHIR resources use for each other.
pub fn reference(resource_type: &str, id: &str) -> String {
    let mut s = String::with_capacity(resource_type.len() + 1 + id.len());
    s.push_str(resource_type);
    s.push('/');
    s.push_str(id);
    s
}

/// `<byte length>:<part>`.
fn push_part(out: &mut String, part: &str) {
    let mut digits = [0u8; 20];
    let (mut n, mut i) = (part.len(), digits.len());
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&d| char::from(d)));
    out.push(':');
    out.push_str(part);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_is_uuid5_of_its_url() {
        assert_eq!(
            NAMESPACE,
            Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:ehrgate:ids")
        );
    }

    #[test]
    fn golden_value_never_changes() {
        // Computed independently: uuid5(uuid5(NAMESPACE_URL, "urn:ehrgate:ids"), "7:Patient3:sys3:key").
        assert_eq!(resource_id("Patient", "sys", "key"), GOLDEN);
    }
    const GOLDEN: &str = "c14f2a06-dada-52c3-9488-22f91eae59e1";

    #[test]
    fn deterministic_and_well_formed() {
        let a = resource_id("Observation", "urn:ehrgate:LAB", "ORD1");
        let b = resource_id("Observation", "urn:ehrgate:LAB", "ORD1");
        assert_eq!(a, b);
        assert_eq!(a.len(), 36);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit() || c == '-'));
        assert_eq!(a, a.to_ascii_lowercase());
        assert_eq!(&a[14..15], "5", "version 5");
    }

    #[test]
    fn different_inputs_do_not_collide() {
        let ids = [
            resource_id("Patient", "sys", "1"),
            resource_id("Encounter", "sys", "1"),
            resource_id("Patient", "sys2", "1"),
            resource_id("Patient", "sys", "2"),
            resource_id_parts("Patient", "sys", &["1", "2"]),
            resource_id_parts("Patient", "sys", &["1/2"]),
            resource_id_parts("Patient", "sys", &["12"]),
            resource_id("Patient", "sys1", ""),
            resource_id("Patient", "", "sys1"),
            resource_id_parts("Patient", "sys", &[]),
        ];
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // Separator tricks cannot collide.
        assert_ne!(
            resource_id_parts("A", "s", &["a|b", "c"]),
            resource_id_parts("A", "s", &["a", "b|c"])
        );
        assert_ne!(resource_id("A", "s:1", "x"), resource_id("A", "s", "1:x"));
    }

    #[test]
    fn single_key_equals_one_part() {
        assert_eq!(
            resource_id("Patient", "s", "k"),
            resource_id_parts("Patient", "s", &["k"])
        );
    }

    #[test]
    fn reference_format() {
        assert_eq!(reference("Encounter", "abc"), "Encounter/abc");
    }
}
