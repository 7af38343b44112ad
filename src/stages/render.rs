//! Render stage: the files of one object from a Vault answer: a selected key or nested
//! value, the whole answer, or every key as a directory. Pure. (Templates: `template/`.)

use crate::secret::SecretBytes;
use crate::stages::answer::SecretResponse;
use crate::stages::gojson;
use crate::stages::plan::{Encoding, ObjectKind, ObjectSpec, Pointer};
use crate::text::quote;
use base64::Engine;
use serde_json::{Map, Value};

/// Most files one `allKeys` object may write.
pub const MAX_ALL_KEYS: usize = 1000;

/// Why an object's file could not be made. Never carries secret values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    /// The answer has no `data` to select from.
    #[error("the answer has no data to select {what} from")]
    NoData { what: String },
    /// `secretKey` names a key the data does not have.
    #[error("secretKey {} is not in the answer; keys present: {present}", quote(.key))]
    KeyMissing { key: String, present: String },
    /// A `selector` step names a key the data does not have.
    #[error("selector {pointer} finds nothing: {at} has no member {missing}; it has: {present}")]
    PointerMissing {
        pointer: String,
        at: String,
        missing: String,
        present: String,
    },
    /// A `selector` step is an index past the end of a list.
    #[error(
        "selector {pointer} finds nothing: {at} is an array of {len} elements, index {index} is not one of them"
    )]
    IndexOutOfRange {
        pointer: String,
        at: String,
        index: String,
        len: usize,
    },
    /// A `selector` step, or `allKeys`, meets something that is not a map.
    #[error(
        "{what} is not a map of keys, so allKeys cannot write it as files: point selector at a map"
    )]
    NotAMap { what: String },
    /// `allKeys` on data with no keys: there would be no file.
    #[error("{what} has no keys: allKeys would write no file; check secretPath")]
    NoKeys { what: String },
    /// `allKeys` meets a key that cannot be a file name.
    #[error(
        "the secret has a key {key} that is not a safe file name ({reason}): rename the key in Vault, or select values with secretKey"
    )]
    UnsafeKey { key: String, reason: &'static str },
    /// `allKeys` meets more keys than one directory may have.
    #[error(
        "the secret has {count} keys, more than the {limit} files one allKeys object may write"
    )]
    TooManyKeys { count: usize, limit: usize },
    /// The value is not valid for its `encoding` (base64, hex).
    #[error("the value of {key} is not valid {encoding}: {reason}")]
    Decode {
        key: String,
        encoding: &'static str,
        reason: String,
    },
}

/// The files of one non-template object: `(path, content)`, in key order for `allKeys`.
pub fn render(
    object: &ObjectSpec,
    answer: &SecretResponse,
) -> Result<Vec<(String, SecretBytes)>, RenderError> {
    let one = |bytes| Ok(vec![(object.name.clone(), bytes)]);
    match &object.kind {
        ObjectKind::Whole | ObjectKind::Template(_) => one(SecretBytes::new(answer.to_go_json())),
        ObjectKind::Key(key) => {
            let data = answer.selectable().ok_or_else(|| RenderError::NoData {
                what: format!("secretKey {}", quote(key)),
            })?;
            let value = data.get(key).ok_or_else(|| RenderError::KeyMissing {
                key: key.clone(),
                present: key_list(data.keys()),
            })?;
            one(decode(
                &format!("secretKey {}", quote(key)),
                object.encoding,
                raw(value),
            )?)
        }
        ObjectKind::Pointer(pointer) => {
            let data = answer.selectable().ok_or_else(|| RenderError::NoData {
                what: format!("selector {}", quote(&pointer.text)),
            })?;
            let value = resolve(data, pointer)?;
            one(decode(
                &format!("selector {}", quote(&pointer.text)),
                object.encoding,
                raw(value),
            )?)
        }
        ObjectKind::AllKeys(pointer) => all_keys(object, answer, pointer.as_ref()),
    }
}

/// A string raw, any other value as compact JSON.
fn raw(value: &Value) -> Vec<u8> {
    match value {
        Value::String(s) => s.as_bytes().to_vec(),
        other => gojson::value(other),
    }
}

/// Follows `pointer` into `data`; a missing step names where it stopped and what is there.
pub fn resolve<'a>(
    data: &'a Map<String, Value>,
    pointer: &Pointer,
) -> Result<&'a Value, RenderError> {
    let mut reached = String::new();
    let at = |reached: &str| {
        if reached.is_empty() {
            "the secret's data".to_string()
        } else {
            quote(reached)
        }
    };
    let mut current: Option<&'a Value> = None;
    for token in &pointer.tokens {
        let next = match current {
            None => data.get(token).ok_or_else(|| key_list(data.keys())),
            Some(Value::Object(map)) => map.get(token).ok_or_else(|| key_list(map.keys())),
            Some(Value::Array(items)) => {
                let index = token
                    .parse::<usize>()
                    .ok()
                    .filter(|_| token == "0" || !token.starts_with('0'));
                match index.and_then(|i| items.get(i)) {
                    Some(v) => Ok(v),
                    None => {
                        return Err(RenderError::IndexOutOfRange {
                            pointer: quote(&pointer.text),
                            at: at(&reached),
                            index: quote(token),
                            len: items.len(),
                        });
                    }
                }
            }
            Some(other) => Err(format!("nothing, it is {}", kind_of(other))),
        };
        match next {
            Ok(v) => current = Some(v),
            Err(present) => {
                return Err(RenderError::PointerMissing {
                    pointer: quote(&pointer.text),
                    at: at(&reached),
                    missing: quote(token),
                    present,
                });
            }
        }
        reached.push('/');
        reached.push_str(&token.replace('~', "~0").replace('/', "~1"));
    }
    current.ok_or_else(|| RenderError::NoData {
        what: format!("selector {}", quote(&pointer.text)),
    })
}

/// A JSON value's kind, for messages (never the value).
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a map",
    }
}

/// Every key of the data (or of the map at `pointer`) as `<objectName>/<key>`.
fn all_keys(
    object: &ObjectSpec,
    answer: &SecretResponse,
    pointer: Option<&Pointer>,
) -> Result<Vec<(String, SecretBytes)>, RenderError> {
    let data = answer.selectable().ok_or_else(|| RenderError::NoData {
        what: "allKeys".into(),
    })?;
    let (map, what) = match pointer {
        None => (data, "the secret's data".to_string()),
        Some(p) => {
            let what = format!("the value at selector {}", quote(&p.text));
            match resolve(data, p)? {
                Value::Object(map) => (map, what),
                _ => return Err(RenderError::NotAMap { what }),
            }
        }
    };
    if map.is_empty() {
        return Err(RenderError::NoKeys { what });
    }
    if map.len() > MAX_ALL_KEYS {
        return Err(RenderError::TooManyKeys {
            count: map.len(),
            limit: MAX_ALL_KEYS,
        });
    }
    let mut files = Vec::with_capacity(map.len());
    for (key, value) in map {
        check_key(key).map_err(|reason| RenderError::UnsafeKey {
            key: quote(key),
            reason,
        })?;
        let path = format!("{}/{key}", object.name);
        if path.len() > 4096 {
            return Err(RenderError::UnsafeKey {
                key: quote(key),
                reason: "the file path would be longer than 4096 bytes",
            });
        }
        let bytes = decode(&format!("key {}", quote(key)), object.encoding, raw(value))?;
        files.push((path, bytes));
    }
    Ok(files)
}

/// A key from Vault as one file name in the volume: never a path, never special.
pub fn check_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("it is empty");
    }
    if key.len() > 255 {
        return Err("it is longer than 255 bytes");
    }
    if key.contains('/') {
        return Err("it contains /");
    }
    if key.starts_with("..") || key == "." {
        return Err("it is . or starts with ..");
    }
    if key.chars().any(|c| c.is_control()) {
        return Err("it contains control characters");
    }
    Ok(())
}

fn key_list<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    crate::text::name_list(keys)
}

/// Decodes `raw` as `encoding`; `key` names the value in messages.
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
        let kind = match key {
            Some(k) => ObjectKind::Key(k.to_string()),
            None => ObjectKind::Whole,
        };
        spec(kind, encoding)
    }

    fn spec(kind: ObjectKind, encoding: Encoding) -> ObjectSpec {
        ObjectSpec {
            name: "f".into(),
            read: Some(0),
            kind,
            encoding,
            mode: 0o644,
            config: String::new(),
            version: crate::stages::plan::VersionInput::Own(String::new()),
        }
    }

    /// The one file of a single-file object.
    fn one(object: &ObjectSpec, a: &SecretResponse) -> Result<SecretBytes, RenderError> {
        render(object, a).map(|mut files| {
            assert_eq!(files.len(), 1);
            files.remove(0).1
        })
    }

    fn pointer(p: &str) -> ObjectSpec {
        spec(
            ObjectKind::Pointer(Pointer::parse(p).unwrap()),
            Encoding::Utf8,
        )
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
                one(&object(Some(k), Encoding::Utf8), &a)
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
            one(&object(Some("b64"), Encoding::Base64), &a)
                .unwrap()
                .expose(),
            b"hello"
        );
        assert_eq!(
            one(&object(Some("hex"), Encoding::Hex), &a)
                .unwrap()
                .expose(),
            b"hello"
        );
        let e = one(&object(Some("bad"), Encoding::Base64), &a).unwrap_err();
        assert!(
            e.to_string().contains("base64") && !e.to_string().contains("!!"),
            "{e}"
        );
        let e = one(&object(Some("bad"), Encoding::Hex), &a).unwrap_err();
        assert!(!e.to_string().contains('!'), "{e}");
    }

    #[test]
    fn missing_key_names_keys_but_not_values() {
        let a = answer(r#"{"data":{"data":{"password":"hunter2"}}}"#);
        let e = one(&object(Some("pasword"), Encoding::Utf8), &a).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("\"pasword\"") && msg.contains("\"password\""),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"));
        let e = one(&object(Some("k"), Encoding::Utf8), &answer("{}")).unwrap_err();
        assert!(matches!(e, RenderError::NoData { .. }));
    }

    #[test]
    fn whole_response_ignores_encoding() {
        let a = answer(r#"{"request_id":"x","data":{"k":"v"}}"#);
        let out = one(&object(None, Encoding::Base64), &a).unwrap();
        assert!(out.expose().starts_with(br#"{"request_id":"x""#));
    }

    #[test]
    fn selectors_reach_nested_values_and_name_what_is_missing() {
        let a = answer(
            r#"{"data":{"data":{"db":{"primary":{"password":"pw-value","port":5432}},"hosts":["a","b"],"a/b":{"~k":"x"}}}}"#,
        );
        let text =
            |p: &str| String::from_utf8(one(&pointer(p), &a).unwrap().expose().to_vec()).unwrap();
        assert_eq!(text("/db/primary/password"), "pw-value");
        assert_eq!(text("/db/primary/port"), "5432");
        assert_eq!(text("/hosts/1"), "b");
        assert_eq!(text("/a~1b/~0k"), "x");
        assert_eq!(
            text("/db/primary"),
            r#"{"password":"pw-value","port":5432}"#
        );
        let e = one(&pointer("/db/replica/password"), &a).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("\"/db/replica/password\"")
                && msg.contains("\"replica\"")
                && msg.contains("\"primary\""),
            "{msg}"
        );
        assert!(!msg.contains("pw-value"), "{msg}");
        let e = one(&pointer("/hosts/2"), &a).unwrap_err().to_string();
        assert!(e.contains("2 elements"), "{e}");
        let e = one(&pointer("/hosts/01"), &a).unwrap_err().to_string();
        assert!(e.contains("2 elements"), "{e}");
        let e = one(&pointer("/db/primary/password/x"), &a)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a string") && !e.contains("pw-value"), "{e}");
        assert!(Pointer::parse("db/x").is_err());
        assert!(Pointer::parse("/a~2").is_err());
    }

    #[test]
    fn all_keys_are_files_and_unsafe_keys_are_refused() {
        let a = answer(r#"{"data":{"data":{"user":"u","n":1,"cfg":{"a":true}}}}"#);
        let files = render(&spec(ObjectKind::AllKeys(None), Encoding::Utf8), &a).unwrap();
        let got: Vec<(String, Vec<u8>)> = files
            .into_iter()
            .map(|(p, c)| (p, c.expose().to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("f/cfg".to_string(), br#"{"a":true}"#.to_vec()),
                ("f/n".to_string(), b"1".to_vec()),
                ("f/user".to_string(), b"u".to_vec()),
            ]
        );
        let nested = render(
            &spec(
                ObjectKind::AllKeys(Some(Pointer::parse("/cfg").unwrap())),
                Encoding::Utf8,
            ),
            &a,
        )
        .unwrap();
        assert_eq!(nested[0].0, "f/a");
        let e = render(
            &spec(
                ObjectKind::AllKeys(Some(Pointer::parse("/user").unwrap())),
                Encoding::Utf8,
            ),
            &a,
        )
        .unwrap_err();
        assert!(matches!(e, RenderError::NotAMap { .. }));
        for bad in ["../x", "a/b", "..", ".", "", "x\\u0000y", "..data"] {
            let body = format!(r#"{{"data":{{"ok":"1","{bad}":"secret-value"}}}}"#);
            let e = render(
                &spec(ObjectKind::AllKeys(None), Encoding::Utf8),
                &answer(&body),
            )
            .unwrap_err();
            assert!(matches!(e, RenderError::UnsafeKey { .. }), "{bad:?}: {e:?}");
            assert!(!e.to_string().contains("secret-value"));
        }
        let e = render(
            &spec(ObjectKind::AllKeys(None), Encoding::Utf8),
            &answer(r#"{"data":{}}"#),
        )
        .unwrap_err();
        assert!(matches!(e, RenderError::NoKeys { .. }));
        let b64 = answer(r#"{"data":{"a":"aGk=","b":"!!"}}"#);
        let e = render(&spec(ObjectKind::AllKeys(None), Encoding::Base64), &b64).unwrap_err();
        assert!(e.to_string().contains("\"b\""), "{e}");
    }

    mod properties {
        use super::*;
        use crate::stages::answer::strategies::json;
        use proptest::prelude::*;

        proptest! {
            /// Any answer Vault (or a server posing as it) gives, rendered by any kind of
            /// object: files or an error, never a panic, and an error never shows a value.
            #[test]
            fn any_answer_renders_or_says_why(
                answer in json(),
                key in "[a-z/~0-9.]{0,6}",
                encoding in prop_oneof![Just(Encoding::Utf8), Just(Encoding::Base64), Just(Encoding::Hex)],
            ) {
                let body = serde_json::json!({"data": answer, "lease_id": "", "lease_duration": 0}).to_string();
                let Some(a) = SecretResponse::parse(body.as_bytes()) else { return Ok(()) };
                let mut kinds = vec![
                    ObjectKind::Whole,
                    ObjectKind::Key(key.clone()),
                    ObjectKind::AllKeys(None),
                ];
                if let Ok(p) = Pointer::parse(&format!("/{key}")) {
                    kinds.push(ObjectKind::Pointer(p.clone()));
                    kinds.push(ObjectKind::AllKeys(Some(p)));
                }
                for kind in kinds {
                    match render(&spec(kind, encoding), &a) {
                        Ok(files) => {
                            for (path, _) in files {
                                prop_assert!(crate::stages::plan::validate_file_name(&path).is_ok(), "{}", path);
                            }
                        }
                        Err(e) => {
                            let msg = e.to_string();
                            prop_assert!(msg.len() < 2048, "{}", msg);
                        }
                    }
                }
            }

            /// A pointer built from the keys of a nested map finds exactly the value put
            /// there; any other pointer is an error that shows no value.
            #[test]
            fn pointers_find_what_was_put_there(
                keys in prop::collection::vec("[a-z~/]{0,4}", 1..5),
                probe in "(/[a-z~01/]{0,4}){1,4}",
            ) {
                let mut value = serde_json::json!("needle-value");
                for k in keys.iter().rev() {
                    value = serde_json::json!({ k.clone(): value });
                }
                let serde_json::Value::Object(data) = value else { unreachable!() };
                let escaped: String = keys.iter().map(|k| format!("/{}", k.replace('~', "~0").replace('/', "~1"))).collect();
                let p = Pointer::parse(&escaped).unwrap();
                prop_assert_eq!(p.tokens.clone(), keys.clone());
                prop_assert_eq!(resolve(&data, &p).unwrap(), &serde_json::json!("needle-value"));
                if let Ok(p) = Pointer::parse(&probe) {
                    match resolve(&data, &p) {
                        Ok(_) => {}
                        Err(e) => prop_assert!(!e.to_string().contains("needle-value")),
                    }
                }
            }
        }
    }
}
