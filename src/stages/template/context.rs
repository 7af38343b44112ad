//! What a template sees: `secret` (the data of its object's read, KV v2 unwrapped),
//! `response` (the whole answer) and `objects` (the other objects' files). Pure.

use crate::stages::answer::SecretResponse;
use minijinja::value::Value;
use std::collections::BTreeMap;

/// The text of another object's file as a template sees it.
#[derive(Debug, Clone)]
pub enum ObjectText {
    /// A one-file object.
    File(Vec<u8>),
    /// An `allKeys` object: its files by key.
    Dir(BTreeMap<String, Vec<u8>>),
}

/// What a template sees.
pub struct Context<'a> {
    /// The object's own read, when it has a `secretPath`.
    pub answer: Option<&'a SecretResponse>,
    /// Every non-template object's files, by `objectName`.
    pub objects: &'a BTreeMap<String, ObjectText>,
}

/// A JSON value as a template value: integers stay integers, other numbers are floats.
pub fn json_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => {
            Value::from(items.iter().map(json_value).collect::<Vec<_>>())
        }
        serde_json::Value::Object(map) => Value::from(
            map.iter()
                .map(|(k, v)| (k.clone(), json_value(v)))
                .collect::<BTreeMap<String, Value>>(),
        ),
    }
}

fn file_value(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => Value::from(s),
        Err(_) => Value::from_bytes(bytes.to_vec()),
    }
}

/// The root of what a template sees: `secret` and `response` (with a read), `objects`.
pub fn context_value(ctx: &Context<'_>) -> Value {
    let mut root: BTreeMap<&str, Value> = BTreeMap::new();
    if let Some(answer) = ctx.answer {
        let data = answer
            .selectable()
            .map(|m| json_value(&serde_json::Value::Object(m.clone())))
            .unwrap_or_else(|| Value::from(BTreeMap::<String, Value>::new()));
        root.insert("secret", data);
        let whole = serde_json::to_value(answer).unwrap_or_default();
        root.insert("response", json_value(&whole));
    }
    let objects = ctx.objects.iter().map(|(name, text)| {
        let v = match text {
            ObjectText::File(b) => file_value(b),
            ObjectText::Dir(files) => Value::from(
                files
                    .iter()
                    .map(|(k, b)| (k.clone(), file_value(b)))
                    .collect::<BTreeMap<String, Value>>(),
            ),
        };
        (name.clone(), v)
    });
    root.insert(
        "objects",
        Value::from(objects.collect::<BTreeMap<String, Value>>()),
    );
    Value::from(root)
}
