//! Where Vault is and how to talk to it, as the process starts every Mount from: the Go
//! provider's environment (`VAULT_ADDR`, `VAULT_CACERT`, ...) under the flags
//! (`-vault-addr`, `-vault-tls-*`, ...), each later one winning. A class overrides some
//! per Mount (`stages::plan`).

use super::values::{nonempty, parse_duration};
use super::{EnvLookup, SettingsError, invalid};
use crate::goflag::{self, Parsed};
use std::path::PathBuf;
use std::time::Duration;

/// Where Vault is and how to talk to it: the defaults every Mount starts from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VaultSettings {
    /// Base address, e.g. `https://vault:8200` or `unix:///var/run/vault/agent.sock`.
    pub address: String,
    /// Auth mount used when a class names none.
    pub auth_mount: String,
    pub namespace: Option<String>,
    pub tls: TlsSettings,
    /// Per-request timeout (`VAULT_CLIENT_TIMEOUT`).
    pub timeout: Duration,
    /// Retries after the first attempt for 5xx, 412 and connection failures (`VAULT_MAX_RETRIES`).
    pub max_retries: u32,
}

/// TLS settings for the connection to Vault.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsSettings {
    pub ca_cert: Option<PathBuf>,
    pub ca_directory: Option<PathBuf>,
    pub server_name: Option<String>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub skip_verify: bool,
}

impl VaultSettings {
    pub(super) fn from_sources(flags: &Parsed, env: EnvLookup<'_>) -> Result<Self, SettingsError> {
        let flag = |name: &str| nonempty(flags, name);
        let pick = |flag_name: &str, env_name: &str| -> Option<String> {
            flag(flag_name)
                .map(str::to_string)
                .or_else(|| env(env_name))
        };
        let address = flag("vault-addr")
            .map(str::to_string)
            .or_else(|| env("VAULT_AGENT_ADDR"))
            .or_else(|| env("VAULT_ADDR"))
            .unwrap_or_else(|| "https://127.0.0.1:8200".to_string());

        let env_skip = match env("VAULT_SKIP_VERIFY") {
            Some(v) => goflag::parse_go_bool(&v)
                .ok_or_else(|| invalid("VAULT_SKIP_VERIFY", &v, "use true or false"))?,
            None => false,
        };
        let tls = TlsSettings {
            ca_cert: pick("vault-tls-ca-cert", "VAULT_CACERT").map(PathBuf::from),
            ca_directory: pick("vault-tls-ca-directory", "VAULT_CAPATH").map(PathBuf::from),
            server_name: pick("vault-tls-server-name", "VAULT_TLS_SERVER_NAME"),
            client_cert: pick("vault-tls-client-cert", "VAULT_CLIENT_CERT").map(PathBuf::from),
            client_key: pick("vault-tls-client-key", "VAULT_CLIENT_KEY").map(PathBuf::from),
            skip_verify: env_skip || flags.bool("vault-tls-skip-verify"),
        };

        let timeout = match env("VAULT_CLIENT_TIMEOUT") {
            Some(v) => parse_duration(&v).filter(|d| !d.is_zero()).ok_or_else(|| {
                invalid(
                    "VAULT_CLIENT_TIMEOUT",
                    &v,
                    "use seconds or a duration like 30s",
                )
            })?,
            None => Duration::from_secs(60),
        };
        let max_retries = match env("VAULT_MAX_RETRIES") {
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= 20)
                .ok_or_else(|| invalid("VAULT_MAX_RETRIES", &v, "use a number from 0 to 20"))?,
            None => 2,
        };

        Ok(VaultSettings {
            address,
            auth_mount: flag("vault-mount").unwrap_or("kubernetes").to_string(),
            namespace: pick("vault-namespace", "VAULT_NAMESPACE"),
            tls,
            timeout,
            max_retries,
        })
    }
}
