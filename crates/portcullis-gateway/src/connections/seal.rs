//! Sealing what is kept of a person's connection (their tokens at an upstream's authorization
//! server, a registration's client secret, a sign-in in progress) with AES-256-GCM under a key
//! from a file. Each sealed value names what it belongs to (its context, authenticated with it):
//! a row copied onto another person's, or a state of one sign-in brought to another, opens to
//! nothing.

use std::path::Path;

use aws_lc_rs::{
    aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    rand::{SecureRandom, SystemRandom},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

/// The version prefix of a sealed value: a later key or algorithm gets another.
const PREFIX: &str = "v1.";

/// The key, as the configuration names it.
pub(crate) struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<key>)")
    }
}

impl Sealer {
    /// The key in `path`: 32 bytes, written in base64 (standard or URL-safe, padded or not).
    pub(crate) fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("`{}`: {error}", path.display()))?;
        Self::from_text(text.trim()).map_err(|error| format!("`{}`: {error}", path.display()))
    }

    fn from_text(text: &str) -> Result<Self, String> {
        let cleaned: String = text
            .trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_");
        let bytes = URL_SAFE_NO_PAD
            .decode(cleaned)
            .map_err(|_| "is not base64 (make one with `head -c 32 /dev/urandom | base64`)")?;
        if bytes.len() != 32 {
            return Err(format!(
                "holds {} bytes; the key is 32 random bytes in base64 (`head -c 32 /dev/urandom | base64`)",
                bytes.len()
            ));
        }
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| "is not a key")?;
        Ok(Self {
            key: LessSafeKey::new(key),
        })
    }

    /// `plain`, sealed for `context`.
    pub(crate) fn seal(&self, context: &str, plain: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        // The system RNG failing is not a state a server can continue from.
        if SystemRandom::new().fill(&mut nonce).is_err() {
            std::process::abort();
        }
        let mut sealed = plain.to_vec();
        // Sealing into a vector cannot fail for a valid key and a value this size.
        if self
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut sealed,
            )
            .is_err()
        {
            std::process::abort();
        }
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// What `sealed` holds, if it was sealed with this key for `context` and not altered.
    pub(crate) fn open(&self, context: &str, sealed: &str) -> Option<Vec<u8>> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed.strip_prefix(PREFIX)?).ok()?;
        if bytes.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return None;
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut rest = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut rest)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
pub(crate) fn test_sealer() -> Sealer {
    Sealer::from_text(&URL_SAFE_NO_PAD.encode([7u8; 32])).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_for_its_own_context_and_key() {
        let sealer = test_sealer();
        let sealed = sealer.seal("iss\0alice\0tickets", b"secret-token");
        assert!(!sealed.contains("secret-token"));
        assert_eq!(
            sealer.open("iss\0alice\0tickets", &sealed).as_deref(),
            Some(b"secret-token".as_slice())
        );
        assert_eq!(sealer.open("iss\0bob\0tickets", &sealed), None);
        let other = Sealer::from_text(&URL_SAFE_NO_PAD.encode([8u8; 32])).unwrap();
        assert_eq!(other.open("iss\0alice\0tickets", &sealed), None);
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 3;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            sealer.open("iss\0alice\0tickets", &String::from_utf8(altered).unwrap()),
            None
        );
        assert_eq!(sealer.open("iss\0alice\0tickets", "v1.AAAA"), None);
        assert_eq!(sealer.open("iss\0alice\0tickets", "garbage"), None);
    }

    #[test]
    fn a_key_file_must_hold_32_bytes_of_base64() {
        use base64::engine::general_purpose::STANDARD;
        assert!(Sealer::from_text(&STANDARD.encode([1u8; 32])).is_ok());
        let short = Sealer::from_text(&STANDARD.encode([1u8; 16])).unwrap_err();
        assert!(short.contains("16 bytes"), "{short}");
        assert!(Sealer::from_text("not base64 at all!").is_err());
    }
}
