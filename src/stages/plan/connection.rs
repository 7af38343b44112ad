//! The connection settings a class may override (`vaultAddress`, `vaultNamespace`, TLS,
//! the auth mount), read from its parameters with the OpenBao fork's spellings (`bao*` >
//! `openbao*` > `vault*`), each bounded in size and free of control characters. Pure.

use super::PlanError;
use std::collections::HashMap;
use std::path::PathBuf;

/// Longest name-like parameter (role, audience, namespace, auth mount, TLS server name).
pub const MAX_NAME: usize = 512;
/// Longest file path parameter.
pub const MAX_PATH: usize = 4096;
/// Longest `vaultAddress` (a list of up to ten nodes).
pub const MAX_ADDRESS: usize = 8192;

/// Connection settings a class may override; `None` keeps the process setting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionOverrides {
    pub address: Option<String>,
    pub namespace: Option<String>,
    pub skip_verify: Option<bool>,
    pub ca_cert: Option<PathBuf>,
    pub ca_directory: Option<PathBuf>,
    pub server_name: Option<String>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// `value` of parameter `key` if it is at most `max` bytes with no control characters.
pub(super) fn bounded<'a>(key: &str, value: &'a str, max: usize) -> Result<&'a str, PlanError> {
    if value.len() > max {
        return Err(bad_param(
            key,
            format!("it is {} bytes, more than the {max} allowed", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(bad_param(
            key,
            format!("{} contains control characters", crate::text::quote(value)),
        ));
    }
    Ok(value)
}

pub(super) fn bad_param(key: &str, reason: impl Into<String>) -> PlanError {
    PlanError::BadParameter {
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// The class parameters and volume attributes, with the OpenBao spellings resolved.
pub(super) struct Params<'a> {
    pub(super) map: &'a HashMap<String, String>,
}

impl Params<'_> {
    /// Looks up a `vault*` key, preferring `bao*`, then `openbao*`, then `vault*`.
    /// Returns the key actually found, for messages.
    pub(super) fn vault_key(&self, suffix: &str) -> Option<(String, &str)> {
        debug_assert!(SUFFIXES.contains(&suffix), "{suffix} is not in SUFFIXES");
        PREFIXES.iter().find_map(|prefix| {
            let key = format!("{prefix}{suffix}");
            self.map.get(&key).map(|v| (key, v.as_str()))
        })
    }

    pub(super) fn vault(&self, suffix: &str) -> Option<(String, &str)> {
        self.vault_key(suffix).filter(|(_, v)| !v.is_empty())
    }

    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.map
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// The spellings of the connection parameters: the OpenBao fork's first, then the Go
/// provider's (`baoAddress`, `openbaoAddress`, `vaultAddress`).
pub(super) const PREFIXES: [&str; 3] = ["bao", "openbao", "vault"];

/// Every connection parameter a Mount reads, after its prefix.
pub(super) const SUFFIXES: [&str; 10] = [
    "Address",
    "Namespace",
    "AuthMountPath",
    "KubernetesMountPath",
    "SkipTLSVerify",
    "CACertPath",
    "CADirectory",
    "TLSServerName",
    "TLSClientCertPath",
    "TLSClientKeyPath",
];

pub(super) fn validate_auth_mount(key: &str, mount: &str) -> Result<(), PlanError> {
    for segment in mount.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(bad_param(
                key,
                format!(
                    "{} is not a mount path: use a name such as kubernetes or jwt",
                    crate::text::quote(mount)
                ),
            ));
        }
        if segment
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "?#%\\".contains(c))
        {
            return Err(bad_param(
                key,
                format!(
                    "{} contains characters a mount path cannot have",
                    crate::text::quote(mount)
                ),
            ));
        }
    }
    Ok(())
}

pub(super) fn parse_connection(params: &Params<'_>) -> Result<ConnectionOverrides, PlanError> {
    let path = |suffix: &str| -> Result<Option<PathBuf>, PlanError> {
        params
            .vault(suffix)
            .map(|(key, v)| bounded(&key, v, MAX_PATH).map(PathBuf::from))
            .transpose()
    };
    let name = |suffix: &str| -> Result<Option<String>, PlanError> {
        params
            .vault(suffix)
            .map(|(key, v)| bounded(&key, v, MAX_NAME).map(str::to_string))
            .transpose()
    };
    let skip_verify = match params.vault("SkipTLSVerify") {
        Some((key, v)) => Some(crate::goflag::parse_go_bool(v).ok_or_else(|| {
            bad_param(
                &key,
                format!(
                    "{} is not a boolean: use true or false",
                    crate::text::quote(v)
                ),
            )
        })?),
        None => None,
    };
    let client_cert = path("TLSClientCertPath")?;
    let client_key = path("TLSClientKeyPath")?;
    if client_cert.is_some() != client_key.is_some() {
        let (have, missing) = if client_cert.is_some() {
            ("vaultTLSClientCertPath", "vaultTLSClientKeyPath")
        } else {
            ("vaultTLSClientKeyPath", "vaultTLSClientCertPath")
        };
        return Err(bad_param(
            have,
            format!("a client certificate needs both: set {missing} too"),
        ));
    }
    let address = match params.vault("Address") {
        Some((key, v)) => {
            bounded(&key, v, MAX_ADDRESS)?;
            crate::address::validate(v).map_err(|reason| bad_param(&key, reason))?;
            Some(v.to_string())
        }
        None => None,
    };
    Ok(ConnectionOverrides {
        address,
        namespace: name("Namespace")?.map(|v| v.trim_matches('/').to_string()),
        skip_verify,
        ca_cert: path("CACertPath")?,
        ca_directory: path("CADirectory")?,
        server_name: name("TLSServerName")?,
        client_cert,
        client_key,
    })
}
