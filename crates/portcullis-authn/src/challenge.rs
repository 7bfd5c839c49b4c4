/// A set of OAuth scopes, each a valid RFC 6749 §3.3 scope token, kept in a stable order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Vec<String>);

/// A scope that cannot be written in a `scope` parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{scope}` is not a valid scope token")]
pub struct ScopeError {
    /// The offending text.
    pub scope: String,
}

impl Scopes {
    /// Scopes from names, each checked against RFC 6749's `scope-token` grammar (printable
    /// ASCII without space, `"` or `\`), so they can be quoted in a header without escaping.
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Result<Self, ScopeError> {
        let mut scopes = Vec::new();
        for name in names {
            let name = name.into();
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
            if !valid {
                return Err(ScopeError { scope: name });
            }
            if !scopes.contains(&name) {
                scopes.push(name);
            }
        }
        Ok(Self(scopes))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The scopes in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Space-separated, as the `scope` parameter and token responses write them.
    pub fn joined(&self) -> String {
        self.0.join(" ")
    }
}

/// What a caller is told when its request cannot proceed without (another) token.
///
/// See: RFC 6750 §3, RFC 9728 §5.1, MCP authorization (scope selection and step-up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// No token at all: 401 without an error code (RFC 6750 §3.1), naming where to find the
    /// authorization server and the scopes to start with.
    Missing {
        /// Scopes a client should request to begin with.
        scopes: Scopes,
    },
    /// A token that is malformed, expired, revoked, or for another resource: 401.
    InvalidToken,
    /// A valid token lacking scope: 403, naming every scope the operation needs, so one
    /// re-authorization is enough.
    InsufficientScope {
        /// All scopes the operation needs.
        scopes: Scopes,
    },
}

impl Challenge {
    /// The HTTP status that carries this challenge.
    pub fn status(&self) -> u16 {
        match self {
            Self::Missing { .. } | Self::InvalidToken => 401,
            Self::InsufficientScope { .. } => 403,
        }
    }

    /// The `WWW-Authenticate` value, pointing at the protected resource metadata document.
    /// Parameter order follows the MCP authorization spec's examples. The URL is built by this
    /// crate from a parsed URL, so it cannot hold a quote; scopes were checked by [`Scopes`].
    pub fn header_value(&self, metadata_url: &str) -> String {
        match self {
            Self::Missing { scopes } if scopes.is_empty() => {
                format!("Bearer resource_metadata=\"{metadata_url}\"")
            }
            Self::Missing { scopes } => format!(
                "Bearer resource_metadata=\"{metadata_url}\", scope=\"{}\"",
                scopes.joined()
            ),
            Self::InvalidToken => {
                format!("Bearer error=\"invalid_token\", resource_metadata=\"{metadata_url}\"")
            }
            Self::InsufficientScope { scopes } => format!(
                "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{metadata_url}\"",
                scopes.joined()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_tokens_are_checked_and_deduplicated() {
        let scopes = Scopes::new(["policies:read", "tickets:write", "policies:read"]).unwrap();
        assert_eq!(scopes.joined(), "policies:read tickets:write");
        for bad in ["", "two words", "quo\"te", "back\\slash", "tab\t", "é"] {
            assert!(Scopes::new([bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn statuses_follow_rfc_6750() {
        assert_eq!(
            Challenge::Missing {
                scopes: Scopes::default()
            }
            .status(),
            401
        );
        assert_eq!(Challenge::InvalidToken.status(), 401);
        assert_eq!(
            Challenge::InsufficientScope {
                scopes: Scopes::default()
            }
            .status(),
            403
        );
    }
}
