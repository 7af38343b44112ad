//! The `mount` subcommand against real OpenBao: in-process and through a running provider.

mod common;

use common::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const CLASS: &str = r#"
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: app
  namespace: default
spec:
  provider: vault
  parameters:
    roleName: app
    vaultAuthMountPath: jwt
    objects: |
      - objectName: db/password
        secretPath: secret/data/db
        secretKey: password
        filePermission: 0600
      - objectName: db.json
        secretPath: secret/data/db
"#;

async fn openbao() -> OpenBao {
    let bao = OpenBao::with_app_role().await;
    bao.write(
        "secret/data/db",
        json!({"data": {"password": "pg-pass-123"}}),
    )
    .await;
    bao
}

/// Runs `vault-csi-provider mount -class CLASS -token-file TOKEN` with more arguments.
fn mount(class: &str, token: &str, more: &[&str]) -> std::process::Output {
    Command::new(provider_binary())
        .args(["mount", "-class", class, "-token-file", token])
        .args(more)
        .output()
        .unwrap()
}

fn write_inputs(dir: &std::path::Path, class: &str) -> (String, String) {
    let class_path = dir.join("class.yaml");
    std::fs::write(&class_path, class).unwrap();
    let token_path = dir.join("token");
    std::fs::write(&token_path, Pod::new("default", "app").token("vault")).unwrap();
    (
        class_path.display().to_string(),
        token_path.display().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_in_process_writes_files_with_modes() {
    let bao = openbao().await;
    let dir = tempfile::tempdir().unwrap();
    let (class, token) = write_inputs(dir.path(), CLASS);
    let out_dir = dir.path().join("out");
    let out = mount(
        &class,
        &token,
        &[
            &format!("-vault-addr={}", bao.addr),
            &format!("-out={}", out_dir.display()),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pw = out_dir.join("db/password");
    assert_eq!(std::fs::read_to_string(&pw).unwrap(), "pg-pass-123");
    assert_eq!(
        std::fs::metadata(&pw).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        std::fs::read_to_string(out_dir.join("db.json"))
            .unwrap()
            .contains("pg-pass-123")
    );

    // Listing hides values unless asked.
    let list = mount(&class, &token, &[&format!("-vault-addr={}", bao.addr)]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success());
    assert!(
        text.contains("db/password") && text.contains("0600"),
        "{text}"
    );
    assert!(!text.contains("pg-pass-123"), "values hidden: {text}");
    let shown = mount(
        &class,
        &token,
        &["-show-values", &format!("-vault-addr={}", bao.addr)],
    );
    assert!(String::from_utf8_lossy(&shown.stdout).contains("pg-pass-123"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_through_a_running_provider_and_clear_errors() {
    let bao = openbao().await;
    let provider = ProviderProcess::start(&bao.addr, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (class, token) = write_inputs(dir.path(), CLASS);
    let out = mount(
        &class,
        &token,
        &[
            "-show-values",
            &format!("-socket={}", provider.socket.display()),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pg-pass-123"));

    let (class, token) = write_inputs(
        dir.path(),
        &CLASS.replace("roleName: app", "roleName: nobody"),
    );
    let out = mount(
        &class,
        &token,
        &[&format!("-socket={}", provider.socket.display())],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("code = PermissionDenied") && err.contains("role \"nobody\""),
        "{err}"
    );

    let (class, token) = write_inputs(
        dir.path(),
        &CLASS.replace(
            "secretKey: password",
            "secretKey: password\n        encoding: rot13",
        ),
    );
    let out = mount(&class, &token, &[&format!("-vault-addr={}", bao.addr)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rot13"));

    let out = Command::new(provider_binary())
        .args(["mount", "-class", &class])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "missing -token-file is a usage error"
    );
}
