//! Go's `encoding/json`, as far as versions and files need it: strings with Go's escaping
//! (HTML-safe), floats in Go's shortest form, and values of a Vault answer (numbers as Vault
//! sent them, map keys sorted). One writer for the whole-answer files (`answer`, `render`)
//! and the Go provider's version input (`version::go`). Pure.

use serde_json::Value;

/// A JSON string as Go's `encoding/json` writes it with HTML escaping (Go 1.22 and later):
/// `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`; other bytes below 0x20 and `<`, `>`, `&` as
/// `\u00XX` (lower-case hex); U+2028 and U+2029 as `\u2028`/`\u2029`; each byte of
/// invalid UTF-8 as `\ufffd`; everything else (DEL included) as is.
#[cfg(test)]
pub fn string(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_string(&mut out, s);
    out
}

pub fn push_string(out: &mut String, s: &[u8]) {
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
pub fn float(f: f64) -> Option<String> {
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

/// A value of a Vault answer as Go's `json.Marshal` writes the `interface{}` it decoded
/// (with `UseNumber`): map keys in byte order, numbers as their text.
pub fn push_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => push_string(out, s.as_bytes()),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_string(out, k.as_bytes());
                out.push(':');
                push_value(out, &map[k]);
            }
            out.push('}');
        }
    }
}

/// Compact JSON of a value, as [`push_value`] writes it.
pub fn value(value: &Value) -> Vec<u8> {
    let mut out = String::new();
    push_value(&mut out, value);
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_as_go_does() {
        assert_eq!(string(b"a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(
            string(b"\x08\x0c\n\r\t\x00\x1f\x7f"),
            "\"\\b\\f\\n\\r\\t\\u0000\\u001f\u{7f}\""
        );
        assert_eq!(string(b"<a&b>"), r#""\u003ca\u0026b\u003e""#);
        assert_eq!(
            string("x\u{2028}y\u{2029}é😀".as_bytes()),
            "\"x\\u2028y\\u2029é😀\""
        );
        // One replacement per invalid byte, as utf8.DecodeRune gives size 1.
        assert_eq!(string(b"a\xe2\x82b\xff"), r#""a\ufffd\ufffdb\ufffd""#);
        assert_eq!(string(b"\xed\xa0\x80"), r#""\ufffd\ufffd\ufffd""#);
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
            assert_eq!(float(f).as_deref(), Some(want), "{f:e}");
        }
        assert_eq!(float(f64::NAN), None);
        assert_eq!(float(f64::INFINITY), None);
    }

    #[test]
    fn answer_values_keep_their_numbers_and_sort_their_keys() {
        let v: Value = serde_json::from_str(
            r#"{"b":1.50,"a":"x<y","c":[100000000000000000000000,-0,null,true]}"#,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(value(&v)).unwrap(),
            r#"{"a":"x\u003cy","b":1.50,"c":[100000000000000000000000,-0,null,true]}"#
        );
    }
}
