//! The values yaml.v3 leaves in the Go provider's `SecretArgs map[string]interface{}`, and
//! Go's `json.Marshal` of them. Pure.

use std::collections::BTreeMap;

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

fn push_go_value(out: &mut String, value: &GoValue) -> Result<(), String> {
    match value {
        GoValue::Nil => out.push_str("null"),
        GoValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        GoValue::Int(i) => out.push_str(&i.to_string()),
        GoValue::Uint(u) => out.push_str(&u.to_string()),
        GoValue::Float(f) => {
            out.push_str(&crate::stages::gojson::float(*f).ok_or("a number is NaN or infinite")?);
        }
        GoValue::String(s) | GoValue::Time(s) => {
            crate::stages::gojson::push_string(out, s.as_bytes())
        }
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

pub(super) fn push_go_map(out: &mut String, map: &GoMap) -> Result<(), String> {
    out.push('{');
    // A BTreeMap<String, _> iterates in byte order of the keys: Go's sort order.
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        crate::stages::gojson::push_string(out, k.as_bytes());
        out.push(':');
        push_go_value(out, v)?;
    }
    out.push('}');
    Ok(())
}
