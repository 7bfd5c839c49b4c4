//! An ES256 signing key kept in a file: generated on first use (readable by its owner only),
//! published as a JWK. The gateway signs identity assertions for upstreams with one; the demo's
//! authorization server signs access tokens with another.

use std::{io::Write, path::Path};

use aws_lc_rs::{
    digest,
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair},
};
use base64::{Engine, engine::general_purpose::STANDARD, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// A key file that cannot be read, written or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct KeyError {
    /// The file.
    pub path: std::path::PathBuf,
    /// What is wrong.
    pub reason: String,
}

impl KeyError {
    fn new(path: &Path, reason: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }
}

const PEM_LABEL: &str = "PRIVATE KEY";

/// A key tokens are signed with. Its private half never leaves this type.
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Read the key at `path`, or create it there (mode 0600) when there is none.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let der = match std::fs::read_to_string(path) {
            Ok(pem) => {
                pem_decode(&pem).ok_or_else(|| KeyError::new(path, "not a PEM private key"))?
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => create(path)?,
            Err(error) => return Err(KeyError::new(path, error.to_string())),
        };
        Self::from_pkcs8(&der).map_err(|reason| KeyError::new(path, reason))
    }

    /// Read the key at `path`, or make one in memory when there is none: then also the PEM
    /// to write there (with [`write_private`]) once whatever needs it is sure to go ahead.
    pub fn load_or_generate(path: &Path) -> Result<(Self, Option<Vec<u8>>), KeyError> {
        let (der, new) = match std::fs::read_to_string(path) {
            Ok(pem) => (
                pem_decode(&pem).ok_or_else(|| KeyError::new(path, "not a PEM private key"))?,
                false,
            ),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => (generate(path)?, true),
            Err(error) => return Err(KeyError::new(path, error.to_string())),
        };
        let key = Self::from_pkcs8(&der).map_err(|reason| KeyError::new(path, reason))?;
        Ok((key, new.then(|| pem_encode(&der).into_bytes())))
    }

    fn from_pkcs8(der: &[u8]) -> Result<Self, String> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|_| "not a P-256 PKCS#8 key".to_owned())?;
        // An uncompressed SEC1 point: 0x04, then x and y, 32 bytes each.
        let point = pair.public_key().as_ref();
        let (Some(x), Some(y)) = (point.get(1..33), point.get(33..65)) else {
            return Err("unexpected public key encoding".to_owned());
        };
        let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
        // RFC 7638 thumbprint: the required members, in lexicographic order, no whitespace.
        let thumbprint = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, thumbprint.as_bytes()));
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "use": "sig", "alg": "ES256"});
        Ok(Self {
            kid,
            encoding: EncodingKey::from_ec_der(der),
            jwk,
        })
    }

    /// The public key set (RFC 7517).
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }

    /// Sign `claims` as a compact JWT whose header says `typ` (`at+jwt` for RFC 9068 access
    /// tokens, `JWT` for identity assertions, so that one cannot pass for the other).
    pub fn sign(&self, typ: &str, claims: &Value) -> Result<String, String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|error| error.to_string())
    }
}

fn generate(path: &Path) -> Result<Vec<u8>, KeyError> {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .map_err(|_| KeyError::new(path, "cannot generate a key"))?;
    let der = pair
        .to_pkcs8v1()
        .map_err(|_| KeyError::new(path, "cannot encode the key"))?;
    Ok(der.as_ref().to_vec())
}

fn create(path: &Path) -> Result<Vec<u8>, KeyError> {
    let der = generate(path)?;
    write_private(path, pem_encode(&der).as_bytes())?;
    tracing::info!(path = %path.display(), "generated a signing key");
    Ok(der)
}

/// Create `path` readable by its owner only (it holds a key or secrets); never overwrite.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|error| KeyError::new(path, error.to_string()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|error| KeyError::new(path, error.to_string()))
}

fn pem_encode(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {PEM_LABEL}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {PEM_LABEL}-----\n"));
    pem
}

fn pem_decode(pem: &str) -> Option<Vec<u8>> {
    let body = pem
        .trim()
        .strip_prefix(&format!("-----BEGIN {PEM_LABEL}-----"))?
        .strip_suffix(&format!("-----END {PEM_LABEL}-----"))?;
    let body: String = body.split_whitespace().collect();
    STANDARD.decode(body).ok()
}

/// SHA-256, base64url: PKCE S256 (RFC 7636 §4.2), and the at-rest form of secrets kept only
/// to be recognised (refresh tokens, cookies).
pub fn s256(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, text.as_bytes()))
}

/// 32 random bytes, base64url: token ids, codes, client ids and secrets.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // The system RNG failing is not a state a server can continue from.
    if aws_lc_rs::rand::SecureRandom::fill(&SystemRandom::new(), &mut bytes).is_err() {
        std::process::abort();
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_survives_a_restart_with_the_same_kid() {
        let dir = std::env::temp_dir().join(format!("devauth-key-{}", random_token()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("signing-key.pem");
        let first = SigningKey::load_or_create(&path).unwrap();
        let second = SigningKey::load_or_create(&path).unwrap();
        assert_eq!(first.kid, second.kid);
        assert_eq!(first.jwks(), second.jwks());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "garbage").unwrap();
        assert!(SigningKey::load_or_create(&path).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
