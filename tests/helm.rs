//! Drop-in through the Helm charts users already run. hashicorp/vault-helm and
//! openbao/openbao-helm start the provider container with a fixed argument list and, with
//! their agent sidecar on (both charts' default), `VAULT_ADDR=unix:///var/run/vault/agent.sock`,
//! the agent configured with `cache {}` and a `listener "unix"` on that socket and no
//! auto_auth (the provider logs in itself, through the agent). Each test starts OpenBao's
//! own agent (`bao agent`), or its successor for API proxying (`bao proxy`), with the
//! chart's configuration, then this provider's binary with exactly the chart's arguments
//! and environment (paths moved into a temporary directory, and `-health-addr` on a free
//! port because tests run in parallel), and mounts through the driver's socket. So
//! replacing the chart's image with this one (`csi.image.*` in the values) is all it takes.
//! The environment is the chart's as `deploy/helm/post-renderer` leaves it (NODE_NAME added
//! from the downward API, the pods RBAC in its ClusterRole), so the provider also watches
//! its node's pods to renew and revoke their leases.
//!
//! The chart facts, from the charts' templates:
//! - vault-helm `templates/csi-daemonset.yaml`: args `--endpoint=/provider/vault.sock`,
//!   `--debug={{csi.debug}}` (`--debug=false`), since hashicorp/vault-helm#1048 (2024) a
//!   log level in its place (`--log-level=info` with the default `csi.logLevel`, as that
//!   pull request's unit test expects),
//!   `--hmac-secret-name={{vault.name}}-csi-provider-hmac-key` (`csi.hmacSecretName`
//!   overrides), then `csi.extraArgs`; env `VAULT_ADDR=unix:///var/run/vault/agent.sock`
//!   when `csi.agent.enabled` (default true); the agent container runs
//!   `vault agent -config=/etc/vault/config.hcl` with `VAULT_LOG_LEVEL=info`,
//!   `VAULT_LOG_FORMAT=standard`, both containers mounting an in-memory emptyDir at
//!   /var/run/vault.
//! - vault-helm `templates/csi-agent-configmap.yaml`: `vault { "address" = ... }`,
//!   `cache {}`, `listener "unix" { address = "/var/run/vault/agent.sock" tls_disable = true }`.
//! - openbao-helm `charts/openbao/templates/csi-daemonset.yaml` (chart 0.18): args
//!   `--endpoint={{csi.daemonSet.endpoint}}` (default /provider/openbao.sock),
//!   `--debug={{csi.debug}}`, `--hmac-secret-name={{openbao.name}}-csi-provider-hmac-key`,
//!   then `csi.extraArgs`; the same VAULT_ADDR; the agent runs
//!   `bao agent -config=/etc/vault/config.hcl` with `BAO_LOG_LEVEL=info`,
//!   `BAO_LOG_FORMAT=standard`; its config map is vault-helm's, with the same socket.

mod common;

use common::kits::*;
use common::kube::{KubeApi, PROVIDER_NAMESPACE};
use common::*;
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;
use tonic::Code;

/// What one chart renders with its default values (and `csi.enabled=true`).
struct Chart {
    /// The chart's name (`vault.name`, `openbao.name`): the provider container and its
    /// labels are `<name>-csi-provider`.
    name: &'static str,
    /// The provider container's `args`.
    args: &'static [&'static str],
    /// The provider container's `env`.
    env: &'static [(&'static str, &'static str)],
    /// The agent container's `env`.
    agent_env: &'static [(&'static str, &'static str)],
    /// The audience a class without one uses on the chart's socket.
    audience: &'static str,
    /// The key Secret the provider keeps object versions with.
    hmac_secret: &'static str,
}

/// The provider's environment with the agent on, in both charts.
const AGENT_ENV: &[(&str, &str)] = &[("VAULT_ADDR", "unix:///var/run/vault/agent.sock")];

/// hashicorp/vault-helm since hashicorp/vault-helm#1048 (`csi.logLevel`).
const VAULT_HELM: Chart = Chart {
    name: "vault",
    args: &[
        "--endpoint=/provider/vault.sock",
        "--log-level=info",
        "--hmac-secret-name=vault-csi-provider-hmac-key",
    ],
    env: AGENT_ENV,
    agent_env: &[
        ("VAULT_LOG_LEVEL", "info"),
        ("VAULT_LOG_FORMAT", "standard"),
    ],
    audience: "vault",
    hmac_secret: "vault-csi-provider-hmac-key",
};

/// hashicorp/vault-helm before that (`csi.debug` only), the argument set of issue 10.
const VAULT_HELM_DEBUG_FLAG: Chart = Chart {
    args: &[
        "--endpoint=/provider/vault.sock",
        "--debug=false",
        "--hmac-secret-name=vault-csi-provider-hmac-key",
    ],
    ..VAULT_HELM
};

/// openbao/openbao-helm 0.18.
const OPENBAO_HELM: Chart = Chart {
    name: "openbao",
    args: &[
        "--endpoint=/provider/openbao.sock",
        "--debug=false",
        "--hmac-secret-name=openbao-csi-provider-hmac-key",
    ],
    env: AGENT_ENV,
    agent_env: &[("BAO_LOG_LEVEL", "info"), ("BAO_LOG_FORMAT", "standard")],
    audience: "openbao",
    hmac_secret: "openbao-csi-provider-hmac-key",
};

/// The agent's config.hcl as both charts render it; the address is the Vault service's.
const AGENT_CONFIG: &str = r#"vault {
    "address" = "http://vault.vault.svc:8200"
}

cache {}

listener "unix" {
    address = "/var/run/vault/agent.sock"
    tls_disable = true
}
"#;
const CHART_VAULT_ADDRESS: &str = "http://vault.vault.svc:8200";
/// Where the charts mount the agent's socket directory and the providers' directory.
const SOCKET_DIR: &str = "/var/run/vault";
const PROVIDERS_DIR: &str = "/provider/";

#[derive(Clone, Copy, Debug)]
enum Sidecar {
    /// `bao agent`, as the charts run it.
    Agent,
    /// `bao proxy`: OpenBao's successor to the agent's API proxy, with the same file.
    Proxy,
}

fn class() -> Value {
    // A class as users write it for a cluster: the role and the objects, nothing else
    // (kubernetes auth at its default mount, the address from the provider's environment).
    json!({
        "roleName": "app",
        "objects": "- {objectName: k, secretPath: secret/data/app, secretKey: k}",
    })
}

async fn mounts_through_the_chart(chart: &Chart, sidecar: Sidecar) {
    // OpenBao with kubernetes auth, reviewing tokens with the Kubernetes API stand-in.
    let bao = OpenBao::start().await;
    let kube = KubeApi::start().await;
    bao.policy("app", r#"path "secret/data/*" { capabilities = ["read"] }"#)
        .await;
    bao.enable_kubernetes("kubernetes", &kube.url).await;
    bao.kubernetes_role_aud(
        "kubernetes",
        "app",
        "default",
        "app",
        &["app"],
        Some(chart.audience),
    )
    .await;
    bao.write("secret/data/app", json!({"data": {"k": "first"}}))
        .await;

    let dir = tempfile::tempdir().unwrap();
    let socket_dir = dir.path().join("var-run-vault");
    let providers_dir = dir.path().join("provider");
    std::fs::create_dir(&socket_dir).unwrap();
    std::fs::create_dir(&providers_dir).unwrap();
    let moved = |s: &str| {
        s.replace(SOCKET_DIR, &socket_dir.display().to_string())
            .replace(PROVIDERS_DIR, &format!("{}/", providers_dir.display()))
    };

    // The sidecar, with the chart's configuration (pointed at this OpenBao).
    let config = dir.path().join("config.hcl");
    std::fs::write(
        &config,
        moved(&AGENT_CONFIG.replace(CHART_VAULT_ADDRESS, &bao.addr)),
    )
    .unwrap();
    let subcommand = match sidecar {
        Sidecar::Agent => "agent",
        Sidecar::Proxy => "proxy",
    };
    let mut cmd = Command::new(bao_binary());
    cmd.arg(subcommand)
        .arg(format!("-config={}", config.display()))
        .env_remove("VAULT_ADDR")
        .env_remove("BAO_ADDR")
        .env("HOME", dir.path())
        .envs(chart.agent_env.iter().copied());
    let mut agent = Running::spawn(cmd, dir.path().join("sidecar.log"));
    let agent_socket = socket_dir.join("agent.sock");
    agent.wait_for_socket(&agent_socket).await;

    // The provider: the chart's arguments and environment, and the cluster's API (here the
    // stand-in, through KUBECONFIG, where the chart's pod uses its service account).
    let health_port = free_port();
    let args: Vec<String> = chart
        .args
        .iter()
        .map(|a| moved(a))
        .chain([format!("-health-addr=127.0.0.1:{health_port}")])
        .collect();
    assert!(
        args[0].starts_with("--endpoint="),
        "the charts pass --endpoint first"
    );
    let kubeconfig = kube.kubeconfig(dir.path());
    // The environment the post-renderer leaves (deploy/helm): the chart's, and NODE_NAME.
    let rendered = post_render(chart);
    let env = container_env(provider_container(chart, &rendered))
        .into_iter()
        .map(|(k, v)| (k, moved(&v)))
        .chain([("KUBECONFIG".to_string(), kubeconfig.display().to_string())]);
    let cmd = provider_command(&args, dir.path(), env);
    let sockets = endpoints(&args);
    let socket = sockets[0].clone();
    let mut provider = Running::provider(cmd, dir.path().join("provider.log"), &sockets).await;
    let fail = |e: tonic::Status, provider: &Running, agent: &Running| -> ! {
        panic!(
            "{:?}: {}\nprovider:\n{}\n{subcommand}:\n{}",
            e.code(),
            e.message(),
            provider.log_text(),
            agent.log_text()
        )
    };

    // Two pods of one service account, as the driver calls: the chart's socket, the token
    // for the audience the socket implies.
    let client = Client::connect(&socket).await;
    let mut versions = Vec::new();
    for pod in [Pod::new("default", "app"), Pod::new("default", "app")] {
        let token = pod.token(chart.audience);
        let req = pod.request_with(class(), Some((chart.audience, token)), false);
        let resp = match client.mount(req).await {
            Ok(r) => r,
            Err(e) => fail(e, &provider, &agent),
        };
        assert_eq!(file_str(&resp, "k"), "first");
        versions.push(version(&resp, "k"));
    }
    // Object versions keyed by the Secret the chart names (created by the provider).
    assert_eq!(versions[0].len(), 44, "{versions:?}");
    assert_eq!(versions[0], versions[1]);
    let secrets = kube.recorded.lock().unwrap().secrets.clone();
    assert!(
        secrets.contains_key(&(
            PROVIDER_NAMESPACE.to_string(),
            chart.hmac_secret.to_string()
        )),
        "{:?}",
        secrets.keys().collect::<Vec<_>>()
    );
    // One login for the service account, its token reused through the sidecar.
    let logins = bao.audit_requests(&bao.audit_log(), |_, p| p == "auth/kubernetes/login");
    assert_eq!(logins, 1);

    // A changed secret is read anew through the sidecar's cache (a rotation poll).
    bao.write("secret/data/app", json!({"data": {"k": "second"}}))
        .await;
    let pod = Pod::new("default", "app");
    let req = pod.request_with(
        class(),
        Some((chart.audience, pod.token(chart.audience))),
        false,
    );
    let resp = match client.mount(req).await {
        Ok(r) => r,
        Err(e) => fail(e, &provider, &agent),
    };
    assert_eq!(file_str(&resp, "k"), "second");
    assert_ne!(version(&resp, "k"), versions[0]);

    // The provider's readiness and liveness, on the port the charts' probes do not set
    // (they probe :8080, the provider's default).
    for path in ["/health/ready", "/health/live"] {
        let r = reqwest::get(format!("http://127.0.0.1:{health_port}{path}"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }

    // Every request went through the sidecar: without it, nothing reaches OpenBao.
    drop(agent);
    let err = client
        .mount_within(
            pod.request_with(
                class(),
                Some((chart.audience, pod.token(chart.audience))),
                false,
            ),
            Duration::from_secs(20),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    assert!(
        err.message().contains(&agent_socket.display().to_string()),
        "{}",
        err.message()
    );
    // With NODE_NAME, the leases it hands out live as long as their pods.
    assert!(
        provider.log_text().contains("watching this node's pods"),
        "{}",
        provider.log_text()
    );
    assert!(
        kube.pod_calls()
            .iter()
            .all(|c| c.contains(&format!("spec.nodeName%3D{NODE_NAME}"))),
        "{:?}",
        kube.pod_calls()
    );
    // (Unknown flags would have ended it at the start, with its usage.)
    assert!(
        matches!(provider.child.try_wait(), Ok(None)),
        "{}",
        provider.log_text()
    );
}

/// The objects of the chart's CSI provider as it renders them with its default values
/// (`csi.enabled=true`, the agent on), from its templates `csi-daemonset.yaml` and
/// `csi-clusterrole.yaml`, with this image; plus an object of the server's, which the
/// post-renderer must leave alone.
fn chart_rendering(chart: &Chart) -> String {
    let name = format!("{}-csi-provider", chart.name);
    let labels = json!({
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": "release",
        "app.kubernetes.io/managed-by": "Helm",
    });
    let env: Vec<Value> = chart
        .env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    let daemonset = json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": format!("release-{name}"), "namespace": chart.name, "labels": labels},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": "release"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": "release"}},
                "spec": {
                    "serviceAccountName": format!("release-{name}"),
                    "containers": [
                        {"name": name, "image": "registry.example/vault-csi-provider:0.1.0",
                         "args": chart.args, "env": env,
                         "volumeMounts": [{"name": "providervol", "mountPath": "/provider"}]},
                        {"name": format!("{}-agent", chart.name), "image": "openbao/openbao:2.7.2",
                         "args": ["agent", "-config=/etc/vault/config.hcl"]},
                    ],
                    "volumes": [{"name": "providervol", "hostPath": {"path": "/var/run/secrets-store-csi-providers"}}],
                },
            },
        },
    });
    let cluster_role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": format!("release-{name}-clusterrole"), "labels": labels},
        "rules": [{"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}],
    });
    let server_config = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": format!("release-{}-config", chart.name), "namespace": chart.name,
                     "labels": {"app.kubernetes.io/name": chart.name}},
        "data": {"extraconfig-from-values.hcl": "disable_mlock = true"},
    });
    [daemonset, cluster_role, server_config]
        .iter()
        .map(|o| serde_yaml_ng::to_string(o).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The chart's rendering through `deploy/helm/post-renderer`, as Helm runs it.
fn post_render(chart: &Chart) -> Vec<Value> {
    // Needs sh and kubectl.
    let out = output_with_stdin(
        &mut Command::new(repo().join("deploy/helm/post-renderer")),
        chart_rendering(chart).as_bytes(),
    );
    assert!(
        out.status.success(),
        "post-renderer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    documents(&String::from_utf8(out.stdout).unwrap())
}

fn provider_container<'a>(chart: &Chart, objects: &'a [Value]) -> &'a Value {
    let ds = objects.iter().find(|o| o["kind"] == "DaemonSet").unwrap();
    ds["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == format!("{}-csi-provider", chart.name))
        .unwrap()
}

/// The post-renderer gives each chart's provider NODE_NAME from the downward API and its
/// ClusterRole the watch of pods, changing nothing else; the result is valid Kubernetes.
#[test]
fn the_post_renderer_gives_both_charts_node_name_and_the_pod_rbac() {
    for chart in [&VAULT_HELM, &OPENBAO_HELM] {
        let before = documents(&chart_rendering(chart));
        let after = post_render(chart);
        assert_eq!(after.len(), before.len(), "{}", chart.name);
        let mut env: Vec<Value> = after
            .iter()
            .find(|o| o["kind"] == "DaemonSet")
            .and_then(|ds| {
                ds["spec"]["template"]["spec"]["containers"][0]["env"]
                    .as_array()
                    .cloned()
            })
            .unwrap();
        env.sort_by_key(|e| e["name"].as_str().unwrap().to_string());
        assert_eq!(
            env,
            [
                json!({"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}),
                json!({"name": "VAULT_ADDR", "value": "unix:///var/run/vault/agent.sock"}),
            ],
            "{}",
            chart.name
        );
        let agent = &after.iter().find(|o| o["kind"] == "DaemonSet").unwrap()["spec"]["template"]["spec"]
            ["containers"][1];
        assert!(agent["env"].is_null(), "the agent is left alone: {agent}");
        let role = after.iter().find(|o| o["kind"] == "ClusterRole").unwrap();
        assert_eq!(
            role["rules"],
            json!([
                {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
            ])
        );
        let config = |objs: &[Value]| objs.iter().find(|o| o["kind"] == "ConfigMap").cloned();
        assert_eq!(
            config(&after),
            config(&before),
            "the server's objects pass unchanged"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rendered.yaml");
        std::fs::write(
            &file,
            after
                .iter()
                .map(|o| serde_yaml_ng::to_string(o).unwrap())
                .collect::<Vec<_>>()
                .join("---\n"),
        )
        .unwrap();
        validate_strictly(&[(chart.name.to_string(), file, after.clone())]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_helm_arguments_mount_through_bao_agent() {
    mounts_through_the_chart(&VAULT_HELM, Sidecar::Agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_helm_arguments_mount_through_bao_proxy() {
    mounts_through_the_chart(&VAULT_HELM, Sidecar::Proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_vault_helm_arguments_with_debug_false_mount_through_bao_agent() {
    mounts_through_the_chart(&VAULT_HELM_DEBUG_FLAG, Sidecar::Agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openbao_helm_arguments_mount_through_bao_agent() {
    mounts_through_the_chart(&OPENBAO_HELM, Sidecar::Agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openbao_helm_arguments_mount_through_bao_proxy() {
    mounts_through_the_chart(&OPENBAO_HELM, Sidecar::Proxy).await;
}
