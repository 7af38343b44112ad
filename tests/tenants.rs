//! Many tenants, one node agent: what a hostile class, pod or Vault can make the provider
//! do. Every case asserts the status code, that the message is short and names the field,
//! that another pod on the same provider keeps mounting meanwhile, and that the process's
//! resident memory stays under its 64 MiB budget. Real OpenBao, the real socket.

mod common;

use common::fake_vault::{Behaviour, FakeVault};
use common::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tonic::Code;

const BUDGET_KIB: u64 = 64 * 1024;
const OK_OBJECTS: &str = "- {objectName: k, secretPath: secret/data/app, secretKey: k}";

fn class(extra: Value) -> Value {
    let mut p = json!({"roleName": "app", "objects": OK_OBJECTS});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

/// A provider against real OpenBao, and a bystander pod mounting in a loop the whole time.
struct Node {
    bao: OpenBao,
    p: ProviderProcess,
    c: Client,
    stop: Arc<AtomicBool>,
    bystander: Option<tokio::task::JoinHandle<(usize, Duration)>>,
}

impl Node {
    async fn start(flags: &[&str]) -> Node {
        let bao = OpenBao::with_app_role().await;
        let mut all = vec!["-vault-mount=jwt"];
        all.extend_from_slice(flags);
        let p = ProviderProcess::start(&bao.addr, &all).await;
        let c = p.client().await;
        let stop = Arc::new(AtomicBool::new(false));
        let (bc, s) = (c.clone(), stop.clone());
        let bystander = tokio::spawn(async move {
            let (mut n, mut slowest) = (0, Duration::ZERO);
            let pod = Pod::new("default", "app");
            while !s.load(Ordering::SeqCst) {
                let t = Instant::now();
                let r = bc
                    .mount_within(pod.request(class(json!({}))), Duration::from_secs(10))
                    .await;
                assert!(r.is_ok(), "the bystander pod failed: {r:?}");
                slowest = slowest.max(t.elapsed());
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (n, slowest)
        });
        Node {
            bao,
            p,
            c,
            stop,
            bystander: Some(bystander),
        }
    }

    /// A Mount of `params` by a pod of default/app; returns its error.
    async fn refused(&self, params: Value) -> tonic::Status {
        let pod = Pod::new("default", "app");
        self.c
            .mount_within(pod.request(params), Duration::from_secs(20))
            .await
            .expect_err("the hostile Mount succeeded")
    }

    fn rss(&self) -> u64 {
        rss_kib(self.p.child.id())
    }

    /// Stops the bystander: it kept mounting, none took long; memory stayed in budget.
    async fn finish(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let (n, slowest) = self.bystander.take().unwrap().await.unwrap();
        assert!(n > 0, "the bystander never mounted");
        assert!(
            slowest < Duration::from_secs(3),
            "a bystander Mount took {slowest:?}"
        );
        let rss = self.rss();
        assert!(rss < BUDGET_KIB, "resident memory {rss} KiB");
        let _ = &self.bao;
    }
}

/// The message is short, names `field`, and quotes at most 64 bytes of input.
fn short_and_named(s: &tonic::Status, code: Code, field: &str) {
    assert_eq!(s.code(), code, "{}", s.message());
    assert!(s.message().len() <= 1100, "{} bytes", s.message().len());
    assert!(
        s.message().contains(field),
        "{field} not named: {}",
        s.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_files_that_are_devices_or_fifos_fail_fast() {
    let n = Node::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for path in ["/dev/zero".to_string(), fifo.display().to_string()] {
        let t = Instant::now();
        let e = n.refused(class(json!({"vaultCACertPath": path}))).await;
        short_and_named(&e, Code::FailedPrecondition, "CA file");
        assert!(
            e.message().contains("not a regular file"),
            "{}",
            e.message()
        );
        // Refused from its file type: milliseconds; read, /dev/zero and a FIFO never end.
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{path}: {:?}",
            t.elapsed()
        );
    }
    let big = dir.path().join("big.pem");
    std::fs::write(&big, vec![b'A'; 2 * 1024 * 1024]).unwrap();
    let e = n.refused(class(json!({"vaultCACertPath": big}))).await;
    assert!(e.message().contains("more than"), "{}", e.message());
    assert!(
        !e.message().contains("AAAAAAAA"),
        "the file's content is shown"
    );
    n.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tls_settings_and_huge_parameters_stay_in_budget() {
    let n = Node::start(&[]).await;
    // Each TLS server name is its own HTTP client: kept in a cache with a byte budget.
    for i in 0..300 {
        let r =
            n.c.mount(Pod::new("default", "app").request(class(
                json!({"vaultTLSServerName": format!("name-{i}.example")}),
            )))
            .await;
        assert!(r.is_ok(), "{r:?}");
    }
    assert!(
        n.rss() < BUDGET_KIB,
        "after 300 TLS settings: {} KiB",
        n.rss()
    );
    // A request of megabytes is refused from its gRPC frame's length, before it is read.
    let e = n
        .refused(class(json!({"roleName": "r".repeat(1024 * 1024)})))
        .await;
    assert!(
        matches!(e.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{:?}: {}",
        e.code(),
        e.message()
    );
    assert!(e.message().len() < 1100);
    // Parameters of 100 KiB: refused, with a short message naming the parameter.
    let huge = "r".repeat(100 * 1024);
    for (key, field) in [
        ("roleName", "roleName"),
        ("vaultNamespace", "vaultNamespace"),
        ("vaultTLSServerName", "vaultTLSServerName"),
        ("audience", "audience"),
    ] {
        for _ in 0..5 {
            let e = n.refused(class(json!({ key: huge }))).await;
            short_and_named(&e, Code::InvalidArgument, field);
        }
    }
    let e = n
        .refused(class(json!({
            "objects": format!("- {{objectName: k, secretPath: secret/{}, secretKey: k}}", "p".repeat(200 * 1024))
        })))
        .await;
    short_and_named(&e, Code::InvalidArgument, "secretPath");
    n.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_objects_yaml_paths_and_headers_are_refused_before_vault() {
    let n = Node::start(&[]).await;
    // The bystander's own login first, so that what is counted below is ours.
    n.c.mount(Pod::new("default", "app").request(class(json!({}))))
        .await
        .unwrap();
    let logins = || {
        n.bao
            .audit_requests(&n.bao.audit_log(), |_, p| p.ends_with("/login"))
    };
    let before = logins();
    let deep = format!("{}{}", "[".repeat(60_000), "]".repeat(60_000));
    let t = Instant::now();
    let e = n.refused(class(json!({ "objects": deep }))).await;
    short_and_named(&e, Code::InvalidArgument, "objects");
    // Refused before parsing: milliseconds; parsed, its time grows with the square.
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    for (objects, field) in [
        (
            "- {objectName: k, secretPath: \"secret/%2e%2e/%2e%2e/sys/mounts\", secretKey: k}",
            "secretPath",
        ),
        (
            "- {objectName: certs, secretPath: secret/data/app}\n- {objectName: certs-old, secretPath: secret/data/app}\n- {objectName: certs/tls.crt, secretPath: secret/data/app}",
            "certs",
        ),
    ] {
        let e = n.refused(class(json!({ "objects": objects }))).await;
        short_and_named(&e, Code::InvalidArgument, field);
    }
    let t = Instant::now();
    let e = n
        .refused(class(json!({"vaultNamespace": "team\r\nX-Injected: 1"})))
        .await;
    short_and_named(&e, Code::InvalidArgument, "vaultNamespace");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "no retries: {:?}",
        t.elapsed()
    );
    assert_eq!(logins(), before, "nothing reached Vault");
    n.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_vault_cannot_grow_the_process_or_stall_others() {
    let n = Node::start(&[]).await;
    // The tenant's "Vault" answers 7 MiB per read and keeps its leases forever.
    let blob = "x".repeat(7 * 1024 * 1024);
    let fake = FakeVault::start(Behaviour {
        login_body: json!({"auth": {"client_token": "s.t", "lease_duration": u64::MAX / 2, "renewable": true}}),
        reads: vec![(
            200,
            json!({"lease_id": "x/1", "lease_duration": i64::MAX, "data": {"k": "v", "blob": blob}}),
        )],
        ..Behaviour::default()
    })
    .await;
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (c, addr, done) = (n.c.clone(), fake.addr.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let r = c
                .mount_within(
                    Pod::new("default", "app").request(class(json!({"vaultAddress": addr}))),
                    Duration::from_secs(60),
                )
                .await;
            done.fetch_add(1, Ordering::SeqCst);
            r
        }));
    }
    let mut peak = 0;
    while done.load(Ordering::SeqCst) < 16 {
        peak = peak.max(n.rss());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert!(r.is_ok(), "{r:?}");
    }
    println!("16 Mounts of 7 MiB answers: peak resident memory {peak} KiB");
    assert!(peak < BUDGET_KIB, "peak {peak} KiB");
    n.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_never_get_each_others_certificates_or_tokens() {
    let n = Node::start(&[]).await;
    n.bao
        .enable_pki(
            "t-root",
            "app",
            json!({"allow_any_name": true, "key_type": "ec"}),
        )
        .await;
    n.bao
        .policy(
            "app",
            r#"path "secret/data/*" { capabilities = ["read"] }
path "pki/issue/app" { capabilities = ["update"] }"#,
        )
        .await;
    let objects = "- {objectName: crt, secretPath: pki/issue/app, method: PUT, secretArgs: {common_name: a.example}, secretKey: serial_number}";
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let c = n.c.clone();
        tasks.push(tokio::spawn(async move {
            c.mount(Pod::new("default", "app").request(class(json!({"objects": objects}))))
                .await
                .map(|r| file_str(&r, "crt").to_string())
        }));
    }
    let mut serials = std::collections::HashSet::new();
    for t in tasks {
        serials.insert(t.await.unwrap().unwrap());
    }
    assert_eq!(
        serials.len(),
        10,
        "ten pods at once got {} certificates",
        serials.len()
    );

    // A driver token of another namespace and service account, for a pod named ns1/default.
    let pod = Pod::new("ns1", "default");
    let other = Pod::new("other", "other");
    let e =
        n.c.mount(pod.request_with(
            class(json!({})),
            Some(("vault", other.token("vault"))),
            false,
        ))
        .await
        .unwrap_err();
    short_and_named(&e, Code::PermissionDenied, "token");
    n.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_limits_refuse_and_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(&[
        &format!("-allowed-tls-dirs={}", dir.path().display()),
        "-allow-class-audience=false",
        "-allow-class-auth-mount=false",
    ])
    .await;
    // The provider's own address is allowed by default; a class may not name another.
    let p2 = ProviderProcess::start(
        &n.bao.addr,
        &[
            "-vault-mount=jwt",
            &format!("-allowed-vault-addrs={}", n.bao.addr),
        ],
    )
    .await;
    let c2 = p2.client().await;
    let pod = Pod::new("default", "app");
    let ok = c2
        .mount(pod.request(class(json!({"vaultAddress": n.bao.addr}))))
        .await;
    assert!(ok.is_ok(), "{ok:?}");
    let e = c2
        .mount(pod.request(class(json!({"vaultAddress": "https://evil.example:8200"}))))
        .await
        .unwrap_err();
    short_and_named(&e, Code::PermissionDenied, "-allowed-vault-addrs");
    assert!(e.message().contains("vaultAddress"));
    for (params, flag) in [
        (
            json!({"vaultCACertPath": "/etc/passwd"}),
            "-allowed-tls-dirs",
        ),
        (json!({"audience": "other"}), "-allow-class-audience"),
        (
            json!({"vaultAuthMountPath": "jwt"}),
            "-allow-class-auth-mount",
        ),
    ] {
        let e = n.refused(class(params)).await;
        short_and_named(&e, Code::PermissionDenied, flag);
    }
    n.finish().await;
}
