use std::fmt;

/// Longest token accepted. Real access tokens are a few KiB at most; a larger header is refused
/// before any parsing, so an attacker cannot make verification chew on megabytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A bearer token as presented. Its contents never appear in `Debug`, logs or errors.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

/// Why an `Authorization` header does not carry a usable bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    /// More than one `Authorization` header.
    #[error("more than one authorization header")]
    Repeated,
    /// Not the `Bearer` scheme, or not `Bearer <token68>`.
    #[error("authorization header is not a bearer token")]
    Malformed,
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("bearer token is too long")]
    TooLong,
}

impl BearerToken {
    /// The token from the values of a request's `Authorization` headers: `Ok(None)` when there
    /// is none. Tokens in the query string or a form body are not looked at, ever (RFC 9700
    /// §2.5: they leak into logs and referrers).
    pub fn from_authorization<'a>(
        mut values: impl Iterator<Item = &'a [u8]>,
    ) -> Result<Option<Self>, BearerError> {
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(BearerError::Repeated);
        }
        if value.len() > MAX_TOKEN_BYTES + "Bearer ".len() {
            return Err(BearerError::TooLong);
        }
        let value = std::str::from_utf8(value).map_err(|_| BearerError::Malformed)?;
        let (scheme, token) = value.split_once(' ').ok_or(BearerError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(BearerError::Malformed);
        }
        let token = token.trim_matches(' ');
        // RFC 6750 §2.1 token68: letters, digits and -._~+/ followed by optional padding.
        let body = token.trim_end_matches('=');
        let token68 = !body.is_empty()
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
        if !token68 {
            return Err(BearerError::Malformed);
        }
        Ok(Some(Self(token.to_owned())))
    }

    /// A SHA-256 of the token: what a table may keep in its place.
    pub fn digest(&self) -> [u8; 32] {
        crate::introspect::digest(&self.0)
    }

    /// The token text, for a verifier. Handle with care: it is a credential.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(values: &[&str]) -> Result<Option<BearerToken>, BearerError> {
        BearerToken::from_authorization(values.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn a_bearer_header_yields_its_token_in_any_scheme_case() {
        for header in [
            "Bearer abc.def-ghi_~+/==",
            "bearer abc.def-ghi_~+/==",
            "BEARER  abc.def-ghi_~+/== ",
        ] {
            assert_eq!(
                parse(&[header]).unwrap().unwrap().expose(),
                "abc.def-ghi_~+/==",
                "{header}"
            );
        }
    }

    #[test]
    fn no_header_is_no_token() {
        assert_eq!(parse(&[]), Ok(None));
    }

    #[test]
    fn other_schemes_and_junk_are_malformed() {
        for header in [
            "Basic dXNlcjpwYXNz",
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a\"b",
            "Bearer ==",
            "Token abc",
            "Bearer é",
        ] {
            assert_eq!(parse(&[header]), Err(BearerError::Malformed), "{header}");
        }
    }

    #[test]
    fn two_headers_or_a_huge_token_are_refused() {
        assert_eq!(parse(&["Bearer a", "Bearer b"]), Err(BearerError::Repeated));
        let huge = format!("Bearer {}", "a".repeat(64 * 1024));
        assert_eq!(parse(&[&huge]), Err(BearerError::TooLong));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let token = parse(&["Bearer s3cr3t"]).unwrap().unwrap();
        assert!(!format!("{token:?}").contains("s3cr3t"));
    }
}
