//! The program's help: what it is, its subcommands, the environment it reads, and each
//! command's usage (a synopsis, what it does, an example, its flags in Go's layout).

use crate::goflag::{self, Flag};

/// The program's name in usage lines.
pub const PROGRAM: &str = "vault-csi-provider";

/// One command's usage.
pub struct Usage {
    /// The subcommand's name; empty for the server.
    pub name: &'static str,
    /// What follows the program (and subcommand) name in the synopsis.
    pub synopsis: &'static str,
    /// One line on what it does.
    pub about: &'static str,
    /// Command lines showing it in use, without the program name.
    pub examples: &'static [&'static str],
}

/// The environment the server (and the subcommands that share its settings) reads: the
/// Vault client's variables, as the Go provider honours them, and the node's.
pub const ENVIRONMENT: &[(&str, &str)] = &[
    ("VAULT_ADDR", "default Vault address (-vault-addr wins)"),
    (
        "VAULT_AGENT_ADDR",
        "address of a Vault Agent or proxy, used instead of VAULT_ADDR",
    ),
    ("VAULT_NAMESPACE", "default Vault namespace"),
    ("VAULT_CACERT", "CA bundle file to verify Vault"),
    ("VAULT_CAPATH", "directory of CA PEM files to verify Vault"),
    ("VAULT_CLIENT_CERT", "client certificate for mutual TLS"),
    ("VAULT_CLIENT_KEY", "client key for mutual TLS"),
    (
        "VAULT_SKIP_VERIFY",
        "true: do not verify Vault's certificate (unsafe)",
    ),
    (
        "VAULT_TLS_SERVER_NAME",
        "name to verify Vault's certificate against",
    ),
    (
        "VAULT_CLIENT_TIMEOUT",
        "deadline of one request to Vault, in seconds or a duration (default 60s)",
    ),
    (
        "VAULT_MAX_RETRIES",
        "retries of a request after a connection failure, 5xx or 412 (default 2)",
    ),
    (
        "NODE_NAME",
        "the node's name (from the downward API): the pods whose leases are renewed and revoked",
    ),
    (
        "KUBECONFIG",
        "Kubernetes client configuration outside a cluster (in a pod: the service account)",
    ),
];

/// The text `help` and `-h` print for the whole program.
pub fn overview(commands: &[&Usage], server_flags: &[Flag]) -> String {
    let mut out = format!(
        "{PROGRAM}: a provider for the Kubernetes Secrets Store CSI driver that serves secrets\n\
         from HashiCorp Vault and OpenBao to pods (a drop-in for HashiCorp's vault-csi-provider).\n\n\
         Usage:\n"
    );
    for c in commands {
        out.push_str(&format!("  {}\n      {}\n", synopsis(c), c.about));
    }
    out.push_str(&format!(
        "  {PROGRAM} help [SUBCOMMAND]\n      this text, or a subcommand's usage\n"
    ));
    out.push_str("\nExamples:\n");
    for c in commands {
        for e in c.examples {
            out.push_str(&format!("  {PROGRAM} {e}\n"));
        }
    }
    out.push_str("\nEnvironment (flags win over it, a class's parameters win over both):\n");
    let width = ENVIRONMENT.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (name, what) in ENVIRONMENT {
        out.push_str(&format!("  {name:width$}  {what}\n"));
    }
    out.push_str("\nFlags of the server:\n");
    out.push_str(&goflag::defaults(server_flags));
    out
}

/// One command's usage: synopsis, what it does, examples, flags.
pub fn command(usage: &Usage, flags: &[Flag]) -> String {
    let mut out = format!(
        "Usage: {}\n\n{}.\n\nExample:\n",
        synopsis(usage),
        usage.about
    );
    for e in usage.examples {
        out.push_str(&format!("  {PROGRAM} {e}\n"));
    }
    if !flags.is_empty() {
        out.push_str("\nFlags:\n");
        out.push_str(&goflag::defaults(flags));
    }
    out
}

fn synopsis(usage: &Usage) -> String {
    [PROGRAM, usage.name, usage.synopsis]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::goflag::Kind;

    const SUB: Usage = Usage {
        name: "check",
        synopsis: "[flags] FILE",
        about: "validate things",
        examples: &["check a.yaml"],
    };

    #[test]
    fn a_command_shows_synopsis_example_and_typed_flags() {
        let text = command(&SUB, &[Flag::new("n", Kind::Int, "3", "how many")]);
        assert!(
            text.starts_with("Usage: vault-csi-provider check [flags] FILE\n\nvalidate things.\n")
        );
        assert!(
            text.contains("\n  vault-csi-provider check a.yaml\n"),
            "{text}"
        );
        assert!(
            text.contains("  -n int\n    \thow many (default 3)\n"),
            "{text}"
        );
    }

    #[test]
    fn the_overview_lists_commands_environment_and_flags() {
        let text = overview(&[&SUB], &[Flag::new("b", Kind::Bool, "true", "on")]);
        assert!(
            text.contains("\n  vault-csi-provider check [flags] FILE\n      validate things\n")
        );
        assert!(text.contains("vault-csi-provider help [SUBCOMMAND]"));
        for (name, _) in ENVIRONMENT {
            assert!(text.contains(&format!("\n  {name} ")), "{name}");
        }
        assert!(text.ends_with("  -b\n    \ton (default true)\n"), "{text}");
    }
}
