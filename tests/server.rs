//! The server process: socket handling, health, shutdown, retries and deadlines, flags.

mod common;

use common::fake_vault::{Behaviour, Case, FakeVault, class};
use common::*;
use serde_json::json;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::{Duration, Instant};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_is_private_health_answers_and_sigterm_drains_in_flight_mounts() {
    let mut case = Case::start(
        Behaviour {
            login_delay: Duration::from_millis(1500),
            ..Default::default()
        },
        &[],
        &[],
    )
    .await;
    let meta = std::fs::metadata(&case.provider.socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    vault_csi_provider::install_crypto_provider();
    let health = reqwest::get(format!("http://{}/health/ready", case.provider.health))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let in_flight = tokio::spawn(case.mount());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let p = &mut case.provider;
    p.signal("TERM");
    let resp = in_flight
        .await
        .unwrap()
        .expect("an in-flight mount finishes after SIGTERM");
    assert_eq!(file_str(&resp, "k"), "v");
    assert_eq!(
        p.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        p.log_text()
    );
    assert!(!p.socket.exists(), "socket removed on exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_past_its_grace() {
    let mut case = Case::start(
        Behaviour {
            login_delay: Duration::from_secs(60),
            ..Default::default()
        },
        &["-shutdown-grace=1s"],
        &[],
    )
    .await;
    let _stuck = tokio::spawn(case.mount());
    let p = &mut case.provider;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    p.signal("INT");
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        p.log_text()
            .contains("did not finish within -shutdown-grace")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_socket_is_replaced_but_files_and_live_sockets_are_not() {
    let vault = FakeVault::start(Behaviour::default()).await;
    // Stale: a socket file nobody listens on.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vault.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let p = ProviderProcess::start_at(&vault.addr, &[], &[], dir, socket.clone()).await;
    let resp = p
        .client()
        .await
        .mount(Pod::new("default", "app").request(class()))
        .await
        .unwrap();
    assert_eq!(file_str(&resp, "k"), "v");

    // Live: a second copy must not steal the socket.
    let out = run_provider([&format!("-endpoint={}", socket.display()), "-health-addr="]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another process is serving"));
    assert!(
        p.client().await.version().await.is_ok(),
        "the first provider still serves"
    );

    // A regular file is never deleted.
    let file = p.dir.path().join("not-a-socket");
    std::fs::write(&file, "keep me").unwrap();
    let out = run_provider([&format!("-endpoint={}", file.display()), "-health-addr="]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a socket"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_without_auth_is_an_error_not_a_crash() {
    let case = Case::start(
        Behaviour {
            login_body: json!({"data": {}, "auth": null}),
            ..Default::default()
        },
        &[],
        &[],
    )
    .await;
    let err = case.mount().await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("no auth section"),
        "{}",
        err.message()
    );
    // Garbage instead of JSON.
    case.vault.behaviour.lock().unwrap().login_body = json!("not an object");
    let err = case.mount().await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert!(case.client.version().await.is_ok(), "still serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_then_unavailable() {
    let reads = vec![
        (502, json!({"errors": ["upstream down"]})),
        (500, json!({"errors": ["internal"]})),
        (200, json!({"data": {"k": "v"}})),
    ];
    let case = Case::start(
        Behaviour {
            reads,
            ..Default::default()
        },
        &[],
        &[],
    )
    .await;
    let resp = case.mount().await.unwrap();
    assert_eq!(file_str(&resp, "k"), "v");
    assert_eq!(
        case.vault.reads.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "two retries (VAULT_MAX_RETRIES=2)"
    );

    let case = Case::start(
        Behaviour {
            reads: vec![(503, json!({"errors": ["overloaded"]}))],
            ..Default::default()
        },
        &[],
        &[("VAULT_MAX_RETRIES", "0")],
    )
    .await;
    let err = case.mount().await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("overloaded"), "{}", err.message());
    assert_eq!(
        case.vault.reads.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_vault_fails_inside_the_callers_deadline() {
    let vault = FakeVault::start(Behaviour {
        read_delay: Duration::from_secs(30),
        ..Default::default()
    })
    .await;
    let p = ProviderProcess::start(&vault.addr, &[]).await;
    let channel = vault_csi_provider::connect(&p.socket).await.unwrap();
    let mut raw =
        vault_csi_provider::proto::csi_driver_provider_client::CsiDriverProviderClient::new(
            channel,
        );
    let mut req = tonic::Request::new(Pod::new("default", "app").request(class()));
    req.set_timeout(Duration::from_secs(2));
    let start = Instant::now();
    let err = raw.mount(req).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(err.code(), Code::DeadlineExceeded);
    assert!(err.message().contains("deadline"), "{}", err.message());

    // VAULT_CLIENT_TIMEOUT bounds each request: then it is Vault that is unavailable.
    let p = ProviderProcess::start_env(
        &vault.addr,
        &[],
        &[("VAULT_CLIENT_TIMEOUT", "1"), ("VAULT_MAX_RETRIES", "0")],
    )
    .await;
    let err = p
        .client()
        .await
        .mount(Pod::new("default", "app").request(class()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(
        err.message().contains("did not answer within"),
        "{}",
        err.message()
    );
}

#[test]
fn version_output_and_flag_errors() {
    let run = |args: &[&str]| run_provider(args);
    let out = run(&["-version"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    // The commit the binary was built from (tests run in a git checkout).
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(head.status.success(), "git rev-parse: {head:?}");
    assert_eq!(
        v["commit"],
        String::from_utf8_lossy(&head.stdout).trim(),
        "-version names the commit"
    );
    let out = run(&["--version", "-output", "yaml"]);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("version: {}", env!("CARGO_PKG_VERSION")))
    );
    let out = run(&["-version", "-output=json-pretty"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\n  \"version\""));
    let out = run(&["-version", "-output=xml"]);
    assert_eq!(out.status.code(), Some(2));

    let out = run(&["-no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("flag provided but not defined: -no-such-flag"),
        "{err}"
    );
    assert!(err.contains("-endpoint"), "usage printed: {err}");
    assert_eq!(run(&["-h"]).status.code(), Some(0));
    assert_eq!(run(&["-log-level=loud"]).status.code(), Some(2));
}
