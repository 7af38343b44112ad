//! Switching a cluster from the Go provider's configuration to ours changes nothing a pod or
//! the driver sees (docs/migration.md, "Migrating from the Go provider"). The same classes, the Go
//! provider's end-to-end classes (tests/fixtures/go-e2e) and those of deploy/examples, are
//! mounted for the same pods against one OpenBao through:
//! - the old configuration: the provider container as vault-helm's chart starts it
//!   (`--endpoint=/provider/vault.sock --debug=false
//!   --hmac-secret-name=vault-csi-provider-hmac-key`, `VAULT_ADDR`, in the chart's
//!   namespace, whose key Secret the Go provider made), or openbao-helm's (`openbao.sock`,
//!   `openbao-csi-provider-hmac-key`);
//! - ours: the migration page's kit (`deploy/examples/migration/from-helm`, the kustomize
//!   base with the guide's image and address) or the guide's OpenBao kit, rendered with
//!   `kubectl kustomize` and started with its own arguments and environment, in its own
//!   namespace, after the migration page's commands copied the key Secret there;
//!
//! and every file, mode and object version is the same (for PKI certificates and database
//! credentials, which are new at every read whoever reads, the same files, modes and
//! version ids, and the same for every other object of those classes). Without the copied
//! key every version changes, which is why the migration page copies it; neither configuration
//! writes the key Secret, so rolling back finds it as it was. (The Go binary itself is not
//! run here: tests/go_versions.rs shows its version algorithm gives the same versions.)
//!
//! The charts' own processes would both serve the health port :8080; here each gets a free
//! port of loopback, as tests run in parallel.

mod common;

use base64::Engine;
use common::e2e;
use common::kube::{KubeApi, PROVIDER_TOKEN};
use common::postgres::{Postgres, SUPERUSER_PASSWORD};
use common::*;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use vault_csi_provider::proto::{MountRequest, MountResponse};

/// vault-helm's provider container: its arguments (csi.debug=false) and, with its agent off,
/// the Vault address; it runs in the chart's release namespace.
const VAULT_HELM_ARGS: [&str; 3] = [
    "--endpoint=/provider/vault.sock",
    "--debug=false",
    "--hmac-secret-name=vault-csi-provider-hmac-key",
];
const VAULT_HELM_NAMESPACE: &str = "vault";
/// openbao-helm 0.18's.
const OPENBAO_HELM_ARGS: [&str; 3] = [
    "--endpoint=/provider/openbao.sock",
    "--debug=false",
    "--hmac-secret-name=openbao-csi-provider-hmac-key",
];
const OPENBAO_HELM_NAMESPACE: &str = "openbao";
/// Where both charts mount the providers' directory in the container.
const PROVIDERS_MOUNT: &str = "/provider";

const MIGRATION_KIT: &str = "deploy/examples/migration/from-helm";
/// The page whose commands copy the key Secret.
const MIGRATION_PAGE: &str = "docs/migration.md";
const OPENBAO_KIT: &str = "deploy/examples/install/provider-openbao";

const POLICY: &str = r#"
path "secret/data/*" { capabilities = ["read"] }
path "pki/issue/*" { capabilities = ["create", "update"] }
path "database/creds/*" { capabilities = ["read"] }
"#;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn kubectl() -> PathBuf {
    std::env::var("PATH")
        .ok()
        .and_then(|p| {
            p.split(':')
                .map(|d| Path::new(d).join("kubectl"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "kubectl was not found in PATH; the kits are rendered with `kubectl kustomize`: \
                 run scripts/setup.sh, or install kubectl 1.21 or later"
            )
        })
}

fn render(kit: &str) -> Vec<Value> {
    let out = Command::new(kubectl())
        .arg("kustomize")
        .arg(repo().join(kit))
        .output()
        .expect("cannot run kubectl");
    assert!(
        out.status.success(),
        "kubectl kustomize {kit}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml_ng::Deserializer::from_str(&String::from_utf8(out.stdout).unwrap())
        .map(|d| serde_json::to_value(serde_yaml_ng::Value::deserialize(d).unwrap()).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

// ---- The two configurations ------------------------------------------------------------

/// How one provider is started: container arguments (paths under PROVIDERS_MOUNT),
/// environment, and the namespace it runs in.
#[derive(Clone, Debug)]
struct Config {
    name: &'static str,
    args: Vec<String>,
    env: Vec<(String, String)>,
    namespace: String,
}

/// The chart's provider container, pointed at `vault_addr`.
fn chart(name: &'static str, args: &[&str], namespace: &str, vault_addr: &str) -> Config {
    Config {
        name,
        args: args.iter().map(|a| a.to_string()).collect(),
        env: vec![("VAULT_ADDR".into(), vault_addr.into())],
        namespace: namespace.into(),
    }
}

/// A kit's provider container as rendered, its Vault address replaced by `vault_addr`.
fn kit(name: &'static str, kit: &str, vault_addr: &str) -> Config {
    let objs = render(kit);
    let ds = objs.iter().find(|o| o["kind"] == "DaemonSet").unwrap();
    let c = ds["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "provider")
        .unwrap();
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "providervol")
        .unwrap();
    assert_eq!(mount["mountPath"], PROVIDERS_MOUNT);
    let env = common::kits::container_env(c)
        .into_iter()
        .map(|(k, v)| {
            let v = if k == "VAULT_ADDR" {
                vault_addr.to_string()
            } else {
                v
            };
            (k, v)
        })
        .collect();
    Config {
        name,
        args: c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect(),
        env,
        namespace: ds["metadata"]["namespace"].as_str().unwrap().to_string(),
    }
}

/// A provider process (killed on drop) and the directory of its sockets.
struct Provider {
    process: Running,
    providers: PathBuf,
}

/// A kubeconfig for the stand-in whose context namespace is `namespace` (a pod's own
/// namespace, where its provider keeps the key Secret).
fn kubeconfig(kube: &KubeApi, dir: &Path, namespace: &str) -> PathBuf {
    let path = dir.join(format!("kubeconfig-{namespace}"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster:\n    server: {}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n    namespace: {namespace}\nusers:\n- name: u\n  user:\n    token: {PROVIDER_TOKEN}\n",
            kube.url
        ),
    )
    .unwrap();
    path
}

async fn start(config: &Config, kube: &KubeApi, dir: &Path) -> Provider {
    let providers = dir.join(format!("providers-{}", config.name));
    std::fs::create_dir_all(&providers).unwrap();
    let port = free_port();
    let mut args: Vec<String> = config
        .args
        .iter()
        .filter(|a| !a.starts_with("-health-addr=") && !a.starts_with("--health-addr="))
        .map(|a| {
            a.replace(
                &format!("{PROVIDERS_MOUNT}/"),
                &format!("{}/", providers.display()),
            )
        })
        .collect();
    args.push(format!("-health-addr=127.0.0.1:{port}"));
    let sockets = endpoints(&args);
    let log = dir.join(format!("{}.log", config.name));
    let kubeconfig = kubeconfig(kube, dir, &config.namespace);
    let env = config
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain([("KUBECONFIG".to_string(), kubeconfig.display().to_string())]);
    let cmd = provider_command(&args, &providers, env);
    let process = Running::provider(cmd, log, &sockets).await;
    Provider { process, providers }
}

// ---- The key Secret, as the Go provider made it and the migration page copies it ------

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The key Secret the Go provider created in its namespace: 32 random bytes under `key`.
fn go_provider_made_its_key(kube: &KubeApi, namespace: &str, name: &str) {
    let key: [u8; 32] = rand::random();
    kube.recorded.lock().unwrap().secrets.insert(
        (namespace.into(), name.into()),
        json!({
            "apiVersion": "v1", "kind": "Secret", "immutable": true, "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace, "uid": "uid-go-key"},
            "data": {"key": b64(&key)},
        }),
    );
}

/// The migration page's copy: `kubectl -n FROM get secret NAME -o jsonpath='{.data.key}' | base64
/// -d > hmac.key` then `kubectl -n TO create secret generic NAME2 --from-file=key=hmac.key`,
/// its names read from the page's commands (the chart's being `from_chart`'s).
fn copy_the_key_as_the_page_does(kube: &KubeApi, from_ns: &str, from_name: &str) -> String {
    let page = std::fs::read_to_string(repo().join(MIGRATION_PAGE)).unwrap();
    let section = page
        .split("\n## Migrating from the Go provider\n")
        .nth(1)
        .unwrap_or_else(|| panic!("{MIGRATION_PAGE} has no migration section"))
        .split("\n## ")
        .next()
        .unwrap();
    let get = section
        .lines()
        .find(|l| l.contains("get secret") && l.contains("{.data.key}"))
        .unwrap_or_else(|| panic!("{MIGRATION_PAGE} no longer reads the key"));
    let create = section
        .lines()
        .find(|l| l.contains("create secret generic"))
        .unwrap_or_else(|| panic!("{MIGRATION_PAGE} no longer creates the copy"));
    assert!(
        get.contains(&format!(
            "-n {VAULT_HELM_NAMESPACE} get secret vault-csi-provider-hmac-key"
        )),
        "{get}"
    );
    let words: Vec<&str> = create.split_whitespace().collect();
    let to_ns = words[words.iter().position(|w| *w == "-n").unwrap() + 1];
    let to_name = words[words.iter().position(|w| *w == "generic").unwrap() + 1];
    assert!(create.contains("--from-file=key="), "{create}");
    let mut rec = kube.recorded.lock().unwrap();
    let from = rec.secrets[&(from_ns.to_string(), from_name.to_string())].clone();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(from["data"]["key"].as_str().unwrap())
        .unwrap();
    rec.secrets.insert(
        (to_ns.into(), to_name.into()),
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": to_name, "namespace": to_ns, "uid": "uid-copy"},
            "data": {"key": b64(&bytes)},
        }),
    );
    to_ns.to_string()
}

fn secret_writes(kube: &KubeApi, namespace: &str) -> usize {
    kube.requests("POST", &format!("/namespaces/{namespace}/secrets"))
        .len()
}

// ---- OpenBao with what every class reads --------------------------------------------------

/// `jwt_audience`: the token audience the jwt roles admit (the socket's default).
async fn openbao(kube: &KubeApi, pg: &Postgres, jwt_audience: &str) -> OpenBao {
    let bao = OpenBao::start().await;
    // The Go provider's e2e set-up, then what the examples and the guide read besides.
    e2e::seed(&bao, &kube.url, jwt_audience).await;
    e2e::seed_namespace(&bao, &kube.url, POLICY).await;
    bao.policy("e2e", POLICY).await;
    bao.kubernetes_role_aud("kubernetes", "app", "default", "app", &["e2e"], None)
        .await;
    let demo = JwtRole {
        mount: "jwt",
        role: "demo",
        namespace: "demo",
        sa: "app",
        policies: &["e2e"],
        audience: jwt_audience,
    };
    bao.jwt_role_in("", &demo).await;
    for (path, data) in [
        (
            "secret/data/app/db",
            json!({"host": "pg.db.svc", "port": 5432, "database": "app", "username": "app", "password": "p:w\\d <&> \u{2028}"}),
        ),
        ("secret/data/app/api", json!({"token": "t0k3n"})),
        (
            "secret/data/app/env",
            json!({"LOG_LEVEL": "debug", "MAX_CONNECTIONS": 20}),
        ),
        (
            "secret/data/app/certs",
            json!({"ca.der": "MIIBCg==", "client.der": "MAMCAQU="}),
        ),
        (
            "secret/data/app/config",
            json!({
                "database": {"primary": {"host": "pg-0.db", "port": 5432, "password": "pg-pw"}},
                "brokers": ["kafka-0:9092", "kafka-1:9092"],
                "labels": {"app.kubernetes.io/name": "shop"},
            }),
        ),
        (
            "secret/data/demo/db",
            json!({"username": "app", "password": "correct horse", "port": 5432, "ca_der": "MIIBCg=="}),
        ),
        ("secret/data/db", json!({"username": "u", "password": "p"})),
    ] {
        bao.write(path, json!({ "data": data })).await;
    }
    // PKI: the examples' role beside the e2e one.
    bao.write(
        "pki/roles/app",
        json!({"allowed_domains": "default.svc", "allow_subdomains": true, "max_ttl": "72h"}),
    )
    .await;
    // Database: the e2e role and the examples' role, on one PostgreSQL.
    e2e::seed_database(&bao, pg).await;
    bao.write(
        "database/config/pg",
        json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": format!("postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable", pg.port),
            "username": "postgres",
            "password": SUPERUSER_PASSWORD,
            "allowed_roles": ["db-role", "app"],
        }),
    )
    .await;
    bao.write(
        "database/roles/app",
        json!({
            "db_name": "pg",
            "creation_statements": ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"],
            "default_ttl": "1h",
        }),
    )
    .await;
    bao
}

// ---- The classes ----------------------------------------------------------------------------

/// A class file and the pod that mounts it.
struct Case {
    file: String,
    yaml: String,
    pod: Pod,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Obj {
    object_name: String,
    #[serde(default)]
    secret_path: String,
    #[serde(default)]
    secret_key: String,
    #[serde(default)]
    selector: String,
    #[serde(default)]
    template: String,
    #[serde(default)]
    all_keys: bool,
}

fn cases(bao_addr: &str) -> Vec<Case> {
    let mut out = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(repo().join("tests/fixtures/go-e2e"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names {
        let file = format!("tests/fixtures/go-e2e/{n}");
        out.push(Case {
            yaml: read(&file),
            file,
            pod: Pod::new("test", "nginx"),
        });
    }
    for n in [
        "all-keys.yaml",
        "demo-class.yaml",
        "secretproviderclass.yaml",
        "selector.yaml",
        "template-config.yaml",
        "template-database-url.yaml",
        "template-pem-bundle.yaml",
        "template-pgpass.yaml",
        "install/secretproviderclass.yaml",
    ] {
        let file = format!("deploy/examples/{n}");
        // The example's Vault is the cluster's; this test's is local.
        let yaml = read(&file).replace("https://vault.vault.svc:8200", bao_addr);
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
        let ns = doc["metadata"]["namespace"].as_str().unwrap();
        out.push(Case {
            file,
            yaml,
            pod: Pod::new(ns, "app"),
        });
    }
    assert!(out.len() >= 17);
    out
}

/// The class's objects: name and whether each is new at every read, whoever reads: PKI
/// certificates, database credentials, and whole answers (no secretKey, selector, template
/// or allKeys), which carry Vault's `request_id`.
fn dynamic_objects(yaml: &str) -> BTreeMap<String, bool> {
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).unwrap();
    let objs: Vec<Obj> =
        serde_yaml_ng::from_str(doc["spec"]["parameters"]["objects"].as_str().unwrap()).unwrap();
    objs.into_iter()
        .map(|o| {
            let whole_answer = o.secret_key.is_empty()
                && o.selector.is_empty()
                && o.template.is_empty()
                && !o.all_keys;
            let dynamic = whole_answer
                || o.secret_path.contains("pki/issue")
                || o.secret_path.contains("database/creds");
            (o.object_name, dynamic)
        })
        .collect()
}

/// The Mount the driver sends for the class and pod on a socket whose default audience is
/// `socket_audience`: a token for the class's audience, or that one.
fn request(case: &Case, socket_audience: &str) -> MountRequest {
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&case.yaml).unwrap();
    let audience = doc["spec"]["parameters"]["audience"]
        .as_str()
        .unwrap_or(socket_audience)
        .to_string();
    let token = case.pod.token(&audience);
    let mut req = vault_csi_provider::driver_request(&case.yaml, &token, &BTreeMap::new()).unwrap();
    let mut attrs: Value = serde_json::from_str(&req.attributes).unwrap();
    attrs["csi.storage.k8s.io/serviceAccount.tokens"] = json!(
        json!({ audience: {"token": token, "expirationTimestamp": "2099-01-01T00:00:00Z"} })
            .to_string()
    );
    req.attributes = attrs.to_string();
    req
}

type Files = BTreeMap<String, (i32, Vec<u8>)>;

fn files(resp: &MountResponse) -> Files {
    resp.files
        .iter()
        .map(|f| (f.path.clone(), (f.mode, f.contents.clone())))
        .collect()
}

fn versions(resp: &MountResponse) -> BTreeMap<String, String> {
    resp.object_version
        .iter()
        .map(|v| (v.id.clone(), v.version.clone()))
        .collect()
}

/// Whether the file at `path` comes from an object that reads something new every time.
fn is_dynamic(objects: &BTreeMap<String, bool>, path: &str) -> bool {
    objects
        .iter()
        .find(|(name, _)| path == name.as_str() || path.starts_with(&format!("{name}/")))
        .map(|(_, d)| *d)
        .unwrap_or_else(|| panic!("no object for file {path}"))
}

/// Mounts every case through `old` and `new`; asserts the same files, modes and versions.
/// Returns the static versions `new` gave, by case and id.
async fn same_through_both(
    cases: &[Case],
    old: &Provider,
    old_socket: &str,
    new: &Provider,
    new_socket: &str,
    audience: &str,
) -> BTreeMap<(String, String), String> {
    let old_client = Client::connect(&old.providers.join(old_socket)).await;
    let new_client = Client::connect(&new.providers.join(new_socket)).await;
    let mut static_versions = BTreeMap::new();
    let mut dynamic_files = 0;
    for case in cases {
        let req = request(case, audience);
        let mount = |c: &Client, r: &Provider, what: &str| {
            let c = c.clone();
            let req = req.clone();
            let log = r.process.log.clone();
            let what = format!("{} through {what}", case.file);
            async move {
                c.mount(req).await.unwrap_or_else(|e| {
                    panic!(
                        "{what}: {:?}: {}\n{}",
                        e.code(),
                        e.message(),
                        std::fs::read_to_string(log).unwrap_or_default()
                    )
                })
            }
        };
        let a = mount(&old_client, old, "the old configuration").await;
        let b = mount(&new_client, new, "ours").await;
        let objects = dynamic_objects(&case.yaml);
        let (fa, fb) = (files(&a), files(&b));
        let (va, vb) = (versions(&a), versions(&b));
        assert_eq!(
            fa.iter().map(|(p, (m, _))| (p, m)).collect::<Vec<_>>(),
            fb.iter().map(|(p, (m, _))| (p, m)).collect::<Vec<_>>(),
            "{}: files or modes differ",
            case.file
        );
        assert_eq!(
            va.keys().collect::<Vec<_>>(),
            vb.keys().collect::<Vec<_>>(),
            "{}: version ids differ",
            case.file
        );
        assert_eq!(va.keys().collect::<Vec<_>>(), fa.keys().collect::<Vec<_>>());
        for (path, (_, contents)) in &fa {
            assert_eq!(va[path].len(), 44, "{}: {path} has no version", case.file);
            assert_eq!(vb[path].len(), 44, "{}: {path} has no version", case.file);
            if is_dynamic(&objects, path) {
                dynamic_files += 1;
                continue;
            }
            assert_eq!(contents, &fb[path].1, "{}: {path} differs", case.file);
            assert_eq!(
                va[path], vb[path],
                "{}: {path}'s version differs",
                case.file
            );
            static_versions.insert((case.file.clone(), path.clone()), vb[path].clone());
        }
    }
    assert!(static_versions.len() >= 30, "{}", static_versions.len());
    assert!(dynamic_files >= 8, "{dynamic_files}");
    static_versions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_vault_helm_to_the_kustomize_base_no_file_mode_or_version_changes() {
    let kube = KubeApi::start().await;
    let pg = Postgres::start();
    let bao = openbao(&kube, &pg, "vault").await;
    let dir = tempfile::tempdir().unwrap();

    // The cluster before: the Go provider made its key in the chart's namespace.
    let key_name = "vault-csi-provider-hmac-key";
    go_provider_made_its_key(&kube, VAULT_HELM_NAMESPACE, key_name);
    // The migration page's first step: the key copied into the base's namespace, under the
    // name the base's provider reads (its default -hmac-secret-name) and its Role lets it
    // read.
    let to_ns = copy_the_key_as_the_page_does(&kube, VAULT_HELM_NAMESPACE, key_name);
    let ours = kit("ours", MIGRATION_KIT, &bao.addr);
    assert_eq!(to_ns, ours.namespace);
    assert!(
        !ours.args.iter().any(|a| a.contains("hmac")),
        "{:?}",
        ours.args
    );
    let role = render(MIGRATION_KIT)
        .into_iter()
        .find(|o| o["kind"] == "Role")
        .unwrap();
    assert_eq!(role["rules"][0]["resourceNames"], json!([key_name]));

    let old = chart("old", &VAULT_HELM_ARGS, VAULT_HELM_NAMESPACE, &bao.addr);
    let old = start(&old, &kube, dir.path()).await;
    let new = start(&ours, &kube, dir.path()).await;
    let cases = cases(&bao.addr);
    let before = same_through_both(&cases, &old, "vault.sock", &new, "vault.sock", "vault").await;

    // Neither wrote a key: both read the one the Go provider made, so rolling back finds
    // it as it was.
    assert_eq!(secret_writes(&kube, VAULT_HELM_NAMESPACE), 0);
    assert_eq!(secret_writes(&kube, &ours.namespace), 0);

    // Without the copy, the base's provider makes a key of its own and every version
    // changes once: the rotation the migration page's copy avoids.
    let mut fresh = ours.clone();
    fresh.name = "fresh";
    fresh.namespace = "vault-csi-provider-new".into();
    let fresh = start(&fresh, &kube, dir.path()).await;
    let client = Client::connect(&fresh.providers.join("vault.sock")).await;
    let mut compared = 0;
    for case in &cases {
        let resp = client.mount(request(case, "vault")).await.unwrap();
        for (id, v) in versions(&resp) {
            if let Some(was) = before.get(&(case.file.clone(), id.clone())) {
                assert_ne!(was, &v, "{}: {id}", case.file);
                compared += 1;
            }
        }
    }
    assert_eq!(compared, before.len());
    assert_eq!(secret_writes(&kube, "vault-csi-provider-new"), 1);
    drop(fresh);
    drop(new);
    drop(old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_openbao_helm_to_the_openbao_overlay_no_file_mode_or_version_changes() {
    let kube = KubeApi::start().await;
    let pg = Postgres::start();
    let bao = openbao(&kube, &pg, "openbao").await;
    let dir = tempfile::tempdir().unwrap();

    // openbao-helm's provider made its key under its own name; the migration page copies it into
    // the overlay's namespace under the base's name.
    let key_name = "openbao-csi-provider-hmac-key";
    go_provider_made_its_key(&kube, OPENBAO_HELM_NAMESPACE, key_name);
    let ours = kit("ours", OPENBAO_KIT, &bao.addr);
    {
        let mut rec = kube.recorded.lock().unwrap();
        let from = rec.secrets[&(OPENBAO_HELM_NAMESPACE.to_string(), key_name.to_string())].clone();
        let mut copy = from.clone();
        copy["metadata"] =
            json!({"name": "vault-csi-provider-hmac-key", "namespace": ours.namespace});
        copy.as_object_mut().unwrap().remove("immutable");
        rec.secrets.insert(
            (ours.namespace.clone(), "vault-csi-provider-hmac-key".into()),
            copy,
        );
    }

    let old = chart("old", &OPENBAO_HELM_ARGS, OPENBAO_HELM_NAMESPACE, &bao.addr);
    let old = start(&old, &kube, dir.path()).await;
    let new = start(&ours, &kube, dir.path()).await;
    // The fork's users' classes name their provider `openbao`: openbao.sock, whose classes
    // without an audience log in with the `openbao` token.
    let cases: Vec<Case> = cases(&bao.addr)
        .into_iter()
        .map(|mut c| {
            c.yaml = c.yaml.replace("provider: vault\n", "provider: openbao\n");
            c
        })
        .collect();
    for c in &cases {
        assert!(c.yaml.contains("provider: openbao\n"), "{}", c.file);
    }
    same_through_both(
        &cases,
        &old,
        "openbao.sock",
        &new,
        "openbao.sock",
        "openbao",
    )
    .await;
    assert_eq!(secret_writes(&kube, OPENBAO_HELM_NAMESPACE), 0);
    assert_eq!(secret_writes(&kube, &ours.namespace), 0);
}
