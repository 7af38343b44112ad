//! The Go provider's end-to-end scenarios, reproduced against OpenBao with SecretProviderClass
//! files like theirs (tests/fixtures/go-e2e). Kubernetes auth reviews tokens through the API
//! stand-in; the database engine talks to a real PostgreSQL.

mod common;

use common::e2e::{self, NS, SA};
use common::kube::KubeApi;
use common::postgres::Postgres;
use common::*;
use serde_json::{Value, json};
use tonic::Code;
use vault_csi_provider::proto::MountRequest;

struct Env {
    bao: OpenBao,
    _kube: KubeApi,
    provider: ProviderProcess,
    client: Client,
    pg: Option<Postgres>,
    _dir: tempfile::TempDir,
}

async fn env(with_db: bool) -> Env {
    let bao = OpenBao::start().await;
    let kube = KubeApi::start().await;
    e2e::seed(&bao, &kube.url, "vault").await;
    let pg = if with_db {
        let pg = Postgres::start();
        e2e::seed_database(&bao, &pg).await;
        Some(pg)
    } else {
        None
    };

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kube.kubeconfig(dir.path()).display().to_string();
    let provider = ProviderProcess::start_env(&bao.addr, &[], &[("KUBECONFIG", &kubeconfig)]).await;
    let client = provider.client().await;
    Env {
        bao,
        _kube: kube,
        provider,
        client,
        pg,
        _dir: dir,
    }
}

/// The class's parameters from a fixture file.
fn class(file: &str) -> Value {
    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/go-e2e/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let params = &doc["spec"]["parameters"];
    serde_json::to_value(params).unwrap()
}

/// As the driver sends it: the pod's token for audience "vault" (the CSIDriver's tokenRequests).
fn request(file: &str) -> MountRequest {
    Pod::new(NS, SA).request(class(file))
}

fn cert_cn(pem: &str, cn: &str) -> bool {
    use base64::Engine;
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    der.first() == Some(&0x30) && der.windows(cn.len()).any(|w| w == cn.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_inline_with_file_permission() {
    let e = env(false).await;
    let r = e.client.mount(request("kv.yaml")).await.unwrap();
    assert_eq!(file_str(&r, "secret-1"), "hello1");
    assert_eq!(file_str(&r, "secret-2"), "hello2");
    assert_eq!(mode(&r, "secret-1"), 0o624);
    assert_eq!(mode(&r, "secret-2"), 0o644);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_custom_paths_with_base64() {
    let e = env(false).await;
    let r = e
        .client
        .mount(request("kv-custom-paths.yaml"))
        .await
        .unwrap();
    assert_eq!(file_str(&r, "secret-1"), "hello1");
    assert_eq!(file_str(&r, "secret-2"), "hello2");
    assert_eq!(file_str(&r, "secret-3"), "hello3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pki_issue_whole_response() {
    let e = env(false).await;
    let r = e.client.mount(request("pki.yaml")).await.unwrap();
    let v: Value = serde_json::from_str(file_str(&r, "certs")).unwrap();
    let cert = v["data"]["certificate"].as_str().unwrap();
    assert!(cert_cn(cert, "www.example.com"), "{cert}");
    assert!(
        v["data"]["private_key"]
            .as_str()
            .unwrap()
            .contains("PRIVATE KEY")
    );
    assert!(
        v["data"]["issuing_ca"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_credentials_come_from_one_lease() {
    let e = env(true).await;
    let r = e.client.mount(request("db.yaml")).await.unwrap();
    let user = file_str(&r, "dbUsername");
    let pass = file_str(&r, "dbPassword");
    assert!(user.starts_with("v-"), "{user}");
    let pg = e.pg.as_ref().unwrap();
    assert!(
        pg.can_login(user, pass),
        "username and password are one working pair"
    );
    let leases = e
        .bao
        .api("LIST", "sys/leases/lookup/database/creds/db-role", None)
        .await;
    assert_eq!(
        leases["data"]["keys"].as_array().unwrap().len(),
        1,
        "one lease for both files"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_pki_and_database_in_one_class() {
    let e = env(true).await;
    let r = e.client.mount(request("all.yaml")).await.unwrap();
    assert_eq!(r.files.len(), 4);
    assert_eq!(r.object_version.len(), 4);
    assert_eq!(file_str(&r, "secret-1"), "hello1");
    let v: Value = serde_json::from_str(file_str(&r, "certs")).unwrap();
    assert!(cert_cn(
        v["data"]["certificate"].as_str().unwrap(),
        "www.example.com"
    ));
    assert!(
        e.pg.as_ref()
            .unwrap()
            .can_login(file_str(&r, "dbUsername"), file_str(&r, "dbPassword"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_not_allowed_by_the_role() {
    let e = env(false).await;
    let stranger = Pod::new(NS, "not-nginx");
    let err = e
        .client
        .mount(stranger.request(class("kv.yaml")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message()
            .contains("service account name not authorized"),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_in_a_vault_namespace() {
    let e = env(false).await;
    e2e::seed_namespace(&e.bao, &e._kube.url, e2e::POLICY).await;
    let r = e.client.mount(request("namespace.yaml")).await.unwrap();
    assert_eq!(file_str(&r, "secret-1"), "hello-namespaces");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_audience_forces_a_self_requested_token() {
    let e = env(false).await;
    let r = e
        .client
        .mount(request("custom-audience.yaml"))
        .await
        .unwrap();
    assert_eq!(file_str(&r, "secret"), "hello-custom-audience");
    let asked = e._kube.requests(
        "POST",
        &format!("/namespaces/{NS}/serviceaccounts/{SA}/token"),
    );
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0]["spec"]["audiences"], json!(["custom-audience"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_stable_and_follow_content() {
    let e = env(false).await;
    let first = e.client.mount(request("kv.yaml")).await.unwrap();
    let second = e.client.mount(request("kv.yaml")).await.unwrap();
    assert_eq!(first.object_version, second.object_version);
    assert!(first.object_version.iter().all(|v| v.version.len() == 44));
    e.bao
        .write(
            "secret/data/kv1",
            json!({"data": {"bar1": "hello1-rotated"}}),
        )
        .await;
    let third = e.client.mount(request("kv.yaml")).await.unwrap();
    assert_ne!(version(&first, "secret-1"), version(&third, "secret-1"));
    assert_eq!(version(&first, "secret-2"), version(&third, "secret-2"));
    assert!(e.provider.log_text().contains("object-version key loaded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_auth() {
    let e = env(false).await;
    let r = e.client.mount(request("jwt.yaml")).await.unwrap();
    assert_eq!(file_str(&r, "secret-1"), "hello1");
}
