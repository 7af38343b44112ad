//! Render stage: one object's file bytes from a Vault answer. Pure.

use crate::plan::{Encoding, ObjectSpec};
use crate::response::{SecretResponse, go_json};
use crate::secret::SecretBytes;
use base64::Engine;
use serde_json::Value;

/// Why an object's file could not be made. Never carries secret values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    #[error("the answer has no data to select secretKey {key:?} from")]
    NoData { key: String },
    #[error("secretKey {key:?} is not in the answer; keys present: {present}")]
    KeyMissing { key: String, present: String },
    #[error("the value of secretKey {key:?} is not valid {encoding}: {reason}")]
    Decode {
        key: String,
        encoding: &'static str,
        reason: String,
    },
}

/// The bytes of one object's file.
pub fn render(object: &ObjectSpec, answer: &SecretResponse) -> Result<SecretBytes, RenderError> {
    let Some(key) = &object.secret_key else {
        return Ok(SecretBytes::new(answer.to_go_json()));
    };
    let data = answer
        .selectable()
        .ok_or_else(|| RenderError::NoData { key: key.clone() })?;
    let value = data.get(key).ok_or_else(|| RenderError::KeyMissing {
        key: key.clone(),
        present: key_list(data.keys()),
    })?;
    let raw = match value {
        Value::String(s) => s.as_bytes().to_vec(),
        other => go_json(other),
    };
    decode(key, object.encoding, raw)
}

fn key_list<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let mut names: Vec<String> = keys.take(21).map(|k| format!("{k:?}")).collect();
    if names.is_empty() {
        return "none".into();
    }
    if names.len() > 20 {
        names.truncate(20);
        names.push("...".into());
    }
    names.join(", ")
}

fn decode(key: &str, encoding: Encoding, raw: Vec<u8>) -> Result<SecretBytes, RenderError> {
    let fail = |encoding: &'static str, reason: &str| RenderError::Decode {
        key: key.to_string(),
        encoding,
        reason: reason.to_string(),
    };
    match encoding {
        Encoding::Utf8 => Ok(SecretBytes::new(raw)),
        Encoding::Base64 => {
            // Like Go's decoder, line breaks inside the text are ignored.
            let compact: Vec<u8> = raw
                .iter()
                .copied()
                .filter(|b| *b != b'\n' && *b != b'\r')
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(&compact)
                .map(SecretBytes::new)
                .map_err(|e| {
                    let reason = match e {
                        base64::DecodeError::InvalidByte(offset, _) => {
                            format!("unexpected character at offset {offset}")
                        }
                        base64::DecodeError::InvalidLength(_) => "wrong length".into(),
                        base64::DecodeError::InvalidLastSymbol(offset, _) => {
                            format!("bad last character at offset {offset}")
                        }
                        base64::DecodeError::InvalidPadding => "bad padding".into(),
                    };
                    fail(
                        "base64",
                        &format!("{reason}; store it as standard padded base64 or remove encoding"),
                    )
                })
        }
        Encoding::Hex => hex::decode(&raw).map(SecretBytes::new).map_err(|e| {
            let reason = match e {
                hex::FromHexError::InvalidHexCharacter { index, .. } => {
                    format!("unexpected character at offset {index}")
                }
                hex::FromHexError::OddLength => "odd number of digits".into(),
                hex::FromHexError::InvalidStringLength => "wrong length".into(),
            };
            fail(
                "hex",
                &format!("{reason}; store it as hex digits or remove encoding"),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: Option<&str>, encoding: Encoding) -> ObjectSpec {
        ObjectSpec {
            name: "f".into(),
            read: 0,
            secret_key: key.map(str::to_string),
            encoding,
            mode: 0o644,
            config: String::new(),
        }
    }

    fn answer(json: &str) -> SecretResponse {
        SecretResponse::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn strings_raw_and_other_values_as_json() {
        let a = answer(
            r#"{"data":{"data":{"s":"text","n":42,"f":1.10,"b":true,"o":{"z":1,"a":[1,"x"]},"nul":null}}}"#,
        );
        let r = |k: &str| {
            String::from_utf8(
                render(&object(Some(k), Encoding::Utf8), &a)
                    .unwrap()
                    .expose()
                    .to_vec(),
            )
            .unwrap()
        };
        assert_eq!(r("s"), "text");
        assert_eq!(r("n"), "42");
        assert_eq!(r("f"), "1.10");
        assert_eq!(r("b"), "true");
        assert_eq!(r("o"), r#"{"a":[1,"x"],"z":1}"#);
        assert_eq!(r("nul"), "null");
    }

    #[test]
    fn encodings_decode() {
        let a = answer(r#"{"data":{"b64":"aGVsbG8=","hex":"68656c6c6f","bad":"!!"}}"#);
        assert_eq!(
            render(&object(Some("b64"), Encoding::Base64), &a)
                .unwrap()
                .expose(),
            b"hello"
        );
        assert_eq!(
            render(&object(Some("hex"), Encoding::Hex), &a)
                .unwrap()
                .expose(),
            b"hello"
        );
        let e = render(&object(Some("bad"), Encoding::Base64), &a).unwrap_err();
        assert!(
            e.to_string().contains("base64") && !e.to_string().contains("!!"),
            "{e}"
        );
        let e = render(&object(Some("bad"), Encoding::Hex), &a).unwrap_err();
        assert!(!e.to_string().contains('!'), "{e}");
    }

    #[test]
    fn missing_key_names_keys_but_not_values() {
        let a = answer(r#"{"data":{"data":{"password":"hunter2"}}}"#);
        let e = render(&object(Some("pasword"), Encoding::Utf8), &a).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("\"pasword\"") && msg.contains("\"password\""),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"));
        let e = render(&object(Some("k"), Encoding::Utf8), &answer("{}")).unwrap_err();
        assert!(matches!(e, RenderError::NoData { .. }));
    }

    #[test]
    fn whole_response_ignores_encoding() {
        let a = answer(r#"{"request_id":"x","data":{"k":"v"}}"#);
        let out = render(&object(None, Encoding::Base64), &a).unwrap();
        assert!(out.expose().starts_with(br#"{"request_id":"x""#));
    }
}
