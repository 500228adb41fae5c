//! Publisher keys (ed25519), signing a package's manifest, and the gateway's
//! trust store.
//!
//! Files: a private key is PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, what
//! `openssl genpkey -algorithm ed25519` writes); a public key is one line,
//! `ed25519:<base64 of the 32 key bytes>`, or SubjectPublicKeyInfo PEM. A key id
//! is the first 16 hex digits of the sha256 of the public key bytes.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey};
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::PackageError;
use crate::package::{Package, Signature};

pub const ALG: &str = "ed25519";

/// The key id of a public key.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// A new key pair: (private key PEM, public key line).
pub fn keygen() -> Result<(String, String), PackageError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| PackageError::Key(format!("no randomness for a new key: {e}")))?;
    let key = SigningKey::from_bytes(&seed);
    let pem = key.to_pkcs8_pem(Default::default()).map_err(|e| PackageError::Key(format!("encoding the private key: {e}")))?;
    Ok((pem.to_string(), public_line(&key.verifying_key())))
}

pub fn public_line(key: &VerifyingKey) -> String {
    format!("{ALG}:{}", B64.encode(key.as_bytes()))
}

pub fn read_private(pem: &str) -> Result<SigningKey, PackageError> {
    SigningKey::from_pkcs8_pem(pem.trim()).map_err(|e| PackageError::Key(format!("not an ed25519 private key in PKCS#8 PEM: {e}")))
}

/// A public key: `ed25519:<base64>` or SubjectPublicKeyInfo PEM.
pub fn read_public(text: &str) -> Result<VerifyingKey, PackageError> {
    let t = text.trim();
    if let Some(b) = t.strip_prefix("ed25519:") {
        let bytes = B64.decode(b.trim()).map_err(|e| PackageError::Key(format!("the public key is not base64: {e}")))?;
        let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| PackageError::Key(format!("an ed25519 public key is 32 bytes, not {}", bytes.len())))?;
        return VerifyingKey::from_bytes(&arr).map_err(|e| PackageError::Key(format!("not a valid ed25519 public key: {e}")));
    }
    if t.starts_with("-----BEGIN PUBLIC KEY-----") {
        return VerifyingKey::from_public_key_pem(t).map_err(|e| PackageError::Key(format!("not an ed25519 public key in PEM: {e}")));
    }
    Err(PackageError::Key("a public key is `ed25519:<base64>` or a PEM `BEGIN PUBLIC KEY` block".into()))
}

/// Sign `pkg`'s manifest with `key` (replacing any signature it had).
pub fn sign(pkg: &mut Package, key: &SigningKey) {
    let sig = key.sign(&pkg.manifest_bytes);
    pkg.signature = Some(Signature { alg: ALG.into(), key_id: key_id(&key.verifying_key()), signature: B64.encode(sig.to_bytes()) });
}

/// The publisher keys a gateway accepts packages from.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    keys: BTreeMap<String, VerifyingKey>,
    /// Development only: accept packages with no signature (logged loudly).
    pub allow_unsigned: bool,
}

/// Who vouched for a package that passed [`TrustStore::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    Key(String),
    /// Unsigned, accepted because `allow_unsigned` is set.
    Unsigned,
}

impl std::fmt::Display for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signer::Key(k) => write!(f, "{k}"),
            Signer::Unsigned => write!(f, "unsigned"),
        }
    }
}

impl TrustStore {
    pub fn add(&mut self, key: VerifyingKey) -> String {
        let id = key_id(&key);
        self.keys.insert(id.clone(), key);
        id
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Check the signature (by a trusted key, over these exact manifest bytes)
    /// and that the component is the one the manifest pins.
    pub fn verify(&self, pkg: &Package) -> Result<Signer, PackageError> {
        let signer = match &pkg.signature {
            None if self.allow_unsigned => Signer::Unsigned,
            None => return Err(PackageError::Unsigned),
            Some(s) => {
                if s.alg != ALG {
                    return Err(PackageError::BadSignature { key_id: s.key_id.clone(), reason: format!("algorithm `{}` is not {ALG}", s.alg.escape_debug()) });
                }
                let key = self.keys.get(&s.key_id).ok_or_else(|| PackageError::UntrustedKey { key_id: s.key_id.clone() })?;
                let bytes = B64.decode(&s.signature).map_err(|e| PackageError::BadSignature { key_id: s.key_id.clone(), reason: format!("not base64: {e}") })?;
                let sig = ed25519_dalek::Signature::from_slice(&bytes)
                    .map_err(|e| PackageError::BadSignature { key_id: s.key_id.clone(), reason: e.to_string() })?;
                key.verify(&pkg.manifest_bytes, &sig)
                    .map_err(|_| PackageError::BadSignature { key_id: s.key_id.clone(), reason: "it does not match the manifest (altered after signing, or signed by another key)".into() })?;
                Signer::Key(s.key_id.clone())
            }
        };
        pkg.check_digest()?;
        Ok(signer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::{ComponentRef, Facts, FORMAT, Manifest, sha256_hex};

    fn pkg(component: &[u8]) -> Package {
        let m = Manifest {
            format: FORMAT.into(),
            name: "acme".into(),
            version: "1.0.0".into(),
            vendor: "Acme".into(),
            contract: "0.1.0".into(),
            component: ComponentRef { sha256: sha256_hex(component), size: component.len() as u64 },
            describe: Facts { hl7_message_types: vec!["ADT^A01".into()], fhir_resource_types: vec![], event_sources: vec![], actions: vec![], connections: vec![] },
        };
        Package::new(m, component.to_vec(), None)
    }

    fn trust(public: &str) -> TrustStore {
        let mut t = TrustStore::default();
        t.add(read_public(public).unwrap());
        t
    }

    #[test]
    fn signed_by_a_trusted_key_verifies_and_survives_the_file_format() {
        let (private, public) = keygen().unwrap();
        let mut p = pkg(b"\0asm component bytes");
        sign(&mut p, &read_private(&private).unwrap());
        let read = Package::read(&p.to_bytes(), 1 << 20).unwrap();
        let signer = trust(&public).verify(&read).unwrap();
        assert_eq!(signer, Signer::Key(key_id(&read_public(&public).unwrap())));
        assert_eq!(signer.to_string().len(), 16);
    }

    #[test]
    fn refusals_name_their_reason() {
        let (private, public) = keygen().unwrap();
        let (other_private, _) = keygen().unwrap();
        let key = read_private(&private).unwrap();

        let mut untrusted = pkg(b"component");
        sign(&mut untrusted, &read_private(&other_private).unwrap());
        let e = trust(&public).verify(&untrusted).unwrap_err();
        assert!(matches!(e, PackageError::UntrustedKey { .. }), "{e}");
        assert!(e.to_string().contains("not in this gateway's trust store"), "{e}");

        let mut tampered = pkg(b"component");
        sign(&mut tampered, &key);
        tampered.component[0] ^= 1;
        let e = trust(&public).verify(&tampered).unwrap_err();
        assert!(matches!(e, PackageError::DigestMismatch { .. }), "{e}");

        let mut renamed = pkg(b"component");
        sign(&mut renamed, &key);
        renamed.manifest_bytes = String::from_utf8(renamed.manifest_bytes.clone()).unwrap().replace("\"acme\"", "\"epic\"").into_bytes();
        let e = trust(&public).verify(&renamed).unwrap_err();
        assert!(matches!(e, PackageError::BadSignature { .. }), "{e}");

        let unsigned = pkg(b"component");
        assert!(matches!(trust(&public).verify(&unsigned).unwrap_err(), PackageError::Unsigned));
        let mut dev = trust(&public);
        dev.allow_unsigned = true;
        assert_eq!(dev.verify(&unsigned).unwrap(), Signer::Unsigned);
    }

    #[test]
    fn public_keys_in_both_forms() {
        let (private, public) = keygen().unwrap();
        let key = read_private(&private).unwrap().verifying_key();
        assert_eq!(read_public(&public).unwrap(), key);
        use ed25519_dalek::pkcs8::EncodePublicKey;
        let pem = key.to_public_key_pem(Default::default()).unwrap();
        assert_eq!(read_public(&pem).unwrap(), key);
        assert!(read_public("ed25519:AAAA").is_err());
    }

    #[test]
    fn oversized_components_are_refused_before_reading() {
        let p = pkg(&[7u8; 4096]);
        let e = Package::read(&p.to_bytes(), 1024).unwrap_err();
        assert!(matches!(e, PackageError::TooLarge { size: 4096, limit: 1024, .. }), "{e}");
    }
}
