//! Redacting holders for tokens and secret bytes.
//!
//! Everything that carries a service-account token, a Vault token or secret file content
//! goes through these types: their `Debug` prints `[redacted]`, they never implement
//! `Display`, and their memory is zeroed on drop. Reading the value takes an explicit
//! `expose()` call, so every place that touches a secret is easy to find.

use std::fmt;
use zeroize::Zeroizing;

/// A token or other secret text.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Secret file content.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    pub fn new(value: Vec<u8>) -> Self {
        Self(Zeroizing::new(value))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[redacted {} bytes]", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let token = SecretString::new("s.very-secret".into());
        let bytes = SecretBytes::new(b"hunter2".to_vec());
        assert_eq!(format!("{token:?}"), "[redacted]");
        assert_eq!(format!("{bytes:?}"), "[redacted 7 bytes]");
        assert_eq!(token.expose(), "s.very-secret");
        assert_eq!(bytes.expose(), b"hunter2");
    }
}
