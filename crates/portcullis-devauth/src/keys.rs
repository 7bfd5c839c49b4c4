//! Keys and random values: the signing key and helpers live in `portcullis-authn`; PKCE's S256
//! is this server's own.

use aws_lc_rs::digest;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
pub(crate) use portcullis_authn::signing::{SigningKey, random_token, write_private};

/// SHA-256, base64url: PKCE S256 (RFC 7636 §4.2) and the at-rest form of refresh tokens.
pub(crate) fn s256(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_agrees_with_an_independent_implementation() {
        // base64url(sha256(verifier)) as Python's hashlib and base64 compute it.
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r2W9EfLKjuLF1M"),
            "Yi8VR69_ufk_E7zYUjd6bYqsC0X20jIiCU9DfGdyJyE"
        );
    }
}
