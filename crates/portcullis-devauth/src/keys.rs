//! Keys and random values: the signing key and helpers live in `portcullis-authn`.

pub(crate) use portcullis_authn::signing::{SigningKey, random_token, s256, write_private};

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
