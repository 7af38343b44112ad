//! Vault addresses as classes, flags and the environment write them: one address, or the
//! comma-separated nodes of one cluster, each `https://`, `http://` or `unix://`. A leaf
//! shared by the parse stage, the operator's policy and the Vault pool.

/// Most nodes one address list may name.
pub const MAX_NODES: usize = 10;

/// The addresses of a comma-separated list, trimmed, empty entries dropped.
pub fn split_nodes(list: &str) -> Vec<&str> {
    list.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect()
}

/// Checks an address, or a comma-separated list of the nodes of one cluster: each one
/// `http://`, `https://` or `unix://` with something after it.
pub fn validate(address: &str) -> Result<(), String> {
    let nodes = split_nodes(address);
    if nodes.is_empty() {
        return Err("no address is given: use https://host:port".into());
    }
    if nodes.len() > MAX_NODES {
        return Err(format!(
            "{} addresses are listed: at most {} nodes of one cluster",
            nodes.len(),
            MAX_NODES
        ));
    }
    for node in nodes {
        let ok = ["http://", "https://", "unix://"].iter().any(|scheme| {
            node.strip_prefix(scheme)
                .is_some_and(|rest| !rest.is_empty())
        });
        if !ok || url::Url::parse(node).is_err() {
            return Err(format!(
                "{} is not a Vault address: use https://host:port, http://host:port or unix:///path/to/agent.sock, or several https:// addresses separated by commas",
                crate::text::quote(node)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_split_and_validate() {
        assert_eq!(
            split_nodes(" https://a:8200, https://b:8200,,https://c:8200 "),
            vec!["https://a:8200", "https://b:8200", "https://c:8200"]
        );
        assert_eq!(split_nodes("unix:///x.sock"), vec!["unix:///x.sock"]);
        assert!(validate("https://a:8200,https://b:8200").is_ok());
        assert!(validate("ftp://a").is_err());
        assert!(validate("").is_err());
        let eleven = ["https://a"; 11].join(",");
        assert!(validate(&eleven).unwrap_err().contains("at most 10"));
    }
}
