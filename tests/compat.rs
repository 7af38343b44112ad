//! Drop-in compatibility with the Go provider: TLS, namespaces, unix:// addresses, settings
//! precedence, self-requested tokens, shared object versions, token reuse, several sockets.
//! Real OpenBao throughout; the Kubernetes API is the stand-in, reached through KUBECONFIG.

mod common;

use common::certs::TestPki;
use common::kube::{self, KubeApi, PROVIDER_NAMESPACE};
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tonic::Code;

const READ_ALL: &str = r#"path "secret/data/*" { capabilities = ["read"] }"#;

fn class(extra: Value) -> Value {
    let mut p = json!({
        "roleName": "app",
        "vaultAuthMountPath": "jwt",
        "objects": "- {objectName: k, secretPath: secret/data/app, secretKey: k}",
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

/// jwt auth with role `app` for default/app, and secret/data/app = {k: value}.
async fn prepare(bao: &OpenBao, value: &str) {
    bao.policy("app", READ_ALL).await;
    bao.enable_jwt("jwt").await;
    bao.jwt_role("jwt", "app", "default", "app", &["app"]).await;
    bao.write("secret/data/app", json!({"data": {"k": value}}))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_ca_file_directory_server_name_skip_verify_and_wrong_ca() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("dev-tls");
    std::fs::create_dir(&certs).unwrap();
    let bao = OpenBao::start_with(&[
        "-dev-tls",
        &format!("-dev-tls-cert-dir={}", certs.display()),
    ])
    .await;
    prepare(&bao, "over-tls").await;
    let ca = certs.join("vault-ca.pem");
    let ca_dir = dir.path().join("ca-dir");
    std::fs::create_dir(&ca_dir).unwrap();
    std::fs::copy(&ca, ca_dir.join("openbao.pem")).unwrap();
    let wrong = dir.path().join("wrong-ca.pem");
    std::fs::write(&wrong, include_str!("fixtures/kube-ca.crt")).unwrap();

    // CA from the flag.
    let p = ProviderProcess::start(
        &bao.addr,
        &[&format!("-vault-tls-ca-cert={}", ca.display())],
    )
    .await;
    let c = p.client().await;
    let pod = Pod::new("default", "app");
    assert_eq!(
        file_str(&c.mount(pod.request(class(json!({})))).await.unwrap(), "k"),
        "over-tls"
    );
    // A class's wrong CA wins over the flag's and fails, naming the certificate problem.
    let err = c
        .mount(pod.request(class(
            json!({"vaultCACertPath": wrong.display().to_string()}),
        )))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert!(
        err.message().contains("invalid peer certificate")
            && err.message().contains("UnknownIssuer"),
        "{}",
        err.message()
    );
    // A server name the certificate does not carry.
    let err = c
        .mount(pod.request(class(json!({"vaultTLSServerName": "wrong.example.com"}))))
        .await
        .unwrap_err();
    assert!(
        err.message()
            .contains("not valid for name \"wrong.example.com\""),
        "{}",
        err.message()
    );
    // One it does carry, while connecting by IP.
    let ok = c
        .mount(pod.request(class(json!({"vaultTLSServerName": "localhost"}))))
        .await
        .unwrap();
    assert_eq!(file_str(&ok, "k"), "over-tls");

    // No CA configured: system roots do not know this CA.
    let p = ProviderProcess::start(&bao.addr, &[]).await;
    let c = p.client().await;
    let err = c.mount(pod.request(class(json!({})))).await.unwrap_err();
    assert!(err.message().contains("UnknownIssuer"), "{}", err.message());
    // A CA directory in the class.
    let ok = c
        .mount(pod.request(class(
            json!({"vaultCADirectory": ca_dir.display().to_string()}),
        )))
        .await
        .unwrap();
    assert_eq!(file_str(&ok, "k"), "over-tls");
    // Skip-verify from the class, and from the environment.
    let ok = c
        .mount(pod.request(class(json!({"vaultSkipTLSVerify": "true"}))))
        .await
        .unwrap();
    assert_eq!(file_str(&ok, "k"), "over-tls");
    let p = ProviderProcess::start_env(&bao.addr, &[], &[("VAULT_SKIP_VERIFY", "1")]).await;
    let c = p.client().await;
    // ... which a class cannot turn back on.
    let ok = c
        .mount(pod.request(class(json!({"vaultSkipTLSVerify": "false"}))))
        .await
        .unwrap();
    assert_eq!(file_str(&ok, "k"), "over-tls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_listener_requires_the_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::create(dir.path());
    let port = free_port();
    let listener = format!(
        "listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  tls_cert_file = \"{}\"\n  tls_key_file = \"{}\"\n  tls_client_ca_file = \"{}\"\n  tls_require_and_verify_client_cert = true\n}}\n",
        pki.server_cert.display(),
        pki.server_key.display(),
        pki.ca.display()
    );
    let bao = OpenBao::start_config(&[], &listener).await;
    prepare(&bao, "mutual").await;
    let mtls = format!("https://127.0.0.1:{port}");
    let p = ProviderProcess::start(
        &mtls,
        &[&format!("-vault-tls-ca-cert={}", pki.ca.display())],
    )
    .await;
    let c = p.client().await;
    let pod = Pod::new("default", "app");
    // TLS 1.3 refuses a missing client certificate after the handshake, so the provider
    // sees either the alert (FAILED_PRECONDITION) or a connection closed, reset or canceled
    // (UNAVAILABLE), depending on timing; every one of those must name the likely cause.
    // Several tries, so that more than one of those timings is met.
    for _ in 0..3 {
        let err = c.mount(pod.request(class(json!({})))).await.unwrap_err();
        assert!(
            matches!(err.code(), Code::FailedPrecondition | Code::Unavailable),
            "{:?}: {}",
            err.code(),
            err.message()
        );
        assert!(
            err.message().contains("client certificate")
                && err.message().contains("vaultTLSClientCertPath"),
            "{}",
            err.message()
        );
    }
    let with_cert = json!({
        "vaultTLSClientCertPath": pki.client_cert.display().to_string(),
        "vaultTLSClientKeyPath": pki.client_key.display().to_string(),
    });
    let ok = c.mount(pod.request(class(with_cert))).await.unwrap();
    assert_eq!(file_str(&ok, "k"), "mutual");
    // The same from flags.
    let p = ProviderProcess::start(
        &mtls,
        &[
            &format!("-vault-tls-ca-cert={}", pki.ca.display()),
            &format!("-vault-tls-client-cert={}", pki.client_cert.display()),
            &format!("-vault-tls-client-key={}", pki.client_key.display()),
        ],
    )
    .await;
    let ok = p
        .client()
        .await
        .mount(pod.request(class(json!({}))))
        .await
        .unwrap();
    assert_eq!(file_str(&ok, "k"), "mutual");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_from_class_flag_and_environment() {
    let bao = OpenBao::start().await;
    prepare(&bao, "root-namespace").await;
    bao.write("sys/namespaces/team-a", json!({})).await;
    bao.api_ns(
        "team-a",
        "PUT",
        "sys/policies/acl/app",
        Some(json!({"policy": READ_ALL})),
    )
    .await;
    bao.enable_jwt_in("team-a", "jwt").await;
    let role = JwtRole {
        mount: "jwt",
        role: "app",
        namespace: "default",
        sa: "app",
        policies: &["app"],
        audience: "vault",
    };
    bao.jwt_role_in("team-a", &role).await;
    bao.api_ns(
        "team-a",
        "PUT",
        "sys/mounts/secret",
        Some(json!({"type": "kv", "options": {"version": "2"}})),
    )
    .await;
    bao.api_ns(
        "team-a",
        "PUT",
        "secret/data/only-here",
        Some(json!({"data": {"k": "team-a-value"}})),
    )
    .await;

    let only_here = "- {objectName: k, secretPath: secret/data/only-here, secretKey: k}";
    let pod = Pod::new("default", "app");
    let p = ProviderProcess::start(&bao.addr, &[]).await;
    let c = p.client().await;
    let resp = c
        .mount(pod.request(class(
            json!({"vaultNamespace": "team-a", "objects": only_here}),
        )))
        .await
        .unwrap();
    assert_eq!(file_str(&resp, "k"), "team-a-value");
    let err = c
        .mount(pod.request(class(json!({"objects": only_here}))))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::NotFound,
        "not in the root namespace: {}",
        err.message()
    );

    // Environment, then flag.
    let p = ProviderProcess::start_env(&bao.addr, &[], &[("VAULT_NAMESPACE", "team-a")]).await;
    let resp = p
        .client()
        .await
        .mount(pod.request(class(json!({"objects": only_here}))))
        .await
        .unwrap();
    assert_eq!(file_str(&resp, "k"), "team-a-value");
    let p = ProviderProcess::start_env(
        &bao.addr,
        &["-vault-namespace=team-a"],
        &[("VAULT_NAMESPACE", "nope")],
    )
    .await;
    let resp = p
        .client()
        .await
        .mount(pod.request(class(json!({"objects": only_here}))))
        .await
        .unwrap();
    assert_eq!(file_str(&resp, "k"), "team-a-value");
    assert!(bao.audit_requests(&bao.audit_log(), |_, p| p == "secret/data/only-here") >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_address_and_address_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let listener = format!(
        "listener \"unix\" {{\n  address = \"{}\"\n}}\n",
        sock.display()
    );
    let bao = OpenBao::start_config(&[], &listener).await;
    prepare(&bao, "via-unix").await;
    let unix = format!("unix://{}", sock.display());
    let pod = Pod::new("default", "app");

    // VAULT_ADDR as the vault-helm chart sets it for an Agent on a Unix socket.
    let p = ProviderProcess::start_env("", &[], &[("VAULT_ADDR", &unix)]).await;
    let resp = p
        .client()
        .await
        .mount(pod.request(class(json!({}))))
        .await
        .unwrap();
    assert_eq!(file_str(&resp, "k"), "via-unix");

    // VAULT_AGENT_ADDR replaces VAULT_ADDR; the flag beats both; the class beats the flag.
    let p = ProviderProcess::start_env(
        "",
        &[],
        &[
            ("VAULT_ADDR", "http://127.0.0.1:1"),
            ("VAULT_AGENT_ADDR", &unix),
        ],
    )
    .await;
    assert!(
        p.client()
            .await
            .mount(pod.request(class(json!({}))))
            .await
            .is_ok()
    );
    let p = ProviderProcess::start_env(&unix, &[], &[("VAULT_ADDR", "http://127.0.0.1:1")]).await;
    let c = p.client().await;
    assert!(c.mount(pod.request(class(json!({})))).await.is_ok());
    let err = c
        .mount(pod.request(class(json!({"vaultAddress": "http://127.0.0.1:1"}))))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let p = ProviderProcess::start_env("http://127.0.0.1:1", &[], &[]).await;
    let resp = p
        .client()
        .await
        .mount(pod.request(class(json!({"vaultAddress": unix}))))
        .await
        .unwrap();
    assert_eq!(file_str(&resp, "k"), "via-unix");
}

/// OpenBao with kubernetes auth through the stand-in, and a provider using the stand-in
/// through KUBECONFIG.
struct KubeEnv {
    bao: OpenBao,
    kube: KubeApi,
    _dir: tempfile::TempDir,
    kubeconfig: String,
}

async fn kube_env() -> KubeEnv {
    let bao = OpenBao::start().await;
    let kube = KubeApi::start().await;
    bao.policy("app", READ_ALL).await;
    bao.enable_kubernetes("kubernetes", &kube.url).await;
    bao.kubernetes_role_aud("kubernetes", "app", "default", "app", &["app"], None)
        .await;
    bao.kubernetes_role_aud(
        "kubernetes",
        "custom",
        "default",
        "app",
        &["app"],
        Some("custom-aud"),
    )
    .await;
    bao.write("secret/data/app", json!({"data": {"k": "v1"}}))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kube.kubeconfig(dir.path()).display().to_string();
    KubeEnv {
        bao,
        kube,
        _dir: dir,
        kubeconfig,
    }
}

impl KubeEnv {
    async fn provider(&self, extra: &[&str]) -> ProviderProcess {
        ProviderProcess::start_env(&self.bao.addr, extra, &[("KUBECONFIG", &self.kubeconfig)]).await
    }
}

/// One Mount of the plain kube class through a fresh connection to `p`.
async fn mount_once(p: &ProviderProcess, pod: &Pod) -> vault_csi_provider::proto::MountResponse {
    p.client()
        .await
        .mount(pod.request(kube_class(json!({}))))
        .await
        .unwrap()
}

fn kube_class(extra: Value) -> Value {
    let mut p = json!({"roleName": "app", "objects": "- {objectName: k, secretPath: secret/data/app, secretKey: k}"});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_request_when_the_driver_sent_none() {
    let e = kube_env().await;
    let p = e.provider(&[]).await;
    let c = p.client().await;
    let pod = Pod::new("default", "app");

    // No token at all, no audience in the class: a TokenRequest without audiences.
    let resp = c
        .mount(pod.request_with(kube_class(json!({})), None, false))
        .await
        .unwrap();
    assert_eq!(file_str(&resp, "k"), "v1");
    let asked = e.kube.requests("POST", "/serviceaccounts/app/token");
    assert_eq!(asked.len(), 1);
    let spec = &asked[0]["spec"];
    assert_eq!(spec["expirationSeconds"], 900);
    assert_eq!(spec["boundObjectRef"]["kind"], "Pod");
    assert_eq!(spec["boundObjectRef"]["name"], pod.name.as_str());
    assert_eq!(spec["boundObjectRef"]["uid"], pod.uid.as_str());
    // None asked for: absent, null (client-go) or empty (k8s-openapi) all mean the API's own.
    assert!(
        spec.get("audiences")
            .is_none_or(|a| a.is_null() || a.as_array().is_some_and(|a| a.is_empty())),
        "no audience unless the class sets one: {spec}"
    );

    // A custom audience the driver did not supply forces a self-requested token for it.
    let pod2 = Pod::new("default", "app");
    let req = pod2.request_with(
        kube_class(json!({"roleName": "custom", "audience": "custom-aud"})),
        Some(("vault", pod2.token("vault"))),
        false,
    );
    let resp = c.mount(req).await.unwrap();
    assert_eq!(file_str(&resp, "k"), "v1");
    let asked = e.kube.requests("POST", "/serviceaccounts/app/token");
    assert_eq!(asked.len(), 2);
    assert_eq!(asked[1]["spec"]["audiences"], json!(["custom-aud"]));
    assert_eq!(asked[1]["spec"]["boundObjectRef"]["uid"], pod2.uid.as_str());

    // Without the RBAC: a clear error naming it.
    e.kube.recorded.lock().unwrap().deny_token_requests = true;
    // (another service account: the first one's Vault token is still held and reused)
    let pod3 = Pod::new("default", "other");
    let err = c
        .mount(pod3.request_with(kube_class(json!({})), None, false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    assert!(
        err.message().contains("create on serviceaccounts/token"),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains("is forbidden"),
        "the API's own text: {}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_shared_through_the_key_secret() {
    let e = kube_env().await;
    // Two nodes start at once against an empty API: both look, both create, one wins.
    e.kube.recorded.lock().unwrap().secret_get_barrier = 2;
    let (a, b) = tokio::join!(e.provider(&[]), e.provider(&[]));
    let pod = Pod::new("default", "app");
    let ra = mount_once(&a, &pod).await;
    let rb = mount_once(&b, &pod).await;
    let va = version(&ra, "k");
    assert_eq!(va.len(), 44);
    assert_eq!(va, version(&rb, "k"), "two nodes agree");
    let creates = e
        .kube
        .requests("POST", &format!("/namespaces/{PROVIDER_NAMESPACE}/secrets"));
    assert_eq!(creates.len(), 2, "both tried to create");
    assert_eq!(creates[0]["immutable"], true);
    let stored = e.kube.recorded.lock().unwrap().secrets.clone();
    assert_eq!(stored.len(), 1, "one key Secret in the end");
    let (key, secret) = stored.iter().next().unwrap();
    assert_eq!(key.1, "vault-csi-provider-hmac-key");
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["key"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes.len(), 32);

    // Held in memory: further mounts do not read the Secret again.
    let gets = e.kube.requests("GET", "/secrets/").len();
    for _ in 0..3 {
        mount_once(&a, &pod).await;
    }
    assert_eq!(e.kube.requests("GET", "/secrets/").len(), gets);

    // A restart keeps them.
    drop(a);
    let a2 = e.provider(&[]).await;
    let r = mount_once(&a2, &pod).await;
    assert_eq!(version(&r, "k"), va);

    // A replaced key Secret changes them (after the provider restarts and reads it).
    {
        let mut rec = e.kube.recorded.lock().unwrap();
        let entry = rec.secrets.values_mut().next().unwrap();
        entry["data"]["key"] = json!(base64::engine::general_purpose::STANDARD.encode([9u8; 32]));
    }
    drop(a2);
    let a3 = e.provider(&[]).await;
    let r = mount_once(&a3, &pod).await;
    assert_ne!(version(&r, "k"), va);

    // -hmac-secret-name picks another Secret.
    let other = e.provider(&["-hmac-secret-name=other-key"]).await;
    mount_once(&other, &pod).await;
    assert!(
        e.kube
            .recorded
            .lock()
            .unwrap()
            .secrets
            .keys()
            .any(|(_, n)| n == "other-key")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_means_empty_versions_and_one_warning() {
    let bao = OpenBao::start().await;
    prepare(&bao, "x").await;
    // No KUBECONFIG, no key file: no way to get the key.
    let p = ProviderProcess::start(
        &bao.addr,
        &["-hmac-secret-name=vault-csi-provider-hmac-key"],
    )
    .await;
    let c = p.client().await;
    let pod = Pod::new("default", "app");
    for _ in 0..3 {
        let r = c.mount(pod.request(class(json!({})))).await.unwrap();
        assert_eq!(file_str(&r, "k"), "x");
        assert_eq!(r.object_version.len(), 1);
        assert_eq!(version(&r, "k"), "");
    }
    assert_eq!(
        p.log_text().matches("no object-version key").count(),
        1,
        "{}",
        p.log_text()
    );
}

/// Mounts of pods whose token came from the driver need nothing from the Kubernetes API:
/// with `-hmac-secret-name` and an API server that refuses connections or accepts them and
/// never answers, each is answered within 2 s, with empty versions; the key is loaded in
/// the background, and Mounts get versions once the API answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sick_kubernetes_api_never_holds_up_a_mount() {
    let bao = OpenBao::with_app_role().await;
    let class = json!({"roleName": "app", "vaultAuthMountPath": "jwt",
        "objects": "- {objectName: k, secretPath: secret/data/app, secretKey: k}"});
    let refusing = format!("http://127.0.0.1:{}", free_port());
    let hung = kube::HungApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    for (name, url) in [("refusing", refusing.as_str()), ("hung", hung.url.as_str())] {
        let kubeconfig = kube::kubeconfig_for(url, dir.path()).display().to_string();
        let p = ProviderProcess::start_env(
            &bao.addr,
            &["-hmac-secret-name=vault-csi-provider-hmac-key"],
            &[("KUBECONFIG", &kubeconfig)],
        )
        .await;
        let c = p.client().await;
        let pod = Pod::new("default", "app");
        // The first Mount, a burst of five at once, then a few more.
        let mut waits = Vec::new();
        for burst in [1, 5, 1, 1] {
            let started = Instant::now();
            let calls: Vec<_> = (0..burst)
                .map(|_| c.mount_within(pod.request(class.clone()), Duration::from_secs(10)))
                .collect();
            for r in futures_util::future::join_all(calls).await {
                let r = r.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(file_str(&r, "k"), "v");
                assert_eq!(version(&r, "k"), "", "{name}: no key, empty versions");
            }
            waits.push(started.elapsed());
        }
        assert!(
            waits.iter().all(|w| *w < Duration::from_secs(2)),
            "{name}: Mounts waited on the API: {waits:?}\n{}",
            p.log_text()
        );
        // A refused connection is known at once (a hung API after the attempt's 10 s).
        if name == "refusing" {
            assert!(
                p.log_text()
                    .contains("cannot load the object-version key yet"),
                "{name}: {}",
                p.log_text()
            );
        }
    }

    // Hung at first, then answering: the key arrives in the background.
    let api = kube::KubeApi::start().await;
    api.recorded.lock().unwrap().hang_secrets = true;
    let kubeconfig = api.kubeconfig(dir.path()).display().to_string();
    let p = ProviderProcess::start_env(
        &bao.addr,
        &["-hmac-secret-name=vault-csi-provider-hmac-key"],
        &[("KUBECONFIG", &kubeconfig)],
    )
    .await;
    let c = p.client().await;
    let pod = Pod::new("default", "app");
    let started = Instant::now();
    let r = c.mount(pod.request(class.clone())).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(version(&r, "k"), "");
    api.recorded.lock().unwrap().hang_secrets = false;
    let started = Instant::now();
    loop {
        let r = c.mount(pod.request(class.clone())).await.unwrap();
        if version(&r, "k").len() == 44 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "the key never arrived: {}",
            p.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(p.log_text().contains("object-version key loaded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_tokens_are_reused_and_relogin_after_revocation() {
    let bao = OpenBao::start().await;
    prepare(&bao, "x").await;
    let audit = bao.audit_log();
    let logins = || bao.audit_requests(&audit, |_, p| p == "auth/jwt/login");
    let pod = Pod::new("default", "app");

    let p = ProviderProcess::start(&bao.addr, &[]).await;
    let c = p.client().await;
    for _ in 0..3 {
        c.mount(pod.request(class(json!({})))).await.unwrap();
    }
    assert_eq!(logins(), 1, "one login, reused");
    // Another pod of the same service account shares the identity.
    c.mount(Pod::new("default", "app").request(class(json!({}))))
        .await
        .unwrap();
    assert_eq!(logins(), 1);
    // Another role is another identity.
    bao.jwt_role("jwt", "app2", "default", "app", &["app"])
        .await;
    c.mount(pod.request(class(json!({"roleName": "app2"}))))
        .await
        .unwrap();
    assert_eq!(logins(), 2);
    // Revoked behind our back: one more login, and the mount still works.
    bao.write("sys/leases/revoke-prefix/auth/jwt/login", json!({}))
        .await;
    let r = c.mount(pod.request(class(json!({})))).await.unwrap();
    assert_eq!(file_str(&r, "k"), "x");
    assert_eq!(logins(), 3);

    // -cache-size=0 disables reuse.
    let p = ProviderProcess::start(&bao.addr, &["-cache-size=0"]).await;
    let c = p.client().await;
    let before = logins();
    for _ in 0..3 {
        c.mount(pod.request(class(json!({})))).await.unwrap();
    }
    assert_eq!(logins(), before + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_serves_vault_and_openbao_sockets() {
    let bao = OpenBao::start().await;
    prepare(&bao, "x").await;
    bao.jwt_role_in(
        "",
        &JwtRole {
            mount: "jwt",
            role: "bao",
            namespace: "default",
            sa: "app",
            policies: &["app"],
            audience: "openbao",
        },
    )
    .await;
    let dir2 = tempfile::tempdir().unwrap();
    let v2 = dir2.path().join("vault.sock");
    let b2 = dir2.path().join("openbao.sock");
    // The flag repeated, as its help allows (a comma-separated list is the other form).
    let first = format!("-endpoint={}", v2.display());
    let second = format!("-endpoint={}", b2.display());
    let _both =
        ProviderProcess::start_at(&bao.addr, &[&first, &second], &[], dir2, v2.clone()).await;
    let pod = Pod::new("default", "app");
    let via_vault = Client::connect(&v2)
        .await
        .mount(pod.request(class(json!({}))))
        .await
        .unwrap();
    assert_eq!(file_str(&via_vault, "k"), "x");
    // On openbao.sock a class without audience uses the driver's "openbao" token, as the fork does.
    let req = pod.request_with(
        class(json!({"roleName": "bao"})),
        Some(("openbao", pod.token("openbao"))),
        false,
    );
    let via_bao = Client::connect(&b2).await.mount(req).await.unwrap();
    assert_eq!(file_str(&via_bao, "k"), "x");
}
