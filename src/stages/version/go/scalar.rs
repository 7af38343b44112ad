//! yaml.v3's resolution of plain scalars (its `resolve.go`), with Go's `strconv` rules for
//! numbers and Go's `time.Time` for timestamps: what the Go provider makes of a scalar it
//! decodes into an `interface{}` or a number. Pure.

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

/// `filePermission` as the Go provider decodes it into an `os.FileMode` (a `uint32`), its
/// text read as plain whatever its quoting: `None` for null or empty; a fraction is cut
/// towards zero as Go's `uint64(f)` does; anything else that is not a number from 0 to
/// 4294967295 is an error. `0600` and `0o600` are octal, `420` decimal, `0x1a4` hex.
pub fn file_mode(text: &str) -> Result<Option<u32>, &'static str> {
    let refused = "filePermission is not a number from 0 to 4294967295";
    match resolve_plain(text.trim()) {
        Resolved::Null => Ok(None),
        Resolved::Int(i) => u32::try_from(i).map(Some).map_err(|_| refused),
        Resolved::Uint(u) => u32::try_from(u).map(Some).map_err(|_| refused),
        Resolved::Float(f) if f > -1.0 && f < 4_294_967_296.0 => Ok(Some(f as u32)),
        _ => Err(refused),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn file_modes_as_the_go_provider_reads_them() {
        for (text, want) in [
            ("0600", Some(0o600)),
            ("0o600", Some(0o600)),
            ("420", Some(420)),
            ("0x1a4", Some(420)),
            ("", None),
            ("~", None),
        ] {
            assert_eq!(file_mode(text), Ok(want), "{text}");
        }
        for bad in ["rw", "-1", "4294967296", "true"] {
            assert!(file_mode(bad).is_err(), "{bad}");
        }
    }
}
