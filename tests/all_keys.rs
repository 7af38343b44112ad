//! `allKeys`: every key of a secret as a directory of files, on KV v1 and v2; unsafe key
//! names (`../x`, `a/b`) refused; the files following the secret.

mod common;

use common::features::*;
use common::*;
use serde_json::json;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_keys_on_kv_v2_and_v1() {
    let e = env().await;
    let data = json!({"user": "alice", "n": 42, "o": {"z": 1, "a": [1, "x"]}});
    e.bao
        .write("secret/data/multi", json!({ "data": data }))
        .await;
    e.bao.write("kv/multi", data.clone()).await;
    e.bao
        .write(
            "secret/data/b64",
            json!({"data": {"a": "aGVsbG8=", "b": "d29ybGQ="}}),
        )
        .await;
    let objects = r#"
- {objectName: conf, secretPath: secret/data/multi, allKeys: true, filePermission: 0600}
- {objectName: v1/conf, secretPath: kv/multi, allKeys: true}
- {objectName: dec, secretPath: secret/data/b64, allKeys: true, encoding: base64, filePermission: 0o640}
- {objectName: plain, secretPath: secret/data/multi, secretKey: user}
- objectName: summary
  template: "{{ objects.conf.user }} {{ objects.conf | length }} {{ objects.conf.o }} {{ objects.plain }}"
"#;
    let r = e.mount(objects).await.unwrap();
    let expected = [
        "conf/n",
        "conf/o",
        "conf/user",
        "dec/a",
        "dec/b",
        "plain",
        "summary",
        "v1/conf/n",
        "v1/conf/o",
        "v1/conf/user",
    ];
    assert_eq!(paths(&r), expected);
    assert_eq!(version_ids(&r), expected, "one version per file, id = path");
    assert!(r.object_version.iter().all(|v| v.version.len() == 44));
    for prefix in ["conf", "v1/conf"] {
        assert_eq!(file_str(&r, &format!("{prefix}/user")), "alice");
        assert_eq!(file_str(&r, &format!("{prefix}/n")), "42");
        assert_eq!(
            file_str(&r, &format!("{prefix}/o")),
            r#"{"a":[1,"x"],"z":1}"#
        );
    }
    for f in ["conf/n", "conf/o", "conf/user"] {
        assert_eq!(mode(&r, f), 0o600, "{f}");
    }
    for f in ["v1/conf/n", "plain", "summary"] {
        assert_eq!(mode(&r, f), 0o644, "{f}");
    }
    assert_eq!(file_str(&r, "dec/a"), "hello");
    assert_eq!(file_str(&r, "dec/b"), "world");
    assert_eq!(mode(&r, "dec/a"), 0o640);
    assert_eq!(
        file_str(&r, "summary"),
        r#"alice 3 {"a":[1,"x"],"z":1} alice"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_keys_refuses_unsafe_key_names() {
    let e = env().await;
    let long = "k".repeat(256);
    let cases: Vec<(&str, Option<&str>)> = vec![
        ("../x", Some("\"../x\"")),
        ("a/b", Some("\"a/b\"")),
        (".", None),
        ("..", None),
        ("", None),
        ("bad\u{1}key", None),
        ("nul\u{0}key", None),
        ("new\nline", None),
        (long.as_str(), None),
    ];
    for (i, (key, needle)) in cases.iter().enumerate() {
        let path = format!("secret/data/bad{i}");
        let mut data = serde_json::Map::new();
        data.insert("ok".into(), json!("fine"));
        data.insert((*key).to_string(), json!("v"));
        e.bao.write(&path, json!({ "data": data })).await;
        let objects = format!("- {{objectName: all, secretPath: {path}, allKeys: true}}");
        let mut needles = vec!["\"all\""];
        needles.extend(needle.iter());
        expect_err(
            &format!("key {key:?}"),
            e.mount(&objects).await,
            Code::InvalidArgument,
            &needles,
        );
    }
    // The same secret with only safe keys mounts.
    e.bao
        .write("secret/data/good", json!({"data": {"ok": "fine"}}))
        .await;
    let r = e
        .mount("- {objectName: all, secretPath: secret/data/good, allKeys: true}")
        .await
        .unwrap();
    assert_eq!(paths(&r), ["all/ok"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_keys_follows_the_secret() {
    let e = env().await;
    e.bao
        .write("secret/data/grow", json!({"data": {"a": "1"}}))
        .await;
    let objects = "- {objectName: g, secretPath: secret/data/grow, allKeys: true}";
    let first = e.mount(objects).await.unwrap();
    assert_eq!(paths(&first), ["g/a"]);
    assert_eq!(version_ids(&first), ["g/a"]);
    e.bao
        .write("secret/data/grow", json!({"data": {"a": "1", "b": "2"}}))
        .await;
    let second = e.mount(objects).await.unwrap();
    assert_eq!(paths(&second), ["g/a", "g/b"]);
    assert_eq!(version_ids(&second), ["g/a", "g/b"]);
    assert_eq!(file_str(&second, "g/b"), "2");
    assert_eq!(
        version(&first, "g/a"),
        version(&second, "g/a"),
        "an unchanged file keeps its version"
    );
    // A secret without keys has nothing to mount.
    e.bao.write("secret/data/empty", json!({"data": {}})).await;
    expect_err(
        "no keys",
        e.mount("- {objectName: g, secretPath: secret/data/empty, allKeys: true}")
            .await,
        Code::NotFound,
        &["\"g\""],
    );
}
