//! Vault HA: several addresses of one cluster, failover through a leader loss, a node that
//! is gone, sealed nodes, a misbehaving proxy in front of a node, rate-limit quotas, and the
//! bounded lease store. A real three-node OpenBao cluster with raft storage on loopback
//! (`common/raft.rs`); the provider binary through its Unix socket.

mod common;

use common::raft::{FlakyProxy, ProxyMode, RaftCluster};
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tonic::Code;

const READ_ALL: &str = r#"path "secret/data/*" { capabilities = ["read"] }"#;

fn class() -> Value {
    json!({
        "roleName": "app",
        "vaultAuthMountPath": "jwt",
        "objects": "- {objectName: k, secretPath: secret/data/app, secretKey: k}",
    })
}

/// KV v2 at secret/, jwt auth with role `app` for default/app, secret/data/app = {k: v}.
async fn prepare(admin: &Admin) {
    admin
        .write(
            "sys/mounts/secret",
            json!({"type": "kv", "options": {"version": "2"}}),
        )
        .await;
    admin.policy("app", READ_ALL).await;
    admin.enable_jwt("jwt").await;
    admin
        .jwt_role("jwt", "app", "default", "app", &["app"])
        .await;
    admin
        .write("secret/data/app", json!({"data": {"k": "v"}}))
        .await;
}

async fn cluster() -> RaftCluster {
    let c = RaftCluster::start().await;
    prepare(&c.admin().await).await;
    c
}

/// Mounts `n` pods at once, each with `deadline`; returns each outcome and its duration.
async fn burst(
    client: &Client,
    n: usize,
    deadline: Duration,
) -> Vec<(Result<(), tonic::Status>, Duration)> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let pod = Pod::new("default", "app");
            let started = Instant::now();
            let r = c.mount_within(pod.request(class()), deadline).await;
            (
                r.map(|resp| assert_eq!(file_str(&resp, "k"), "v")),
                started.elapsed(),
            )
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_node_killed_with_200_mounts_in_flight() {
    let mut c = cluster().await;
    let p = ProviderProcess::start(&c.addresses(), &[]).await;
    let client = p.client().await;
    let ok = client
        .mount(Pod::new("default", "app").request(class()))
        .await;
    assert!(ok.is_ok(), "{ok:?}");

    let deadline = Duration::from_secs(20);
    let active = c.active().await.expect("an active node");
    let in_flight = {
        let client = client.clone();
        tokio::spawn(async move { burst(&client, 200, deadline).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    c.kill(active);
    let (new_active, election) = c.wait_new_active(active).await;
    let outcomes = in_flight.await.unwrap();

    let mut failed = 0;
    for (r, took) in &outcomes {
        // Every Mount ends with a status before its deadline.
        assert!(*took < deadline, "a Mount took {took:?}, past its deadline");
        if let Err(s) = r {
            failed += 1;
            assert!(
                matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded),
                "{:?}: {}",
                s.code(),
                s.message()
            );
        }
    }
    println!(
        "leader loss: node {active} killed, node {new_active} active after {election:?}; {failed} of 200 Mounts in flight failed"
    );

    // Mounts started after the new leader is elected all succeed.
    let after = burst(&client, 50, deadline).await;
    for (r, _) in &after {
        assert!(r.is_ok(), "after the election: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_gone_before_start_is_remembered() {
    let mut c = cluster().await;
    // The first listed node is gone (a new leader takes over if it was the active one),
    // and a second address answers nothing at all: a stalled node costs a timeout.
    c.kill(0);
    c.wait_new_active(0).await;
    let stalled = FlakyProxy::start(&c.nodes[1].addr, ProxyMode::Stall).await;
    let list = format!(
        "{},{},{},{}",
        c.nodes[0].addr, stalled.addr, c.nodes[1].addr, c.nodes[2].addr
    );
    let p = ProviderProcess::start_env(&list, &[], &[("VAULT_CLIENT_TIMEOUT", "2s")]).await;
    let client = p.client().await;
    let mut times = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let r = client
            .mount_within(
                Pod::new("default", "app").request(class()),
                Duration::from_secs(30),
            )
            .await;
        assert!(r.is_ok(), "{r:?}");
        times.push(started.elapsed());
    }
    // The first Mount found the dead and the stalled node; the others go straight to a
    // node that answers.
    let stalls_before = stalled.requests.load(std::sync::atomic::Ordering::SeqCst);
    for t in &times[1..] {
        // The stalled node costs VAULT_CLIENT_TIMEOUT (2 s) to whoever tries it.
        assert!(
            *t < Duration::from_millis(1800),
            "a later Mount waited: {times:?}"
        );
    }
    assert!(
        stalls_before <= 1,
        "the stalled node was tried {stalls_before} times"
    );
    println!(
        "first Mount {:?}, later ones at most {:?}",
        times[0],
        times[1..].iter().max().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_nodes_are_skipped_and_all_sealed_is_unavailable() {
    let mut c = cluster().await;
    let p = ProviderProcess::start(&c.addresses(), &[]).await;
    let client = p.client().await;
    let active = c.active().await.unwrap();
    let standby = (active + 1) % 3;
    c.restart_sealed(standby).await;
    for _ in 0..5 {
        let r = client
            .mount_within(
                Pod::new("default", "app").request(class()),
                Duration::from_secs(20),
            )
            .await;
        assert!(r.is_ok(), "one node sealed: {r:?}");
    }
    // Every node sealed: UNAVAILABLE, naming each node.
    for i in 0..3 {
        c.restart_sealed(i).await;
    }
    let started = Instant::now();
    let err = client
        .mount_within(
            Pod::new("default", "app").request(class()),
            Duration::from_secs(20),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    for n in &c.nodes {
        assert!(err.message().contains(&n.addr), "{}", err.message());
    }
    assert!(err.message().contains("sealed"), "{}", err.message());
    assert!(started.elapsed() < Duration::from_secs(20));
    // Unsealed again, the same provider mounts again.
    for i in 0..3 {
        c.unseal(i).await;
    }
    for i in 0..3 {
        c.wait_member(i).await;
    }
    let start = Instant::now();
    loop {
        let r = client
            .mount_within(
                Pod::new("default", "app").request(class()),
                Duration::from_secs(20),
            )
            .await;
        if r.is_ok() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{r:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_node_is_skipped_or_named() {
    let c = cluster().await;
    let proxy = FlakyProxy::start(&c.nodes[0].addr, ProxyMode::Forward).await;
    let list = format!("{},{},{}", proxy.addr, c.nodes[1].addr, c.nodes[2].addr);
    let modes = [
        ProxyMode::Status(500),
        ProxyMode::Status(502),
        ProxyMode::Status(503),
        ProxyMode::CutShort,
        ProxyMode::Stall,
    ];
    for mode in modes {
        proxy.set(mode);
        // A fresh provider prefers the first listed node, the proxy.
        let p = ProviderProcess::start_env(&list, &[], &[("VAULT_CLIENT_TIMEOUT", "2s")]).await;
        let before = proxy.requests.load(std::sync::atomic::Ordering::SeqCst);
        let started = Instant::now();
        let r = p
            .client()
            .await
            .mount_within(
                Pod::new("default", "app").request(class()),
                Duration::from_secs(15),
            )
            .await;
        assert!(r.is_ok(), "{mode:?}: {r:?}");
        assert!(started.elapsed() < Duration::from_secs(15));
        let after = proxy.requests.load(std::sync::atomic::Ordering::SeqCst);
        assert!(after > before, "{mode:?}: the proxy was never tried");
    }
    // The proxy as the only address: the right status, within the deadline.
    for (mode, codes) in [
        (ProxyMode::Status(503), &[Code::Unavailable][..]),
        (ProxyMode::Status(502), &[Code::Unavailable][..]),
        (ProxyMode::CutShort, &[Code::Unavailable][..]),
        (
            ProxyMode::Stall,
            &[Code::Unavailable, Code::DeadlineExceeded][..],
        ),
    ] {
        proxy.set(mode);
        let p =
            ProviderProcess::start_env(&proxy.addr, &[], &[("VAULT_CLIENT_TIMEOUT", "2s")]).await;
        let deadline = Duration::from_secs(8);
        let started = Instant::now();
        let err = p
            .client()
            .await
            .mount_within(Pod::new("default", "app").request(class()), deadline)
            .await
            .unwrap_err();
        assert!(
            codes.contains(&err.code()),
            "{mode:?}: {:?} {}",
            err.code(),
            err.message()
        );
        assert!(
            started.elapsed() < deadline,
            "{mode:?}: {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_quotas_are_waited_out_or_named() {
    let bao = OpenBao::with_app_role().await;
    bao.write(
        "sys/quotas/config",
        json!({"enable_rate_limit_response_headers": true}),
    )
    .await;
    let p = ProviderProcess::start(&bao.addr, &["-vault-mount=jwt"]).await;
    let client = p.client().await;
    let class = json!({
        "roleName": "app",
        "objects": "- {objectName: k, secretPath: secret/data/app, secretKey: k}",
    });

    // A short burst over the quota: waited out, every Mount succeeds.
    bao.write(
        "sys/quotas/rate-limit/burst",
        json!({"path": "secret/data/app", "rate": 5, "interval": "1s"}),
    )
    .await;
    // One after another: concurrent identical reads would be coalesced into one.
    for _ in 0..15 {
        let r = client
            .mount_within(
                Pod::new("default", "app").request(class.clone()),
                Duration::from_secs(30),
            )
            .await;
        assert!(r.is_ok(), "burst: {r:?}");
    }
    assert!(
        p.log_text().contains("Vault is rate limiting; waiting"),
        "the burst never met the quota"
    );

    // A quota that blocks for a minute: UNAVAILABLE at once, saying Vault is rate limiting
    // and which path.
    bao.api("DELETE", "sys/quotas/rate-limit/burst", None).await;
    bao.write(
        "sys/quotas/rate-limit/block",
        json!({"path": "secret/data/app", "rate": 1, "interval": "1m", "block_interval": "1m"}),
    )
    .await;
    let mut last = None;
    for _ in 0..4 {
        let started = Instant::now();
        if let Err(e) = client
            .mount_within(
                Pod::new("default", "app").request(class.clone()),
                Duration::from_secs(30),
            )
            .await
        {
            last = Some((e, started.elapsed()));
            break;
        }
    }
    let (err, took) = last.expect("the quota never refused a read");
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    assert!(err.message().contains("rate limit"), "{}", err.message());
    assert!(
        err.message().contains("secret/data/app"),
        "{}",
        err.message()
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_store_is_bounded() {
    let bao = OpenBao::with_app_role().await;
    bao.enable_pki(
        "ha-root",
        "app",
        json!({"allow_any_name": true, "max_ttl": "72h", "key_type": "ec"}),
    )
    .await;
    bao.policy(
        "app",
        r#"path "secret/data/*" { capabilities = ["read"] }
path "pki/issue/app" { capabilities = ["update"] }"#,
    )
    .await;
    let p = ProviderProcess::start(&bao.addr, &["-vault-mount=jwt", "-lease-store-size=10"]).await;
    let client = p.client().await;
    let class = json!({
        "roleName": "app",
        "objects": "- {objectName: crt, secretPath: pki/issue/app, method: PUT, secretArgs: {common_name: a.example, ttl: 72h}, secretKey: certificate}",
    });
    let pods: Vec<Pod> = (0..60).map(|_| Pod::new("default", "app")).collect();
    let mut first = Vec::new();
    let mut rss = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let r = client.mount(pod.request(class.clone())).await.unwrap();
        first.push(file_str(&r, "crt").to_string());
        if i == 19 || i == 59 {
            rss.push(rss_kib(p.child.id()));
        }
    }
    // The newest pods keep their certificates; the oldest were evicted and get new ones.
    let again = |pod: &Pod| {
        let (c, class) = (client.clone(), class.clone());
        let req = pod.request(class);
        async move { file_str(&c.mount(req).await.unwrap(), "crt").to_string() }
    };
    assert_eq!(again(&pods[59]).await, first[59], "kept: the newest pod");
    assert_eq!(again(&pods[55]).await, first[55], "kept");
    assert_ne!(again(&pods[0]).await, first[0], "evicted: the oldest pod");
    let growth = rss[1].saturating_sub(rss[0]);
    println!(
        "lease store: RSS after 20 pods {} KiB, after 60 pods {} KiB",
        rss[0], rss[1]
    );
    assert!(
        growth < 8 * 1024,
        "memory grew by {growth} KiB for 40 more pods"
    );
}
