# The Vault Agent configuration of the provider's sidecar. kustomization.yaml turns this
# file into the ConfigMap vault-csi-provider-agent-config (key config.hcl; its name gets a
# suffix that changes with the content, so a change here rolls the DaemonSet: the file is
# mounted with subPath, which a running pod would never see updated), mounted at
# /etc/vault/config.hcl in the vault-agent container.
#
# The chart's agent configuration (vault-helm templates/csi-agent-configmap.yaml), plus the
# socket's owner, group and mode: the chart's provider keeps root's capabilities and so
# ignores file modes, ours drops them all and reaches the socket through its group (the
# pod's supplementalGroups). An agent applies socket_mode only with all three set.

# Your Vault, and how the agent verifies its certificate (kustomization.yaml says more).
vault {
  address = "https://vault.vault.svc:8200"
  # A CA other than the system roots of the agent's image: the bundle mounted into the
  # vault-agent container (kustomization.yaml shows the patch that mounts it here).
  # ca_cert = "/etc/vault/tls/ca.crt"
  # The name in Vault's certificate, when it is not the address's host.
  # tls_server_name = "vault.example.com"
}

cache {}

listener "unix" {
  address      = "/var/run/vault/agent.sock"
  tls_disable  = true
  socket_user  = "100"
  socket_group = "1000"
  socket_mode  = "0660"
}
