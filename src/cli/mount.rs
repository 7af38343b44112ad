//! `vault-csi-provider mount`: answers "what would my pod get?". Reads a
//! SecretProviderClass YAML file and a service-account token, builds the MountRequest the
//! driver would send, and runs it in-process or against a running provider (`-socket`).
//! Writes the files into a directory, or lists them (values hidden unless asked).

use crate::goflag::{self, Flag, Kind};
use crate::proto::{MountRequest, MountResponse};
use crate::settings::{self, SERVER_FLAGS, Settings};
use crate::stages::flavour::Flavour;
use crate::stages::plan::{TOKENS_KEY, token_claims};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const OWN_FLAGS: &[Flag] = &[
    Flag::new(
        "class",
        Kind::Value,
        "",
        "SecretProviderClass YAML file (required; - for stdin)",
    ),
    Flag::new(
        "token-file",
        Kind::Value,
        "",
        "file holding the pod's service-account token, e.g. from kubectl create token (required)",
    ),
    Flag::new(
        "socket",
        Kind::Value,
        "",
        "call the provider serving this socket instead of running the mount in-process",
    ),
    Flag::new(
        "out",
        Kind::Value,
        "",
        "write the files into this directory instead of listing them",
    ),
    Flag::new(
        "show-values",
        Kind::Bool,
        "false",
        "print file contents when listing",
    ),
    Flag::new(
        "pod-name",
        Kind::Value,
        "",
        "pod name to send (default: from the token, else vault-csi-provider-mount)",
    ),
    Flag::new(
        "pod-uid",
        Kind::Value,
        "",
        "pod uid to send (default: from the token)",
    ),
    Flag::new(
        "namespace",
        Kind::Value,
        "",
        "pod namespace (default: from the token, else the class's namespace, else default)",
    ),
    Flag::new(
        "service-account",
        Kind::Value,
        "",
        "service account name (default: from the token)",
    ),
    Flag::new("timeout", Kind::Value, "2m", "deadline of the mount"),
];

/// Server flags that also shape an in-process mount.
const SHARED: &[&str] = &[
    "vault-addr",
    "vault-mount",
    "vault-namespace",
    "vault-tls-ca-cert",
    "vault-tls-ca-directory",
    "vault-tls-server-name",
    "vault-tls-client-cert",
    "vault-tls-client-key",
    "vault-tls-skip-verify",
    "log-level",
    "log-format",
    "log-stream",
    "hmac-key-file",
    "hmac-secret-name",
    "template-fuel",
    "template-recursion-limit",
    "template-max-output",
];

fn all_flags() -> Vec<Flag> {
    let mut v = OWN_FLAGS.to_vec();
    v.extend(
        SERVER_FLAGS
            .iter()
            .filter(|f| SHARED.contains(&f.name))
            .copied(),
    );
    v
}

#[derive(Deserialize)]
struct ClassFile {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: ClassMeta,
    spec: ClassSpec,
}

#[derive(Deserialize, Default)]
struct ClassMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize)]
struct ClassSpec {
    #[serde(default)]
    provider: String,
    #[serde(default)]
    parameters: BTreeMap<String, serde_yaml_ng::Value>,
}

/// The provider a SecretProviderClass file's class is for (see [`driver_request`]).
pub fn class_flavour(class_yaml: &str) -> Flavour {
    serde_yaml_ng::from_str::<ClassFile>(class_yaml)
        .map(|c| Flavour::of_provider(&c.spec.provider))
        .unwrap_or_default()
}

/// The MountRequest the driver would send for this class, pod and token.
pub fn driver_request(
    class_yaml: &str,
    token: &str,
    overrides: &BTreeMap<&str, String>,
) -> Result<MountRequest, String> {
    let class: ClassFile = serde_yaml_ng::from_str(class_yaml)
        .map_err(|e| format!("the class file is not a SecretProviderClass: {e}"))?;
    if !class.kind.is_empty() && class.kind != "SecretProviderClass" {
        return Err(format!(
            "the class file holds a {}, not a SecretProviderClass",
            class.kind
        ));
    }
    if !class.spec.provider.is_empty()
        && !["vault", "openbao"].contains(&class.spec.provider.as_str())
    {
        return Err(format!(
            "spec.provider is {:?}: the driver would send this class to that provider, not to vault or openbao",
            class.spec.provider
        ));
    }
    let mut attributes = serde_json::Map::new();
    for (key, value) in class.spec.parameters {
        match value {
            serde_yaml_ng::Value::String(s) => {
                attributes.insert(key, serde_json::Value::String(s));
            }
            _ => {
                return Err(format!(
                    "spec.parameters.{key} is not a string: Kubernetes only accepts strings there, quote it"
                ));
            }
        }
    }
    let claims = token_claims(token);
    let pick = |flag: &str, claim: Option<String>, fallback: &str| {
        overrides
            .get(flag)
            .cloned()
            .or(claim)
            .unwrap_or_else(|| fallback.to_string())
    };
    let namespace = overrides
        .get("namespace")
        .cloned()
        .or(claims.namespace.clone())
        .or(class.metadata.namespace.clone())
        .unwrap_or_else(|| "default".into());
    let pod_name = pick(
        "pod-name",
        claims.pod_name.clone(),
        "vault-csi-provider-mount",
    );
    let pod_uid = pick(
        "pod-uid",
        claims.pod_uid.clone(),
        "00000000-0000-0000-0000-000000000000",
    );
    let service_account = pick("service-account", claims.service_account.clone(), "default");
    let audience = attributes
        .get("audience")
        .and_then(|a| a.as_str())
        .filter(|a| !a.is_empty())
        .unwrap_or(Flavour::of_provider(&class.spec.provider).default_audience())
        .to_string();
    let expiration = claims
        .expiration
        .map(crate::text::rfc3339)
        .unwrap_or_default();
    let tokens =
        serde_json::json!({ audience: { "token": token, "expirationTimestamp": expiration } });
    let mut put = |k: &str, v: String| {
        attributes.insert(k.to_string(), serde_json::Value::String(v));
    };
    put("secretProviderClass", class.metadata.name);
    put("csi.storage.k8s.io/pod.name", pod_name);
    put("csi.storage.k8s.io/pod.namespace", namespace);
    put("csi.storage.k8s.io/pod.uid", pod_uid.clone());
    put("csi.storage.k8s.io/serviceAccount.name", service_account);
    put("csi.storage.k8s.io/ephemeral", "false".into());
    put(TOKENS_KEY, tokens.to_string());
    Ok(MountRequest {
        attributes: serde_json::Value::Object(attributes).to_string(),
        // What the driver's node server sends for a volume without nodePublishSecretRef.
        secrets: "null".into(),
        target_path: format!(
            "/var/lib/kubelet/pods/{pod_uid}/volumes/kubernetes.io~csi/secrets-store/mount"
        ),
        permission: "420".into(),
        current_object_version: vec![],
    })
}

fn read_input(path: &str, what: &str) -> Result<String, String> {
    if path == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| format!("reading {what} from stdin: {e}"))?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("reading {what} {path}: {e}"))
    }
}

pub fn main(args: &[String]) -> i32 {
    let flags_list = all_flags();
    let parsed = match goflag::parse(&flags_list, args) {
        Ok(p) => p,
        Err(e) => return super::usage_error(&e, &flags_list, "mount"),
    };
    let (Some(class_path), Some(token_path)) = (parsed.get("class"), parsed.get("token-file"))
    else {
        eprintln!("-class and -token-file are required\n");
        eprint!("{}", goflag::usage("vault-csi-provider mount", &flags_list));
        return 2;
    };
    let settings = match Settings::from_flags(&parsed, &settings::process_env) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let timeout_text = parsed.get("timeout").unwrap_or("2m");
    let Some(timeout) = settings::parse_duration(timeout_text) else {
        eprintln!("invalid value {timeout_text:?} for -timeout: use a duration like 2m");
        return 2;
    };
    let quiet = if parsed.is_set("log-level") {
        settings.log_level
    } else {
        tracing::level_filters::LevelFilter::WARN
    };
    crate::logs::init(quiet, settings.log_format, settings.log_stream);

    let mut flavour = Flavour::Vault;
    let request = match (|| {
        let class = read_input(class_path, "class file")?;
        flavour = class_flavour(&class);
        let token = read_input(token_path, "token file")?;
        let token = token.trim();
        if token.is_empty() {
            return Err(format!("token file {token_path} is empty"));
        }
        let overrides: BTreeMap<&str, String> =
            ["pod-name", "pod-uid", "namespace", "service-account"]
                .into_iter()
                .filter_map(|k| {
                    parsed
                        .get(k)
                        .filter(|v| !v.is_empty())
                        .map(|v| (k, v.to_string()))
                })
                .collect();
        driver_request(&class, token, &overrides)
    })() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 * 1024 * 1024)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let outcome = runtime.block_on(async {
        match parsed.get("socket").filter(|s| !s.is_empty()) {
            Some(socket) => call_socket(Path::new(socket), request, timeout).await,
            None => {
                let provider =
                    crate::provider::Provider::from_settings(&settings, &settings::process_env)
                        .await
                        .map_err(|e| tonic::Status::failed_precondition(format!("{e:#}")))?;
                // One Mount, once: worth waiting for the key within the timeout.
                provider.load_version_key(timeout / 2).await;
                let deadline = tokio::time::Instant::now() + timeout;
                let attributes = crate::stages::plan::Attributes::parse(&request.attributes)
                    .map_err(|e| crate::error::MountError::from(e).to_status())?;
                let work = provider.mount(&request, &attributes, flavour, deadline);
                match tokio::time::timeout_at(deadline, work).await {
                    Ok(r) => r.map_err(|e| e.to_status()),
                    Err(_) => Err(tonic::Status::deadline_exceeded(
                        "the mount did not finish within -timeout",
                    )),
                }
            }
        }
    });
    match outcome {
        Ok(response) => {
            match write_or_list(&response, parsed.get("out"), parsed.bool("show-values")) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e}");
                    1
                }
            }
        }
        Err(status) => {
            eprintln!(
                "error: rpc error: code = {:?} desc = {}",
                status.code(),
                status.message()
            );
            1
        }
    }
}

/// Calls `Mount` over a Unix socket the way the driver does.
pub async fn call_socket(
    path: &Path,
    request: MountRequest,
    timeout: Duration,
) -> Result<MountResponse, tonic::Status> {
    let channel = crate::client::connect(path).await.map_err(|e| {
        tonic::Status::unavailable(format!("cannot connect to {}: {e}", path.display()))
    })?;
    let mut client =
        crate::proto::csi_driver_provider_client::CsiDriverProviderClient::new(channel)
            .max_decoding_message_size(64 * 1024 * 1024);
    let mut req = tonic::Request::new(request);
    req.set_timeout(timeout);
    client.mount(req).await.map(tonic::Response::into_inner)
}

fn write_or_list(response: &MountResponse, out: Option<&str>, show: bool) -> Result<(), String> {
    let versions: BTreeMap<&str, &str> = response
        .object_version
        .iter()
        .map(|v| (v.id.as_str(), v.version.as_str()))
        .collect();
    if let Some(dir) = out.filter(|d| !d.is_empty()) {
        let dir = Path::new(dir);
        for file in &response.files {
            write_file(dir, &file.path, &file.contents, file.mode as u32 & 0o777)?;
        }
        println!("wrote {} files to {}", response.files.len(), dir.display());
        return Ok(());
    }
    println!("{:<6} {:>8}  {:<44}  PATH", "MODE", "BYTES", "VERSION");
    for file in &response.files {
        println!(
            "{:<6} {:>8}  {:<44}  {}",
            format!("{:04o}", file.mode),
            file.contents.len(),
            versions.get(file.path.as_str()).copied().unwrap_or(""),
            file.path
        );
    }
    if show {
        for file in &response.files {
            println!("\n==> {} <==", file.path);
            println!("{}", String::from_utf8_lossy(&file.contents));
        }
    } else {
        println!("(values hidden; add -show-values to print them)");
    }
    Ok(())
}

/// Writes one file under `dir` without following a symlink anywhere below `dir` (a link
/// left there cannot redirect the write), created with no wider mode than its final one.
fn write_file(dir: &Path, rel: &str, contents: &[u8], mode: u32) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    crate::stages::plan::validate_file_name(rel)
        .map_err(|e| format!("refusing file {rel:?}: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut current = dir.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    let (name, parents) = parts.split_last().ok_or("empty file name")?;
    for part in parents {
        current.push(part);
        match std::fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "{} exists and is not a directory (a symlink is not followed)",
                    current.display()
                ));
            }
            Err(_) => std::fs::DirBuilder::new()
                .mode(0o755)
                .create(&current)
                .map_err(|e| format!("creating {}: {e}", current.display()))?,
        }
    }
    current.push(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&current)
        .map_err(|e| {
            format!(
                "writing {} (a symlink is not followed): {e}",
                current.display()
            )
        })?;
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", current.display()))?;
    f.write_all(contents)
        .map_err(|e| format!("writing {}: {e}", current.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_never_follows_symlinks_and_writes_final_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("f")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("d")).unwrap();
        assert!(write_file(dir.path(), "f", b"secret", 0o600).is_err());
        assert!(write_file(dir.path(), "d/x", b"secret", 0o600).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(!outside.path().join("x").exists());
        write_file(dir.path(), "a/b/c", b"v", 0o640).unwrap();
        let meta = std::fs::metadata(dir.path().join("a/b/c")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        write_file(dir.path(), "a/b/c", b"w", 0o400).unwrap();
        let meta = std::fs::metadata(dir.path().join("a/b/c")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o400);
    }

    #[test]
    fn builds_the_driver_request() {
        let class = r#"
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: app, namespace: team}
spec:
  provider: vault
  parameters:
    roleName: app
    objects: |
      - objectName: a
        secretPath: secret/data/a
"#;
        let req = driver_request(class, "a.b.c", &BTreeMap::new()).unwrap();
        let attrs: serde_json::Value = serde_json::from_str(&req.attributes).unwrap();
        assert_eq!(attrs["roleName"], "app");
        assert_eq!(attrs["secretProviderClass"], "app");
        assert_eq!(attrs["csi.storage.k8s.io/pod.namespace"], "team");
        let tokens: serde_json::Value =
            serde_json::from_str(attrs[TOKENS_KEY].as_str().unwrap()).unwrap();
        assert_eq!(tokens["vault"]["token"], "a.b.c");
        let bad = class.replace("roleName: app", "roleName: 5");
        assert!(
            driver_request(&bad, "t", &BTreeMap::new())
                .unwrap_err()
                .contains("roleName")
        );
        let other = class.replace("provider: vault", "provider: azure");
        assert!(driver_request(&other, "t", &BTreeMap::new()).is_err());
        // An OpenBao class without an audience uses the openbao audience, as on openbao.sock.
        let bao = class.replace("provider: vault", "provider: openbao");
        assert_eq!(class_flavour(&bao).default_audience(), "openbao");
        assert_eq!(class_flavour(class).default_audience(), "vault");
        let req = driver_request(&bao, "a.b.c", &BTreeMap::new()).unwrap();
        let attrs: serde_json::Value = serde_json::from_str(&req.attributes).unwrap();
        let tokens: serde_json::Value =
            serde_json::from_str(attrs[TOKENS_KEY].as_str().unwrap()).unwrap();
        assert_eq!(tokens["openbao"]["token"], "a.b.c");
    }
}
