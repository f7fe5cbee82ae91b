//! Who signs the archive's digests: the [`Signer`] trait (one method to sign, one to say the
//! public key), and the one signer there is, an Ed25519 key read from a PKCS#8 PEM file (as
//! `openssl genpkey -algorithm ed25519` writes). A signer backed by a KMS is another impl.

use std::path::Path;

use ed25519_dalek::pkcs8::DecodePrivateKey;
use sha2::{Digest, Sha256};

/// Signs digests.
pub(crate) trait Signer: Send + Sync + std::fmt::Debug {
    /// The signature of `message`.
    fn sign(&self, message: &[u8]) -> Vec<u8>;
    /// The public key, as the algorithm encodes it (32 bytes for Ed25519).
    fn public_key(&self) -> Vec<u8>;
    /// The algorithm's name, in the digest.
    fn algorithm(&self) -> &'static str;
}

/// The SHA-256 of a public key, hex: how a digest names the key that signed it.
pub(crate) fn fingerprint(public_key: &[u8]) -> String {
    crate::audit::hex(&Sha256::digest(public_key))
}

/// An Ed25519 private key.
pub(crate) struct Ed25519(ed25519_dalek::SigningKey);

impl std::fmt::Debug for Ed25519 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ed25519(public key {})", fingerprint(&self.public_key()))
    }
}

impl Ed25519 {
    /// The key in the PKCS#8 PEM file at `path`; the error says what is wrong, never the key.
    pub(crate) fn from_pem_file(path: &Path) -> Result<Ed25519, String> {
        let text = std::fs::read_to_string(path).map_err(|error| format!("cannot be read ({error})"))?;
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(&text).map_err(|error| {
            format!("is not an Ed25519 private key in PKCS#8 PEM (`openssl genpkey -algorithm ed25519`): {error}")
        })?;
        Ok(Ed25519(key))
    }
}

impl Signer for Ed25519 {
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        ed25519_dalek::Signer::sign(&self.0, message).to_bytes().to_vec()
    }

    fn public_key(&self) -> Vec<u8> {
        self.0.verifying_key().to_bytes().to_vec()
    }

    fn algorithm(&self) -> &'static str {
        "ed25519"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key `openssl genpkey -algorithm ed25519` wrote (the RFC 8410 example key).
    const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";

    #[test]
    fn a_pkcs8_pem_key_signs_and_its_signature_verifies_with_its_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, PEM).unwrap();
        let signer = Ed25519::from_pem_file(&path).unwrap();
        let signature = signer.sign(b"digest");
        let public: [u8; 32] = signer.public_key().try_into().unwrap();
        let verifying = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
        let signature = ed25519_dalek::Signature::from_slice(&signature).unwrap();
        assert!(verifying.verify_strict(b"digest", &signature).is_ok());
        assert!(verifying.verify_strict(b"digest!", &signature).is_err());
        assert!(!format!("{signer:?}").contains("MC4C"), "Debug never shows the key");
    }

    #[test]
    fn a_file_that_is_not_a_key_is_an_error_saying_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, "not a key").unwrap();
        let error = Ed25519::from_pem_file(&path).unwrap_err();
        assert!(error.contains("PKCS#8 PEM"), "{error}");
        assert!(Ed25519::from_pem_file(&dir.path().join("missing.pem")).unwrap_err().contains("cannot be read"));
    }
}
