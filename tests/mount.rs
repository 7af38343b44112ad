//! Mount end to end: the provider binary on a Unix socket, called by a gRPC client the way
//! the driver calls it, against a real OpenBao dev server (and a Kubernetes API stand-in
//! for TokenReview).

mod common;

use common::kube::KubeApi;
use common::*;
use serde_json::{Value, json};
use tonic::Code;

/// OpenBao with kubernetes and jwt auth, an audit log, KV v1 at kv/, and the provider.
struct Env {
    bao: OpenBao,
    kube: KubeApi,
    audit: std::path::PathBuf,
    provider: ProviderProcess,
    client: Client,
    pod: Pod,
}

const POLICY: &str = r#"
path "secret/data/*" { capabilities = ["read"] }
path "kv/*" { capabilities = ["read", "create", "update"] }
path "pki/issue/*" { capabilities = ["create", "update"] }
path "sys/tools/random/*" { capabilities = ["read", "create", "update"] }
"#;

async fn env() -> Env {
    let bao = OpenBao::start().await;
    let audit = bao.audit_log();
    let kube = KubeApi::start().await;
    bao.policy("app", POLICY).await;
    bao.enable_kubernetes("kubernetes", &kube.url).await;
    bao.kubernetes_role("kubernetes", "app", "default", "app", &["app"])
        .await;
    bao.enable_jwt("jwt").await;
    bao.jwt_role("jwt", "app", "default", "app", &["app"]).await;
    bao.write(
        "sys/mounts/kv",
        json!({"type": "kv", "options": {"version": "1"}}),
    )
    .await;
    let provider = ProviderProcess::start(&bao.addr, &[]).await;
    let client = provider.client().await;
    Env {
        bao,
        kube,
        audit,
        provider,
        client,
        pod: Pod::new("default", "app"),
    }
}

fn class(objects: &str) -> Value {
    json!({ "roleName": "app", "objects": objects })
}

impl Env {
    async fn mount(
        &self,
        params: Value,
    ) -> Result<vault_csi_provider::proto::MountResponse, tonic::Status> {
        self.client.mount(self.pod.request(params)).await
    }

    /// GET requests (operation read) of `path`, the test's own admin writes excluded.
    fn reads(&self, path: &str) -> usize {
        self.bao
            .audit_requests(&self.audit, |op, p| op == "read" && p == path)
    }

    fn updates(&self, path: &str) -> usize {
        self.bao
            .audit_requests(&self.audit, |op, p| op == "update" && p == path)
    }

    fn logins(&self) -> usize {
        self.bao
            .audit_requests(&self.audit, |_, p| p.ends_with("/login"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_auth_reads_kv2_through_token_review() {
    let e = env().await;
    e.bao
        .write(
            "secret/data/app",
            json!({"data": {"username": "alice", "password": "s3cret"}}),
        )
        .await;
    let objects = r#"
- objectName: username
  secretPath: secret/data/app
  secretKey: username
- objectName: password
  secretPath: secret/data/app
  secretKey: password
"#;
    let resp = e.mount(class(objects)).await.unwrap();
    assert_eq!(file_str(&resp, "username"), "alice");
    assert_eq!(file_str(&resp, "password"), "s3cret");
    assert_eq!(resp.files.len(), 2);
    assert_eq!(resp.object_version.len(), 2);
    assert_eq!(mode(&resp, "username"), 0o644);
    assert_eq!(version(&resp, "username").len(), 44);
    assert!(
        e.kube.count("tokenreviews") >= 1,
        "OpenBao never asked the API stand-in"
    );
    assert_eq!(e.logins(), 1);
    assert_eq!(
        e.reads("secret/data/app"),
        1,
        "two objects on one path must be one read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_auth_and_kv_v1() {
    let e = env().await;
    e.bao.write("kv/app", json!({"api-key": "k-123"})).await;
    let mut params = class("- objectName: key\n  secretPath: kv/app\n  secretKey: api-key\n");
    params["vaultAuthMountPath"] = json!("jwt");
    let resp = e.mount(params).await.unwrap();
    assert_eq!(file_str(&resp, "key"), "k-123");
    assert_eq!(
        e.kube.count("tokenreviews"),
        0,
        "jwt auth must not use TokenReview"
    );
    assert_eq!(
        e.bao.audit_requests(&e.audit, |_, p| p == "auth/jwt/login"),
        1
    );
    // The alias spelling works the same.
    let mut params = class("- objectName: key\n  secretPath: kv/app\n  secretKey: api-key\n");
    params["vaultKubernetesMountPath"] = json!("jwt");
    assert_eq!(file_str(&e.mount(params).await.unwrap(), "key"), "k-123");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_response_json_and_non_string_values() {
    let e = env().await;
    e.bao
        .write(
            "secret/data/typed",
            json!({"data": {"n": 42, "f": 2.50, "b": true, "o": {"z": 1, "a": [1, "x"]}, "s": "a<b&c"}}),
        )
        .await;
    let objects = r#"
- {objectName: all.json, secretPath: secret/data/typed}
- {objectName: n, secretPath: secret/data/typed, secretKey: n}
- {objectName: f, secretPath: secret/data/typed, secretKey: f}
- {objectName: b, secretPath: secret/data/typed, secretKey: b}
- {objectName: o, secretPath: secret/data/typed, secretKey: o}
- {objectName: s, secretPath: secret/data/typed, secretKey: s}
"#;
    let resp = e.mount(class(objects)).await.unwrap();
    assert_eq!(file_str(&resp, "n"), "42");
    assert_eq!(file_str(&resp, "f"), "2.5");
    assert_eq!(file_str(&resp, "b"), "true");
    assert_eq!(file_str(&resp, "o"), r#"{"a":[1,"x"],"z":1}"#);
    assert_eq!(file_str(&resp, "s"), "a<b&c");
    let all = file_str(&resp, "all.json");
    assert!(all.starts_with(r#"{"request_id":""#), "{all}");
    let keys: Vec<&str> = [
        "\"request_id\"",
        "\"lease_id\"",
        "\"lease_duration\"",
        "\"renewable\"",
        "\"data\"",
        "\"warnings\"",
    ]
    .into_iter()
    .collect();
    let positions: Vec<usize> = keys.iter().map(|k| all.find(k).unwrap()).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "field order: {all}"
    );
    assert!(
        all.contains(r#""s":"a\u003cb\u0026c""#),
        "Go escaping: {all}"
    );
    let v: Value = serde_json::from_str(all).unwrap();
    assert_eq!(v["data"]["data"]["n"], 42);
    assert_eq!(v["data"]["metadata"]["version"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encodings_and_file_modes() {
    let e = env().await;
    e.bao
        .write(
            "secret/data/enc",
            json!({"data": {"b64": "AAEC/w==", "hex": "deadbeef", "plain": "x"}}),
        )
        .await;
    let objects = r#"
- {objectName: b64, secretPath: secret/data/enc, secretKey: b64, encoding: base64, filePermission: 0600}
- {objectName: hex, secretPath: secret/data/enc, secretKey: hex, encoding: HEX, filePermission: 0o640}
- {objectName: dec, secretPath: secret/data/enc, secretKey: plain, filePermission: 420}
- {objectName: default, secretPath: secret/data/enc, secretKey: plain, encoding: utf-8}
"#;
    let resp = e.mount(class(objects)).await.unwrap();
    assert_eq!(file(&resp, "b64"), &[0, 1, 2, 255]);
    assert_eq!(file(&resp, "hex"), &[0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(mode(&resp, "b64"), 0o600);
    assert_eq!(mode(&resp, "hex"), 0o640);
    assert_eq!(mode(&resp, "dec"), 0o644);
    assert_eq!(mode(&resp, "default"), 0o644);
    // The request's permission is the default mode.
    let mut req = e.pod.request(class(
        "- {objectName: d, secretPath: secret/data/enc, secretKey: plain}",
    ));
    req.permission = "256".into();
    let resp = e.client.mount(req).await.unwrap();
    assert_eq!(mode(&resp, "d"), 0o400);
    // A value that is not what its encoding says is a clear error naming the key.
    let err = e
        .mount(class(
            "- {objectName: x, secretPath: secret/data/enc, secretKey: plain, encoding: hex}",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("\"plain\"") && err.message().contains("hex"),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_path_forms_and_versions_query() {
    let e = env().await;
    e.bao
        .write("secret/data/multi", json!({"data": {"v": "one"}}))
        .await;
    e.bao
        .write("secret/data/multi", json!({"data": {"v": "two"}}))
        .await;
    let objects = r#"
- {objectName: a, secretPath: /v1/secret/data/multi, secretKey: v}
- {objectName: b, secretPath: v1/secret/data/multi, secretKey: v}
- {objectName: c, secretPath: /secret/data/multi, secretKey: v}
- {objectName: d, secretPath: secret/data/multi, secretKey: v}
- {objectName: old, secretPath: "secret/data/multi?version=1", secretKey: v}
"#;
    let resp = e.mount(class(objects)).await.unwrap();
    for f in ["a", "b", "c", "d"] {
        assert_eq!(file_str(&resp, f), "two", "{f}");
    }
    assert_eq!(file_str(&resp, "old"), "one");
    assert_eq!(
        e.reads("secret/data/multi"),
        2,
        "four spellings of one path are one read, ?version=1 another"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pki_issue_with_put_and_secret_args() {
    let e = env().await;
    e.bao
        .enable_pki(
            "test-root",
            "web",
            json!({"allow_any_name": true, "max_ttl": "72h", "ttl": "24h"}),
        )
        .await;
    let objects = r#"
- objectName: a.crt
  secretPath: pki/issue/web
  method: PUT
  secretArgs: {common_name: a.example.com}
  secretKey: certificate
- objectName: a.key
  secretPath: pki/issue/web
  method: PUT
  secretArgs: {common_name: a.example.com}
  secretKey: private_key
- objectName: b.json
  secretPath: pki/issue/web
  method: PUT
  secretArgs:
    common_name: b.example.com
"#;
    let resp = e.mount(class(objects)).await.unwrap();
    let cert = file_str(&resp, "a.crt");
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
    assert!(der_of(cert).windows(13).any(|w| w == b"a.example.com"));
    assert!(file_str(&resp, "a.key").contains("PRIVATE KEY-----"));
    let b: Value = serde_json::from_str(file_str(&resp, "b.json")).unwrap();
    let b_cert = b["data"]["certificate"].as_str().unwrap();
    assert!(der_of(b_cert).windows(13).any(|w| w == b"b.example.com"));
    assert_ne!(b["data"]["serial_number"], Value::Null);
    // a.crt and a.key come from one issue (same arguments), b from another.
    assert_eq!(e.updates("pki/issue/web"), 2);
}

/// The DER bytes of the first PEM block.
fn der_of(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_read_per_path_method_and_arguments() {
    let e = env().await;
    // sys/tools/random answers differently on every call: equal files prove one read.
    let objects = r#"
- {objectName: r1, secretPath: sys/tools/random/32, method: PUT, secretKey: random_bytes}
- {objectName: r2, secretPath: /v1/sys/tools/random/32, method: put, secretKey: random_bytes}
- {objectName: r3, secretPath: sys/tools/random/32, method: POST, secretArgs: {format: hex}, secretKey: random_bytes}
- {objectName: r4, secretPath: sys/tools/random/32, method: POST, secretArgs: {format: base64}, secretKey: random_bytes}
"#;
    let resp = e.mount(class(objects)).await.unwrap();
    assert_eq!(file(&resp, "r1"), file(&resp, "r2"));
    assert_ne!(file(&resp, "r3"), file(&resp, "r4"));
    assert_eq!(file_str(&resp, "r3").len(), 64, "hex of 32 bytes");
    assert_eq!(e.updates("sys/tools/random/32"), 3);
    // A second mount reads again (no caching of static reads across mounts by default).
    let again = e.mount(class(objects)).await.unwrap();
    assert_ne!(file(&resp, "r1"), file(&again, "r1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_service_account_gets_vaults_message() {
    let e = env().await;
    e.bao
        .write("secret/data/app", json!({"data": {"k": "v"}}))
        .await;
    let intruder = Pod::new("default", "intruder");
    let err = e
        .client
        .mount(intruder.request(class(
            "- {objectName: k, secretPath: secret/data/app, secretKey: k}",
        )))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    assert!(
        err.message()
            .contains("service account name not authorized"),
        "{}",
        err.message()
    );
    // jwt auth says it its own way, and that reaches the pod too.
    let mut params = class("- {objectName: k, secretPath: secret/data/app, secretKey: k}");
    params["vaultAuthMountPath"] = json!("jwt");
    let err = e.client.mount(intruder.request(params)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    assert!(err.message().contains("sub"), "{}", err.message());
    // A path the policy does not allow.
    e.bao.write("sys/mounts/other", json!({"type": "kv"})).await;
    e.bao.write("other/x", json!({"k": "v"})).await;
    let err = e
        .mount(class(
            "- {objectName: k, secretPath: other/x, secretKey: k}",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("permission denied"),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains("\"k\""),
        "names the object: {}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_before_vault_and_the_server_keeps_serving() {
    let e = env().await;
    e.bao
        .write("secret/data/app", json!({"data": {"k": "v"}}))
        .await;
    let good = "- {objectName: k, secretPath: secret/data/app, secretKey: k}";
    let with = |extra: Value| {
        let mut p = class(good);
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        ("no role", json!({"objects": good}), "roleName"),
        ("no objects", json!({"roleName": "app"}), "objects"),
        ("empty objects", class("[]"), "objects"),
        ("bad yaml", class("- objectName: [oops"), "YAML"),
        (
            "both mount keys",
            with(json!({"vaultAuthMountPath": "jwt", "vaultKubernetesMountPath": ""})),
            "vaultKubernetesMountPath",
        ),
        (
            "duplicate",
            class("- {objectName: a, secretPath: s/a}\n- {objectName: a, secretPath: s/b}"),
            "more than one",
        ),
        (
            "absolute name",
            class("- {objectName: /etc/x, secretPath: s/a}"),
            "relative",
        ),
        (
            "dotdot",
            class("- {objectName: ../x, secretPath: s/a}"),
            "safe file name",
        ),
        (
            "unclean",
            class("- {objectName: a//b, secretPath: s/a}"),
            "clean",
        ),
        (
            "encoding",
            class("- {objectName: a, secretPath: s/a, encoding: rot13}"),
            "rot13",
        ),
        (
            "mode",
            class("- {objectName: a, secretPath: s/a, filePermission: 0999}"),
            "filePermission",
        ),
        (
            "mode range",
            class("- {objectName: a, secretPath: s/a, filePermission: 01777}"),
            "filePermission",
        ),
        (
            "method",
            class("- {objectName: a, secretPath: s/a, method: DELETE}"),
            "DELETE",
        ),
        (
            "skip verify",
            with(json!({"vaultSkipTLSVerify": "maybe"})),
            "vaultSkipTLSVerify",
        ),
        (
            "address",
            with(json!({"vaultAddress": "not a url"})),
            "vaultAddress",
        ),
    ];
    for (name, params, needle) in &cases {
        let err = e.mount(params.clone()).await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{name}: {}",
            err.message()
        );
        assert!(
            err.message().contains(needle),
            "{name}: {:?} lacks {needle:?}",
            err.message()
        );
    }
    // Malformed driver fields.
    let mut req = e.pod.request(class(good));
    req.attributes = "{not json".into();
    assert_eq!(
        e.client.mount(req).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let mut req = e.pod.request(class(good));
    req.secrets = "[]".into();
    assert_eq!(
        e.client.mount(req).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let mut req = e.pod.request(class(good));
    req.permission = "-1".into();
    assert_eq!(
        e.client.mount(req).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    // No token for the audience.
    let req = e.pod.request_with(class(good), None, false);
    let err = e.client.mount(req).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("audience \"vault\""),
        "{}",
        err.message()
    );
    let req = e
        .pod
        .request_with(class(good), Some(("other", e.pod.token("other"))), false);
    assert_eq!(
        e.client.mount(req).await.unwrap_err().code(),
        Code::FailedPrecondition
    );

    assert_eq!(
        e.logins(),
        0,
        "Vault was called for a request that could only fail"
    );
    // Still serving, on the same connection.
    let resp = e.mount(class(good)).await.unwrap();
    assert_eq!(file_str(&resp, "k"), "v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_key_empty_answer_and_missing_path() {
    let e = env().await;
    e.bao
        .write("secret/data/app", json!({"data": {"password": "p"}}))
        .await;
    let err = e
        .mount(class(
            "- {objectName: k, secretPath: secret/data/app, secretKey: pasword}",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message().contains("\"password\"") && !err.message().contains("\"p\""),
        "{}",
        err.message()
    );
    let err = e
        .mount(class(
            "- {objectName: k, secretPath: secret/data/nope, secretKey: k}",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // A KV v1 write answers 204 No Content: the Go provider panics on that; we explain.
    let err = e
        .mount(class(
            "- {objectName: k, secretPath: kv/scratch, method: PUT, secretArgs: {a: b}}",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("204"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_change_exactly_when_content_changes() {
    let e = env().await;
    e.bao
        .write("secret/data/a", json!({"data": {"k": "1"}}))
        .await;
    e.bao
        .write("secret/data/b", json!({"data": {"k": "1"}}))
        .await;
    let objects = "- {objectName: a, secretPath: secret/data/a, secretKey: k}\n- {objectName: b, secretPath: secret/data/b, secretKey: k}";
    let first = e.mount(class(objects)).await.unwrap();
    let second = e.mount(class(objects)).await.unwrap();
    assert_eq!(version(&first, "a"), version(&second, "a"));
    assert_eq!(version(&first, "b"), version(&second, "b"));
    assert_ne!(
        version(&first, "a"),
        version(&first, "b"),
        "same content, different objects"
    );
    e.bao
        .write("secret/data/a", json!({"data": {"k": "2"}}))
        .await;
    let third = e.mount(class(objects)).await.unwrap();
    assert_ne!(version(&first, "a"), version(&third, "a"));
    assert_eq!(version(&first, "b"), version(&third, "b"));
    // Back to the old content: back to the old version.
    e.bao
        .write("secret/data/a", json!({"data": {"k": "1"}}))
        .await;
    let fourth = e.mount(class(objects)).await.unwrap();
    assert_eq!(version(&first, "a"), version(&fourth, "a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_down_or_sealed_is_unavailable_and_nothing_leaks() {
    let mut e = env().await;
    e.bao
        .write(
            "secret/data/app",
            json!({"data": {"password": "hunter2-secret-value"}}),
        )
        .await;
    let objects = "- {objectName: p, secretPath: secret/data/app, secretKey: password}";
    let token = e.pod.token("vault");
    let req = e
        .pod
        .request_with(class(objects), Some(("vault", token.clone())), false);
    assert_eq!(
        file_str(&e.client.mount(req.clone()).await.unwrap(), "p"),
        "hunter2-secret-value"
    );
    // A failing read after login: the token must not leak either.
    let err = e
        .mount(class(
            "- {objectName: p, secretPath: secret/data/none, secretKey: x}",
        ))
        .await
        .unwrap_err();
    assert!(!err.message().contains(&token));

    e.bao.write("sys/seal", json!({})).await;
    let err = e.client.mount(req.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    assert!(err.message().contains("sealed"), "{}", err.message());

    e.bao.kill();
    let err = e.client.mount(req.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    assert!(
        err.message().contains("cannot reach Vault"),
        "{}",
        err.message()
    );

    let log = e.provider.log_text();
    assert!(log.contains("mounted"), "trace log was written: {log}");
    for secret in [token.as_str(), "hunter2-secret-value", ROOT_TOKEN] {
        assert!(!log.contains(secret), "log holds a secret");
    }
    for part in token.split('.') {
        assert!(
            !log.contains(part),
            "log holds part of the service-account token"
        );
    }
    assert!(
        !log.contains("\"s."),
        "log holds something shaped like a Vault token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_mounts_on_one_connection() {
    let e = env().await;
    e.bao
        .write("secret/data/app", json!({"data": {"k": "v"}}))
        .await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = e.client.clone();
        let req = e.pod.request(class(&format!(
            "- {{objectName: f{i}, secretPath: secret/data/app, secretKey: k}}"
        )));
        tasks.push(tokio::spawn(async move { client.mount(req).await }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let resp = t.await.unwrap().unwrap();
        assert_eq!(file_str(&resp, &format!("f{i}")), "v");
    }
    let v = e.client.version().await.unwrap();
    assert_eq!(v.version, "v1alpha1");
    assert_eq!(v.runtime_name, "vault-csi-provider");
}
