//! The filters templates have besides minijinja's own: `b64encode`, `b64decode`,
//! `toyaml`, `fromjson`. Each charges fuel for the bytes it works on. Pure.

use super::charge;
use super::context::json_value;
use base64::Engine;
use minijinja::value::Value;
use minijinja::{Environment, ErrorKind, State};

/// Adds the filters of ours to `env`.
pub(super) fn add(env: &mut Environment<'static>) {
    env.add_filter("b64encode", b64encode);
    env.add_filter("b64decode", b64decode);
    env.add_filter("toyaml", toyaml);
    env.add_filter("fromjson", fromjson);
}

fn text_or_bytes(value: &Value) -> Result<Vec<u8>, minijinja::Error> {
    if let Some(b) = value.as_bytes() {
        return Ok(b.to_vec());
    }
    if let Some(s) = value.as_str() {
        return Ok(s.as_bytes().to_vec());
    }
    Err(minijinja::Error::new(
        ErrorKind::InvalidOperation,
        "expects a string",
    ))
}

fn b64encode(state: &State, value: Value) -> Result<String, minijinja::Error> {
    let bytes = text_or_bytes(&value)?;
    charge(state, bytes.len() * 2)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn b64decode(state: &State, value: Value) -> Result<Value, minijinja::Error> {
    let bytes = text_or_bytes(&value)?;
    charge(state, bytes.len() * 2)?;
    let compact: Vec<u8> = bytes
        .into_iter()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&compact))
        .map_err(|_| {
            minijinja::Error::new(
                ErrorKind::InvalidOperation,
                "b64decode: the value is not base64",
            )
        })?;
    Ok(match String::from_utf8(decoded) {
        Ok(s) => Value::from(s),
        Err(e) => Value::from_bytes(e.into_bytes()),
    })
}

fn toyaml(state: &State, value: Value) -> Result<String, minijinja::Error> {
    let text = serde_yaml_ng::to_string(&value).map_err(|_| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            "toyaml: the value cannot be written as YAML",
        )
    })?;
    charge(state, text.len() * 16)?;
    Ok(text)
}

fn fromjson(state: &State, value: Value) -> Result<Value, minijinja::Error> {
    let bytes = text_or_bytes(&value)?;
    charge(state, bytes.len() * 16)?;
    let parsed: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            "fromjson: the value is not JSON",
        )
    })?;
    Ok(json_value(&parsed))
}
