//! What the platform team lets a tenant's class do: which Vault addresses it may name, which
//! directories its TLS files may come from, and whether it may pick the token audience or the
//! auth mount. Set once by flags; checked for every Mount right after parsing, before any
//! file is read or Vault is called. Pure.

use crate::stages::plan::MountPlan;
use std::path::{Component, Path, PathBuf};

/// The operator's limits on tenants (`-allowed-vault-addrs`, `-allowed-tls-dirs`,
/// `-allow-class-audience`, `-allow-class-auth-mount`). The default allows everything, as
/// the Go provider does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantPolicy {
    /// Vault addresses a class may name; `None`: any.
    pub vault_addrs: Option<Vec<String>>,
    /// Directories the TLS files a class names must be in; `None`: any.
    pub tls_dirs: Option<Vec<PathBuf>>,
    pub class_audience: bool,
    pub class_auth_mount: bool,
}

impl Default for TenantPolicy {
    fn default() -> Self {
        TenantPolicy {
            vault_addrs: None,
            tls_dirs: None,
            class_audience: true,
            class_auth_mount: true,
        }
    }
}

/// An attribute the operator does not allow, and the flag that would allow it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{attribute} {value} is not allowed on this cluster: {why} (the platform team sets {flag})"
)]
pub struct Refused {
    pub attribute: &'static str,
    pub value: String,
    pub why: &'static str,
    pub flag: &'static str,
}

fn normal_address(a: &str) -> &str {
    a.trim().trim_end_matches('/')
}

/// A path with no `.` or `..` left, when it is absolute.
fn lexical(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir => out.push("/"),
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

impl TenantPolicy {
    /// Checks what the class asks for against the operator's limits.
    pub fn check(&self, plan: &MountPlan) -> Result<(), Refused> {
        if let (Some(allowed), Some(list)) = (&self.vault_addrs, &plan.connection.address) {
            for node in crate::address::split_nodes(list) {
                if !allowed
                    .iter()
                    .any(|a| normal_address(a) == normal_address(node))
                {
                    return Err(Refused {
                        attribute: "vaultAddress",
                        value: crate::text::quote(node),
                        why: "it is not one of the Vault addresses classes may name",
                        flag: "-allowed-vault-addrs",
                    });
                }
            }
        }
        if let Some(dirs) = &self.tls_dirs {
            let c = &plan.connection;
            for (attribute, path) in [
                ("vaultCACertPath", &c.ca_cert),
                ("vaultCADirectory", &c.ca_directory),
                ("vaultTLSClientCertPath", &c.client_cert),
                ("vaultTLSClientKeyPath", &c.client_key),
            ] {
                let Some(path) = path else { continue };
                let inside = lexical(path).is_some_and(|p| {
                    dirs.iter()
                        .any(|d| lexical(d).is_some_and(|d| p.starts_with(d)))
                });
                if !inside {
                    return Err(Refused {
                        attribute,
                        value: crate::text::quote(&path.to_string_lossy()),
                        why: "TLS files must be absolute paths inside the directories the provider allows",
                        flag: "-allowed-tls-dirs",
                    });
                }
            }
        }
        if !self.class_audience
            && let Some(a) = &plan.explicit_audience
        {
            return Err(Refused {
                attribute: "audience",
                value: crate::text::quote(a),
                why: "classes may not choose the token audience",
                flag: "-allow-class-audience",
            });
        }
        if !self.class_auth_mount
            && let Some(m) = &plan.auth_mount
        {
            return Err(Refused {
                attribute: "vaultAuthMountPath",
                value: crate::text::quote(m),
                why: "classes may not choose the auth mount",
                flag: "-allow-class-auth-mount",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::plan::{ConnectionOverrides, MountPlan, PodInfo};

    fn plan(c: ConnectionOverrides, audience: Option<&str>, mount: Option<&str>) -> MountPlan {
        MountPlan {
            pod: PodInfo::default(),
            role: "r".into(),
            auth_mount: mount.map(str::to_string),
            connection: c,
            audience: "vault".into(),
            explicit_audience: audience.map(str::to_string),
            token: None,
            reads: vec![],
            objects: vec![],
        }
    }

    #[test]
    fn default_allows_everything() {
        let p = plan(
            ConnectionOverrides {
                address: Some("https://anywhere:8200".into()),
                ca_cert: Some("/dev/zero".into()),
                ..Default::default()
            },
            Some("x"),
            Some("y"),
        );
        assert!(TenantPolicy::default().check(&p).is_ok());
    }

    #[test]
    fn limits_refuse_and_name_the_flag() {
        let policy = TenantPolicy {
            vault_addrs: Some(vec!["https://vault.vault:8200/".into()]),
            tls_dirs: Some(vec!["/etc/vault-tls".into()]),
            class_audience: false,
            class_auth_mount: false,
        };
        let ok = plan(
            ConnectionOverrides {
                address: Some("https://vault.vault:8200".into()),
                ca_cert: Some("/etc/vault-tls/ca.pem".into()),
                ..Default::default()
            },
            None,
            None,
        );
        assert!(policy.check(&ok).is_ok());
        let e = policy
            .check(&plan(
                ConnectionOverrides {
                    address: Some("https://vault.vault:8200,https://evil:8200".into()),
                    ..Default::default()
                },
                None,
                None,
            ))
            .unwrap_err();
        assert_eq!(
            (e.attribute, e.flag),
            ("vaultAddress", "-allowed-vault-addrs")
        );
        for path in [
            "/etc/vault-tls/../passwd",
            "/dev/zero",
            "etc/vault-tls/ca.pem",
        ] {
            let e = policy
                .check(&plan(
                    ConnectionOverrides {
                        ca_cert: Some(path.into()),
                        ..Default::default()
                    },
                    None,
                    None,
                ))
                .unwrap_err();
            assert_eq!(e.flag, "-allowed-tls-dirs", "{path}");
        }
        let e = policy
            .check(&plan(ConnectionOverrides::default(), Some("other"), None))
            .unwrap_err();
        assert_eq!(e.flag, "-allow-class-audience");
        let e = policy
            .check(&plan(ConnectionOverrides::default(), None, Some("jwt")))
            .unwrap_err();
        assert_eq!(e.flag, "-allow-class-auth-mount");
        assert!(e.to_string().contains("vaultAuthMountPath"));
    }
}
