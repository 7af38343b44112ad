//! The set-up the feature tests share (`examples.rs`, `templates.rs`, `all_keys.rs`,
//! `selectors.rs`, `cli.rs`): OpenBao with jwt auth at `jwt/` and role `app` for service
//! account default/app, KV v2 at `secret/` and KV v1 at `kv/`; the provider with jwt as its
//! default auth mount; the deploy/examples classes as the driver sends them; and the checks
//! every refusal gets (its code, what it names, no secret value).

use super::{Client, OpenBao, Pod, ProviderProcess};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tonic::{Code, Status};
use vault_csi_provider::proto::{MountRequest, MountResponse};

/// A value no error message may ever contain.
pub const SECRET_VALUE: &str = "Sup3r-S3cret-Value-9f2c";

pub const POLICY: &str = r#"
path "secret/data/*" { capabilities = ["read"] }
path "kv/*" { capabilities = ["read"] }
path "pki/issue/*" { capabilities = ["create", "update"] }
path "database/creds/*" { capabilities = ["read"] }
"#;

/// OpenBao with jwt auth at `jwt/`, role `app` for default/app, KV v2 at `secret/` and
/// KV v1 at `kv/`.
pub async fn openbao() -> OpenBao {
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
pub async fn provider(bao: &OpenBao, flags: &[&str]) -> ProviderProcess {
    let mut args = vec!["-vault-mount=jwt"];
    args.extend_from_slice(flags);
    ProviderProcess::start(&bao.addr, &args).await
}

pub struct Env {
    pub bao: OpenBao,
    pub provider: ProviderProcess,
    pub client: Client,
    pub pod: Pod,
}

pub async fn env() -> Env {
    env_flags(&[]).await
}

pub async fn env_flags(flags: &[&str]) -> Env {
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

pub fn class(objects: &str) -> Value {
    json!({ "roleName": "app", "objects": objects })
}

impl Env {
    pub async fn mount(&self, objects: &str) -> Result<MountResponse, Status> {
        self.client.mount(self.pod.request(class(objects))).await
    }

    pub async fn mount_example(&self, class_yaml: &str) -> Result<MountResponse, Status> {
        self.client
            .mount(example_request(class_yaml, &self.pod))
            .await
    }

    /// Logins seen by OpenBao so far (the test's own admin calls use the root token).
    pub fn logins(&self) -> usize {
        self.bao
            .audit_requests(&self.bao.audit_log(), |_, p| p.ends_with("/login"))
    }

    pub fn updates(&self, path: &str) -> usize {
        self.bao
            .audit_requests(&self.bao.audit_log(), |op, p| op == "update" && p == path)
    }
}

pub fn example_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/examples")
        .join(name)
}

pub fn example(name: &str) -> String {
    std::fs::read_to_string(example_path(name)).unwrap()
}

/// The MountRequest the driver sends for this class and pod.
pub fn example_request(class_yaml: &str, pod: &Pod) -> MountRequest {
    vault_csi_provider::driver_request(class_yaml, &pod.token("vault"), &BTreeMap::new()).unwrap()
}

/// Asserts the code, that the message holds every needle and no secret value; returns it.
pub fn expect_err(
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

pub fn assert_no_secret(what: &str, msg: &str) {
    assert!(
        !msg.contains(SECRET_VALUE) && !msg.contains("S3cret-Value"),
        "{what}: message holds the secret value: {msg}"
    );
}

pub fn paths(r: &MountResponse) -> Vec<&str> {
    let mut v: Vec<&str> = r.files.iter().map(|f| f.path.as_str()).collect();
    v.sort();
    v
}

pub fn version_ids(r: &MountResponse) -> Vec<&str> {
    let mut v: Vec<&str> = r.object_version.iter().map(|v| v.id.as_str()).collect();
    v.sort();
    v
}
