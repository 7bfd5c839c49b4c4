//! The gateway's public keys, from a JWK Set file given at start-up.

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm},
};

/// Why the key set cannot be used. Start-up fails on any of these.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The document is not a JWK Set.
    #[error("not a JWK set")]
    Parse(#[source] serde_json::Error),
    /// A key lacks a `kid`, which assertions name their key by.
    #[error("a key has no `kid`")]
    MissingKid,
    /// A key is not a P-256 EC key for ES256, the only kind assertions use.
    #[error("key `{kid}` is not an ES256 (P-256) public key")]
    Unsupported {
        /// The key's id.
        kid: String,
    },
    /// A key's parameters do not decode.
    #[error("key `{kid}` cannot be decoded")]
    Decode {
        /// The key's id.
        kid: String,
        /// What the JWT library said.
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    /// The set holds no keys, so no assertion could ever verify.
    #[error("the JWK set holds no keys")]
    Empty,
}

/// One trusted key, ready to verify with.
pub(super) struct Key {
    pub(super) algorithm: Algorithm,
    pub(super) decoding: DecodingKey,
}

/// Every trusted key, by `kid`.
pub(super) struct Keys(Vec<(String, Key)>);

impl Keys {
    /// Keys from a JWK Set document. An unusable key is an error rather than skipped, so a
    /// mistaken file fails at start-up instead of refusing every request later.
    pub(super) fn from_jwks(document: &str) -> Result<Self, KeysError> {
        let set: JwkSet = serde_json::from_str(document).map_err(KeysError::Parse)?;
        let mut keys = Vec::with_capacity(set.keys.len());
        for jwk in &set.keys {
            let kid = jwk.common.key_id.clone().ok_or(KeysError::MissingKid)?;
            let Some(algorithm) = algorithm_of(jwk) else {
                return Err(KeysError::Unsupported { kid });
            };
            let decoding = DecodingKey::from_jwk(jwk).map_err(|source| KeysError::Decode {
                kid: kid.clone(),
                source,
            })?;
            keys.push((
                kid,
                Key {
                    algorithm,
                    decoding,
                },
            ));
        }
        if keys.is_empty() {
            return Err(KeysError::Empty);
        }
        Ok(Self(keys))
    }

    pub(super) fn find(&self, kid: &str) -> Option<&Key> {
        self.0
            .iter()
            .find(|(candidate, _)| candidate == kid)
            .map(|(_, key)| key)
    }
}

/// ES256 for a P-256 key that says so or says nothing; nothing for any other key.
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    match (&jwk.algorithm, jwk.common.key_algorithm) {
        (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
            if ec.curve == EllipticCurve::P256 =>
        {
            Some(Algorithm::ES256)
        }
        _ => None,
    }
}
