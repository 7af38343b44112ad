//! `vault-csi-provider mount`: answers "what would my pod get?". Reads a
//! SecretProviderClass YAML file and a service-account token, builds the MountRequest the
//! driver would send, and runs it in-process or against a running provider (`-socket`).
//! Writes the files into a directory, or lists them (values hidden unless asked).

mod output;

use super::class::{class_flavour, driver_request};
use super::help::{self, Usage};
use crate::goflag::{self, Flag, Kind};
use crate::proto::{MountRequest, MountResponse};
use crate::provider::MountError;
use crate::server::status;
use crate::settings::{self, SERVER_FLAGS, Settings};
use crate::stages::flavour::Flavour;
use crate::stages::plan::RawMount;
use output::write_or_list;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

pub const USAGE: Usage = Usage {
    name: "mount",
    synopsis: "-class FILE -token-file FILE [flags]",
    about: "what would my pod get: one Mount of a class with a token, as the driver calls it; lists or writes the files",
    examples: &[
        "mount -class class.yaml -token-file <(kubectl create token app --audience vault) -vault-addr=https://vault.example:8200",
    ],
};

const OWN_FLAGS: &[Flag] = &[
    Flag::new(
        "class",
        Kind::String,
        "",
        "SecretProviderClass YAML file (required; - for stdin)",
    ),
    Flag::new(
        "token-file",
        Kind::String,
        "",
        "file holding the pod's service-account token, e.g. from kubectl create token (required)",
    ),
    Flag::new(
        "socket",
        Kind::String,
        "",
        "call the provider serving this socket instead of running the mount in-process",
    ),
    Flag::new(
        "out",
        Kind::String,
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
        Kind::String,
        "",
        "pod name to send (default: from the token, else vault-csi-provider-mount)",
    ),
    Flag::new(
        "pod-uid",
        Kind::String,
        "",
        "pod uid to send (default: from the token)",
    ),
    Flag::new(
        "namespace",
        Kind::String,
        "",
        "pod namespace (default: from the token, else the class's namespace, else default)",
    ),
    Flag::new(
        "service-account",
        Kind::String,
        "",
        "service account name (default: from the token)",
    ),
    Flag::new("timeout", Kind::Duration, "2m", "deadline of the mount"),
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

pub fn flags() -> Vec<Flag> {
    let mut v = OWN_FLAGS.to_vec();
    v.extend(
        SERVER_FLAGS
            .iter()
            .filter(|f| SHARED.contains(&f.name))
            .copied(),
    );
    v
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
    let flags_list = flags();
    let parsed = match goflag::parse(&flags_list, args) {
        Ok(p) => p,
        Err(e) => return super::usage_error(&e, &USAGE, &flags_list),
    };
    let (Some(class_path), Some(token_path)) = (parsed.get("class"), parsed.get("token-file"))
    else {
        eprintln!("-class and -token-file are required\n");
        eprint!("{}", help::command(&USAGE, &flags_list));
        return 2;
    };
    let settings = match Settings::from_flags(&parsed, &settings::process_env) {
        // Run from a laptop against someone's cluster: read the version key, never create it.
        Ok(s) => Settings {
            create_version_key: false,
            ..s
        },
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

    let runtime = match super::runtime() {
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
                    .map_err(|e| status::status(&MountError::from(e)))?;
                let raw = RawMount {
                    attributes: &attributes,
                    secrets: &request.secrets,
                    permission: &request.permission,
                    flavour,
                };
                let work = async {
                    let volume = provider.mount(&raw, deadline).await?;
                    status::response(volume, settings.max_response_bytes)
                };
                match tokio::time::timeout_at(deadline, work).await {
                    Ok(r) => r.map_err(|e| status::status(&e)),
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
    let channel = super::client::connect(path).await.map_err(|e| {
        tonic::Status::unavailable(format!("cannot connect to {}: {e}", path.display()))
    })?;
    let mut client =
        crate::proto::csi_driver_provider_client::CsiDriverProviderClient::new(channel)
            .max_decoding_message_size(64 * 1024 * 1024);
    let mut req = tonic::Request::new(request);
    req.set_timeout(timeout);
    client.mount(req).await.map(tonic::Response::into_inner)
}
