//! Object versions equal, byte for byte, to those of the Go provider
//! (hashicorp/vault-csi-provider 1.7.x and its OpenBao fork), so that switching providers
//! changes no version; and versions of our own for objects the Go provider does not have.
//! Pure: no clock, no network, no environment.
//!
//! # How the Go provider computes a version
//! `generateObjectVersion` in `internal/provider/provider.go` (the same in 1.3 to 1.7 and in
//! the OpenBao fork):
//!
//! ```text
//! version = base64.URLEncoding(HMAC-SHA256(key, json.Marshal(secret) ‖ content))
//! ```
//!
//! - `key` is the 32-byte key of the HMAC Secret; without one the version is `""`.
//! - `secret` is the object's `config.Secret` exactly as yaml.v3 (gopkg.in/yaml.v3 v3.0.1)
//!   decoded it from the class's `objects` text; nothing fills in defaults before hashing.
//!   Its exported fields, in declaration order, with no `json` tags (so the field names are
//!   the JSON keys), identical in both providers:
//!   `ObjectName string`, `SecretPath string`, `SecretKey string`, `Method string`,
//!   `SecretArgs map[string]interface{}`, `FilePermission os.FileMode`, `Encoding string`.
//!   So `Method` and `Encoding` are as written (`""` when absent, `put` stays lower case),
//!   `SecretPath` is not normalised, `FilePermission` is `0` when absent (not the default
//!   mode), and `SecretArgs` is `null` when absent. `os.FileMode` has no JSON methods: it is
//!   written as a number.
//! - `content` is the file's bytes: the value after `encoding` is applied, or the whole
//!   answer as Go writes it.
//! - `json.Marshal` escapes HTML (`<`, `>`, `&` as `\u003c` …), U+2028 and U+2029, writes
//!   `\b \f \n \r \t \" \\`, other control characters as `\u00XX`, invalid UTF-8 as
//!   `\ufffd`; map keys sorted by bytes; floats in the shortest form, with an exponent only
//!   below 1e-6 or from 1e21 on.
//!
//! # How yaml.v3 types `secretArgs`
//! Quoted and block scalars are strings. A plain scalar is resolved: `~ null Null NULL` and
//! empty are nil, `true True TRUE false False FALSE` are booleans, a timestamp such as
//! `2015-01-01` becomes a `time.Time` (written as RFC 3339), otherwise underscores are
//! removed and Go's `strconv.ParseInt(s, 0, 64)` (so `0600` is octal, `0x`, `0o`, `0b`
//! prefixes in either case), then `ParseUint`, then a float if it looks like one. Keys of the
//! top-level map are their text; a nested map with any key that is not a string makes the
//! Go provider fail. serde_yaml_ng resolves plain scalars differently (`0600`, `1_000`,
//! `2015-01-01`, `0X1F` stay strings there) and cannot tell a quoted `"0600"` from a plain
//! one; where that matters this module asks libyaml where the scalar starts (see
//! [`go_secrets`]).

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use sha2::Sha256;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// Which Go provider an object is served as. Both declare the same `config.Secret` fields in
/// the same order today (OpenBao fork `internal/config/config.go`), so both give the same
/// JSON; the parameter keeps the choice explicit should they ever differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// hashicorp/vault-csi-provider (`provider: vault`).
    Vault,
    /// openbao/openbao-csi-provider (`provider: openbao`).
    OpenBao,
}

/// A Go `map[string]interface{}`: keys in the order `encoding/json` writes them.
pub type GoMap = BTreeMap<String, GoValue>;

/// A value inside `SecretArgs` as yaml.v3 leaves it in an `interface{}`.
#[derive(Debug, Clone, PartialEq)]
pub enum GoValue {
    Nil,
    Bool(bool),
    /// Go `int` (64 bits).
    Int(i64),
    /// Go `uint64`: integers above `i64::MAX`.
    Uint(u64),
    Float(f64),
    String(String),
    /// A `time.Time`, as its `MarshalJSON` writes it (RFC 3339, without the quotes).
    Time(String),
    List(Vec<GoValue>),
    Map(GoMap),
}

/// One object of `objects` as the Go provider's `config.Secret` holds it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GoSecret {
    pub object_name: String,
    pub secret_path: String,
    pub secret_key: String,
    pub method: String,
    /// `None` is Go's nil map (`null`).
    pub secret_args: Option<GoMap>,
    /// 0 when the object sets none.
    pub file_permission: u32,
    pub encoding: String,
}

/// Why no Go version can be given. The texts name fields and positions, never values.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum GoError {
    #[error("objects is not YAML that the Go provider reads: {0}")]
    Syntax(String),
    /// The Go provider would fail the mount, so it has no version to match.
    #[error("the Go provider would refuse object {index}: {reason}")]
    Refused { index: usize, reason: String },
    /// The Go provider reads it, but this module cannot tell how (see [`go_secrets`]).
    #[error("the Go provider's reading of object {index} is not known here: {reason}")]
    Unsupported { index: usize, reason: String },
    #[error("objects has more than {0} scalars whose type depends on their quoting")]
    TooAmbiguous(usize),
}

// ---------------------------------------------------------------------------------------
// Versions
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Go's encoding/json
// ---------------------------------------------------------------------------------------

impl GoSecret {
    /// `json.Marshal` of the Go provider's `config.Secret`: the first input of its version.
    /// Fails (`Refused` with index 0) only for a NaN or infinite float in `secret_args`,
    /// which [`go_secrets`] never gives.
    pub fn config_json(&self, flavour: Flavour) -> Result<String, GoError> {
        // Field names and order of `config.Secret`; the same in both providers.
        let names = match flavour {
            Flavour::Vault | Flavour::OpenBao => [
                "ObjectName",
                "SecretPath",
                "SecretKey",
                "Method",
                "SecretArgs",
                "FilePermission",
                "Encoding",
            ],
        };
        let mut out = String::with_capacity(160);
        let field = |out: &mut String, i: usize| {
            out.push(if i == 0 { '{' } else { ',' });
            push_go_string(out, names[i].as_bytes());
            out.push(':');
        };
        field(&mut out, 0);
        push_go_string(&mut out, self.object_name.as_bytes());
        field(&mut out, 1);
        push_go_string(&mut out, self.secret_path.as_bytes());
        field(&mut out, 2);
        push_go_string(&mut out, self.secret_key.as_bytes());
        field(&mut out, 3);
        push_go_string(&mut out, self.method.as_bytes());
        field(&mut out, 4);
        match &self.secret_args {
            None => out.push_str("null"),
            Some(map) => push_go_map(&mut out, map)
                .map_err(|reason| GoError::Refused { index: 0, reason })?,
        }
        field(&mut out, 5);
        out.push_str(&self.file_permission.to_string());
        field(&mut out, 6);
        push_go_string(&mut out, self.encoding.as_bytes());
        out.push('}');
        Ok(out)
    }

    /// `secretArgs` as Go's `json.Marshal` writes it; `None` when the Go provider sends no
    /// body (no `secretArgs`, or `secretArgs: null`).
    pub fn secret_args_json(&self) -> Option<String> {
        let map = self.secret_args.as_ref()?;
        let mut out = String::new();
        push_go_map(&mut out, map).ok()?;
        Some(out)
    }
}

/// `json.Marshal` of one value; an error where Go's would fail (NaN, infinities).
pub fn go_json(value: &GoValue) -> Result<String, String> {
    let mut out = String::new();
    push_go_value(&mut out, value)?;
    Ok(out)
}

fn push_go_value(out: &mut String, value: &GoValue) -> Result<(), String> {
    match value {
        GoValue::Nil => out.push_str("null"),
        GoValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        GoValue::Int(i) => out.push_str(&i.to_string()),
        GoValue::Uint(u) => out.push_str(&u.to_string()),
        GoValue::Float(f) => {
            out.push_str(&go_float(*f).ok_or("a number is NaN or infinite")?);
        }
        GoValue::String(s) | GoValue::Time(s) => push_go_string(out, s.as_bytes()),
        GoValue::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_go_value(out, item)?;
            }
            out.push(']');
        }
        GoValue::Map(map) => push_go_map(out, map)?,
    }
    Ok(())
}

fn push_go_map(out: &mut String, map: &GoMap) -> Result<(), String> {
    out.push('{');
    // A BTreeMap<String, _> iterates in byte order of the keys: Go's sort order.
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_go_string(out, k.as_bytes());
        out.push(':');
        push_go_value(out, v)?;
    }
    out.push('}');
    Ok(())
}

/// A JSON string as Go's `encoding/json` writes it with HTML escaping (Go 1.22 and later):
/// `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`; other bytes below 0x20 and `<`, `>`, `&` as
/// `\u00XX` (lower-case hex); U+2028 and U+2029 as `\u2028`/`\u2029`; each byte of
/// invalid UTF-8 as `\ufffd`; everything else (DEL included) as is.
pub fn go_json_string(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_go_string(&mut out, s);
    out
}

fn push_go_string(out: &mut String, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for chunk in s.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{2028}' => out.push_str("\\u2028"),
                '\u{2029}' => out.push_str("\\u2029"),
                c if (c as u32) < 0x20 || c == '<' || c == '>' || c == '&' => {
                    let b = c as u32 as usize;
                    out.push_str("\\u00");
                    out.push(HEX[b >> 4] as char);
                    out.push(HEX[b & 0xf] as char);
                }
                c => out.push(c),
            }
        }
        for _ in chunk.invalid() {
            out.push_str("\\ufffd");
        }
    }
    out.push('"');
}

/// A float64 as Go's `encoding/json` writes it: `strconv.AppendFloat(f, fmt, -1, 64)` with
/// `fmt` `'e'` when `|f| < 1e-6` or `|f| >= 1e21` (and not zero), else `'f'`; then an
/// exponent `e-0X` becomes `e-X`. `None` for NaN and infinities, which Go refuses.
pub fn go_float(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    let sign = if f.is_sign_negative() { "-" } else { "" };
    let abs = f.abs();
    if abs == 0.0 {
        return Some(format!("{sign}0"));
    }
    // Rust's `{:e}` gives the shortest digits that round-trip, as Go's -1 precision does.
    let sci = format!("{abs:e}");
    let (mantissa, exp) = sci.split_once('e')?;
    let exp: i32 = exp.parse().ok()?;
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::from(sign);
    if !(1e-6..1e21).contains(&abs) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        if exp < 0 {
            out.push_str(&format!("e-{}", -exp));
        } else {
            out.push_str(&format!("e+{exp:02}"));
        }
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let point = exp as usize + 1;
        if digits.len() <= point {
            out.push_str(&digits);
            for _ in digits.len()..point {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------
// yaml.v3's resolution of plain scalars (resolve.go), with Go's strconv rules
// ---------------------------------------------------------------------------------------

/// What yaml.v3 makes of a plain (unquoted, untagged) scalar.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    /// A timestamp; `None` when Go's `time.Time.MarshalJSON` refuses it (offset ≥ 24h).
    Timestamp(Option<String>),
    /// `<<`, which the parser tags `!!merge`.
    Merge,
    Str,
}

/// yaml.v3's `resolve("", s)` for a plain scalar `s`.
pub fn resolve_plain(s: &str) -> Resolved {
    if s == "<<" {
        return Resolved::Merge;
    }
    let hint = match s.as_bytes().first() {
        None => b'N',
        Some(b'+' | b'-') => b'S',
        Some(b'0'..=b'9') => b'D',
        Some(c) if b"yYnNtTfFoO~".contains(c) => b'M',
        Some(b'.') => b'.',
        Some(_) => return Resolved::Str,
    };
    match s {
        "true" | "True" | "TRUE" => return Resolved::Bool(true),
        "false" | "False" | "FALSE" => return Resolved::Bool(false),
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Resolved::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
        _ => {}
    }
    match hint {
        b'.' => {
            // strconv.ParseFloat(s, 64) of a text starting with '.'.
            match parse_finite(s) {
                Some(f) if is_dot_float(s) => Resolved::Float(f),
                _ => Resolved::Str,
            }
        }
        b'D' | b'S' => {
            if let Some(t) = go_timestamp(s) {
                return Resolved::Timestamp(t);
            }
            let plain = s.replace('_', "");
            if let Some(i) = go_parse_int(&plain, 0) {
                return Resolved::Int(i);
            }
            if let Some(u) = go_parse_uint(&plain, 0) {
                return Resolved::Uint(u);
            }
            if let Some(f) = parse_finite(&plain).filter(|_| is_yaml_style_float(&plain)) {
                return Resolved::Float(f);
            }
            for (prefix, base) in [("0b", 2), ("0o", 8)] {
                if let Some(rest) = plain.strip_prefix(prefix) {
                    if let Some(i) = go_parse_int(rest, base) {
                        return Resolved::Int(i);
                    }
                    if let Some(u) = go_parse_uint(rest, base) {
                        return Resolved::Uint(u);
                    }
                } else if let Some(i) = plain
                    .strip_prefix(&format!("-{prefix}"))
                    .and_then(|rest| go_parse_int(&format!("-{rest}"), base))
                {
                    return Resolved::Int(i);
                }
            }
            Resolved::Str
        }
        _ => Resolved::Str,
    }
}

/// Correctly rounded like Go's `strconv.ParseFloat`; `None` where Go reports a range error.
fn parse_finite(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// `^\.[0-9]+([eE][-+]?[0-9]+)?$`: what `strconv.ParseFloat` accepts starting with a dot.
fn is_dot_float(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('.') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && is_exponent(&rest[digits..])
}

/// yaml.v3's `yamlStyleFloat`: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_style_float(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    if s.starts_with('.') {
        return is_dot_float(s);
    }
    let int = s.bytes().take_while(u8::is_ascii_digit).count();
    if int == 0 {
        return false;
    }
    let mut rest = &s[int..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[n..];
    }
    is_exponent(rest)
}

/// `([eE][-+]?[0-9]+)?` matching all of `s`.
fn is_exponent(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    let Some(e) = s.strip_prefix(['e', 'E']) else {
        return false;
    };
    let e = e.strip_prefix(['-', '+']).unwrap_or(e);
    !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
}

/// Go's `strconv.ParseUint(s, base, 64)` for texts without underscores; base 0 reads the
/// prefixes `0b`, `0o`, `0x` (any case, when a digit follows) and a leading `0` as octal.
pub fn go_parse_uint(s: &str, base: u32) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let (digits, base) = if base == 0 {
        let b = s.as_bytes();
        if b[0] != b'0' {
            (s, 10)
        } else if b.len() >= 3 {
            match b[1].to_ascii_lowercase() {
                b'b' => (&s[2..], 2),
                b'o' => (&s[2..], 8),
                b'x' => (&s[2..], 16),
                _ => (&s[1..], 8),
            }
        } else {
            (&s[1..], 8)
        }
    } else {
        (s, base)
    };
    let mut n: u64 = 0;
    for c in digits.chars() {
        let d = c.to_digit(base)?;
        n = n.checked_mul(u64::from(base))?.checked_add(u64::from(d))?;
    }
    Some(n)
}

/// Go's `strconv.ParseInt(s, base, 64)` for texts without underscores.
pub fn go_parse_int(s: &str, base: u32) -> Option<i64> {
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let u = go_parse_uint(rest, base)?;
    if negative {
        (u <= 1 << 63).then(|| (u as i64).wrapping_neg())
    } else {
        i64::try_from(u).ok()
    }
}

/// yaml.v3's `parseTimestamp`: the text must start with four digits and `-`, then match
/// one of Go's layouts `2006-1-2T15:4:5.999999999Z07:00`, the same with a lower-case `t`,
/// `2006-1-2 15:4:5.999999999` and `2006-1-2`. `Some(Some(json))` gives what
/// `time.Time.MarshalJSON` writes (without quotes).
fn go_timestamp(s: &str) -> Option<Option<String>> {
    let b = s.as_bytes();
    if b.iter().take_while(|c| c.is_ascii_digit()).count() != 4 || b.get(4) != Some(&b'-') {
        return None;
    }
    [Some(b'T'), Some(b't'), Some(b' '), None]
        .into_iter()
        .find_map(|sep| parse_go_time(b, sep))
        .map(|t| t.json())
}

struct GoTime {
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
    offset: i64,
}

impl GoTime {
    /// `time.Time.MarshalJSON`: RFC 3339 with nanoseconds, trailing zeros dropped; `None`
    /// where Go refuses (an offset of 24 hours or more).
    fn json(&self) -> Option<String> {
        let mut out = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        );
        if self.nanos > 0 {
            let frac = format!("{:09}", self.nanos);
            out.push('.');
            out.push_str(frac.trim_end_matches('0'));
        }
        if self.offset == 0 {
            out.push('Z');
        } else {
            let abs = self.offset.abs();
            if abs / 3600 >= 24 {
                return None;
            }
            let sign = if self.offset < 0 { '-' } else { '+' };
            out.push_str(&format!("{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60));
        }
        Some(out)
    }
}

/// Go's `time.Parse` of one of yaml.v3's layouts: `sep` is the date/time separator, `None`
/// for the date-only layout; only the `T`/`t` layouts have a zone.
fn parse_go_time(b: &[u8], sep: Option<u8>) -> Option<GoTime> {
    let mut p = 0;
    // getnum(value, false): one digit, or two when the second is a digit.
    let num = |p: &mut usize| -> Option<u32> {
        let d0 = *b.get(*p).filter(|c| c.is_ascii_digit())?;
        *p += 1;
        let mut n = u32::from(d0 - b'0');
        if let Some(d1) = b.get(*p).filter(|c| c.is_ascii_digit()) {
            n = n * 10 + u32::from(d1 - b'0');
            *p += 1;
        }
        Some(n)
    };
    let lit = |p: &mut usize, c: u8| -> Option<()> { (b.get(*p) == Some(&c)).then(|| *p += 1) };
    let year: u32 = std::str::from_utf8(b.get(0..4)?).ok()?.parse().ok()?;
    p += 4;
    lit(&mut p, b'-')?;
    let month = num(&mut p).filter(|m| (1..=12).contains(m))?;
    lit(&mut p, b'-')?;
    let day = num(&mut p)?;
    let mut t = GoTime {
        year,
        month,
        day,
        hour: 0,
        minute: 0,
        second: 0,
        nanos: 0,
        offset: 0,
    };
    if let Some(sep) = sep {
        lit(&mut p, sep)?;
        t.hour = num(&mut p).filter(|h| *h < 24)?;
        lit(&mut p, b':')?;
        t.minute = num(&mut p).filter(|m| *m < 60)?;
        lit(&mut p, b':')?;
        t.second = num(&mut p).filter(|s| *s < 60)?;
        // Optional fraction: '.' or ',' and at least one digit; digits past nine ignored.
        if matches!(b.get(p), Some(b'.' | b',')) && b.get(p + 1).is_some_and(u8::is_ascii_digit) {
            p += 1;
            let start = p;
            while b.get(p).is_some_and(u8::is_ascii_digit) {
                p += 1;
            }
            let mut nanos = 0u32;
            for i in 0..9 {
                let d = b
                    .get(start + i)
                    .filter(|_| start + i < p)
                    .map_or(0, |d| d - b'0');
                nanos = nanos * 10 + u32::from(d);
            }
            t.nanos = nanos;
        }
        if sep != b' ' && lit(&mut p, b'Z').is_none() {
            // ±hh:mm, two digits each; Go accepts hh up to 24 and mm up to 60.
            let z = b.get(p..p + 6)?;
            let two = |x: &[u8]| -> Option<i64> {
                x.iter()
                    .all(u8::is_ascii_digit)
                    .then(|| i64::from(x[0] - b'0') * 10 + i64::from(x[1] - b'0'))
            };
            if z[3] != b':' {
                return None;
            }
            let (hh, mm) = (two(&z[1..3])?, two(&z[4..6])?);
            if hh > 24 || mm > 60 {
                return None;
            }
            let offset = (hh * 60 + mm) * 60;
            t.offset = match z[0] {
                b'+' => offset,
                b'-' => -offset,
                _ => return None,
            };
            p += 6;
        }
    }
    if p != b.len() || day < 1 || day > days_in(month, year) {
        return None;
    }
    Some(t)
}

fn days_in(month: u32, year: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// ---------------------------------------------------------------------------------------
// Reading `objects` the way yaml.v3 decodes it into []config.Secret
// ---------------------------------------------------------------------------------------

/// The objects of a class's `objects` text as the Go provider holds them, in order (one per
/// list item, so index `i` is the class's object `i`).
///
/// serde_yaml_ng (libyaml, as yaml.v3 is) parses the text; where the type of a scalar
/// depends on whether it was quoted (`0600` against `"0600"`), the text is parsed again and
/// stopped at that scalar, whose position says how it was written. That happens only for
/// the few texts on which serde_yaml_ng and yaml.v3 resolve a plain scalar differently
/// (leading zeros, underscores, timestamps, upper-case `0X`/`0O`/`0B`), for null-like
/// names, for top-level `secretArgs` keys that are null-like or `<<`, and for nested keys
/// that would not be strings if plain.
///
/// Known limits (all far from real classes): `!!binary` and `!!timestamp` tags, scalars
/// under other explicit tags, and integers beyond 64 bits written in hex, octal or binary.
pub fn go_secrets(objects_text: &str) -> Result<Vec<GoSecret>, GoError> {
    let raw = walk(objects_text, None).map_err(|e| GoError::Syntax(short(&e)))?;
    // Each re-parse costs a parse of the whole text: bound their total work.
    let budget = (8 << 20) / objects_text.len().max(1);
    let budget = budget.clamp(1, 64);
    let mut styles = Styles {
        known: HashMap::new(),
        missing: Vec::new(),
    };
    loop {
        let result: Result<Vec<GoSecret>, GoError> = raw
            .iter()
            .enumerate()
            .map(|(i, o)| {
                styles.secret(o).map_err(|fail| match fail {
                    Fail::Refused(reason) => GoError::Refused {
                        index: i + 1,
                        reason: reason.to_string(),
                    },
                    Fail::Unsupported(reason) => GoError::Unsupported {
                        index: i + 1,
                        reason: reason.to_string(),
                    },
                })
            })
            .collect();
        if styles.missing.is_empty() {
            return result;
        }
        let missing: HashSet<usize> = styles.missing.drain(..).collect();
        if styles.known.len() + missing.len() > budget {
            return Err(GoError::TooAmbiguous(budget));
        }
        for ord in missing {
            styles.known.insert(ord, probe(objects_text, ord)?);
        }
    }
}

fn short(e: &serde_yaml_ng::Error) -> String {
    crate::text::cap(&e.to_string(), 300)
}

/// How a scalar was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// Plain, no tag: yaml.v3 resolves it.
    Plain,
    /// Quoted or block, or tagged `!!str`: a string.
    Str,
    /// Under another tag.
    Tagged,
}

/// Marker of the error that stops a re-parse at the scalar asked about.
const PROBE: &str = "goversion: stopped at the scalar asked about";

/// Parses again, stops at scalar number `ord`, and reads how it starts in the text.
fn probe(text: &str, ord: usize) -> Result<Style, GoError> {
    match walk(text, Some(ord)) {
        Err(e) if e.to_string().contains(PROBE) => Ok(e
            .location()
            .map_or(Style::Str, |l| style_at(text, l.index()))),
        Err(e) => Err(GoError::Syntax(short(&e))),
        Ok(_) => Err(GoError::Syntax("a scalar was not found again".into())),
    }
}

/// The style of the node starting at byte `i` (libyaml's start mark: the first of its
/// anchor and tag, or the scalar itself).
fn style_at(text: &str, mut i: usize) -> Style {
    let b = text.as_bytes();
    let mut tag: Option<&str> = None;
    loop {
        match b.get(i) {
            Some(b'&' | b'!') => {
                let end = b[i..]
                    .iter()
                    .position(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
                    .map_or(b.len(), |n| i + n);
                if b[i] == b'!' {
                    tag = text.get(i..end);
                }
                i = end;
            }
            Some(b' ' | b'\t' | b'\r' | b'\n') => i += 1,
            Some(b'#') => {
                while b.get(i).is_some_and(|c| *c != b'\n') {
                    i += 1;
                }
            }
            _ => break,
        }
    }
    match tag {
        Some("!!str" | "!<tag:yaml.org,2002:str>") => Style::Str,
        Some(_) => Style::Tagged,
        None if matches!(b.get(i), Some(b'"' | b'\'' | b'|' | b'>')) => Style::Str,
        None => Style::Plain,
    }
}

/// What yaml.v3 would make of the parsed tree, given how its scalars were written.
struct Styles {
    known: HashMap<usize, Style>,
    /// Scalars whose style was needed and is not known yet.
    missing: Vec<usize>,
}

impl Styles {
    /// The style of scalar `ord`; until it is known, `Plain`, and it is asked for.
    fn style(&mut self, ord: usize) -> Style {
        match self.known.get(&ord) {
            Some(s) => *s,
            None => {
                self.missing.push(ord);
                Style::Plain
            }
        }
    }

    fn secret(&mut self, o: &RawSecret) -> Result<GoSecret, Fail> {
        let [name, path, key, method, encoding, mode] = &o.fields;
        Ok(GoSecret {
            object_name: self.string_field(name),
            secret_path: self.string_field(path),
            secret_key: self.string_field(key),
            method: self.string_field(method),
            encoding: self.string_field(encoding),
            file_permission: file_permission(mode)?,
            secret_args: match &o.secret_args {
                None => None,
                Some(node) => self.secret_args(node)?,
            },
        })
    }

    /// A `string` field: the scalar's text, or "" for a plain null.
    fn string_field(&mut self, s: &Option<RawScalar>) -> String {
        match s {
            Some(s) if !(is_null_word(&s.text) && self.style(s.ord) == Style::Plain) => {
                s.text.clone()
            }
            _ => String::new(),
        }
    }

    fn secret_args(&mut self, node: &Node) -> Result<Option<GoMap>, Fail> {
        match node {
            Node::Leaf(_, Leaf::Null) => Ok(None),
            Node::Map(entries) => {
                let mut map = GoMap::new();
                self.string_map(entries, &mut map)?;
                Ok(Some(map))
            }
            Node::Tagged(inner) => self.secret_args(inner),
            _ => Err(Fail::Refused("secretArgs is not a mapping")),
        }
    }

    /// A mapping decoded into `map[string]interface{}`: keys are their text, plain nulls
    /// are dropped, a plain `<<` merges, a later key replaces an earlier one.
    fn string_map(&mut self, entries: &[(RawScalar, Node)], out: &mut GoMap) -> Result<(), Fail> {
        no_duplicates(entries)?;
        for (k, v) in entries {
            if k.text == "<<" && self.style(k.ord) == Style::Plain {
                self.merge(v, out)?;
            } else if (k.text.is_empty() || is_null_word(&k.text))
                && self.style(k.ord) == Style::Plain
            {
                continue;
            } else {
                out.insert(k.text.clone(), self.value(v)?);
            }
        }
        Ok(())
    }

    fn merge(&mut self, v: &Node, out: &mut GoMap) -> Result<(), Fail> {
        match v {
            Node::Map(entries) => self.string_map(entries, out),
            Node::Tagged(inner) => self.merge(inner, out),
            // Earlier maps of the list take precedence: merge from the last.
            Node::Seq(items) => items.iter().rev().try_for_each(|item| match item {
                Node::Map(entries) => self.string_map(entries, out),
                _ => Err(Fail::Refused(
                    "a << merge list has an item that is not a mapping",
                )),
            }),
            _ => Err(Fail::Refused("a << merge value is not a mapping")),
        }
    }

    /// A node decoded into `interface{}`.
    fn value(&mut self, node: &Node) -> Result<GoValue, Fail> {
        Ok(match node {
            Node::Leaf(ord, leaf) => match leaf {
                Leaf::Null => GoValue::Nil,
                Leaf::Bool(b) => GoValue::Bool(*b),
                Leaf::I64(i) => GoValue::Int(*i),
                Leaf::U64(u) => i64::try_from(*u).map_or(GoValue::Uint(*u), GoValue::Int),
                Leaf::F64(f) if f.is_finite() => GoValue::Float(*f),
                Leaf::F64(_) => {
                    return Err(Fail::Refused("a secretArgs number is NaN or infinite"));
                }
                Leaf::Str(s) => self.string_value(*ord, s)?,
            },
            Node::Seq(items) => GoValue::List(
                items
                    .iter()
                    .map(|item| self.value(item))
                    .collect::<Result<_, _>>()?,
            ),
            Node::Map(entries) => {
                no_duplicates(entries)?;
                let mut map = GoMap::new();
                for (k, v) in entries {
                    // yaml.v3 makes a map[interface{}]interface{}, which json.Marshal
                    // refuses, as soon as one key is not a string.
                    let string = match resolve_plain(&k.text) {
                        Resolved::Str => true,
                        _ => self.style(k.ord) == Style::Str,
                    };
                    if !string {
                        return Err(Fail::Refused(
                            "a nested secretArgs mapping has a key that is not a string",
                        ));
                    }
                    map.insert(k.text.clone(), self.value(v)?);
                }
                GoValue::Map(map)
            }
            Node::Tagged(inner) => match &**inner {
                // Under a tag yaml.v3 does not know, a scalar is its text.
                Node::Leaf(_, Leaf::Str(s)) => GoValue::String(s.clone()),
                Node::Leaf(..) => {
                    return Err(Fail::Unsupported(
                        "a secretArgs scalar has a tag other than !!str",
                    ));
                }
                other => self.value(other)?,
            },
        })
    }

    /// A scalar serde_yaml_ng gave as a string: a string, unless it was plain and yaml.v3
    /// resolves it to something else.
    fn string_value(&mut self, ord: usize, s: &str) -> Result<GoValue, Fail> {
        let resolved = resolve_plain(s);
        if resolved == Resolved::Str || serde_resolves(s) {
            // serde_yaml_ng resolves such a plain scalar itself: this one was quoted.
            return Ok(GoValue::String(s.to_string()));
        }
        match self.style(ord) {
            Style::Str | Style::Tagged => Ok(GoValue::String(s.to_string())),
            Style::Plain => Ok(match resolved {
                Resolved::Null => GoValue::Nil,
                Resolved::Bool(b) => GoValue::Bool(b),
                Resolved::Int(i) => GoValue::Int(i),
                Resolved::Uint(u) => GoValue::Uint(u),
                Resolved::Float(f) if f.is_finite() => GoValue::Float(f),
                Resolved::Float(_) => {
                    return Err(Fail::Refused("a secretArgs number is NaN or infinite"));
                }
                Resolved::Timestamp(Some(t)) => GoValue::Time(t),
                Resolved::Timestamp(None) => {
                    return Err(Fail::Refused(
                        "a secretArgs timestamp has an offset of 24 hours or more",
                    ));
                }
                Resolved::Merge | Resolved::Str => GoValue::String(s.to_string()),
            }),
        }
    }
}

/// Whether serde_yaml_ng resolves `s`, written plain, to something other than a string.
fn serde_resolves(s: &str) -> bool {
    !matches!(
        serde_yaml_ng::from_str::<serde_yaml_ng::Value>(s),
        Ok(serde_yaml_ng::Value::String(_)) | Err(_)
    )
}

fn is_null_word(s: &str) -> bool {
    matches!(s, "~" | "null" | "Null" | "NULL")
}

/// yaml.v3 refuses a mapping with two keys of the same text.
fn no_duplicates(entries: &[(RawScalar, Node)]) -> Result<(), Fail> {
    let mut seen = HashSet::new();
    if entries.iter().all(|(k, _)| seen.insert(k.text.as_str())) {
        Ok(())
    } else {
        Err(Fail::Refused("a secretArgs mapping has a key twice"))
    }
}

/// `FilePermission os.FileMode` (a uint32) as yaml.v3 decodes it. A quoted value makes the
/// Go provider fail, so the text is read as plain.
fn file_permission(s: &Option<RawScalar>) -> Result<u32, Fail> {
    let Some(s) = s else {
        return Ok(0);
    };
    let refused = || Fail::Refused("filePermission is not a number from 0 to 4294967295");
    match resolve_plain(&s.text) {
        Resolved::Null => Ok(0),
        Resolved::Int(i) => u32::try_from(i).map_err(|_| refused()),
        Resolved::Uint(u) => u32::try_from(u).map_err(|_| refused()),
        // Go converts with uint64(f): towards zero.
        Resolved::Float(f) if f > -1.0 && f < 4_294_967_296.0 => Ok(f as u32),
        _ => Err(refused()),
    }
}

/// Why an object has no Go version.
enum Fail {
    /// The Go provider would fail the mount.
    Refused(&'static str),
    /// The Go provider reads it, but this module cannot tell how.
    Unsupported(&'static str),
}

/// The parse tree: just what yaml.v3's decoding needs.
#[derive(Default)]
struct RawSecret {
    /// objectName, secretPath, secretKey, method, encoding, filePermission.
    fields: [Option<RawScalar>; 6],
    secret_args: Option<Node>,
}

const FIELDS: [&str; 6] = [
    "objectName",
    "secretPath",
    "secretKey",
    "method",
    "encoding",
    "filePermission",
];

/// A scalar's text (quoted ones unescaped) and its number in parse order.
struct RawScalar {
    ord: usize,
    text: String,
}

enum Node {
    Leaf(usize, Leaf),
    Seq(Vec<Node>),
    Map(Vec<(RawScalar, Node)>),
    /// Under a tag serde_yaml_ng does not resolve itself (`!foo`).
    Tagged(Box<Node>),
}

/// A scalar in a value position, as serde_yaml_ng resolved it.
enum Leaf {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(String),
}

/// Counts scalars in parse order; errors out at scalar `probe`.
struct Walk {
    next: Cell<usize>,
    probe: Option<usize>,
}

impl Walk {
    fn tick<E: de::Error>(&self) -> Result<usize, E> {
        let n = self.next.get();
        self.next.set(n + 1);
        if self.probe == Some(n) {
            Err(E::custom(PROBE))
        } else {
            Ok(n)
        }
    }
}

fn walk(text: &str, probe: Option<usize>) -> Result<Vec<RawSecret>, serde_yaml_ng::Error> {
    let w = Walk {
        next: Cell::new(0),
        probe,
    };
    Seed(&w, Doc).deserialize(serde_yaml_ng::Deserializer::from_str(text))
}

/// A seed and visitor for one kind of position.
struct Seed<'w, K>(&'w Walk, K);
#[derive(Clone, Copy)]
struct Doc;
#[derive(Clone, Copy)]
struct Object;
/// A position read as text (`string` fields and map keys).
#[derive(Clone, Copy)]
struct Text;
/// A position decoded into `interface{}`.
#[derive(Clone, Copy)]
struct Any;

impl<'de> DeserializeSeed<'de> for Seed<'_, Doc> {
    type Value = Vec<RawSecret>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_, Doc> {
    type Value = Vec<RawSecret>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of objects")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(o) = seq.next_element_seed(Seed(self.0, Object))? {
            out.push(o);
        }
        Ok(out)
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_, Object> {
    type Value = RawSecret;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_, Object> {
    type Value = RawSecret;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object (a mapping)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut o = RawSecret::default();
        let mut args_seen = false;
        while let Some(key) = map.next_key_seed(Seed(self.0, Text))? {
            if let Some(i) = FIELDS.iter().position(|f| *f == key.text) {
                if o.fields[i].is_some() {
                    return Err(de::Error::custom(format_args!(
                        "{} is given twice",
                        FIELDS[i]
                    )));
                }
                o.fields[i] = Some(map.next_value_seed(Seed(self.0, Text))?);
            } else if key.text == "secretArgs" {
                if args_seen {
                    return Err(de::Error::custom("secretArgs is given twice"));
                }
                args_seen = true;
                o.secret_args = Some(map.next_value_seed(Seed(self.0, Any))?);
            } else {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        Ok(o)
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_, Text> {
    type Value = RawScalar;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_, Text> {
    type Value = RawScalar;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a scalar")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(RawScalar {
            ord: self.0.tick()?,
            text: v.to_string(),
        })
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_, Any> {
    type Value = Node;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_, Any> {
    type Value = Node;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Leaf(self.0.tick()?, Leaf::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Leaf(self.0.tick()?, Leaf::Null))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Leaf(self.0.tick()?, Leaf::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Leaf(self.0.tick()?, Leaf::I64(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Leaf(self.0.tick()?, Leaf::U64(v)))
    }
    // Beyond 64 bits yaml.v3 parses a decimal as a float64, as `as f64` rounds.
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Leaf(self.0.tick()?, Leaf::F64(v as f64)))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        Ok(Node::Leaf(self.0.tick()?, Leaf::F64(v as f64)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Leaf(self.0.tick()?, Leaf::F64(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Leaf(self.0.tick()?, Leaf::Str(v.to_string())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Seed(self.0, Any))? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key_seed(Seed(self.0, Text))? {
            let value = map.next_value_seed(Seed(self.0, Any))?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Node, A::Error> {
        use de::VariantAccess;
        let (_tag, variant): (de::IgnoredAny, _) = data.variant()?;
        Ok(Node::Tagged(Box::new(
            variant.newtype_variant_seed(Seed(self.0, Any))?,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(yaml: &str) -> Result<GoSecret, GoError> {
        let mut all = go_secrets(yaml)?;
        assert_eq!(all.len(), 1);
        Ok(all.remove(0))
    }

    fn args(yaml: &str) -> GoMap {
        one(&format!("- objectName: a\n  secretArgs:\n{yaml}"))
            .unwrap()
            .secret_args
            .unwrap()
    }

    #[test]
    fn strings_escape_as_go_does() {
        assert_eq!(go_json_string(b"a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(
            go_json_string(b"\x08\x0c\n\r\t\x00\x1f\x7f"),
            "\"\\b\\f\\n\\r\\t\\u0000\\u001f\u{7f}\""
        );
        assert_eq!(go_json_string(b"<a&b>"), r#""\u003ca\u0026b\u003e""#);
        assert_eq!(
            go_json_string("x\u{2028}y\u{2029}é😀".as_bytes()),
            "\"x\\u2028y\\u2029é😀\""
        );
        // One replacement per invalid byte, as utf8.DecodeRune gives size 1.
        assert_eq!(
            go_json_string(b"a\xe2\x82b\xff"),
            r#""a\ufffd\ufffdb\ufffd""#
        );
        assert_eq!(go_json_string(b"\xed\xa0\x80"), r#""\ufffd\ufffd\ufffd""#);
    }

    #[test]
    fn floats_format_as_go_does() {
        for (f, want) in [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (1.5, "1.5"),
            (-2.25, "-2.25"),
            (100.0, "100"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.5e300, "1.5e+300"),
            (0.000001, "0.000001"),
            (0.0000001, "1e-7"),
            (1.2345e-10, "1.2345e-10"),
            (5e-324, "5e-324"),
            (0.1, "0.1"),
            (123456.789, "123456.789"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (18446744073709551616.0, "18446744073709552000"),
        ] {
            assert_eq!(go_float(f).as_deref(), Some(want), "{f:e}");
        }
        assert_eq!(go_float(f64::NAN), None);
        assert_eq!(go_float(f64::INFINITY), None);
    }

    #[test]
    fn go_integer_parsing() {
        assert_eq!(go_parse_int("0600", 0), Some(384));
        assert_eq!(go_parse_int("0", 0), Some(0));
        assert_eq!(go_parse_int("00", 0), Some(0));
        assert_eq!(go_parse_int("08", 0), None);
        assert_eq!(go_parse_int("0x1F", 0), Some(31));
        assert_eq!(go_parse_int("0X1f", 0), Some(31));
        assert_eq!(go_parse_int("0O17", 0), Some(15));
        assert_eq!(go_parse_int("0B11", 0), Some(3));
        assert_eq!(go_parse_int("0x", 0), None);
        assert_eq!(go_parse_int("+5", 0), Some(5));
        assert_eq!(go_parse_int("-0x10", 0), Some(-16));
        assert_eq!(go_parse_int("-9223372036854775808", 0), Some(i64::MIN));
        assert_eq!(go_parse_int("9223372036854775808", 0), None);
        assert_eq!(go_parse_uint("18446744073709551615", 0), Some(u64::MAX));
        assert_eq!(go_parse_uint("18446744073709551616", 0), None);
        assert_eq!(go_parse_int("-1", 2), Some(-1));
        assert_eq!(go_parse_int("+", 0), None);
        assert_eq!(go_parse_int("", 0), None);
    }

    #[test]
    fn plain_scalars_resolve_as_yaml_v3() {
        use Resolved::*;
        for (s, want) in [
            ("", Null),
            ("~", Null),
            ("null", Null),
            ("NULL", Null),
            ("nULL", Str),
            ("true", Bool(true)),
            ("False", Bool(false)),
            ("yes", Str),
            ("on", Str),
            ("1", Int(1)),
            ("-1", Int(-1)),
            ("+1", Int(1)),
            ("0600", Int(384)),
            ("0o600", Int(384)),
            ("0x10", Int(16)),
            ("0X10", Int(16)),
            ("1_000", Int(1000)),
            ("0b1_0", Int(2)),
            ("08", Float(8.0)),
            ("1.5", Float(1.5)),
            ("1e3", Float(1000.0)),
            (".5", Float(0.5)),
            ("-.5", Float(-0.5)),
            ("5.", Float(5.0)),
            ("1e400", Str),
            (".5e999", Str),
            ("9223372036854775807", Int(i64::MAX)),
            ("9223372036854775808", Uint(1 << 63)),
            ("+9223372036854775808", Float(9223372036854775808.0)),
            ("18446744073709551616", Float(18446744073709551616.0)),
            ("0x1p3", Str),
            ("1:20", Str),
            ("1.2.3", Str),
            ("-", Str),
            ("<<", Merge),
            ("2015-01-01", Timestamp(Some("2015-01-01T00:00:00Z".into()))),
            ("2015-1-2", Timestamp(Some("2015-01-02T00:00:00Z".into()))),
            (
                "2001-12-14t21:59:43.10-05:00",
                Timestamp(Some("2001-12-14T21:59:43.1-05:00".into())),
            ),
            (
                "2001-12-14T21:59:43.123456789123Z",
                Timestamp(Some("2001-12-14T21:59:43.123456789Z".into())),
            ),
            (
                "2001-12-14 21:59:43,5",
                Timestamp(Some("2001-12-14T21:59:43.5Z".into())),
            ),
            (
                "2001-12-14T21:59:43+00:00",
                Timestamp(Some("2001-12-14T21:59:43Z".into())),
            ),
            (
                "2001-12-14T21:59:43+01:60",
                Timestamp(Some("2001-12-14T21:59:43+02:00".into())),
            ),
            ("2001-12-14T21:59:43+24:00", Timestamp(None)),
            ("2001-12-14T21:59:43", Str),
            ("2015-02-29", Str),
            ("2016-02-29", Timestamp(Some("2016-02-29T00:00:00Z".into()))),
            ("2015-13-01", Str),
            ("2015-01-01 24:00:00", Str),
        ] {
            let got = resolve_plain(s);
            match (&got, &want) {
                (Float(a), Float(b)) => assert_eq!(a.to_bits(), b.to_bits(), "{s}"),
                _ => assert_eq!(got, want, "{s}"),
            }
        }
        assert!(matches!(resolve_plain(".nan"), Float(f) if f.is_nan()));
        assert_eq!(resolve_plain("-.Inf"), Float(f64::NEG_INFINITY));
    }

    #[test]
    fn quoting_decides_the_type_where_yaml_libraries_disagree() {
        let m = args(
            "    plain: 0600\n    double: \"0600\"\n    single: '0600'\n    tagged: !!str 0600\n    \
             anchored: &x 1_000\n    alias: *x\n    date: 2015-01-01\n    qdate: \"2015-01-01\"\n    \
             block: |-\n      0600\n    n: 24\n    qn: \"24\"\n    hex: 0X1F\n    big: 18446744073709551616\n",
        );
        let want: GoMap = [
            ("plain", GoValue::Int(384)),
            ("double", GoValue::String("0600".into())),
            ("single", GoValue::String("0600".into())),
            ("tagged", GoValue::String("0600".into())),
            ("anchored", GoValue::Int(1000)),
            ("alias", GoValue::Int(1000)),
            ("date", GoValue::Time("2015-01-01T00:00:00Z".into())),
            ("qdate", GoValue::String("2015-01-01".into())),
            ("block", GoValue::String("0600".into())),
            ("n", GoValue::Int(24)),
            ("qn", GoValue::String("24".into())),
            ("hex", GoValue::Int(31)),
            ("big", GoValue::Float(18446744073709551616.0)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(m, want);
    }

    #[test]
    fn top_level_keys_are_text_and_merges_apply() {
        let m = args(
            "    1: a\n    0x10: b\n    true: c\n    ~: dropped\n    \"null\": kept\n    base: &b {x: 1, y: 2}\n    \
             <<: *b\n    y: 3\n",
        );
        let keys: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(keys, ["0x10", "1", "base", "null", "true", "x", "y"]);
        assert_eq!(m["y"], GoValue::Int(3));
        assert_eq!(m["x"], GoValue::Int(1));
        assert_eq!(m["null"], GoValue::String("kept".into()));
        // A quoted "<<" is an ordinary key.
        let m = args("    \"<<\": {x: 1}\n");
        assert!(m.contains_key("<<"));
        // Earlier maps of a merge list win; keys after the merge replace merged ones.
        let m = args("    a: &a {k: 1}\n    b: &b {k: 2, j: 2}\n    <<: [*a, *b]\n");
        assert_eq!(m["k"], GoValue::Int(1));
        assert_eq!(m["j"], GoValue::Int(2));
    }

    #[test]
    fn what_the_go_provider_refuses() {
        for args in [
            "    n: {1: a}\n",
            "    n: {true: a}\n",
            "    n: {<<: {a: 1}}\n",
            "    n: .nan\n",
            "    n: .inf\n",
            "    a: 1\n    \"a\": 2\n",
        ] {
            let e = one(&format!("- objectName: a\n  secretArgs:\n{args}")).unwrap_err();
            assert!(
                matches!(e, GoError::Refused { index: 1, .. }),
                "{args}: {e}"
            );
        }
        // Quoted keys in nested maps are strings.
        let m = args("    n: {\"1\": a, 'true': b}\n");
        assert!(matches!(&m["n"], GoValue::Map(n) if n.len() == 2));
        assert!(matches!(
            one("- objectName: a\n  secretArgs: [1]\n"),
            Err(GoError::Refused { .. })
        ));
        assert!(matches!(
            one("- objectName: a\n  filePermission: rw\n"),
            Err(GoError::Refused { .. })
        ));
    }

    #[test]
    fn fields_are_kept_as_written() {
        let s = one(
            "- objectName: 0600\n  secretPath: v1/secret/data/x?version=2\n  method: put\n  \
             encoding: BASE64\n  secretKey: ~\n  filePermission: 0600\n  template: '{{x}}'\n",
        )
        .unwrap();
        assert_eq!(s.object_name, "0600");
        assert_eq!(s.secret_path, "v1/secret/data/x?version=2");
        assert_eq!(s.method, "put");
        assert_eq!(s.encoding, "BASE64");
        assert_eq!(s.secret_key, "");
        assert_eq!(s.file_permission, 384);
        assert_eq!(s.secret_args, None);
        let s = one("- objectName: 'null'\n  filePermission: 420\n  secretArgs: ~\n").unwrap();
        assert_eq!(s.object_name, "null");
        assert_eq!(s.file_permission, 420);
        assert_eq!(s.secret_args, None);
        assert_eq!(
            one("- objectName: a\n  secretArgs: {}\n")
                .unwrap()
                .secret_args,
            Some(GoMap::new())
        );
        assert_eq!(go_secrets("").unwrap(), vec![]);
        assert_eq!(go_secrets("~").unwrap(), vec![]);
    }

    #[test]
    fn positions_count_bytes_with_bom_and_crlf() {
        let text = "- objectName: a\r\n  secretArgs:\r\n    é: 0600\r\n    q: '0600'\r\n";
        let m = one(text).unwrap().secret_args.unwrap();
        assert_eq!(m["é"], GoValue::Int(384));
        assert_eq!(m["q"], GoValue::String("0600".into()));
        let text = "\u{feff}- {objectName: a, secretArgs: {é: 0600, q: '0600'}}\r\n";
        let m = one(text).unwrap().secret_args.unwrap();
        assert_eq!(m["é"], GoValue::Int(384));
        assert_eq!(m["q"], GoValue::String("0600".into()));
    }

    #[test]
    fn config_json_has_the_go_struct_fields_in_order() {
        let s = GoSecret {
            object_name: "a".into(),
            secret_path: "secret/data/x".into(),
            ..Default::default()
        };
        let want = r#"{"ObjectName":"a","SecretPath":"secret/data/x","SecretKey":"","Method":"","SecretArgs":null,"FilePermission":0,"Encoding":""}"#;
        assert_eq!(s.config_json(Flavour::Vault).unwrap(), want);
        assert_eq!(s.config_json(Flavour::OpenBao).unwrap(), want);
        assert_eq!(s.secret_args_json(), None);
        let mut s = s;
        s.secret_args = Some(GoMap::from([("a&".to_string(), GoValue::Int(1))]));
        assert_eq!(s.secret_args_json().as_deref(), Some(r#"{"a\u0026":1}"#));
        s.secret_args = Some(GoMap::from([("a".to_string(), GoValue::Float(f64::NAN))]));
        assert_eq!(s.secret_args_json(), None);
        assert!(s.config_json(Flavour::Vault).is_err());
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
