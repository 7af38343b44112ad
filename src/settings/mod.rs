//! Process settings: environment, then flags, each later one winning, read once at start
//! into typed values before any I/O. Class parameters override some of these per Mount
//! (see `plan`). The environment is passed in as a lookup function so tests feed a map.

mod flags;
mod values;
mod vault;

pub use flags::SERVER_FLAGS;
pub use values::parse_duration;
pub use vault::{TlsSettings, VaultSettings};

use crate::goflag::{self, Parsed};
use crate::stages::policy::TenantPolicy;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use values::{nonempty, parse_listen_addr, parse_log_level, resolve_group};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stderr,
    Stdout,
}

/// Everything the server needs, typed.
#[derive(Debug, Clone)]
pub struct Settings {
    pub endpoints: Vec<PathBuf>,
    /// `None` disables the health listener (`-health-addr=""`).
    pub health_addr: Option<SocketAddr>,
    pub log_level: tracing::level_filters::LevelFilter,
    pub log_format: LogFormat,
    pub log_stream: LogStream,
    pub hmac_secret_name: String,
    /// Whether a missing key Secret is created: the server's default; `mount` turns it off.
    pub create_version_key: bool,
    pub hmac_key_file: Option<PathBuf>,
    pub cache_size: i64,
    pub vault: VaultSettings,
    /// How long in-flight mounts may run after SIGTERM before the process exits anyway.
    pub shutdown_grace: Duration,
    /// Deadline for a Mount whose caller sent none.
    pub default_deadline: Duration,
    /// Distinct reads of one Mount that run at once.
    pub parallel_reads: usize,
    /// Mode of the socket files.
    pub socket_mode: u32,
    /// Group to give the socket files, if any.
    pub socket_group: Option<u32>,
    /// Largest Mount answer, in bytes (the driver's `--max-call-recv-msg-size`).
    pub max_response_bytes: usize,
    /// Requests in flight to one Vault at most.
    pub vault_concurrency: usize,
    /// How long a finished static read serves identical reads of the same identity.
    pub read_share_window: Duration,
    /// Bounds on templates.
    pub template_limits: crate::stages::template::Limits,
    /// Leases and certificates kept for rotation polls at most.
    pub lease_store_size: usize,
    /// What tenants' classes may ask for.
    pub tenant_policy: TenantPolicy,
    /// The node this provider serves (`NODE_NAME`, from the downward API's
    /// `spec.nodeName`): whose pods are watched, to renew and revoke their leases.
    pub node_name: Option<String>,
    /// Renew leases handed to pods while they run (`-lease-renewal`).
    pub lease_renewal: bool,
    /// Revoke leases handed to pods once they are gone (`-lease-revocation`).
    pub lease_revocation: bool,
}

/// A setting that cannot be used, named so the operator can fix the DaemonSet.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A flag or environment variable has a value the provider cannot use.
    #[error("invalid value {value:?} for {name}: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
}

fn invalid(name: &str, value: &str, reason: &str) -> SettingsError {
    SettingsError::Invalid {
        name: name.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// Reads one environment variable; empty counts as unset.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment as an [`EnvLookup`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A server flag's value as given, else its default.
fn flag_value(flags: &Parsed, name: &str) -> String {
    flags
        .get(name)
        .or_else(|| {
            SERVER_FLAGS
                .iter()
                .find(|f| f.name == name)
                .map(|f| f.default)
        })
        .unwrap_or("")
        .to_string()
}

/// A switch's value as given, else its default.
fn bool_flag(flags: &Parsed, name: &str) -> Result<bool, SettingsError> {
    let text = flag_value(flags, name);
    goflag::parse_go_bool(&text)
        .ok_or_else(|| invalid(&format!("-{name}"), &text, "use true or false"))
}

/// The operator's limits on tenants' classes, from `-allowed-vault-addrs`,
/// `-allowed-tls-dirs`, `-allow-class-audience` and `-allow-class-auth-mount` (the server
/// and `check` read them alike).
pub fn tenant_policy(flags: &Parsed) -> Result<TenantPolicy, SettingsError> {
    let value = |name: &str| flag_value(flags, name);
    let list = |name: &str| -> Option<Vec<String>> {
        let v: Vec<String> = value(name)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        (!v.is_empty()).then_some(v)
    };
    let allow = |name: &str| bool_flag(flags, name);
    let tls_dirs = list("allowed-tls-dirs")
        .map(|dirs| dirs.into_iter().map(PathBuf::from).collect::<Vec<_>>());
    if let Some(d) = tls_dirs
        .as_ref()
        .and_then(|d| d.iter().find(|d| !d.is_absolute()))
    {
        return Err(invalid(
            "-allowed-tls-dirs",
            &d.to_string_lossy(),
            "use absolute directories",
        ));
    }
    Ok(TenantPolicy {
        vault_addrs: list("allowed-vault-addrs"),
        tls_dirs,
        class_audience: allow("allow-class-audience")?,
        class_auth_mount: allow("allow-class-auth-mount")?,
    })
}

impl Settings {
    /// Builds settings from parsed server flags and the environment.
    pub fn from_flags(flags: &Parsed, env: EnvLookup<'_>) -> Result<Self, SettingsError> {
        let value = |name: &str| flag_value(flags, name);

        let endpoints: Vec<PathBuf> = value("endpoint")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect();
        if endpoints.is_empty() {
            return Err(invalid(
                "-endpoint",
                "",
                "give the socket path to listen on",
            ));
        }

        let health = value("health-addr");
        let health_addr = if health.is_empty() {
            None
        } else {
            Some(
                parse_listen_addr(&health)
                    .ok_or_else(|| invalid("-health-addr", &health, "use host:port or :port"))?,
            )
        };

        let level_text = value("log-level");
        let mut log_level = parse_log_level(&level_text).ok_or_else(|| {
            invalid(
                "-log-level",
                &level_text,
                "use trace, debug, info, warn, error or off",
            )
        })?;
        if flags.bool("debug") && log_level < tracing::level_filters::LevelFilter::DEBUG {
            log_level = tracing::level_filters::LevelFilter::DEBUG;
        }
        let log_format = match value("log-format").as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => return Err(invalid("-log-format", other, "use text or json")),
        };
        let log_stream = match value("log-stream").as_str() {
            "stderr" => LogStream::Stderr,
            "stdout" => LogStream::Stdout,
            other => return Err(invalid("-log-stream", other, "use stderr or stdout")),
        };

        let cache_text = value("cache-size");
        let cache_size = cache_text
            .parse::<i64>()
            .map_err(|_| invalid("-cache-size", &cache_text, "use a whole number"))?;

        let grace_text = value("shutdown-grace");
        let shutdown_grace = parse_duration(&grace_text)
            .ok_or_else(|| invalid("-shutdown-grace", &grace_text, "use a duration like 25s"))?;

        let par_text = value("parallel-reads");
        let parallel_reads = par_text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=256).contains(n))
            .ok_or_else(|| invalid("-parallel-reads", &par_text, "use a number from 1 to 256"))?;

        let mode_text = value("socket-mode");
        let socket_mode = u32::from_str_radix(mode_text.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                invalid(
                    "-socket-mode",
                    &mode_text,
                    "use an octal mode such as 0600 or 0660",
                )
            })?;
        let group_text = value("socket-group");
        let socket_group = if group_text.is_empty() {
            None
        } else {
            Some(resolve_group(&group_text).ok_or_else(|| {
                invalid(
                    "-socket-group",
                    &group_text,
                    "no such group (use a name from /etc/group or a numeric id)",
                )
            })?)
        };
        let max_text = value("max-response-size");
        let max_response_bytes = max_text
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1024)
            .ok_or_else(|| {
                invalid(
                    "-max-response-size",
                    &max_text,
                    "use a number of bytes, at least 1024",
                )
            })?;

        let conc_text = value("vault-concurrency");
        let vault_concurrency = conc_text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| {
                invalid(
                    "-vault-concurrency",
                    &conc_text,
                    "use a number from 1 to 10000",
                )
            })?;
        let window_text = value("read-share-window");
        let read_share_window = parse_duration(&window_text)
            .filter(|d| *d <= Duration::from_secs(3600))
            .ok_or_else(|| {
                invalid(
                    "-read-share-window",
                    &window_text,
                    "use a duration like 0s or 5s",
                )
            })?;

        let number = |name: &str, min: u64, max: u64| -> Result<u64, SettingsError> {
            let text = value(name);
            text.parse::<u64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    invalid(
                        &format!("-{name}"),
                        &text,
                        &format!("use a number from {min} to {max}"),
                    )
                })
        };
        let template_limits = crate::stages::template::Limits {
            fuel: number("template-fuel", 100, 1_000_000_000)?,
            recursion: number("template-recursion-limit", 1, 500)? as usize,
            max_output: number("template-max-output", 1024, 64 * 1024 * 1024)? as usize,
        };

        let lease_store_size = number("lease-store-size", 0, 1_000_000)? as usize;
        let node_name = env("NODE_NAME").map(|n| n.trim().to_string());
        if let Some(n) = &node_name
            && !crate::text::valid_name(n)
        {
            return Err(invalid(
                "NODE_NAME",
                n,
                "not a Kubernetes node name: set it from the downward API's spec.nodeName",
            ));
        }
        let tenant_policy = tenant_policy(flags)?;

        let vault = VaultSettings::from_sources(flags, env)?;

        Ok(Settings {
            endpoints,
            health_addr,
            log_level,
            log_format,
            log_stream,
            hmac_secret_name: value("hmac-secret-name"),
            create_version_key: true,
            hmac_key_file: nonempty(flags, "hmac-key-file").map(PathBuf::from),
            cache_size,
            vault,
            shutdown_grace,
            default_deadline: Duration::from_secs(120),
            parallel_reads,
            socket_mode,
            socket_group,
            max_response_bytes,
            vault_concurrency,
            read_share_window,
            template_limits,
            lease_store_size,
            tenant_policy,
            node_name,
            lease_renewal: bool_flag(flags, "lease-renewal")?,
            lease_revocation: bool_flag(flags, "lease-revocation")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(args: &[&str], env: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let parsed = goflag::parse(SERVER_FLAGS, &args).unwrap();
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_flags(&parsed, &|k| env.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_go_provider() {
        let s = settings(&[], &[]).unwrap();
        assert_eq!(s.endpoints, vec![PathBuf::from("/tmp/vault.sock")]);
        assert_eq!(s.health_addr, Some("[::]:8080".parse().unwrap()));
        assert_eq!(s.vault.address, "https://127.0.0.1:8200");
        assert_eq!(s.vault.auth_mount, "kubernetes");
        assert_eq!(s.vault.timeout, Duration::from_secs(60));
        assert_eq!(s.vault.max_retries, 2);
        assert_eq!(s.hmac_secret_name, "vault-csi-provider-hmac-key");
        assert_eq!(s.cache_size, 1000);
    }

    #[test]
    fn flags_beat_environment() {
        let env = [
            ("VAULT_ADDR", "http://env:8200"),
            ("VAULT_NAMESPACE", "envns"),
        ];
        let s = settings(&[], &env).unwrap();
        assert_eq!(s.vault.address, "http://env:8200");
        assert_eq!(s.vault.namespace.as_deref(), Some("envns"));
        let s = settings(
            &[
                "-vault-addr=http://flag:8200",
                "--vault-namespace",
                "flagns",
            ],
            &env,
        )
        .unwrap();
        assert_eq!(s.vault.address, "http://flag:8200");
        assert_eq!(s.vault.namespace.as_deref(), Some("flagns"));
        let s = settings(
            &[],
            &[
                ("VAULT_ADDR", "http://a"),
                ("VAULT_AGENT_ADDR", "unix:///x.sock"),
            ],
        )
        .unwrap();
        assert_eq!(s.vault.address, "unix:///x.sock");
    }

    #[test]
    fn durations_and_retries() {
        let s = settings(
            &[],
            &[("VAULT_CLIENT_TIMEOUT", "5"), ("VAULT_MAX_RETRIES", "0")],
        )
        .unwrap();
        assert_eq!(s.vault.timeout, Duration::from_secs(5));
        assert_eq!(s.vault.max_retries, 0);
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("soon"), None);
        assert!(settings(&[], &[("VAULT_CLIENT_TIMEOUT", "x")]).is_err());
        assert!(settings(&[], &[("VAULT_SKIP_VERIFY", "yes")]).is_err());
    }

    #[test]
    fn log_levels_and_debug() {
        let s = settings(&["-debug"], &[]).unwrap();
        assert_eq!(s.log_level, tracing::level_filters::LevelFilter::DEBUG);
        assert!(settings(&["-log-level=loud"], &[]).is_err());
        let s = settings(&["-health-addr="], &[]).unwrap();
        assert_eq!(s.health_addr, None);
        let s = settings(&["-endpoint=/a/vault.sock,/a/openbao.sock"], &[]).unwrap();
        assert_eq!(s.endpoints.len(), 2);
        // Repeated, as the help says: every socket is served, none silently dropped.
        let s = settings(
            &[
                "-endpoint=/a/vault.sock",
                "-endpoint",
                "/a/openbao.sock,/b/x.sock",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            s.endpoints,
            ["/a/vault.sock", "/a/openbao.sock", "/b/x.sock"].map(PathBuf::from)
        );
        let s = settings(&["-socket-mode=0660", "-socket-group=0"], &[]).unwrap();
        assert_eq!((s.socket_mode, s.socket_group), (0o660, Some(0)));
        assert_eq!(settings(&[], &[]).unwrap().socket_mode, 0o600);
        assert_eq!(resolve_group("root"), Some(0));
        assert!(settings(&["-socket-mode=999"], &[]).is_err());
        assert!(settings(&["-socket-group=no-such-group-here"], &[]).is_err());
    }
}
