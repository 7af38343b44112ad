//! Text helpers every layer shares, and nothing else: tenant or Vault input quoted and
//! capped for messages, lists of names, an error's chain of causes, RFC 3339 times, and the
//! shape of a Kubernetes object name. A leaf: it imports nothing of the crate.

/// Longest status message, in bytes.
pub const MAX_MESSAGE: usize = 1024;

/// At most `max` bytes of `text`, cut on a character boundary, with `...` when cut.
pub fn cap(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Tenant or Vault input quoted for a message: escaped, at most 64 bytes of it.
pub fn quote(text: &str) -> String {
    let cut = text.len() > 64;
    let shown = if cut { cap(text, 64) } else { text.to_string() };
    let shown = shown.strip_suffix("...").filter(|_| cut).unwrap_or(&shown);
    let escaped: String = shown.escape_debug().collect();
    if cut {
        format!("\"{escaped}\"... ({} bytes)", text.len())
    } else {
        format!("\"{escaped}\"")
    }
}

/// Names (keys, never values) for a message: quoted, the first 20, `none` for none.
pub fn name_list<S: AsRef<str>>(names: impl Iterator<Item = S>) -> String {
    let mut shown: Vec<String> = names.take(21).map(|n| quote(n.as_ref())).collect();
    if shown.is_empty() {
        return "none".into();
    }
    if shown.len() > 20 {
        shown.truncate(20);
        shown.push("...".into());
    }
    shown.join(", ")
}

/// An error and its causes, deduplicated, for messages.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// Seconds since the epoch as RFC 3339 UTC (`2023-11-14T22:13:20Z`).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A Kubernetes object name or namespace, safe to put in a URL path.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.starts_with(['-', '.'])
        && name != "."
        && name != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_escaped_and_capped() {
        assert_eq!(quote("a\nb"), "\"a\\nb\"");
        let long = "x".repeat(100);
        assert!(quote(&long).ends_with("... (100 bytes)"));
        assert_eq!(cap("héllo", 2), "h...");
        assert_eq!(name_list(["a", "b"].iter()), "\"a\", \"b\"");
        assert_eq!(name_list(std::iter::empty::<&str>()), "none");
    }

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn names_safe_for_paths() {
        for good in ["default", "kube-system", "app.v1", "a"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "..", "a/b", "A", "-a", ".a", "a b", "a%2F"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
