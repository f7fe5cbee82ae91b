//! Digests: every `digest_interval` (and at shutdown), a JSON object listing the record objects
//! uploaded since the last digest, chained to it (its key, SHA-256 and signature) and signed, so
//! that an object removed, added or replaced, or a digest removed, is found by `verify
//! --archive`. The signature is in the object's metadata (`x-amz-meta-signature`, hex), over the
//! object's bytes exactly; the bytes say which key signed them (its fingerprint).

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::sign::{fingerprint, Signer};

/// The folder of the digests under the stream.
pub(crate) const DIGESTS: &str = "digests";

/// The metadata key of a digest's signature.
pub(crate) const SIGNATURE_METADATA: &str = "signature";

/// The key of digest number `number` of a stream (zero-padded: key order is digest order).
pub(crate) fn digest_key(stream_prefix: &str, number: u64) -> String {
    format!("{stream_prefix}{DIGESTS}/{number:020}.json")
}

/// One record object, as a digest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Listed {
    pub(crate) key: String,
    /// The SHA-256 of the object's bytes (the gzip stream), hex.
    pub(crate) sha256: String,
    pub(crate) first_seq: u64,
    pub(crate) last_seq: u64,
    /// The chain value of its last record, hex.
    pub(crate) chain: String,
}

/// The digest before, as the next one names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Previous {
    pub(crate) key: String,
    /// The SHA-256 of its bytes, hex.
    pub(crate) sha256: String,
    /// Its signature, hex (none when it was not signed).
    pub(crate) signature: Option<String>,
}

/// A digest's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DigestBody {
    pub(crate) version: u32,
    pub(crate) stream: String,
    /// 1 for the stream's first digest, then one more each time: a gap is a digest missing.
    pub(crate) number: u64,
    /// RFC 3339: the previous digest's `period_end` (the archive's start for the first).
    pub(crate) period_start: String,
    pub(crate) period_end: String,
    /// The record objects uploaded in the period, in key (seq) order.
    pub(crate) objects: Vec<Listed>,
    /// The newest record object the bucket held for the stream when the digest was made (from
    /// this digest or an earlier one): what a start after a crash lists after, to find the
    /// objects no digest lists yet.
    pub(crate) archived_through: Option<String>,
    pub(crate) previous: Option<Previous>,
    /// `ed25519`, or none when the archive has no signing key.
    pub(crate) signature_algorithm: Option<String>,
    /// The SHA-256 of the signing public key, hex.
    pub(crate) public_key_fingerprint: Option<String>,
}

/// A digest ready to upload: its bytes and signature.
#[derive(Debug, Clone)]
pub(crate) struct SignedDigest {
    pub(crate) key: String,
    pub(crate) body: Vec<u8>,
    pub(crate) signature: Option<String>,
}

impl SignedDigest {
    /// How the next digest names this one.
    pub(crate) fn as_previous(&self) -> Previous {
        Previous {
            key: self.key.clone(),
            sha256: crate::audit::hex(&Sha256::digest(&self.body)),
            signature: self.signature.clone(),
        }
    }
}

/// RFC 3339 UTC with microseconds, as in the lines.
pub(crate) fn timestamp(time: SystemTime) -> String {
    let mut text = Vec::with_capacity(32);
    crate::json::write_timestamp(&mut text, time);
    String::from_utf8(text).expect("a timestamp is ASCII")
}

/// Serializes and signs `body` under its key.
pub(crate) fn sign(stream_prefix: &str, mut body: DigestBody, signer: Option<&dyn Signer>) -> SignedDigest {
    body.signature_algorithm = signer.map(|signer| signer.algorithm().to_owned());
    body.public_key_fingerprint = signer.map(|signer| fingerprint(&signer.public_key()));
    let bytes = serde_json::to_vec_pretty(&body).expect("a digest serializes");
    let signature = signer.map(|signer| crate::audit::hex(&signer.sign(&bytes)));
    SignedDigest { key: digest_key(stream_prefix, body.number), body: bytes, signature }
}
