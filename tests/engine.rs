//! The engine's behaviour, counted, not timed: logins per identity, coalesced reads, lease
//! and certificate reuse until two thirds of their life and replacement after, token
//! renewal before expiry, and the bound on concurrent requests to Vault.

mod common;

use common::fake_vault::{Behaviour, FakeVault};
use common::postgres::Postgres;
use common::*;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::Duration;

const POLICY: &str = r#"
path "secret/data/*" { capabilities = ["read"] }
path "pki/issue/*" { capabilities = ["create", "update"] }
path "database/creds/*" { capabilities = ["read"] }
"#;

/// OpenBao with jwt auth, role `app` for every service account named sa-*, token TTL as given.
async fn openbao(token_ttl: &str) -> OpenBao {
    let bao = OpenBao::start().await;
    bao.policy("app", POLICY).await;
    bao.enable_jwt("jwt").await;
    bao.write(
        "auth/jwt/role/app",
        json!({
            "role_type": "jwt", "bound_audiences": ["vault"], "user_claim": "sub",
            "bound_claims_type": "glob", "bound_claims": {"sub": "system:serviceaccount:default:sa-*"},
            "token_policies": ["app"], "token_ttl": token_ttl, "token_max_ttl": "1h",
        }),
    )
    .await;
    bao.write("secret/data/app", json!({"data": {"k": "v"}}))
        .await;
    bao
}

fn class(objects: &str) -> Value {
    json!({"roleName": "app", "vaultAuthMountPath": "jwt", "objects": objects})
}

const KV: &str = "- {objectName: k, secretPath: secret/data/app, secretKey: k}";

fn count(bao: &OpenBao, op: &str, path: &str) -> usize {
    bao.audit_requests(&bao.audit_log(), |o, p| {
        (op.is_empty() || o == op) && p == path
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_login_per_identity_in_a_burst() {
    let bao = openbao("1h").await;
    let p = ProviderProcess::start(&bao.addr, &[]).await;
    let c = p.client().await;
    let mut tasks = Vec::new();
    for sa in 0..8 {
        for _ in 0..6 {
            let c = c.clone();
            let req = Pod::new("default", &format!("sa-{sa}")).request(class(KV));
            tasks.push(tokio::spawn(async move { c.mount(req).await }));
        }
    }
    for t in tasks {
        assert_eq!(file_str(&t.await.unwrap().unwrap(), "k"), "v");
    }
    assert_eq!(
        count(&bao, "", "auth/jwt/login"),
        8,
        "one login per service account, not per pod"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_reads_coalesce() {
    // Exact, against a Vault whose reads take a while: 20 pods of one service account.
    let vault = FakeVault::start(Behaviour {
        read_delay: Duration::from_millis(400),
        ..Default::default()
    })
    .await;
    let p = ProviderProcess::start(&vault.addr, &[]).await;
    let c = p.client().await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let c = c.clone();
        let req = Pod::new("default", "sa-1").request(class(KV));
        tasks.push(tokio::spawn(async move { c.mount(req).await }));
    }
    for t in tasks {
        assert_eq!(file_str(&t.await.unwrap().unwrap(), "k"), "v");
    }
    assert_eq!(vault.logins.load(Ordering::SeqCst), 1);
    assert_eq!(
        vault.reads.load(Ordering::SeqCst),
        1,
        "20 identical reads in flight became one"
    );
    // Another service account is another identity: its own read.
    c.mount(Pod::new("default", "sa-2").request(class(KV)))
        .await
        .unwrap();
    assert_eq!(vault.reads.load(Ordering::SeqCst), 2);

    // With OpenBao: static KV is read fresh every Mount by default, and shared inside a window.
    let bao = openbao("1h").await;
    let p = ProviderProcess::start(&bao.addr, &[]).await;
    let c = p.client().await;
    for _ in 0..5 {
        c.mount(Pod::new("default", "sa-1").request(class(KV)))
            .await
            .unwrap();
    }
    assert_eq!(count(&bao, "read", "secret/data/app"), 5);
    let p = ProviderProcess::start(&bao.addr, &["-read-share-window=60s"]).await;
    let c = p.client().await;
    for _ in 0..5 {
        c.mount(Pod::new("default", "sa-1").request(class(KV)))
            .await
            .unwrap();
    }
    assert_eq!(
        count(&bao, "read", "secret/data/app"),
        6,
        "one read served five mounts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_are_reused_until_two_thirds_then_replaced() {
    let bao = openbao("1h").await;
    let pg = Postgres::start();
    pg.serve_openbao(&bao, "app", "9s").await;
    let p = ProviderProcess::start(&bao.addr, &[]).await;
    let c = p.client().await;
    let objects = "- {objectName: user, secretPath: database/creds/app, secretKey: username}\n- {objectName: pass, secretPath: database/creds/app, secretKey: password}";
    let pod = Pod::new("default", "sa-db");
    let first = c.mount(pod.request(class(objects))).await.unwrap();
    assert!(pg.can_login(file_str(&first, "user"), file_str(&first, "pass")));
    // Rotation polls inside two thirds of the 9 s lease: no new lease, same files and versions.
    for _ in 0..3 {
        let again = c.mount(pod.request(class(objects))).await.unwrap();
        assert_eq!(file(&again, "user"), file(&first, "user"));
        assert_eq!(again.object_version, first.object_version);
    }
    assert_eq!(count(&bao, "read", "database/creds/app"), 1);
    // Another pod of the same service account gets its own credentials.
    let other = c
        .mount(Pod::new("default", "sa-db").request(class(objects)))
        .await
        .unwrap();
    assert_ne!(file(&other, "user"), file(&first, "user"));
    assert_eq!(count(&bao, "read", "database/creds/app"), 2);
    // Past two thirds (6 s): replaced, and the version says so.
    tokio::time::sleep(Duration::from_millis(6500)).await;
    let later = c.mount(pod.request(class(objects))).await.unwrap();
    assert_ne!(file(&later, "user"), file(&first, "user"));
    assert_ne!(version(&later, "user"), version(&first, "user"));
    assert_eq!(count(&bao, "read", "database/creds/app"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_reused_until_two_thirds_of_validity() {
    let bao = openbao("1h").await;
    bao.enable_pki(
        "test-root",
        "web",
        json!({"allow_any_name": true, "ttl": "9s", "max_ttl": "1h"}),
    )
    .await;
    let p = ProviderProcess::start(&bao.addr, &[]).await;
    let c = p.client().await;
    let objects = "- {objectName: tls.crt, secretPath: pki/issue/web, method: PUT, secretArgs: {common_name: a.example.com}, secretKey: certificate}";
    let pod = Pod::new("default", "sa-web");
    let first = c.mount(pod.request(class(objects))).await.unwrap();
    for _ in 0..3 {
        let again = c.mount(pod.request(class(objects))).await.unwrap();
        assert_eq!(file(&again, "tls.crt"), file(&first, "tls.crt"));
        assert_eq!(again.object_version, first.object_version);
    }
    assert_eq!(
        count(&bao, "update", "pki/issue/web"),
        1,
        "no re-issue on rotation polls"
    );
    tokio::time::sleep(Duration::from_millis(6500)).await;
    let later = c.mount(pod.request(class(objects))).await.unwrap();
    assert_ne!(file(&later, "tls.crt"), file(&first, "tls.crt"));
    assert_eq!(count(&bao, "update", "pki/issue/web"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_renewed_before_they_expire() {
    let bao = openbao("6s").await;
    let p = ProviderProcess::start(&bao.addr, &[]).await;
    let c = p.client().await;
    let pod = Pod::new("default", "sa-renew");
    c.mount(pod.request(class(KV))).await.unwrap();
    // Past two thirds of 6 s, before the end: renewed, not a new login.
    tokio::time::sleep(Duration::from_millis(4300)).await;
    c.mount(pod.request(class(KV))).await.unwrap();
    assert_eq!(count(&bao, "", "auth/token/renew-self"), 1);
    assert_eq!(count(&bao, "", "auth/jwt/login"), 1);
    // And again on the renewed lease; still one login.
    tokio::time::sleep(Duration::from_millis(4300)).await;
    c.mount(pod.request(class(KV))).await.unwrap();
    assert_eq!(count(&bao, "", "auth/token/renew-self"), 2);
    assert_eq!(count(&bao, "", "auth/jwt/login"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_to_vault_stay_within_the_bound() {
    let vault = FakeVault::start(Behaviour {
        login_delay: Duration::from_millis(100),
        read_delay: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let p = ProviderProcess::start(&vault.addr, &["-vault-concurrency=3"]).await;
    let c = p.client().await;
    let mut tasks = Vec::new();
    for i in 0..30 {
        let c = c.clone();
        // Distinct service accounts: nothing coalesces, everything queues.
        let req = Pod::new("default", &format!("sa-{i}")).request(class(KV));
        tasks.push(tokio::spawn(async move { c.mount(req).await }));
    }
    for t in tasks {
        assert!(t.await.unwrap().is_ok());
    }
    assert_eq!(
        vault.logins.load(Ordering::SeqCst) + vault.reads.load(Ordering::SeqCst),
        60
    );
    let max = vault.max_in_flight.load(Ordering::SeqCst);
    assert!(
        (1..=3).contains(&max),
        "at most 3 requests at once, saw {max}"
    );

    // Without the bound the same burst reaches further (the test can fail).
    let vault2 = FakeVault::start(Behaviour {
        login_delay: Duration::from_millis(100),
        read_delay: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let p2 = ProviderProcess::start(&vault2.addr, &["-vault-concurrency=1000"]).await;
    let c2 = p2.client().await;
    let mut tasks = Vec::new();
    for i in 0..30 {
        let c = c2.clone();
        let req = Pod::new("default", &format!("sa-{i}")).request(class(KV));
        tasks.push(tokio::spawn(async move { c.mount(req).await }));
    }
    for t in tasks {
        assert!(t.await.unwrap().is_ok());
    }
    assert!(vault2.max_in_flight.load(Ordering::SeqCst) > 3);
}
