//! `selector`: JSON Pointers into nested values and arrays, with `~` and `/` escapes; a miss
//! names the pointer and the keys that exist, never a value.

mod common;

use common::features::*;
use common::*;
use serde_json::json;
use tonic::Code;

async fn selector_env() -> Env {
    let e = env().await;
    let data = json!({
        "db": {"primary": {"password": "pw-primary-7", "port": 5432}},
        "hosts": ["h0", "h1"],
        "a/b": "slash",
        "t~x": "tilde",
        "enc": {"b64": "aGVsbG8="},
    });
    e.bao
        .write("secret/data/sel", json!({ "data": data }))
        .await;
    e.bao.write("kv/sel", data).await;
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_into_objects_and_arrays() {
    let e = selector_env().await;
    let objects = r#"
- {objectName: p, secretPath: secret/data/sel, selector: /db/primary/password}
- {objectName: h, secretPath: secret/data/sel, selector: /hosts/1}
- {objectName: s, secretPath: secret/data/sel, selector: /a~1b}
- {objectName: t, secretPath: secret/data/sel, selector: /t~0x}
- {objectName: port, secretPath: secret/data/sel, selector: /db/primary/port}
- {objectName: primary, secretPath: secret/data/sel, selector: /db/primary, filePermission: 0600}
- {objectName: hosts, secretPath: secret/data/sel, selector: /hosts}
- {objectName: b, secretPath: secret/data/sel, selector: /enc/b64, encoding: base64}
- {objectName: v1, secretPath: kv/sel, selector: /db/primary/password}
- {objectName: dir, secretPath: secret/data/sel, selector: /db/primary, allKeys: true}
"#;
    let r = e.mount(objects).await.unwrap();
    assert_eq!(file_str(&r, "p"), "pw-primary-7");
    assert_eq!(file_str(&r, "h"), "h1");
    assert_eq!(file_str(&r, "s"), "slash");
    assert_eq!(file_str(&r, "t"), "tilde");
    assert_eq!(file_str(&r, "port"), "5432");
    assert_eq!(
        file_str(&r, "primary"),
        r#"{"password":"pw-primary-7","port":5432}"#
    );
    assert_eq!(mode(&r, "primary"), 0o600);
    assert_eq!(file_str(&r, "hosts"), r#"["h0","h1"]"#);
    assert_eq!(file_str(&r, "b"), "hello");
    assert_eq!(file_str(&r, "v1"), "pw-primary-7");
    assert_eq!(file_str(&r, "dir/password"), "pw-primary-7");
    assert_eq!(file_str(&r, "dir/port"), "5432");
    assert_eq!(r.files.len(), 11);
    assert_eq!(r.object_version.len(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selector_misses_name_the_pointer_and_keys_never_values() {
    let e = selector_env().await;
    let msg = expect_err(
        "missing step",
        e.mount("- {objectName: x, secretPath: secret/data/sel, selector: /db/replica/password}")
            .await,
        Code::NotFound,
        &["\"x\"", "/db/replica/password", "primary"],
    );
    assert!(
        !msg.contains("pw-primary-7") && !msg.contains("5432"),
        "{msg}"
    );
    let msg = expect_err(
        "missing first step",
        e.mount("- {objectName: x, secretPath: secret/data/sel, selector: /nope}")
            .await,
        Code::NotFound,
        &["/nope", "db", "hosts"],
    );
    assert!(!msg.contains("slash") && !msg.contains("tilde"), "{msg}");
    let msg = expect_err(
        "index out of range",
        e.mount("- {objectName: x, secretPath: secret/data/sel, selector: /hosts/5}")
            .await,
        Code::NotFound,
        &["\"x\"", "/hosts/5", "2"],
    );
    assert!(!msg.contains("h0") && !msg.contains("h1"), "{msg}");
    let msg = expect_err(
        "below a string",
        e.mount("- {objectName: x, secretPath: secret/data/sel, selector: /db/primary/password/x}")
            .await,
        Code::NotFound,
        &["\"x\""],
    );
    assert!(!msg.contains("pw-primary-7"), "{msg}");
}
