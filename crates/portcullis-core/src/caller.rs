//! Who a caller is, as one value: the issuer that vouched for it and the subject it names.

use std::fmt;

/// A verified caller's identity: an issuer and a subject of that issuer. Two issuers may use the
/// same subject for different people, so a subject alone never names a caller; every session,
/// approval and cache entry that belongs to a caller is keyed by this.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallerId {
    issuer: String,
    subject: String,
}

impl CallerId {
    /// The caller `subject` of `issuer`.
    pub fn new(issuer: impl Into<String>, subject: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            subject: subject.into(),
        }
    }

    /// The issuer (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The subject (`sub`).
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

impl fmt::Display for CallerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (of {})", self.subject, self.issuer)
    }
}
