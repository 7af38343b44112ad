//! The Secrets Store CSI driver's own client code, built from each release tag, calling the
//! provider over its socket and writing the files with the driver's atomic writer.
//!
//! Ignored in the test command: it needs the client binaries, which Go builds from git
//! mirrors of the driver and its dependencies (`../shared/driver-client/`, outside this
//! repository). `scripts/driver-client.sh` runs it; with `record` it also writes what each
//! release sent into `tests/fixtures/driver/<tag>.json`, which `tests/driver_replay.rs`
//! replays in every test run.
//!
//! Every call goes through a recording proxy in front of the provider's socket, so the bytes
//! recorded are exactly the bytes the driver's client wrote. Each recording is replayed at
//! once against the same provider and must give what the real client received.

mod common;

use common::driver_cases::{self as dc, Answer, Case, Inputs, Recording, TagRecordings};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the client binaries are: `$DRIVERCLIENT_DIR`, else `$DC_CACHE/bin`, else
/// `~/.cache/driverclient/bin` (where `../shared/driver-client/build.sh` puts them).
fn client_dir() -> PathBuf {
    if let Ok(d) = std::env::var("DRIVERCLIENT_DIR") {
        return PathBuf::from(d);
    }
    if let Ok(d) = std::env::var("DC_CACHE") {
        return Path::new(&d).join("bin");
    }
    Path::new(&std::env::var("HOME").unwrap_or_default()).join(".cache/driverclient/bin")
}

/// The tags to run: `$DRIVER_TAGS` (comma-separated), else all nine.
fn tags() -> Vec<String> {
    match std::env::var("DRIVER_TAGS") {
        Ok(t) if !t.trim().is_empty() => t.split(',').map(|s| s.trim().to_string()).collect(),
        _ => dc::TAGS.iter().map(|t| t.to_string()).collect(),
    }
}

/// Accepts one connection on `listen` and forwards it to `upstream` both ways; returns every
/// byte the client wrote.
async fn record_one(
    listener: tokio::net::UnixListener,
    upstream: PathBuf,
) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (client, _) = listener.accept().await?;
    let server = tokio::net::UnixStream::connect(upstream).await?;
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async move {
        let mut seen = Vec::new();
        let mut buf = [0u8; 16384];
        // The client's end (EOF, or a reset when it exits) ends the recording.
        while let Ok(n) = cr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = sw.shutdown().await;
        Ok::<_, std::io::Error>(seen)
    };
    let down = async move {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
        let _ = cw.shutdown().await;
    };
    let (seen, ()) = tokio::join!(up, down);
    seen
}

/// Runs the client of `tag` once through a recording proxy; returns what it printed and
/// the bytes it wrote.
async fn run_client(binary: &Path, provider_socket: &Path, inputs: &Inputs) -> (Value, Vec<u8>) {
    let work = tempfile::tempdir().unwrap();
    let socket_dir = work.path().join("providers");
    std::fs::create_dir_all(&socket_dir).unwrap();
    let listener = tokio::net::UnixListener::bind(socket_dir.join("vault.sock")).unwrap();
    let recorder = tokio::spawn(record_one(listener, provider_socket.to_path_buf()));

    let write = |name: &str, value: &dyn erased::Json| {
        let p = work.path().join(name);
        std::fs::write(&p, value.json()).unwrap();
        p
    };
    let attributes = write("attributes.json", &inputs.attributes);
    let target = work.path().join("target");
    let mut cmd = tokio::process::Command::new(binary);
    cmd.arg("-socket-dir")
        .arg(&socket_dir)
        .args(["-provider", "vault", "-permission", "420", "-timeout", "2m"])
        .arg("-attributes")
        .arg(&attributes)
        .arg("-target")
        .arg(&target);
    if let Some(s) = &inputs.secrets {
        cmd.arg("-secrets").arg(write("secrets.json", s));
    }
    if let Some(c) = &inputs.current {
        cmd.arg("-current").arg(write("current.json", c));
    }
    let out = tokio::time::timeout(Duration::from_secs(150), cmd.output())
        .await
        .expect("the driver's client did not finish")
        .expect("cannot run the driver's client");
    assert!(
        out.status.success(),
        "{} failed: {}",
        binary.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: not JSON ({e}): {}",
            binary.display(),
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let bytes = tokio::time::timeout(Duration::from_secs(30), recorder)
        .await
        .expect("the recorded connection did not end")
        .unwrap()
        .expect("recording failed");
    check_target(&printed, &target);
    (printed, bytes)
}

/// JSON of the inputs' maps, as the client reads them from files.
mod erased {
    pub trait Json {
        fn json(&self) -> String;
    }
    impl Json for std::collections::BTreeMap<String, String> {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap()
        }
    }
}

/// The target directory as the driver's atomic writer left it: every expected file, with
/// its mode and contents, reached through the `..data` links.
fn check_target(printed: &Value, target: &Path) {
    if printed["error"].as_str().is_some_and(|e| !e.is_empty()) {
        return;
    }
    let listing = printed["target"].as_array().cloned().unwrap_or_default();
    for e in dc::expected_files() {
        let contents = std::fs::read(target.join(&e.path))
            .unwrap_or_else(|err| panic!("{}: {err}; target: {listing:?}", e.path));
        assert_eq!(contents, e.contents, "{}", e.path);
        let mode = std::fs::metadata(target.join(&e.path)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            mode.permissions().mode() & 0o777,
            e.mode,
            "mode of {}",
            e.path
        );
    }
}

/// What the real client saw must be what a replay of its bytes gives.
fn check_against_replay(tag: &str, case: Case, printed: &Value, answer: &Answer) {
    match answer {
        Answer::Files(r) => {
            let versions: BTreeMap<String, String> = r
                .object_version
                .iter()
                .map(|v| (v.id.clone(), v.version.clone()))
                .collect();
            let seen: BTreeMap<String, String> =
                serde_json::from_value(printed["object_versions"].clone()).unwrap_or_default();
            assert_eq!(versions, seen, "{tag} {case:?}: replayed versions");
        }
        Answer::Status(code, message) => assert_eq!(
            dc::node_publish_error(code, message),
            printed["node_publish_error"].as_str().unwrap_or_default(),
            "{tag} {case:?}: replayed error"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the driver's client built from ../shared/driver-client (Go and git mirrors): run scripts/driver-client.sh"]
async fn the_drivers_own_client_at_every_release() {
    let dir = client_dir();
    let tags = tags();
    let missing: Vec<&String> = tags
        .iter()
        .filter(|t| !dir.join(format!("driverclient-{t}")).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "no client binary for {missing:?} in {}: build them with ../shared/driver-client/build.sh (see its README), or set DRIVERCLIENT_DIR",
        dir.display()
    );
    let record = std::env::var("DRIVER_RECORD").is_ok_and(|v| v == "1");

    let setup = dc::setup().await;
    let p = &setup.provider;

    let mut summary = Vec::new();
    for tag in &tags {
        let binary = dir.join(format!("driverclient-{tag}"));
        let mut recordings = Vec::new();
        let mut provenance = None;
        let mut current = BTreeMap::new();
        for case in Case::ALL {
            let inputs = dc::inputs(tag, case, &current);
            let started = std::time::Instant::now();
            let (printed, bytes) = run_client(&binary, &p.socket, &inputs).await;
            let elapsed = started.elapsed();
            let error = printed["error"].as_str().unwrap_or_default().to_string();
            if case.succeeds() {
                assert!(
                    error.is_empty(),
                    "{tag} {case:?}: {printed}\n{}",
                    p.log_text()
                );
                let versions: BTreeMap<String, String> =
                    serde_json::from_value(printed["object_versions"].clone()).unwrap();
                assert_eq!(versions.len(), dc::expected_files().len(), "{tag} {case:?}");
                assert!(versions.values().all(|v| v.len() == 44), "{versions:?}");
                if case == Case::Pod {
                    current = versions;
                } else {
                    assert_eq!(versions, current, "{tag} {case:?}: same versions");
                }
            } else {
                assert_eq!(printed["grpc_code"], "InvalidArgument", "{tag}: {printed}");
                let logged = printed["node_publish_error"].as_str().unwrap_or_default();
                assert!(
                    logged.contains("missing parameter roleName") && !logged.contains("malformed"),
                    "{tag}: {logged}"
                );
            }
            let decoded = dc::decode(&bytes).unwrap_or_else(|e| panic!("{tag} {case:?}: {e}"));
            assert_eq!(
                decoded.secrets,
                printed["secrets_json"].as_str().unwrap_or_default(),
                "{tag} {case:?}: the secrets the client says it sent"
            );
            let answer = dc::replay(&p.socket, &bytes)
                .await
                .unwrap_or_else(|e| panic!("{tag} {case:?} replay: {e}"));
            check_against_replay(tag, case, &printed, &answer);
            provenance.get_or_insert_with(|| dc::Provenance {
                driver_tag: printed["driver"].as_str().unwrap_or_default().into(),
                driver_commit: printed["driver_commit"].as_str().unwrap_or_default().into(),
                grpc_go: printed["grpc_go"].as_str().unwrap_or_default().into(),
                go: printed["go"].as_str().unwrap_or_default().into(),
                builder_api: printed["builder_api"].as_str().unwrap_or_default().into(),
                made_by: "scripts/driver-client.sh record: tests/driver_client.rs ran the driver's client (../shared/driver-client, pkg/secrets-store at this tag) through a recording proxy in front of the provider's socket".into(),
                recorded_on: String::new(),
            });
            summary.push(format!(
                "{tag:8} {:24} {:>6} ms  authority {:?}  secrets {}  {}",
                format!("{case:?}"),
                elapsed.as_millis(),
                decoded.authority,
                decoded.secrets.chars().take(24).collect::<String>(),
                if error.is_empty() {
                    "ok".to_string()
                } else {
                    format!("error: {}", printed["grpc_code"])
                }
            ));
            use base64::Engine;
            recordings.push(Recording {
                case,
                client_bytes: base64::engine::general_purpose::STANDARD.encode(&bytes),
                decoded,
                driver: printed,
            });
        }
        if record {
            let mut provenance = provenance.unwrap();
            provenance.recorded_on = today();
            let file = TagRecordings {
                provenance,
                recordings,
            };
            let path = dc::fixture_path(tag);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, serde_json::to_string_pretty(&file).unwrap() + "\n").unwrap();
            println!("recorded {}", path.display());
        }
    }
    println!("{}", summary.join("\n"));
}

/// Today's date, from the system clock.
fn today() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    vault_csi_provider::rfc3339(now)[..10].to_string()
}
