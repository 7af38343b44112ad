//! Which provider a class is served as: `vault` (hashicorp/vault-csi-provider) or
//! `openbao` (openbao/openbao-csi-provider). It decides the token audience of a class that
//! names none, and whose Go versions to match. Decided once, at the edge: from the socket a
//! Mount arrives on (`openbao.sock`), or from a class file's `spec.provider`. Pure.

/// The provider a class is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavour {
    /// hashicorp/vault-csi-provider (`provider: vault`, `vault.sock`).
    #[default]
    Vault,
    /// openbao/openbao-csi-provider (`provider: openbao`, `openbao.sock`).
    OpenBao,
}

impl Flavour {
    /// The flavour of a socket: `openbao` on `openbao.sock`, `vault` everywhere else.
    pub fn of_socket(socket: &std::path::Path) -> Flavour {
        match socket.file_stem().and_then(|s| s.to_str()) {
            Some("openbao") => Flavour::OpenBao,
            _ => Flavour::Vault,
        }
    }

    /// The flavour of a class's `spec.provider`.
    pub fn of_provider(provider: &str) -> Flavour {
        match provider {
            "openbao" => Flavour::OpenBao,
            _ => Flavour::Vault,
        }
    }

    /// The service-account token audience of a class that names none, as each provider
    /// defaults it.
    pub fn default_audience(self) -> &'static str {
        match self {
            Flavour::Vault => "vault",
            Flavour::OpenBao => "openbao",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_and_providers_decide_the_audience() {
        use std::path::Path;
        assert_eq!(
            Flavour::of_socket(Path::new("/provider/openbao.sock")),
            Flavour::OpenBao
        );
        assert_eq!(
            Flavour::of_socket(Path::new("/provider/vault.sock")),
            Flavour::Vault
        );
        assert_eq!(Flavour::of_socket(Path::new("/tmp/x.sock")), Flavour::Vault);
        assert_eq!(
            Flavour::of_provider("openbao").default_audience(),
            "openbao"
        );
        assert_eq!(Flavour::of_provider("vault").default_audience(), "vault");
    }
}
