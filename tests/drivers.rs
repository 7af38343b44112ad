//! Every caller in the field: old drivers' `:authority` forms on one long-lived connection
//! (with the HPACK table churned), the sync controller's call shape, tokens in `secrets`,
//! socket mode and group, and answers too large for the driver.

mod common;

use common::old_driver::{AuthorityForm, channel};
use common::*;
use serde_json::{Value, json};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use tonic::Code;
use vault_csi_provider::proto::VersionRequest;
use vault_csi_provider::proto::csi_driver_provider_client::CsiDriverProviderClient;

fn class() -> Value {
    json!({"roleName": "app", "vaultAuthMountPath": "jwt",
           "objects": "- {objectName: k, secretPath: secret/data/app, secretKey: k}"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_authority_form_on_one_connection_with_a_churned_header_table() {
    let bao = OpenBao::with_app_role().await;
    let p = ProviderProcess::start(&bao.addr, &["-log-level=debug"]).await;
    let pod = Pod::new("default", "app");
    for form in [
        AuthorityForm::Localhost,
        AuthorityForm::RawPath,
        AuthorityForm::PercentEncoded,
    ] {
        let mut client = CsiDriverProviderClient::new(channel(&p.socket, form).await);
        let v = client
            .version(VersionRequest {
                version: "v1alpha1".into(),
            })
            .await;
        assert_eq!(
            v.unwrap_or_else(|e| panic!("{form:?}: {e}"))
                .into_inner()
                .runtime_name,
            "vault-csi-provider"
        );
        let r = client
            .mount(pod.request(class()))
            .await
            .unwrap_or_else(|e| panic!("{form:?}: {e}"));
        assert_eq!(file_str(&r.into_inner(), "k"), "v");

        // 200 concurrent Mounts on this one connection.
        let mut tasks = Vec::new();
        for i in 0..200 {
            let mut c = client.clone();
            let req = pod.request(json!({"roleName": "app", "vaultAuthMountPath": "jwt",
                "objects": format!("- {{objectName: f{i}, secretPath: secret/data/app, secretKey: k}}")}));
            tasks.push(tokio::spawn(async move { (i, c.mount(req).await) }));
        }
        for t in tasks {
            let (i, r) = t.await.unwrap();
            let r = r.unwrap_or_else(|e| panic!("{form:?} concurrent {i}: {e}"));
            assert_eq!(file_str(&r.into_inner(), &format!("f{i}")), "v");
        }

        // 2,000 sequential calls whose metadata changes every time: new HPACK entries push
        // old ones (the authority among them) out of both tables, again and again.
        for i in 0..2000 {
            let mut req = tonic::Request::new(VersionRequest {
                version: "v1alpha1".into(),
            });
            let md = req.metadata_mut();
            md.insert(
                "x-request-id",
                format!("req-{i:06}-{}", "p".repeat(i % 97))
                    .parse()
                    .unwrap(),
            );
            let key: tonic::metadata::MetadataKey<_> =
                format!("x-churn-{}", i % 37).parse().unwrap();
            md.insert(key, format!("{i}").parse().unwrap());
            let result = if i % 100 == 0 {
                client.mount(pod.request(class())).await.map(|_| ())
            } else {
                client.version(req).await.map(|_| ())
            };
            result.unwrap_or_else(|e| panic!("{form:?} sequential call {i}: {e}"));
        }
    }
    assert!(
        p.log_text().contains("path-shaped :authority"),
        "the fix was exercised"
    );
}

/// The frames of a server's HTTP/2 byte stream: (type, payload).
fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while bytes.len() >= 9 {
        let len =
            (usize::from(bytes[0]) << 16) | (usize::from(bytes[1]) << 8) | usize::from(bytes[2]);
        if bytes.len() < 9 + len {
            break;
        }
        out.push((bytes[3], bytes[9..9 + len].to_vec()));
        bytes = &bytes[9 + len..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_an_http2_error_and_the_server_lives_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let bao = OpenBao::with_app_role().await;
    let p = ProviderProcess::start(&bao.addr, &[]).await;
    let mut answers = Vec::new();
    for junk in [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        {
            let mut v = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
            v.extend([
                0, 0, 6, 1, 4, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ]);
            v
        },
        vec![0u8; 100],
    ] {
        let mut s = tokio::net::UnixStream::connect(&p.socket).await.unwrap();
        s.write_all(&junk).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            s.read_to_end(&mut answer),
        )
        .await;
        answers.push(answer);
    }
    // A header block that does not decode gets the server's own HTTP/2 error: a GOAWAY with
    // PROTOCOL_ERROR or COMPRESSION_ERROR (the authority fix passed the bytes through, it did
    // not swallow them).
    let goaway = frames(&answers[1])
        .into_iter()
        .find(|(kind, _)| *kind == 0x7);
    let (_, payload) = goaway.expect("a GOAWAY frame");
    let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
    assert!(code == 0x1 || code == 0x9, "GOAWAY error code {code}");
    let r = p
        .client()
        .await
        .mount(Pod::new("default", "app").request(class()))
        .await
        .unwrap();
    assert_eq!(file_str(&r, "k"), "v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_controller_call_shape_and_tokens_in_secrets() {
    let bao = OpenBao::with_app_role().await;
    let p = ProviderProcess::start(&bao.addr, &[]).await;
    let c = p.client().await;
    // The secrets-store-sync-controller: its own pod, a fake target path, {} secrets, no versions.
    let pod = Pod::new("default", "app");
    let mut req = pod.request(class());
    let mut attrs: Value = serde_json::from_str(&req.attributes).unwrap();
    attrs["csi.storage.k8s.io/pod.name"] = json!("secrets-store-sync-controller-7c9d5-x2x4k");
    attrs["csi.storage.k8s.io/pod.uid"] = json!("7f0e8f6a-1111-4222-8333-944445555666");
    req.attributes = attrs.to_string();
    req.target_path = "/mnt/secrets-store".into();
    req.secrets = "{}".into();
    req.current_object_version.clear();
    let r = c.mount(req).await.unwrap();
    assert_eq!(file_str(&r, "k"), "v");

    // Kubernetes >= 1.35: the token arrives in `secrets`; unknown keys are ignored in both.
    let mut req = pod.request_with(class(), Some(("vault", pod.token("vault"))), true);
    let mut attrs: Value = serde_json::from_str(&req.attributes).unwrap();
    attrs["csi.storage.k8s.io/some.future.key"] = json!("x");
    req.attributes = attrs.to_string();
    let mut secrets: Value = serde_json::from_str(&req.secrets).unwrap();
    secrets["unrelated"] = json!("y");
    req.secrets = secrets.to_string();
    assert!(!req.attributes.contains("serviceAccount.tokens"));
    let r = c.mount(req).await.unwrap();
    assert_eq!(file_str(&r, "k"), "v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_and_group_flags() {
    let bao = OpenBao::with_app_role().await;
    let p = ProviderProcess::start(&bao.addr, &["-socket-mode=0660", "-socket-group=1"]).await;
    let meta = std::fs::metadata(&p.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), 1);
    assert!(p.client().await.version().await.is_ok());
    let default = ProviderProcess::start(&bao.addr, &[]).await;
    assert_eq!(
        std::fs::metadata(&default.socket)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_too_large_for_the_driver_fail_clearly() {
    let bao = OpenBao::with_app_role().await;
    let big = "b".repeat(3 * 1024 * 1024);
    bao.write("secret/data/big", json!({"data": {"k": big}}))
        .await;
    let p = ProviderProcess::start(&bao.addr, &[]).await;
    let c = p.client().await;
    let pod = Pod::new("default", "app");
    let two = json!({"roleName": "app", "vaultAuthMountPath": "jwt", "objects":
        "- {objectName: a, secretPath: secret/data/big, secretKey: k}\n- {objectName: b, secretPath: secret/data/big, secretKey: k}"});
    let err = c.mount(pod.request(two)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message().contains("--max-call-recv-msg-size"),
        "{}",
        err.message()
    );

    // Over 1 MiB but under 4: mounts, with a warning that Secret sync will fail.
    let one = json!({"roleName": "app", "vaultAuthMountPath": "jwt", "objects":
        "- {objectName: a, secretPath: secret/data/big, secretKey: k}"});
    let r = c.mount(pod.request(one)).await.unwrap();
    assert_eq!(file(&r, "a").len(), 3 * 1024 * 1024);
    assert!(
        p.log_text()
            .contains("Kubernetes Secret (secretObjects) will fail")
    );

    // A raised limit lets the larger answer through.
    let p = ProviderProcess::start(&bao.addr, &["-max-response-size=16777216"]).await;
    let two = json!({"roleName": "app", "vaultAuthMountPath": "jwt", "objects":
        "- {objectName: a, secretPath: secret/data/big, secretKey: k}\n- {objectName: b, secretPath: secret/data/big, secretKey: k}"});
    assert_eq!(
        p.client()
            .await
            .mount(pod.request(two))
            .await
            .unwrap()
            .files
            .len(),
        2
    );
}
