//! Templates, allKeys, selectors and the OpenBao role-name spellings, end to end: the
//! provider binary on a Unix socket, called the way the driver calls it, against real
//! OpenBao dev servers (and a real PostgreSQL for database credentials). The examples in
//! deploy/examples are mounted as the driver would send them.

mod common;

use common::postgres::{Postgres, SUPERUSER_PASSWORD};
use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tonic::{Code, Status};
use vault_csi_provider::proto::{MountRequest, MountResponse};

/// A value no error message may ever contain.
const SECRET_VALUE: &str = "Sup3r-S3cret-Value-9f2c";

const POLICY: &str = r#"
path "secret/data/*" { capabilities = ["read"] }
path "kv/*" { capabilities = ["read"] }
path "pki/issue/*" { capabilities = ["create", "update"] }
path "database/creds/*" { capabilities = ["read"] }
"#;

/// OpenBao with jwt auth at `jwt/`, role `app` for default/app, KV v2 at `secret/` and
/// KV v1 at `kv/`.
async fn openbao() -> OpenBao {
    let bao = OpenBao::start().await;
    bao.policy("app", POLICY).await;
    bao.enable_jwt("jwt").await;
    bao.jwt_role("jwt", "app", "default", "app", &["app"]).await;
    bao.write(
        "sys/mounts/kv",
        json!({"type": "kv", "options": {"version": "1"}}),
    )
    .await;
    bao
}

/// The provider with jwt as its default auth mount (the examples name no mount, as classes
/// for a cluster's kubernetes auth do) and extra flags.
async fn provider(bao: &OpenBao, flags: &[&str]) -> ProviderProcess {
    let mut args = vec!["-vault-mount=jwt"];
    args.extend_from_slice(flags);
    ProviderProcess::start(&bao.addr, &args).await
}

struct Env {
    bao: OpenBao,
    provider: ProviderProcess,
    client: Client,
    pod: Pod,
}

async fn env() -> Env {
    env_flags(&[]).await
}

async fn env_flags(flags: &[&str]) -> Env {
    let bao = openbao().await;
    let provider = provider(&bao, flags).await;
    let client = provider.client().await;
    Env {
        bao,
        provider,
        client,
        pod: Pod::new("default", "app"),
    }
}

fn class(objects: &str) -> Value {
    json!({ "roleName": "app", "objects": objects })
}

impl Env {
    async fn mount(&self, objects: &str) -> Result<MountResponse, Status> {
        self.client.mount(self.pod.request(class(objects))).await
    }

    async fn mount_example(&self, class_yaml: &str) -> Result<MountResponse, Status> {
        self.client
            .mount(example_request(class_yaml, &self.pod))
            .await
    }

    /// Logins seen by OpenBao so far (the test's own admin calls use the root token).
    fn logins(&self) -> usize {
        self.bao
            .audit_requests(&self.bao.audit_log(), |_, p| p.ends_with("/login"))
    }

    fn updates(&self, path: &str) -> usize {
        self.bao
            .audit_requests(&self.bao.audit_log(), |op, p| op == "update" && p == path)
    }
}

fn example_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/examples")
        .join(name)
}

fn example(name: &str) -> String {
    std::fs::read_to_string(example_path(name)).unwrap()
}

/// The MountRequest the driver sends for this class and pod.
fn example_request(class_yaml: &str, pod: &Pod) -> MountRequest {
    vault_csi_provider::driver_request(class_yaml, &pod.token("vault"), &BTreeMap::new()).unwrap()
}

/// Asserts the code, that the message holds every needle and no secret value; returns it.
fn expect_err(
    what: &str,
    result: Result<MountResponse, Status>,
    code: Code,
    needles: &[&str],
) -> String {
    let err = match result {
        Ok(r) => panic!(
            "{what}: mounted, expected {code:?}: {:?}",
            r.files.iter().map(|f| &f.path).collect::<Vec<_>>()
        ),
        Err(e) => e,
    };
    let msg = err.message().to_string();
    assert_eq!(err.code(), code, "{what}: {msg}");
    for n in needles {
        assert!(msg.contains(n), "{what}: message lacks {n:?}: {msg}");
    }
    assert_no_secret(what, &msg);
    msg
}

fn assert_no_secret(what: &str, msg: &str) {
    assert!(
        !msg.contains(SECRET_VALUE) && !msg.contains("S3cret-Value"),
        "{what}: message holds the secret value: {msg}"
    );
}

fn paths(r: &MountResponse) -> Vec<&str> {
    let mut v: Vec<&str> = r.files.iter().map(|f| f.path.as_str()).collect();
    v.sort();
    v
}

fn version_ids(r: &MountResponse) -> Vec<&str> {
    let mut v: Vec<&str> = r.object_version.iter().map(|v| v.id.as_str()).collect();
    v.sort();
    v
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Runs openssl with `input` on stdin; returns stdout.
fn openssl(args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is needed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The PEM blocks of a text: (label, whole block).
fn pem_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let label = after[..after.find("-----").unwrap()].to_string();
        let end_marker = format!("-----END {label}-----");
        let end = rest.find(&end_marker).unwrap() + end_marker.len();
        blocks.push((label, rest[start..end].to_string()));
        rest = &rest[end..];
    }
    blocks
}

// ---------------------------------------------------------------------------------------
// The examples in deploy/examples
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_template_pgpass() {
    let e = env().await;
    e.bao
        .write(
            "secret/data/app/db",
            json!({"data": {
                "host": "db.example.internal",
                "port": 5432,
                "database": "app",
                "username": "app_user",
                "password": "p:ss\\w0rd",
            }}),
        )
        .await;
    let r = e
        .mount_example(&example("template-pgpass.yaml"))
        .await
        .unwrap();
    assert_eq!(paths(&r), [".pgpass"]);
    assert_eq!(
        file_str(&r, ".pgpass").trim_end_matches('\n'),
        r"db.example.internal:5432:app:app_user:p\:ss\\w0rd",
        "one line, : and \\ escaped as libpq wants"
    );
    assert_eq!(mode(&r, ".pgpass"), 0o600);
    assert_eq!(version_ids(&r), [".pgpass"]);
    assert_eq!(version(&r, ".pgpass").len(), 44);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_template_database_url_from_one_lease() {
    let e = env().await;
    let pg = Postgres::start();
    pg.serve_openbao(&e.bao, "app", "1h").await;
    let created = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            "create database app",
        ])
        .env("PGPASSWORD", SUPERUSER_PASSWORD)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    // The example points at the cluster's database; this test's database is local.
    let text = example("template-database-url.yaml");
    assert!(text.contains("postgres.db.svc:5432"));
    let text = text.replace("postgres.db.svc:5432", &format!("127.0.0.1:{}", pg.port));
    let r = e.mount_example(&text).await.unwrap();
    assert_eq!(paths(&r), ["database-url"]);
    assert_eq!(mode(&r, "database-url"), 0o600);
    let url = file_str(&r, "database-url").trim_end().to_string();
    let rest = url
        .strip_prefix("postgresql://")
        .unwrap_or_else(|| panic!("{url}"));
    let (creds, host) = rest.split_once('@').unwrap();
    assert_eq!(host, format!("127.0.0.1:{}/app", pg.port));
    let (user, pass) = creds.split_once(':').unwrap();
    let (user, pass) = (percent_decode(user), percent_decode(pass));
    assert!(user.starts_with("v-"), "a dynamic user: {user}");
    assert!(pg.can_login(&user, &pass), "the pair logs in");
    // The URL itself logs in, as the application would use it.
    let out = Command::new("psql")
        .arg(&url)
        .args(["-tAc", "select current_user || ' ' || current_database()"])
        .env_remove("PGPASSWORD")
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql with the mounted URL: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{user} app")
    );
    let leases = e
        .bao
        .api("LIST", "sys/leases/lookup/database/creds/app", None)
        .await;
    assert_eq!(
        leases["data"]["keys"].as_array().unwrap().len(),
        1,
        "username and password from one lease"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_template_pem_bundle_from_one_issue() {
    let e = env().await;
    e.bao
        .enable_pki(
            "app-root",
            "app",
            json!({"allow_any_name": true, "max_ttl": "72h"}),
        )
        .await;
    let r = e
        .mount_example(&example("template-pem-bundle.yaml"))
        .await
        .unwrap();
    assert_eq!(paths(&r), ["tls/bundle.pem"]);
    assert_eq!(mode(&r, "tls/bundle.pem"), 0o600);
    assert_eq!(version_ids(&r), ["tls/bundle.pem"]);
    let bundle = file_str(&r, "tls/bundle.pem");
    let blocks = pem_blocks(bundle);
    let labels: Vec<&str> = blocks.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels.len(), 3, "{bundle}");
    assert_eq!(labels[0], "CERTIFICATE");
    assert_eq!(labels[1], "CERTIFICATE");
    assert!(labels[2].ends_with("PRIVATE KEY"), "{labels:?}");
    let (leaf, ca, key) = (&blocks[0].1, &blocks[1].1, &blocks[2].1);
    // The CA is the issuer.
    let root = e.bao.api("GET", "pki/cert/ca", None).await;
    assert_eq!(
        ca.trim(),
        root["data"]["certificate"].as_str().unwrap().trim()
    );
    assert!(openssl(&["x509", "-noout", "-subject"], leaf).contains("app.default.svc"));
    // One issue: the only certificate issued besides the root, and the key is its key.
    let serial = openssl(&["x509", "-noout", "-serial"], leaf)
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase();
    let listed = e.bao.api("LIST", "pki/certs", None).await;
    let listed: Vec<String> = listed["data"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().replace(':', "").to_ascii_lowercase())
        .collect();
    assert_eq!(listed.len(), 2, "root and one leaf: {listed:?}");
    assert!(listed.contains(&serial), "{serial} in {listed:?}");
    assert_eq!(e.updates("pki/issue/app"), 1, "one issue");
    assert_eq!(
        openssl(&["x509", "-noout", "-pubkey"], leaf),
        openssl(&["pkey", "-pubout"], key),
        "the private key belongs to the certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_template_config_combines_two_paths() {
    let e = env().await;
    let password = "pa\"ss: #w0rd'";
    let token = "tok-123<&>";
    e.bao
        .write(
            "secret/data/app/db",
            json!({"data": {"password": password, "username": "app"}}),
        )
        .await;
    e.bao
        .write("secret/data/app/api", json!({"data": {"token": token}}))
        .await;
    let r = e
        .mount_example(&example("template-config.yaml"))
        .await
        .unwrap();
    assert_eq!(paths(&r), ["api-token", "config.yaml", "db-password"]);
    assert_eq!(version_ids(&r), ["api-token", "config.yaml", "db-password"]);
    assert_eq!(file_str(&r, "db-password"), password);
    assert_eq!(file_str(&r, "api-token"), token);
    for p in paths(&r) {
        assert_eq!(mode(&r, p), 0o600, "{p}");
    }
    let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(file_str(&r, "config.yaml"))
        .unwrap_or_else(|err| panic!("{err}: {}", file_str(&r, "config.yaml")));
    assert_eq!(config["database"]["password"].as_str(), Some(password));
    assert_eq!(config["database"]["host"].as_str(), Some("postgres.db.svc"));
    assert_eq!(config["api"]["token"].as_str(), Some(token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_all_keys() {
    let e = env().await;
    e.bao
        .write(
            "secret/data/app/env",
            json!({"data": {"LOG_LEVEL": "debug", "MAX_CONNECTIONS": 20}}),
        )
        .await;
    e.bao
        .write(
            "secret/data/app/certs",
            json!({"data": {"ca.der": "MIIBCg==", "client.der": "MAMCAQU="}}),
        )
        .await;
    let r = e.mount_example(&example("all-keys.yaml")).await.unwrap();
    let expected = [
        "certs/ca.der",
        "certs/client.der",
        "env/LOG_LEVEL",
        "env/MAX_CONNECTIONS",
    ];
    assert_eq!(paths(&r), expected);
    assert_eq!(version_ids(&r), expected);
    assert_eq!(file_str(&r, "env/LOG_LEVEL"), "debug");
    assert_eq!(file_str(&r, "env/MAX_CONNECTIONS"), "20");
    assert_eq!(mode(&r, "env/LOG_LEVEL"), 0o640);
    assert_eq!(mode(&r, "env/MAX_CONNECTIONS"), 0o640);
    assert_eq!(file(&r, "certs/ca.der"), &[0x30, 0x82, 0x01, 0x0a]);
    assert_eq!(
        file(&r, "certs/client.der"),
        &[0x30, 0x03, 0x02, 0x01, 0x05]
    );
    assert_eq!(mode(&r, "certs/ca.der"), 0o644);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_selector() {
    let e = env().await;
    e.bao
        .write(
            "secret/data/app/config",
            json!({"data": {
                "database": {"primary": {"host": "pg-0.db", "port": 5432, "password": "pg-primary-pw"}},
                "brokers": ["kafka-0:9092", "kafka-1:9092"],
                "labels": {"app.kubernetes.io/name": "shop"},
            }}),
        )
        .await;
    let r = e.mount_example(&example("selector.yaml")).await.unwrap();
    let expected = [
        "app-name",
        "db-password",
        "db-primary.json",
        "first-broker",
        "primary/host",
        "primary/password",
        "primary/port",
    ];
    assert_eq!(paths(&r), expected);
    assert_eq!(version_ids(&r), expected);
    assert_eq!(file_str(&r, "db-password"), "pg-primary-pw");
    assert_eq!(mode(&r, "db-password"), 0o600);
    assert_eq!(
        file_str(&r, "db-primary.json"),
        r#"{"host":"pg-0.db","password":"pg-primary-pw","port":5432}"#
    );
    assert_eq!(file_str(&r, "first-broker"), "kafka-0:9092");
    assert_eq!(file_str(&r, "app-name"), "shop");
    assert_eq!(file_str(&r, "primary/host"), "pg-0.db");
    assert_eq!(file_str(&r, "primary/password"), "pg-primary-pw");
    assert_eq!(file_str(&r, "primary/port"), "5432");
}

// ---------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_over_two_kv_paths_and_its_version() {
    let e = env().await;
    e.bao
        .write("secret/data/one", json!({"data": {"user": "alice"}}))
        .await;
    e.bao.write("kv/two", json!({"pass": "pw-1"})).await;
    let objects = r#"
- {objectName: user, secretPath: secret/data/one, secretKey: user}
- {objectName: pass, secretPath: kv/two, secretKey: pass}
- objectName: conn
  template: "{{ objects.user }}/{{ objects.pass }}"
- objectName: own
  secretPath: secret/data/one
  filePermission: 0600
  template: "{{ secret.user }}:{{ objects.pass }}"
"#;
    let first = e.mount(objects).await.unwrap();
    assert_eq!(paths(&first), ["conn", "own", "pass", "user"]);
    assert_eq!(version_ids(&first), ["conn", "own", "pass", "user"]);
    assert_eq!(file_str(&first, "conn"), "alice/pw-1");
    assert_eq!(file_str(&first, "own"), "alice:pw-1");
    assert_eq!(mode(&first, "own"), 0o600);
    assert_eq!(mode(&first, "conn"), 0o644);
    let again = e.mount(objects).await.unwrap();
    assert_eq!(version(&first, "conn"), version(&again, "conn"));
    e.bao.write("kv/two", json!({"pass": "pw-2"})).await;
    let rotated = e.mount(objects).await.unwrap();
    assert_eq!(file_str(&rotated, "conn"), "alice/pw-2");
    assert_ne!(version(&first, "conn"), version(&rotated, "conn"));
    assert_ne!(version(&first, "own"), version(&rotated, "own"));
    assert_eq!(version(&first, "user"), version(&rotated, "user"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_is_the_same_on_kv_v1_and_v2() {
    let e = env().await;
    let data = json!({"user": "alice", "n": 42, "nested": {"a": [1, "x"]}, "ok": true});
    e.bao
        .write("secret/data/same", json!({ "data": data }))
        .await;
    e.bao.write("kv/same", data.clone()).await;
    let template = r#"'{{ secret.user }} {{ secret.n + 1 }} {{ secret.nested.a[1] }} {{ secret.ok | tojson }} {{ secret | length }} {{ secret | tojson }}'"#;
    let objects = format!(
        "- {{objectName: v2, secretPath: secret/data/same, template: {template}}}\n- {{objectName: v1, secretPath: kv/same, template: {template}}}\n"
    );
    let r = e.mount(&objects).await.unwrap();
    let v2 = file_str(&r, "v2");
    assert_eq!(v2, file_str(&r, "v1"));
    let (head, json_text) = v2.split_at(v2.find('{').unwrap());
    assert_eq!(head, "alice 43 x true 4 ");
    let parsed: Value = serde_json::from_str(json_text).unwrap();
    assert_eq!(parsed, data, "secret is the inner data on KV v2: {v2}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_is_the_whole_answer() {
    let e = env().await;
    e.bao
        .write("secret/data/resp", json!({"data": {"k": "v"}}))
        .await;
    e.bao.write("kv/resp", json!({"k": "v1"})).await;
    let objects = r#"
- objectName: v2
  secretPath: secret/data/resp
  template: "{{ response.data.data.k }}|{{ response.lease_duration }}|{{ response.data.metadata.version }}|{{ response.renewable | tojson }}|{{ (response.request_id | length > 0) | tojson }}|{{ 'empty' if response.lease_id == '' else 'set' }}|{{ response.warnings | tojson }}"
- objectName: v1
  secretPath: kv/resp
  template: "{{ response.data.k }}|{{ response.lease_duration }}"
"#;
    let r = e.mount(objects).await.unwrap();
    assert_eq!(file_str(&r, "v2"), "v|0|1|false|true|empty|null");
    let raw = e.bao.api("GET", "kv/resp", None).await;
    assert_eq!(
        file_str(&r, "v1"),
        format!("v1|{}", raw["lease_duration"]),
        "KV v1 answers with a lease duration"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_builtin_and_ours() {
    let e = env().await;
    e.bao
        .write(
            "secret/data/f",
            json!({"data": {
                "password": "s3cr3t",
                "blob": "aGVsbG8=",
                "js": "{\"a\": {\"b\": [1, 2]}}",
                "list": ["x", "y"],
                "obj": {"k": "v", "n": 1},
                "ws": "  pad  ",
                "multi": "l1\nl2",
                "url": "a b&c/d",
            }}),
        )
        .await;
    let cases: &[(&str, &str)] = &[
        ("b64encode", "{{ secret.password | b64encode }}"),
        ("b64decode", "{{ secret.blob | b64decode }}"),
        ("roundtrip", "{{ secret.password | b64encode | b64decode }}"),
        ("fromjson", "{{ (secret.js | fromjson).a.b[1] }}"),
        ("toyaml", "{{ secret.obj | toyaml }}"),
        ("tojson", "{{ secret.obj | tojson }}"),
        ("trim-upper", "{{ secret.ws | trim | upper }}"),
        ("join", "{{ secret.list | join(',') }}"),
        ("default", "{{ secret.missing | default('dflt') }}"),
        (
            "defined",
            "{% if secret.missing is defined %}yes{% else %}no{% endif %}",
        ),
        ("indent", "{{ secret.multi | indent(2) }}"),
        ("replace", "{{ secret.password | replace('s3', 'S') }}"),
        ("urlencode", "{{ secret.url | urlencode }}"),
        ("number", "{{ secret.obj.n + 1 }}"),
        (
            "items",
            "{% for k, v in secret.obj | dictsort %}{{ k }}={{ v }};{% endfor %}",
        ),
    ];
    let objects: String = cases
        .iter()
        .map(|(name, t)| {
            format!(
                "- objectName: {name}\n  secretPath: secret/data/f\n  template: {}\n",
                serde_json::to_string(t).unwrap()
            )
        })
        .collect();
    let r = e.mount(&objects).await.unwrap();
    let expect = |name: &str, want: &str| assert_eq!(file_str(&r, name), want, "{name}");
    expect("b64encode", "czNjcjN0");
    expect("b64decode", "hello");
    expect("roundtrip", "s3cr3t");
    expect("fromjson", "2");
    expect("trim-upper", "PAD");
    expect("join", "x,y");
    expect("default", "dflt");
    expect("defined", "no");
    expect("indent", "l1\n  l2");
    expect("replace", "Scr3t");
    expect("urlencode", "a%20b%26c/d");
    expect("number", "2");
    expect("items", "k=v;n=1;");
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(file_str(&r, "toyaml")).unwrap();
    assert_eq!(yaml["k"].as_str(), Some("v"), "{}", file_str(&r, "toyaml"));
    assert_eq!(yaml["n"].as_i64(), Some(1), "{}", file_str(&r, "toyaml"));
    let js: Value = serde_json::from_str(file_str(&r, "tojson")).unwrap();
    assert_eq!(js, json!({"k": "v", "n": 1}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undefined_names_are_not_found_and_never_show_values() {
    let e = env().await;
    e.bao
        .write(
            "secret/data/u",
            json!({"data": {"password": SECRET_VALUE, "user": "bob"}}),
        )
        .await;
    let one = |t: &str| {
        format!(
            "- objectName: cfg\n  secretPath: secret/data/u\n  template: {}\n",
            serde_json::to_string(t).unwrap()
        )
    };
    let msg = expect_err(
        "misspelt key",
        e.mount(&one("{{ secret.pasword }}")).await,
        Code::NotFound,
        &["\"cfg\"", "pasword", "password"],
    );
    assert!(msg.contains("user"), "lists the keys present: {msg}");
    expect_err(
        "misspelt top-level name",
        e.mount(&one("{{ secrets.password }}")).await,
        Code::NotFound,
        &["\"cfg\"", "secrets", "response", "objects"],
    );
    let with_other = format!(
        "- {{objectName: other, secretPath: secret/data/u, secretKey: user}}\n{}",
        one("{{ objects.nope }}")
    );
    expect_err(
        "unknown object",
        e.mount(&with_other).await,
        Code::NotFound,
        &["\"cfg\"", "nope", "other"],
    );
    // Templates do not see each other.
    let two_templates = format!(
        "- {{objectName: t1, template: x}}\n{}",
        one("{{ objects.t1 }}")
    );
    expect_err(
        "another template",
        e.mount(&two_templates).await,
        Code::NotFound,
        &["\"cfg\"", "t1"],
    );
    // The missing name is itself a secret value: it must not be echoed.
    expect_err(
        "name computed from a value",
        e.mount(&one("{{ secret[secret.password] }}")).await,
        Code::NotFound,
        &["\"cfg\""],
    );
    // Whatever else fails on a value, the value stays out of the message.
    for t in [
        "{{ secret.password | int }}",
        "{{ secret.password + 1 }}",
        "{{ secret.password | fromjson }}",
        "{{ secret.password | b64decode }}",
        "{{ secret.password.foo.bar }}",
        "{{ range(secret.password) }}",
        "{{ secret.password() }}",
        "{{ secret.password | nosuchfilter }}",
        "{{ objects[secret.password] }}",
        "{% for x in secret.password.nope %}{% endfor %}",
        "{{ secret.user[secret.password] }}",
    ] {
        let err = e.mount(&one(t)).await.expect_err(&format!("{t} must fail"));
        assert_ne!(err.code(), Code::Ok);
        assert_no_secret(t, err.message());
        assert!(
            err.message().contains("\"cfg\""),
            "{t}: names the object: {}",
            err.message()
        );
    }
    // And none of it reached the log.
    assert!(
        !e.provider.log_text().contains(SECRET_VALUE),
        "the provider's log holds the secret value"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syntax_errors_name_object_line_and_column_before_vault() {
    let e = env().await;
    e.bao
        .write("secret/data/u", json!({"data": {"password": SECRET_VALUE}}))
        .await;
    let cases: &[(&str, &str)] = &[
        ("line one\nline two\n{% if %}", "line 3, column "),
        ("{{ secret.password ", "line 1, column "),
        ("ok\n{% for x in secret %}\nno end", "line "),
        ("{% endif %}", "line 1, column "),
        ("a\n\n  {{ secret.password | }}", "line 3, column "),
        ("{% macro m( %}{% endmacro %}", "line 1, column "),
    ];
    for (t, position) in cases {
        let objects = format!(
            "- {{objectName: ok, secretPath: secret/data/u, secretKey: password}}\n- objectName: cfg\n  secretPath: secret/data/u\n  template: {}\n",
            serde_json::to_string(t).unwrap()
        );
        let msg = expect_err(
            t,
            e.mount(&objects).await,
            Code::InvalidArgument,
            &["object \"cfg\"", position],
        );
        let at = msg.find(position).unwrap() + position.len();
        assert!(
            msg[at..].starts_with(|c: char| c.is_ascii_digit()),
            "{t}: a number follows {position:?}: {msg}"
        );
    }
    assert_eq!(
        e.logins(),
        0,
        "a template that cannot parse must not reach Vault"
    );
}

/// An unknown filter is reported as a syntax error (INVALID_ARGUMENT), so like every syntax
/// error it must be found before Vault is called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_filter_is_invalid_argument_and_shows_no_value() {
    let e = env().await;
    e.bao
        .write("secret/data/u", json!({"data": {"password": SECRET_VALUE}}))
        .await;
    expect_err(
        "unknown filter",
        e.mount("- {objectName: cfg, secretPath: secret/data/u, template: '{{ secret.password | nosuchfilter }}'}")
            .await,
        Code::InvalidArgument,
        &["object \"cfg\"", "nosuchfilter", "line 1, column "],
    );
    // Filter names are only looked up when the template runs (after the read), so this is
    // not a syntax error; it is still the class's fault, and no value is shown.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_source_size_is_bounded() {
    let e = env().await;
    let template = |n: usize| format!("- objectName: big\n  template: {}\n", "x".repeat(n));
    let r = e.mount(&template(65536)).await.unwrap();
    assert_eq!(file(&r, "big").len(), 65536);
    let logins = e.logins();
    expect_err(
        "65537 bytes",
        e.mount(&template(65537)).await,
        Code::InvalidArgument,
        &["\"big\""],
    );
    assert_eq!(e.logins(), logins, "refused before Vault");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_templates_are_bounded_and_other_pods_unaffected() {
    let e = env().await;
    e.bao
        .write("secret/data/app", json!({"data": {"k": "v"}}))
        .await;
    let normal = "- {objectName: k, secretPath: secret/data/app, secretKey: k}\n- {objectName: t, secretPath: secret/data/app, template: '{{ secret.k | upper }}'}";
    let warm = e.mount(normal).await.unwrap();
    assert_eq!(file_str(&warm, "t"), "V");
    let pid = e.provider.child.id();
    let rss_before = rss_kib(pid);

    const ANY: &[&str] = &[
        "template-fuel",
        "template-max-output",
        "template-recursion-limit",
    ];
    let hostile: &[(&str, &str, &[&str])] = &[
        (
            "nested loops",
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            &["template-fuel"],
        ),
        (
            "endless recursion",
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
            &["template-recursion-limit"],
        ),
        ("a gigabyte string", "{{ \"x\" * 1000000000 }}", ANY),
        (
            "a loop of 10 MB strings",
            "{% for i in range(1000) %}{{ \"x\" * 10000000 }}{% endfor %}",
            ANY,
        ),
        (
            "just over the output limit",
            "{% for i in range(1100) %}{{ \"x\" * 1000 }}{% endfor %}",
            &["template-max-output"],
        ),
        (
            "doubling a string",
            "{% set ns = namespace(s=\"x\") %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
            ANY,
        ),
    ];
    let object = |t: &str| format!("- objectName: evil\n  template: '{t}'\n");
    for (name, t, flags) in hostile {
        let start = Instant::now();
        let result = e.mount(&object(t)).await;
        let took = start.elapsed();
        let msg = expect_err(name, result, Code::ResourceExhausted, &["\"evil\""]);
        assert!(
            flags.iter().any(|f| msg.contains(f)),
            "{name}: names none of {flags:?}: {msg}"
        );
        // Bounded by fuel: milliseconds; unbounded, minutes. The margin holds under load.
        assert!(
            took < Duration::from_secs(5),
            "{name}: refused after {took:?}"
        );
    }

    let rss_sequential = rss_kib(pid);
    assert!(
        rss_sequential.saturating_sub(rss_before) < 32 * 1024,
        "RSS grew from {rss_before} KiB to {rss_sequential} KiB"
    );

    // Hostile pods and a normal pod at once: the normal pod mounts.
    let mut tasks = Vec::new();
    for (i, (_, t, _)) in hostile.iter().enumerate() {
        let client = e.client.clone();
        let req = Pod::new("default", "app").request(class(&object(t)));
        tasks.push((
            i,
            tokio::spawn(async move { client.mount(req).await.map(|_| ()) }),
        ));
    }
    let other = Pod::new("default", "app");
    let start = Instant::now();
    let ok = e.client.mount(other.request(class(normal))).await.unwrap();
    let took = start.elapsed();
    assert_eq!(file_str(&ok, "t"), "V");
    assert!(took < Duration::from_secs(5), "normal mount took {took:?}");
    for (i, t) in tasks {
        let err = t.await.unwrap().unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{}", hostile[i].0);
    }

    let rss_after = rss_kib(pid);
    assert!(
        rss_after.saturating_sub(rss_before) < 48 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB with hostile pods in parallel"
    );
    let after = e.mount(normal).await.unwrap();
    assert_eq!(file_str(&after, "k"), "v");
    assert_eq!(file_str(&after, "t"), "V");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_overrides_are_bounded_and_limits_follow_the_flags() {
    let bao = openbao().await;
    bao.write("secret/data/app", json!({"data": {"k": "v"}}))
        .await;
    let default = provider(&bao, &[]).await;
    let low_fuel = provider(&bao, &["-template-fuel=1000"]).await;
    let low_depth = provider(&bao, &["-template-recursion-limit=3"]).await;
    let low_output = provider(&bao, &["-template-max-output=1024"]).await;
    let pod = Pod::new("default", "app");

    // A class the pod overrides through its volume attributes (the driver merges them
    // into the request's attributes).
    let benign = "- {objectName: t, secretPath: secret/data/app, template: '{{ secret.k }}'}";
    let client = default.client().await;
    assert_eq!(
        file_str(
            &client.mount(pod.request(class(benign))).await.unwrap(),
            "t"
        ),
        "v"
    );
    let mut req = pod.request(class(benign));
    let mut attrs: Value = serde_json::from_str(&req.attributes).unwrap();
    attrs["objects"] = json!(
        "- objectName: t\n  template: '{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}'\n"
    );
    req.attributes = attrs.to_string();
    let start = Instant::now();
    let result = client.mount(req).await;
    let took = start.elapsed();
    expect_err(
        "override",
        result,
        Code::ResourceExhausted,
        &["template-fuel"],
    );
    assert!(took < Duration::from_secs(5), "refused after {took:?}");

    // Templates the defaults accept, each refused by one low limit, naming its flag.
    let cases: &[(&ProviderProcess, &str, &str, &str)] = &[
        (
            &low_fuel,
            "{% for i in range(2000) %}{% endfor %}ok",
            "ok",
            "template-fuel",
        ),
        (
            &low_depth,
            "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(3) }}r",
            "r",
            "template-recursion-limit",
        ),
        (
            &low_output,
            "{{ \"y\" * 2000 }}",
            &"y".repeat(2000),
            "template-max-output",
        ),
    ];
    for (low, t, output, flag) in cases {
        let objects = format!("- objectName: t\n  template: '{t}'\n");
        let ok = client.mount(pod.request(class(&objects))).await.unwrap();
        assert_eq!(file_str(&ok, "t"), *output, "defaults accept {t}");
        let low_client = low.client().await;
        expect_err(
            t,
            low_client.mount(pod.request(class(&objects))).await,
            Code::ResourceExhausted,
            &["\"t\"", flag],
        );
        // The low-limit provider still mounts ordinary templates.
        let fine = low_client
            .mount(pod.request(class(
                "- {objectName: t, secretPath: secret/data/app, template: '{{ secret.k }}'}",
            )))
            .await
            .unwrap();
        assert_eq!(file_str(&fine, "t"), "v");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_combinations_before_vault() {
    let e = env().await;
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "template+secretKey",
            "- {objectName: a, secretPath: secret/data/app, template: x, secretKey: k}",
            &["template", "secretKey"],
        ),
        (
            "template+selector",
            "- {objectName: a, secretPath: secret/data/app, template: x, selector: /k}",
            &["template", "selector"],
        ),
        (
            "template+allKeys",
            "- {objectName: a, secretPath: secret/data/app, template: x, allKeys: true}",
            &["template", "allKeys"],
        ),
        (
            "selector+secretKey",
            "- {objectName: a, secretPath: secret/data/app, selector: /k, secretKey: k}",
            &["selector", "secretKey"],
        ),
        (
            "allKeys+secretKey",
            "- {objectName: a, secretPath: secret/data/app, allKeys: true, secretKey: k}",
            &["allKeys", "secretKey"],
        ),
        (
            "relative selector",
            "- {objectName: a, secretPath: secret/data/app, selector: db/password}",
            &["selector", "db/password"],
        ),
        (
            "a file inside an allKeys directory",
            "- {objectName: a, secretPath: secret/data/app, allKeys: true}\n- {objectName: a/k, secretPath: secret/data/app, secretKey: k}",
            &["a/k", "allKeys"],
        ),
        (
            "no secretPath without a template",
            "- {objectName: a, secretKey: k}",
            &["secretPath"],
        ),
    ];
    for (name, objects, needles) in cases {
        let mut needles = needles.to_vec();
        needles.push("\"a\"");
        expect_err(
            name,
            e.mount(objects).await,
            Code::InvalidArgument,
            &needles,
        );
    }
    assert_eq!(e.logins(), 0, "refused before Vault was called");
}

// ---------------------------------------------------------------------------------------
// allKeys
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_keys_on_kv_v2_and_v1() {
    let e = env().await;
    let data = json!({"user": "alice", "n": 42, "o": {"z": 1, "a": [1, "x"]}});
    e.bao
        .write("secret/data/multi", json!({ "data": data }))
        .await;
    e.bao.write("kv/multi", data.clone()).await;
    e.bao
        .write(
            "secret/data/b64",
            json!({"data": {"a": "aGVsbG8=", "b": "d29ybGQ="}}),
        )
        .await;
    let objects = r#"
- {objectName: conf, secretPath: secret/data/multi, allKeys: true, filePermission: 0600}
- {objectName: v1/conf, secretPath: kv/multi, allKeys: true}
- {objectName: dec, secretPath: secret/data/b64, allKeys: true, encoding: base64, filePermission: 0o640}
- {objectName: plain, secretPath: secret/data/multi, secretKey: user}
- objectName: summary
  template: "{{ objects.conf.user }} {{ objects.conf | length }} {{ objects.conf.o }} {{ objects.plain }}"
"#;
    let r = e.mount(objects).await.unwrap();
    let expected = [
        "conf/n",
        "conf/o",
        "conf/user",
        "dec/a",
        "dec/b",
        "plain",
        "summary",
        "v1/conf/n",
        "v1/conf/o",
        "v1/conf/user",
    ];
    assert_eq!(paths(&r), expected);
    assert_eq!(version_ids(&r), expected, "one version per file, id = path");
    assert!(r.object_version.iter().all(|v| v.version.len() == 44));
    for prefix in ["conf", "v1/conf"] {
        assert_eq!(file_str(&r, &format!("{prefix}/user")), "alice");
        assert_eq!(file_str(&r, &format!("{prefix}/n")), "42");
        assert_eq!(
            file_str(&r, &format!("{prefix}/o")),
            r#"{"a":[1,"x"],"z":1}"#
        );
    }
    for f in ["conf/n", "conf/o", "conf/user"] {
        assert_eq!(mode(&r, f), 0o600, "{f}");
    }
    for f in ["v1/conf/n", "plain", "summary"] {
        assert_eq!(mode(&r, f), 0o644, "{f}");
    }
    assert_eq!(file_str(&r, "dec/a"), "hello");
    assert_eq!(file_str(&r, "dec/b"), "world");
    assert_eq!(mode(&r, "dec/a"), 0o640);
    assert_eq!(
        file_str(&r, "summary"),
        r#"alice 3 {"a":[1,"x"],"z":1} alice"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_keys_refuses_unsafe_key_names() {
    let e = env().await;
    let long = "k".repeat(256);
    let cases: Vec<(&str, Option<&str>)> = vec![
        ("../x", Some("\"../x\"")),
        ("a/b", Some("\"a/b\"")),
        (".", None),
        ("..", None),
        ("", None),
        ("bad\u{1}key", None),
        ("nul\u{0}key", None),
        ("new\nline", None),
        (long.as_str(), None),
    ];
    for (i, (key, needle)) in cases.iter().enumerate() {
        let path = format!("secret/data/bad{i}");
        let mut data = serde_json::Map::new();
        data.insert("ok".into(), json!("fine"));
        data.insert((*key).to_string(), json!("v"));
        e.bao.write(&path, json!({ "data": data })).await;
        let objects = format!("- {{objectName: all, secretPath: {path}, allKeys: true}}");
        let mut needles = vec!["\"all\""];
        needles.extend(needle.iter());
        expect_err(
            &format!("key {key:?}"),
            e.mount(&objects).await,
            Code::InvalidArgument,
            &needles,
        );
    }
    // The same secret with only safe keys mounts.
    e.bao
        .write("secret/data/good", json!({"data": {"ok": "fine"}}))
        .await;
    let r = e
        .mount("- {objectName: all, secretPath: secret/data/good, allKeys: true}")
        .await
        .unwrap();
    assert_eq!(paths(&r), ["all/ok"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_keys_follows_the_secret() {
    let e = env().await;
    e.bao
        .write("secret/data/grow", json!({"data": {"a": "1"}}))
        .await;
    let objects = "- {objectName: g, secretPath: secret/data/grow, allKeys: true}";
    let first = e.mount(objects).await.unwrap();
    assert_eq!(paths(&first), ["g/a"]);
    assert_eq!(version_ids(&first), ["g/a"]);
    e.bao
        .write("secret/data/grow", json!({"data": {"a": "1", "b": "2"}}))
        .await;
    let second = e.mount(objects).await.unwrap();
    assert_eq!(paths(&second), ["g/a", "g/b"]);
    assert_eq!(version_ids(&second), ["g/a", "g/b"]);
    assert_eq!(file_str(&second, "g/b"), "2");
    assert_eq!(
        version(&first, "g/a"),
        version(&second, "g/a"),
        "an unchanged file keeps its version"
    );
    // A secret without keys has nothing to mount.
    e.bao.write("secret/data/empty", json!({"data": {}})).await;
    expect_err(
        "no keys",
        e.mount("- {objectName: g, secretPath: secret/data/empty, allKeys: true}")
            .await,
        Code::NotFound,
        &["\"g\""],
    );
}

// ---------------------------------------------------------------------------------------
// selector
// ---------------------------------------------------------------------------------------

async fn selector_env() -> Env {
    let e = env().await;
    let data = json!({
        "db": {"primary": {"password": "pw-primary-7", "port": 5432}},
        "hosts": ["h0", "h1"],
        "a/b": "slash",
        "t~x": "tilde",
        "enc": {"b64": "aGVsbG8="},
    });
    e.bao
        .write("secret/data/sel", json!({ "data": data }))
        .await;
    e.bao.write("kv/sel", data).await;
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_into_objects_and_arrays() {
    let e = selector_env().await;
    let objects = r#"
- {objectName: p, secretPath: secret/data/sel, selector: /db/primary/password}
- {objectName: h, secretPath: secret/data/sel, selector: /hosts/1}
- {objectName: s, secretPath: secret/data/sel, selector: /a~1b}
- {objectName: t, secretPath: secret/data/sel, selector: /t~0x}
- {objectName: port, secretPath: secret/data/sel, selector: /db/primary/port}
- {objectName: primary, secretPath: secret/data/sel, selector: /db/primary, filePermission: 0600}
- {objectName: hosts, secretPath: secret/data/sel, selector: /hosts}
- {objectName: b, secretPath: secret/data/sel, selector: /enc/b64, encoding: base64}
- {objectName: v1, secretPath: kv/sel, selector: /db/primary/password}
- {objectName: dir, secretPath: secret/data/sel, selector: /db/primary, allKeys: true}
"#;
    let r = e.mount(objects).await.unwrap();
    assert_eq!(file_str(&r, "p"), "pw-primary-7");
    assert_eq!(file_str(&r, "h"), "h1");
    assert_eq!(file_str(&r, "s"), "slash");
    assert_eq!(file_str(&r, "t"), "tilde");
    assert_eq!(file_str(&r, "port"), "5432");
    assert_eq!(
        file_str(&r, "primary"),
        r#"{"password":"pw-primary-7","port":5432}"#
    );
    assert_eq!(mode(&r, "primary"), 0o600);
    assert_eq!(file_str(&r, "hosts"), r#"["h0","h1"]"#);
    assert_eq!(file_str(&r, "b"), "hello");
    assert_eq!(file_str(&r, "v1"), "pw-primary-7");
    assert_eq!(file_str(&r, "dir/password"), "pw-primary-7");
    assert_eq!(file_str(&r, "dir/port"), "5432");
    assert_eq!(r.files.len(), 11);
    assert_eq!(r.object_version.len(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selector_misses_name_the_pointer_and_keys_never_values() {
    let e = selector_env().await;
    let msg = expect_err(
        "missing step",
        e.mount("- {objectName: x, secretPath: secret/data/sel, selector: /db/replica/password}")
            .await,
        Code::NotFound,
        &["\"x\"", "/db/replica/password", "primary"],
    );
    assert!(
        !msg.contains("pw-primary-7") && !msg.contains("5432"),
        "{msg}"
    );
    let msg = expect_err(
        "missing first step",
        e.mount("- {objectName: x, secretPath: secret/data/sel, selector: /nope}")
            .await,
        Code::NotFound,
        &["/nope", "db", "hosts"],
    );
    assert!(!msg.contains("slash") && !msg.contains("tilde"), "{msg}");
    let msg = expect_err(
        "index out of range",
        e.mount("- {objectName: x, secretPath: secret/data/sel, selector: /hosts/5}")
            .await,
        Code::NotFound,
        &["\"x\"", "/hosts/5", "2"],
    );
    assert!(!msg.contains("h0") && !msg.contains("h1"), "{msg}");
    let msg = expect_err(
        "below a string",
        e.mount("- {objectName: x, secretPath: secret/data/sel, selector: /db/primary/password/x}")
            .await,
        Code::NotFound,
        &["\"x\""],
    );
    assert!(!msg.contains("pw-primary-7"), "{msg}");
}

// ---------------------------------------------------------------------------------------
// Role-name spellings
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_name_spellings_and_their_precedence() {
    let bao = OpenBao::start().await;
    bao.enable_jwt("jwt").await;
    for role in ["ra", "rb", "rc", "rd"] {
        bao.policy(
            &format!("pol-{role}"),
            &format!(r#"path "secret/data/{role}" {{ capabilities = ["read"] }}"#),
        )
        .await;
        bao.jwt_role("jwt", role, "default", "app", &[&format!("pol-{role}")])
            .await;
        bao.write(
            &format!("secret/data/{role}"),
            json!({"data": {"who": role}}),
        )
        .await;
    }
    let p = provider(&bao, &[]).await;
    let client = p.client().await;
    let pod = Pod::new("default", "app");
    // The token's own policies say which role logged in.
    let objects =
        "- {objectName: policies, secretPath: auth/token/lookup-self, secretKey: policies}";
    let cases: &[(Value, &str)] = &[
        (json!({"roleName": "rd"}), "rd"),
        (json!({"vaultRoleName": "rc", "roleName": "rd"}), "rc"),
        (
            json!({"openbaoRoleName": "rb", "vaultRoleName": "rc", "roleName": "rd"}),
            "rb",
        ),
        (
            json!({"baoRoleName": "ra", "openbaoRoleName": "rb", "vaultRoleName": "rc", "roleName": "rd"}),
            "ra",
        ),
        (
            json!({"baoRoleName": "", "openbaoRoleName": "rb", "roleName": "rd"}),
            "rb",
        ),
        (
            json!({"baoRoleName": "", "openbaoRoleName": "", "vaultRoleName": "", "roleName": "rd"}),
            "rd",
        ),
        (json!({"baoRoleName": "ra"}), "ra"),
        (json!({"openbaoRoleName": "rb"}), "rb"),
        (json!({"vaultRoleName": "rc"}), "rc"),
    ];
    for (params, role) in cases {
        let mut params = params.clone();
        params["objects"] = json!(objects);
        let r = client
            .mount(pod.request(params.clone()))
            .await
            .unwrap_or_else(|err| panic!("{params}: {err:?}"));
        assert_eq!(
            file_str(&r, "policies"),
            format!(r#"["default","pol-{role}"]"#),
            "{params}"
        );
        // And the role's own secret is readable with it.
        params["objects"] = json!(format!(
            "- {{objectName: who, secretPath: secret/data/{role}, secretKey: who}}"
        ));
        let r = client.mount(pod.request(params.clone())).await.unwrap();
        assert_eq!(file_str(&r, "who"), *role, "{params}");
    }
    // A role other than the winner cannot read the winner's secret.
    let err = client
        .mount(pod.request(json!({
            "baoRoleName": "ra",
            "roleName": "rd",
            "objects": "- {objectName: who, secretPath: secret/data/rd, secretKey: who}",
        })))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    // All spellings empty: no role.
    let err = client
        .mount(pod.request(json!({
            "baoRoleName": "",
            "openbaoRoleName": "",
            "vaultRoleName": "",
            "roleName": "",
            "objects": objects,
        })))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    assert!(err.message().contains("roleName"), "{}", err.message());
}

// ---------------------------------------------------------------------------------------
// The mount subcommand
// ---------------------------------------------------------------------------------------

const CLI_CLASS: &str = r#"
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: cli
  namespace: default
spec:
  provider: vault
  parameters:
    roleName: app
    objects: |
      - objectName: all
        secretPath: secret/data/cli
        allKeys: true
        filePermission: 0640
      - objectName: greeting.txt
        template: "hello {{ objects.all.name }} ({{ objects.all | length }} keys)"
      - objectName: conf/upper
        secretPath: secret/data/cli
        filePermission: 0600
        template: "{{ secret.name | upper }}"
"#;

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vault-csi-provider"))
        .arg("mount")
        .args(args)
        .output()
        .unwrap()
}

/// Listing rows: path -> (mode, bytes, version).
fn listing(stdout: &str) -> BTreeMap<String, (String, usize, String)> {
    stdout
        .lines()
        .skip(1)
        .map(str::split_whitespace)
        .map(Iterator::collect::<Vec<_>>)
        .filter(|cols| cols.len() == 4)
        .map(|c| {
            (
                c[3].to_string(),
                (c[0].to_string(), c[1].parse().unwrap(), c[2].to_string()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_subcommand_renders_templates_and_all_keys_like_a_mount() {
    let bao = openbao().await;
    let value = "world-cli-value";
    bao.write("secret/data/cli", json!({"data": {"name": value, "n": 7}}))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("hmac.key");
    std::fs::write(&key, "features-test-hmac-key-0123456789").unwrap();
    let key_flag = format!("-hmac-key-file={}", key.display());
    let class_path = dir.path().join("class.yaml");
    std::fs::write(&class_path, CLI_CLASS).unwrap();
    let pod = Pod::new("default", "app");
    let token_path = dir.path().join("token");
    std::fs::write(&token_path, pod.token("vault")).unwrap();
    let (class_arg, token_arg) = (
        class_path.display().to_string(),
        token_path.display().to_string(),
    );
    let addr = format!("-vault-addr={}", bao.addr);
    let base = [
        "-class",
        class_arg.as_str(),
        "-token-file",
        token_arg.as_str(),
        addr.as_str(),
        "-vault-mount=jwt",
        key_flag.as_str(),
    ];

    // What a Mount through the provider gives, with the same version key.
    let p = provider(&bao, &[&key_flag]).await;
    let client = p.client().await;
    let mounted = client
        .mount(example_request(CLI_CLASS, &pod))
        .await
        .unwrap();
    let expected_paths = ["all/n", "all/name", "conf/upper", "greeting.txt"];
    assert_eq!(paths(&mounted), expected_paths);
    assert_eq!(
        file_str(&mounted, "greeting.txt"),
        format!("hello {value} (2 keys)")
    );
    assert_eq!(file_str(&mounted, "conf/upper"), value.to_uppercase());

    // The listing: paths, modes, sizes and versions as mounted; values hidden.
    let out = cli(&base);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains(value), "values hidden: {stdout}");
    assert!(
        !stdout.contains(&value.to_uppercase()),
        "values hidden: {stdout}"
    );
    let rows = listing(&stdout);
    assert_eq!(
        rows.keys().map(String::as_str).collect::<Vec<_>>(),
        expected_paths,
        "{stdout}"
    );
    for f in &mounted.files {
        let (mode, bytes, ver) = &rows[&f.path];
        assert_eq!(*mode, format!("{:04o}", f.mode), "{}", f.path);
        assert_eq!(*bytes, f.contents.len(), "{}", f.path);
        assert_eq!(*ver, version(&mounted, &f.path), "{}", f.path);
    }
    assert_eq!(rows["all/name"].0, "0640");
    assert_eq!(rows["conf/upper"].0, "0600");

    // -show-values prints them.
    let mut shown_args = base.to_vec();
    shown_args.push("-show-values");
    let shown = cli(&shown_args);
    let shown_text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success());
    assert!(
        shown_text.contains(&format!("hello {value} (2 keys)")),
        "{shown_text}"
    );
    assert!(shown_text.contains(&value.to_uppercase()), "{shown_text}");

    // -out writes the nested files with their modes, byte for byte as mounted.
    let out_dir = dir.path().join("volume");
    let out_flag = format!("-out={}", out_dir.display());
    let mut out_args = base.to_vec();
    out_args.push(out_flag.as_str());
    let written = cli(&out_args);
    assert!(
        written.status.success(),
        "{}",
        String::from_utf8_lossy(&written.stderr)
    );
    for f in &mounted.files {
        let target = out_dir.join(&f.path);
        assert_eq!(std::fs::read(&target).unwrap(), f.contents, "{}", f.path);
        assert_eq!(
            std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            f.mode as u32,
            "{}",
            f.path
        );
    }
    assert!(out_dir.join("all").is_dir());

    // Through the running provider's socket: the same listing.
    let socket_flag = format!("-socket={}", p.socket.display());
    let via_socket = cli(&[
        "-class",
        &class_arg,
        "-token-file",
        &token_arg,
        &socket_flag,
    ]);
    assert!(
        via_socket.status.success(),
        "{}",
        String::from_utf8_lossy(&via_socket.stderr)
    );
    assert_eq!(listing(&String::from_utf8_lossy(&via_socket.stdout)), rows);

    // A template error reaches the command's exit status with the pod's message.
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        CLI_CLASS.replace("{{ secret.name | upper }}", "{{ secret.nmae }}"),
    )
    .unwrap();
    let broken_arg = broken.display().to_string();
    let mut broken_args = base.to_vec();
    broken_args[1] = broken_arg.as_str();
    let failed = cli(&broken_args);
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("NotFound") && stderr.contains("nmae") && !stderr.contains(value),
        "{stderr}"
    );
}
