//! The answer Vault gives to a read or a login, as data. Parsing only; no I/O.

use crate::stages::gojson;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// A Vault API answer (`api.Secret` in Vault's Go client), in the field order the Go
/// provider writes for a whole-response object.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SecretResponse {
    #[serde(default)]
    pub request_id: String,
    #[serde(default)]
    pub lease_id: String,
    #[serde(default)]
    pub lease_duration: i64,
    #[serde(default)]
    pub renewable: bool,
    #[serde(default)]
    pub data: Option<Map<String, Value>>,
    #[serde(default)]
    pub warnings: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrap_info: Option<Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mount_type: String,
}

impl fmt::Debug for SecretResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretResponse")
            .field("request_id", &self.request_id)
            .field("lease_duration", &self.lease_duration)
            .field("renewable", &self.renewable)
            .field(
                "data",
                &self
                    .data
                    .as_ref()
                    .map(|d| format!("[{} redacted keys]", d.len())),
            )
            .finish_non_exhaustive()
    }
}

impl SecretResponse {
    /// Parses a response body; `None` when it is not a JSON object.
    pub fn parse(body: &[u8]) -> Option<Self> {
        serde_json::from_slice(body).ok()
    }

    /// The key/value map objects select from: `data.data` when it is an object (KV v2),
    /// otherwise `data`.
    pub fn selectable(&self) -> Option<&Map<String, Value>> {
        let data = self.data.as_ref()?;
        match data.get("data") {
            Some(Value::Object(inner)) => Some(inner),
            _ => Some(data),
        }
    }

    /// The answer as compact JSON, written the way the Go provider writes a whole answer
    /// (`json.Marshal` of Vault's `api.Secret`): its fields in the struct's order, `auth`,
    /// `wrap_info` and `mount_type` only when present, map keys sorted, numbers as Vault
    /// sent them, Go's HTML-safe string escaping.
    pub fn to_go_json(&self) -> Vec<u8> {
        let mut out = String::with_capacity(256);
        let field = |out: &mut String, name: &str, first: bool| {
            out.push_str(if first { "{" } else { "," });
            gojson::push_string(out, name.as_bytes());
            out.push(':');
        };
        field(&mut out, "request_id", true);
        gojson::push_string(&mut out, self.request_id.as_bytes());
        field(&mut out, "lease_id", false);
        gojson::push_string(&mut out, self.lease_id.as_bytes());
        field(&mut out, "lease_duration", false);
        out.push_str(&self.lease_duration.to_string());
        field(&mut out, "renewable", false);
        out.push_str(if self.renewable { "true" } else { "false" });
        field(&mut out, "data", false);
        match &self.data {
            Some(map) => gojson::push_value(&mut out, &Value::Object(map.clone())),
            None => out.push_str("null"),
        }
        field(&mut out, "warnings", false);
        match &self.warnings {
            Some(list) => gojson::push_value(
                &mut out,
                &Value::Array(list.iter().cloned().map(Value::String).collect()),
            ),
            None => out.push_str("null"),
        }
        if let Some(auth) = &self.auth {
            field(&mut out, "auth", false);
            gojson::push_value(&mut out, auth);
        }
        if let Some(wrap) = &self.wrap_info {
            field(&mut out, "wrap_info", false);
            gojson::push_value(&mut out, wrap);
        }
        if !self.mount_type.is_empty() {
            field(&mut out, "mount_type", false);
            gojson::push_string(&mut out, self.mount_type.as_bytes());
        }
        out.push('}');
        out.into_bytes()
    }
}

/// Generators of Vault answers for the property tests of the stages that read them.
#[cfg(test)]
pub(crate) mod strategies {
    use proptest::prelude::*;
    use serde_json::Value;

    /// Any JSON value a Vault answer can carry: every scalar kind (finite floats too),
    /// any text, lists and maps nested a few levels.
    pub fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| serde_json::json!(f)),
            ".{0,16}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(".{0,8}", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_response_json_has_go_field_order_and_number_text() {
        let body = br#"{"request_id":"r","lease_id":"","renewable":false,"lease_duration":0,
            "data":{"b":1.50,"a":"x<y"},"wrap_info":null,"warnings":null,"auth":null,"mount_type":"kv"}"#;
        let r = SecretResponse::parse(body).unwrap();
        let out = String::from_utf8(r.to_go_json()).unwrap();
        assert_eq!(
            out,
            r#"{"request_id":"r","lease_id":"","lease_duration":0,"renewable":false,"data":{"a":"x\u003cy","b":1.50},"warnings":null,"mount_type":"kv"}"#
        );
    }

    #[test]
    fn kv2_selects_inner_data() {
        let r = SecretResponse::parse(br#"{"data":{"data":{"k":"v"},"metadata":{"version":3}}}"#)
            .unwrap();
        assert_eq!(
            r.selectable().unwrap().get("k"),
            Some(&Value::String("v".into()))
        );
        let r = SecretResponse::parse(br#"{"data":{"data":"not an object","k":"v"}}"#).unwrap();
        assert!(r.selectable().unwrap().contains_key("k"));
    }

    #[test]
    fn debug_hides_values() {
        let r = SecretResponse::parse(br#"{"data":{"password":"hunter2"}}"#).unwrap();
        assert!(!format!("{r:?}").contains("hunter2"));
    }
}
