//! Why an identity assertion was not accepted. Logged, never sent: every reason gets the same
//! refusal on the wire.

use jsonwebtoken::errors::ErrorKind;

/// Why an assertion was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The request carries no assertion.
    #[error("no identity assertion in the request's _meta")]
    Missing,
    /// Not a compact JWT, or its parts or claims do not decode.
    #[error("identity assertion is malformed")]
    Malformed,
    /// The header's `typ` is not `JWT`.
    #[error("identity assertion has the wrong type")]
    Type,
    /// No trusted key has the header's `kid`, or the header names none.
    #[error("identity assertion is signed with an unknown key")]
    UnknownKey,
    /// The header names an algorithm other than its key's.
    #[error("identity assertion algorithm does not match its key")]
    Algorithm,
    /// The signature does not verify.
    #[error("identity assertion signature is invalid")]
    Signature,
    /// `exp` has passed.
    #[error("identity assertion has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("identity assertion is not valid yet")]
    NotYetValid,
    /// The assertion was accepted before: each goes with one request.
    #[error("identity assertion was used before")]
    Replayed,
    /// More assertions are remembered than the replay check holds; refused until some expire.
    #[error("too many identity assertions to remember; refused")]
    TooMany,
    /// The assertion names another request (method or target) than the one it came with.
    #[error("identity assertion was made for another request")]
    OtherRequest,
    /// `exp` is further away than any assertion the gateway mints.
    #[error("identity assertion lives too long")]
    Lifetime,
    /// `iss` is not the gateway.
    #[error("identity assertion is from another issuer")]
    Issuer,
    /// `aud` does not name this backend.
    #[error("identity assertion is for another audience")]
    Audience,
    /// A claim this backend needs is absent or empty.
    #[error("identity assertion lacks the `{claim}` claim")]
    MissingClaim {
        /// The claim.
        claim: &'static str,
    },
}

impl IdentityError {
    pub(super) fn from_jwt(kind: &ErrorKind) -> Self {
        match kind {
            ErrorKind::InvalidSignature => Self::Signature,
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::ImmatureSignature => Self::NotYetValid,
            ErrorKind::InvalidIssuer => Self::Issuer,
            ErrorKind::InvalidAudience => Self::Audience,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => Self::Algorithm,
            ErrorKind::MissingRequiredClaim(claim) => Self::MissingClaim {
                claim: match claim.as_str() {
                    "exp" => "exp",
                    "iss" => "iss",
                    "aud" => "aud",
                    _ => "sub",
                },
            },
            // The library's enum is open-ended; whatever else it reports, the assertion is unusable.
            _ => Self::Malformed,
        }
    }
}
