//! Interop with an independent client: Python grpcio (stubs generated from our proto/),
//! against the provider binary and real OpenBao. Fails, never skips, when grpcio is missing.

mod common;

use common::*;
use serde_json::json;
use std::path::Path;
use std::process::Command;

fn python() -> std::path::PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup.sh (installs grpcio and grpcio-tools)",
        p.display()
    );
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_with_every_authority_form() {
    let bao = OpenBao::with_app_role().await;
    let p = ProviderProcess::start(&bao.addr, &[]).await;

    let pod = Pod::new("default", "app");
    let req = pod.request(json!({"roleName": "app", "vaultAuthMountPath": "jwt"}));
    let dir = tempfile::tempdir().unwrap();
    let attrs = dir.path().join("attributes.json");
    std::fs::write(&attrs, &req.attributes).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/interop.py");
    let python = python();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(&p.socket)
            .arg(&attrs)
            .arg(dir.path())
            .output()
            .map(|o| (o, p, dir))
    })
    .await
    .unwrap()
    .unwrap();
    let (out, p, _dir) = out;
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "grpcio interop failed:\n{stdout}\n{}\nprovider log tail:\n{}",
        String::from_utf8_lossy(&out.stderr),
        p.log_text()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(stdout.contains("12 passed, 0 failed"), "{stdout}");
}
