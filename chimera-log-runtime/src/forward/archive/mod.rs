//! The S3 archive: every sealed record of `executions.log`'s family, uploaded once into a bucket
//! under Object Lock (COMPLIANCE, retained `audit_retention` from the record's time), so that the
//! audit trail outlives the host and nobody, root included, can delete or rewrite it there.
//!
//! - `uploader.rs`: the thread, a follower of the family with a persisted cursor (like the audit
//!   store's archiver), cutting objects and uploading them;
//! - `segment.rs`: the objects (lines byte for byte, gzip) and their keys;
//! - `digest.rs`: the signed, chained digests listing the objects; `sign.rs`: who signs them;
//! - `bucket.rs`: the S3 requests; `error.rs`: their failures, classified.

mod bucket;
mod digest;
mod error;
mod segment;
mod sign;
mod uploader;

pub(crate) use sign::{Ed25519, Signer};
pub(crate) use uploader::{Uploader, UploaderConfig};

/// Standard base64 (with padding), as S3's checksum headers want it.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_rfc_4648_test_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(input.as_bytes()), expected);
        }
    }
}
