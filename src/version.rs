//! Object versions: `base64url(HMAC-SHA256(key, config ‖ content))`, 44 characters, so every
//! node with the same key gives the same version for the same object and content, and a
//! version reveals nothing about the content. Pure.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The HMAC key of object versions; `None` when no key could be had.
#[derive(Clone, Default)]
pub struct VersionKey(Option<Zeroizing<Vec<u8>>>);

impl std::fmt::Debug for VersionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "VersionKey([redacted])"
        } else {
            "VersionKey(none)"
        })
    }
}

impl VersionKey {
    pub fn new(key: Vec<u8>) -> Self {
        Self(Some(Zeroizing::new(key)))
    }

    pub fn none() -> Self {
        Self(None)
    }

    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// The version of one object; empty without a key.
    pub fn version(&self, config: &str, content: &[u8]) -> String {
        let Some(key) = &self.0 else {
            return String::new();
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
            return String::new();
        };
        // Length-prefix the config so that no (config, content) pair can collide with another.
        mac.update(&(config.len() as u64).to_be_bytes());
        mac.update(config.as_bytes());
        mac.update(content);
        base64::engine::general_purpose::URL_SAFE.encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_changes_exactly_with_content_or_config() {
        let k = VersionKey::new(vec![7; 32]);
        let v = k.version("{\"objectName\":\"a\"}", b"one");
        assert_eq!(v.len(), 44);
        assert_eq!(v, k.version("{\"objectName\":\"a\"}", b"one"));
        assert_ne!(v, k.version("{\"objectName\":\"a\"}", b"two"));
        assert_ne!(v, k.version("{\"objectName\":\"b\"}", b"one"));
        assert_ne!(
            v,
            VersionKey::new(vec![8; 32]).version("{\"objectName\":\"a\"}", b"one")
        );
        assert_eq!(VersionKey::none().version("x", b"y"), "");
    }
}
