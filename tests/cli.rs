//! The `mount` subcommand against real OpenBao: in-process and through a running provider,
//! and rendering templates and allKeys with the same files and versions as a Mount.

mod common;

use common::features;
use common::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

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
    let args = ["mount", "-class", class, "-token-file", token];
    run_provider(args.iter().chain(more))
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

/// Run from a laptop with a kubeconfig, `mount` looks for the object-version key but never
/// creates the Secret in someone's namespace (a provider does when it starts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_reads_the_version_key_but_never_creates_it() {
    let bao = openbao().await;
    let kube = common::kube::KubeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (class, token) = write_inputs(dir.path(), CLASS);
    let kubeconfig = kube.kubeconfig(dir.path());
    let addr = format!("-vault-addr={}", bao.addr);
    let out = tokio::task::spawn_blocking(move || {
        provider_command(
            ["mount", "-class", &class, "-token-file", &token, &addr],
            std::path::Path::new(NO_HOME),
            [("KUBECONFIG", kubeconfig)],
        )
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !kube
            .requests("GET", "/secrets/vault-csi-provider-hmac-key")
            .is_empty(),
        "the key was looked for"
    );
    assert_eq!(
        kube.requests("POST", "/secrets"),
        Vec::<serde_json::Value>::new()
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("db/password"),
        "the mount itself went on"
    );
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

    let out = run_provider(["mount", "-class", &class]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "missing -token-file is a usage error"
    );
}

const CLI_CLASS: &str = r#"
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: cli
  namespace: default
spec:
  provider: vault
  parameters:
    roleName: app
    objects: |
      - objectName: all
        secretPath: secret/data/cli
        allKeys: true
        filePermission: 0640
      - objectName: greeting.txt
        template: "hello {{ objects.all.name }} ({{ objects.all | length }} keys)"
      - objectName: conf/upper
        secretPath: secret/data/cli
        filePermission: 0600
        template: "{{ secret.name | upper }}"
"#;

fn cli(args: &[&str]) -> std::process::Output {
    run_provider(["mount"].iter().chain(args))
}

/// Listing rows: path -> (mode, bytes, version).
fn listing(stdout: &str) -> BTreeMap<String, (String, usize, String)> {
    stdout
        .lines()
        .skip(1)
        .map(str::split_whitespace)
        .map(Iterator::collect::<Vec<_>>)
        .filter(|cols| cols.len() == 4)
        .map(|c| {
            (
                c[3].to_string(),
                (c[0].to_string(), c[1].parse().unwrap(), c[2].to_string()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_subcommand_renders_templates_and_all_keys_like_a_mount() {
    let bao = features::openbao().await;
    let value = "world-cli-value";
    bao.write("secret/data/cli", json!({"data": {"name": value, "n": 7}}))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("hmac.key");
    std::fs::write(&key, "features-test-hmac-key-0123456789").unwrap();
    let key_flag = format!("-hmac-key-file={}", key.display());
    let class_path = dir.path().join("class.yaml");
    std::fs::write(&class_path, CLI_CLASS).unwrap();
    let pod = Pod::new("default", "app");
    let token_path = dir.path().join("token");
    std::fs::write(&token_path, pod.token("vault")).unwrap();
    let (class_arg, token_arg) = (
        class_path.display().to_string(),
        token_path.display().to_string(),
    );
    let addr = format!("-vault-addr={}", bao.addr);
    let base = [
        "-class",
        class_arg.as_str(),
        "-token-file",
        token_arg.as_str(),
        addr.as_str(),
        "-vault-mount=jwt",
        key_flag.as_str(),
    ];

    // What a Mount through the provider gives, with the same version key.
    let p = features::provider(&bao, &[&key_flag]).await;
    let client = p.client().await;
    let mounted = client
        .mount(features::example_request(CLI_CLASS, &pod))
        .await
        .unwrap();
    let expected_paths = ["all/n", "all/name", "conf/upper", "greeting.txt"];
    assert_eq!(features::paths(&mounted), expected_paths);
    assert_eq!(
        file_str(&mounted, "greeting.txt"),
        format!("hello {value} (2 keys)")
    );
    assert_eq!(file_str(&mounted, "conf/upper"), value.to_uppercase());

    // The listing: paths, modes, sizes and versions as mounted; values hidden.
    let out = cli(&base);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains(value), "values hidden: {stdout}");
    assert!(
        !stdout.contains(&value.to_uppercase()),
        "values hidden: {stdout}"
    );
    let rows = listing(&stdout);
    assert_eq!(
        rows.keys().map(String::as_str).collect::<Vec<_>>(),
        expected_paths,
        "{stdout}"
    );
    for f in &mounted.files {
        let (mode, bytes, ver) = &rows[&f.path];
        assert_eq!(*mode, format!("{:04o}", f.mode), "{}", f.path);
        assert_eq!(*bytes, f.contents.len(), "{}", f.path);
        assert_eq!(*ver, version(&mounted, &f.path), "{}", f.path);
    }
    assert_eq!(rows["all/name"].0, "0640");
    assert_eq!(rows["conf/upper"].0, "0600");

    // -show-values prints them.
    let mut shown_args = base.to_vec();
    shown_args.push("-show-values");
    let shown = cli(&shown_args);
    let shown_text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success());
    assert!(
        shown_text.contains(&format!("hello {value} (2 keys)")),
        "{shown_text}"
    );
    assert!(shown_text.contains(&value.to_uppercase()), "{shown_text}");

    // -out writes the nested files with their modes, byte for byte as mounted.
    let out_dir = dir.path().join("volume");
    let out_flag = format!("-out={}", out_dir.display());
    let mut out_args = base.to_vec();
    out_args.push(out_flag.as_str());
    let written = cli(&out_args);
    assert!(
        written.status.success(),
        "{}",
        String::from_utf8_lossy(&written.stderr)
    );
    for f in &mounted.files {
        let target = out_dir.join(&f.path);
        assert_eq!(std::fs::read(&target).unwrap(), f.contents, "{}", f.path);
        assert_eq!(
            std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            f.mode as u32,
            "{}",
            f.path
        );
    }
    assert!(out_dir.join("all").is_dir());

    // Through the running provider's socket: the same listing.
    let socket_flag = format!("-socket={}", p.socket.display());
    let via_socket = cli(&[
        "-class",
        &class_arg,
        "-token-file",
        &token_arg,
        &socket_flag,
    ]);
    assert!(
        via_socket.status.success(),
        "{}",
        String::from_utf8_lossy(&via_socket.stderr)
    );
    assert_eq!(listing(&String::from_utf8_lossy(&via_socket.stdout)), rows);

    // A template error reaches the command's exit status with the pod's message.
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        CLI_CLASS.replace("{{ secret.name | upper }}", "{{ secret.nmae }}"),
    )
    .unwrap();
    let broken_arg = broken.display().to_string();
    let mut broken_args = base.to_vec();
    broken_args[1] = broken_arg.as_str();
    let failed = cli(&broken_args);
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("NotFound") && stderr.contains("nmae") && !stderr.contains(value),
        "{stderr}"
    );
}
