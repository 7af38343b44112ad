//! Paths and pointers of a class: `secretPath` normalised to Vault's `/v1/` API path (and
//! its query), the driver's rules for file names, and RFC 6901 JSON Pointers (`selector`).
//! Pure.

use super::MAX_PATH;
use crate::text::quote;

/// An RFC 6901 JSON Pointer (`/db/primary/password`), parsed into its reference tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    /// As written in the class, for messages.
    pub text: String,
    /// The unescaped reference tokens (`~1` is `/`, `~0` is `~`).
    pub tokens: Vec<String>,
}

impl Pointer {
    /// Parses a pointer: empty, or `/` followed by tokens separated by `/`.
    pub fn parse(text: &str) -> Result<Pointer, String> {
        if text.len() > 4096 {
            return Err("selector is longer than 4096 bytes".into());
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "selector {} is not a JSON Pointer: start it with /, e.g. /db/password",
                quote(text)
            ));
        };
        let mut tokens = Vec::new();
        for raw in rest.split('/') {
            let mut token = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                match (c, c == '~') {
                    (_, false) => token.push(c),
                    (_, true) => match chars.next() {
                        Some('0') => token.push('~'),
                        Some('1') => token.push('/'),
                        _ => {
                            return Err(format!(
                                "selector {} has a ~ that is not ~0 (for ~) or ~1 (for /)",
                                quote(text)
                            ));
                        }
                    },
                }
            }
            tokens.push(token);
        }
        Ok(Pointer {
            text: text.to_string(),
            tokens,
        })
    }
}

/// The driver's path rules, checked before any backend call: not empty, relative,
/// at most 4096 bytes, each element at most 255 bytes, no `..` element, not starting with
/// `..`, already clean; and no control characters.
pub fn validate_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.starts_with('/') {
        return Err("it must be a relative path, without a leading /".into());
    }
    if name.len() > 4096 {
        return Err("it is longer than 4096 bytes".into());
    }
    if name.starts_with("..") {
        return Err("it must not start with ..".into());
    }
    if name.chars().any(|c| c.is_control()) {
        return Err("it contains control characters".into());
    }
    for element in name.split('/') {
        match element {
            "" => {
                return Err(
                    "it is not a clean path (empty element from // or a trailing /)".into(),
                );
            }
            "." => return Err("it is not a clean path (. element)".into()),
            ".." => return Err("it contains a .. element".into()),
            e if e.len() > 255 => {
                return Err(format!("element {} is longer than 255 bytes", quote(e)));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `%XX` sequences decoded (invalid ones kept as they are), lossily as UTF-8.
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
        {
            let hex = &segment[i + 1..i + 3];
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `/v1/x`, `v1/x`, `/x` and `x` all mean `/v1/x`; text after the first `?` is the query.
pub fn normalise_secret_path(raw: &str) -> Result<(String, Vec<(String, String)>), String> {
    if raw.len() > MAX_PATH {
        return Err(format!(
            "secretPath is {} bytes, more than the {} allowed",
            raw.len(),
            MAX_PATH
        ));
    }
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, q),
        None => (raw, ""),
    };
    if path
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '#' || c == '\\')
    {
        return Err(format!(
            "secretPath {} contains whitespace, control characters, # or \\",
            quote(raw)
        ));
    }
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_prefix("v1/").unwrap_or(trimmed);
    if trimmed.is_empty() || trimmed == "v1" {
        return Err(format!(
            "secretPath {} names no secret: use e.g. secret/data/app",
            quote(raw)
        ));
    }
    for segment in trimmed.split('/') {
        // A percent-encoded dot or slash is one to Vault's router: judge the decoded form.
        let decoded = percent_decode(segment);
        if decoded != segment
            && (decoded == "."
                || decoded == ".."
                || decoded.contains(['/', '\\'])
                || decoded.chars().any(char::is_control))
        {
            return Err(format!(
                "secretPath {} has a percent-encoded ., .., / or control character: write the path plainly",
                quote(raw)
            ));
        }
        match segment {
            "" => {
                return Err(format!(
                    "secretPath {} has an empty element (//, or a trailing /)",
                    quote(raw)
                ));
            }
            "." | ".." => {
                return Err(format!(
                    "secretPath {} contains a . or .. element",
                    quote(raw)
                ));
            }
            _ => {}
        }
    }
    let query = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Ok((format!("/v1/{trimmed}"), query))
}
