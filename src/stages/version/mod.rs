//! Object versions: `base64url(HMAC-SHA256(key, config ‖ content))`, 44 characters, so every
//! node with the same key gives the same version for the same object and content, and a
//! version reveals nothing about the content. Objects the Go provider also has are
//! versioned exactly as it versions them (`go/`); ours in a domain of their own.
//! Pure.

pub mod go;

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

    /// The Go provider's version of an object: `base64url(HMAC-SHA256(key, json ‖ content))`
    /// over its `json.Marshal(config.Secret)`; empty without a key.
    pub fn go_version(&self, config_json: &str, content: &[u8]) -> String {
        match &self.0 {
            Some(key) => go_object_version(key, config_json, content),
            None => String::new(),
        }
    }

    /// The version of an object only this provider has, in a domain of its own (it cannot
    /// equal a Go-style version); `fields` are its settings (and file path); empty without
    /// a key.
    pub fn own_version(&self, fields: &[&[u8]], content: &[u8]) -> String {
        match &self.0 {
            Some(key) => own_object_version(key, fields, content),
            None => String::new(),
        }
    }
}

/// The Go provider's version: `base64url(HMAC-SHA256(key, config_json ‖ content))`, with
/// padding (44 characters). `config_json` comes from [`GoSecret::config_json`].
pub fn go_object_version(key: &[u8], config_json: &str, content: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(config_json.as_bytes());
    mac.update(content);
    base64::engine::general_purpose::URL_SAFE.encode(mac.finalize().into_bytes())
}

/// The first bytes of the HMAC input of every version of our own. A Go version's input
/// always starts with `{` (its JSON object), so no input of ours equals one of theirs, and a
/// collision would need an HMAC-SHA256 collision.
pub const OWN_DOMAIN: &[u8] = b"\0vault-csi-provider/own-object-version/v1\0";

/// The version of an object only this provider has (template, allKeys, selector):
/// `base64url(HMAC-SHA256(key, OWN_DOMAIN ‖ n ‖ (len ‖ field)* ‖ content))`, lengths and
/// `n` as 8-byte big-endian numbers, so no two field lists give the same input. Give the
/// object's settings (and, for a file of a directory, its path) as `fields`.
pub fn own_object_version(key: &[u8], fields: &[&[u8]], content: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(OWN_DOMAIN);
    mac.update(&(fields.len() as u64).to_be_bytes());
    for field in fields {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field);
    }
    mac.update(content);
    base64::engine::general_purpose::URL_SAFE.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_change_exactly_with_content_or_settings() {
        let k = VersionKey::new(vec![7; 32]);
        let v = k.go_version("{\"ObjectName\":\"a\"}", b"one");
        assert_eq!(v.len(), 44);
        assert_eq!(v, k.go_version("{\"ObjectName\":\"a\"}", b"one"));
        assert_ne!(v, k.go_version("{\"ObjectName\":\"a\"}", b"two"));
        assert_ne!(v, k.go_version("{\"ObjectName\":\"b\"}", b"one"));
        assert_ne!(
            v,
            VersionKey::new(vec![8; 32]).go_version("{\"ObjectName\":\"a\"}", b"one")
        );
        let own = k.own_version(&[b"{\"ObjectName\":\"a\"}"], b"one");
        assert_eq!(own.len(), 44);
        assert_ne!(
            own, v,
            "our own kinds never share a version with a Go-style object"
        );
        assert_eq!(VersionKey::none().go_version("x", b"y"), "");
        assert_eq!(VersionKey::none().own_version(&[b"x"], b"y"), "");
    }

    #[test]
    fn own_versions_are_separated_from_go_versions() {
        let key = [7u8; 32];
        let go = go_object_version(&key, "{}", b"x");
        assert_eq!(go.len(), 44);
        assert_ne!(own_object_version(&key, &[b"{}"], b"x"), go);
        assert_ne!(
            own_object_version(&key, &[b"a", b"bc"], b""),
            own_object_version(&key, &[b"ab", b"c"], b"")
        );
        assert_ne!(
            own_object_version(&key, &[b"a"], b"b"),
            own_object_version(&key, &[b"ab"], b"")
        );
    }
}
