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
//! [`from_objects`]).
//!
//! - `decode.rs`: the one parse of `objects`, shared with the plan;
//! - `scalar.rs`: yaml.v3's typing of plain scalars, Go's `strconv` and times;
//! - `value.rs`: the `interface{}` values of `SecretArgs` and Go's JSON of them;
//! - this file: the `config.Secret` of each object, and its JSON.

mod decode;
mod scalar;
mod value;

pub use crate::stages::flavour::Flavour;
pub use decode::{Leaf, Node, RawObject, message as yaml_message, objects};
pub use scalar::file_mode;
pub use value::{GoMap, GoValue};

use crate::stages::gojson;
use decode::{RawScalar, Style};
use scalar::{Resolved, resolve_plain};
use std::collections::{HashMap, HashSet};
use value::push_go_map;

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
    /// The text is not YAML (or a scalar could not be found again).
    #[error("objects is not YAML that the Go provider reads: {0}")]
    Syntax(String),
    /// The Go provider would fail the mount, so it has no version to match.
    #[error("the Go provider would refuse object {index}: {reason}")]
    Refused { index: usize, reason: String },
    /// The Go provider reads it, but this module cannot tell how (see [`go_secrets`]).
    #[error("the Go provider's reading of object {index} is not known here: {reason}")]
    Unsupported { index: usize, reason: String },
    /// More scalars would need a second look than the work budget allows.
    #[error("objects has more than {0} scalars whose type depends on their quoting")]
    TooAmbiguous(usize),
}
impl GoSecret {
    /// `json.Marshal` of the Go provider's `config.Secret`: the first input of its version.
    /// Fails (`Refused` with index 0) only for a NaN or infinite float in `secret_args`,
    /// which [`from_objects`] never gives.
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
            gojson::push_string(out, names[i].as_bytes());
            out.push(':');
        };
        field(&mut out, 0);
        gojson::push_string(&mut out, self.object_name.as_bytes());
        field(&mut out, 1);
        gojson::push_string(&mut out, self.secret_path.as_bytes());
        field(&mut out, 2);
        gojson::push_string(&mut out, self.secret_key.as_bytes());
        field(&mut out, 3);
        gojson::push_string(&mut out, self.method.as_bytes());
        field(&mut out, 4);
        match &self.secret_args {
            None => out.push_str("null"),
            Some(map) => push_go_map(&mut out, map)
                .map_err(|reason| GoError::Refused { index: 0, reason })?,
        }
        field(&mut out, 5);
        out.push_str(&self.file_permission.to_string());
        field(&mut out, 6);
        gojson::push_string(&mut out, self.encoding.as_bytes());
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

/// The objects of a class's `objects` text as the Go provider holds them, in order (one per
/// list item, so index `i` is the class's object `i`): [`decode::objects`], then
/// [`from_objects`]. The plan takes the same from the parse it already has.
pub fn go_secrets(objects_text: &str) -> Result<Vec<GoSecret>, GoError> {
    let raw = decode::objects(objects_text).map_err(|e| GoError::Syntax(decode::message(&e)))?;
    from_objects(&raw, objects_text)
}

/// The Go provider's `config.Secret` of each object of the parse of `objects_text`.
///
/// Where the type of a scalar depends on whether it was quoted (`0600` against `"0600"`),
/// the text is parsed again and stopped at that scalar ([`decode::probe`]), whose position
/// says how it was written. That happens only for the few texts on which serde_yaml_ng and
/// yaml.v3 resolve a plain scalar differently (leading zeros, underscores, timestamps,
/// upper-case `0X`/`0O`/`0B`), for null-like names, for top-level `secretArgs` keys that
/// are null-like or `<<`, and for nested keys that would not be strings if plain.
///
/// Known limits (all far from real classes): `!!binary` and `!!timestamp` tags, scalars
/// under other explicit tags, and integers beyond 64 bits written in hex, octal or binary.
pub fn from_objects(raw: &[RawObject], objects_text: &str) -> Result<Vec<GoSecret>, GoError> {
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
            styles.known.insert(
                ord,
                decode::probe(objects_text, ord).map_err(GoError::Syntax)?,
            );
        }
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

    fn secret(&mut self, o: &RawObject) -> Result<GoSecret, Fail> {
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
/// Go provider fail, so the text is read as plain ([`scalar::file_mode`]).
fn file_permission(s: &Option<RawScalar>) -> Result<u32, Fail> {
    match s {
        None => Ok(0),
        Some(s) => scalar::file_mode(&s.text)
            .map(Option::unwrap_or_default)
            .map_err(Fail::Refused),
    }
}

/// Why an object has no Go version.
enum Fail {
    /// The Go provider would fail the mount.
    Refused(&'static str),
    /// The Go provider reads it, but this module cannot tell how.
    Unsupported(&'static str),
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
}
