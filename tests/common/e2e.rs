//! The Go provider's end-to-end set-up in OpenBao, for the classes in
//! `tests/fixtures/go-e2e/` (written like theirs): service account `test/nginx`, policy
//! `e2e`, kubernetes auth reviewing through the API stand-in with the roles the classes name,
//! jwt auth, the KV secrets, PKI for example.com, the database role, and a Vault namespace.
//! `go_e2e.rs` runs the scenarios; `migration.rs` mounts the same classes through both
//! providers' configurations.

use super::postgres::Postgres;
use super::{JwtRole, OpenBao};
use serde_json::json;

/// The pod's namespace and service account in every e2e class.
pub const NS: &str = "test";
pub const SA: &str = "nginx";

/// The Go provider's e2e policy.
pub const POLICY: &str = r#"
path "secret/data/*" { capabilities = ["read"] }
path "pki/issue/example-dot-com" { capabilities = ["create", "update"] }
path "database/creds/db-role" { capabilities = ["read"] }
"#;

/// The kubernetes auth roles the classes name, each for `test/nginx` with policy `e2e`;
/// `kv-custom-audience-role` wants its own audience.
const KUBERNETES_ROLES: [(&str, Option<&str>); 5] = [
    ("kv-role", None),
    ("pki-role", None),
    ("db-role", None),
    ("all-role", None),
    ("kv-custom-audience-role", Some("custom-audience")),
];

/// Everything the e2e classes read, but the database and the namespace: policy `e2e`,
/// kubernetes auth at `kubernetes/` reviewing with the stand-in at `kube_url`, jwt auth at
/// `jwt/` with role `jwt-kv-role` admitting `jwt_audience`, the KV secrets and PKI.
pub async fn seed(bao: &OpenBao, kube_url: &str, jwt_audience: &str) {
    bao.policy("e2e", POLICY).await;
    bao.enable_kubernetes("kubernetes", kube_url).await;
    for (role, audience) in KUBERNETES_ROLES {
        bao.kubernetes_role_aud("kubernetes", role, NS, SA, &["e2e"], audience)
            .await;
    }
    bao.enable_jwt("jwt").await;
    let jwt = JwtRole {
        mount: "jwt",
        role: "jwt-kv-role",
        namespace: NS,
        sa: SA,
        policies: &["e2e"],
        audience: jwt_audience,
    };
    bao.jwt_role_in("", &jwt).await;
    for (path, data) in [
        ("secret/data/kv1", json!({"bar1": "hello1"})),
        ("secret/data/kv2", json!({"bar2": "hello2"})),
        (
            "secret/data/kv-b64",
            json!({"bar1": "aGVsbG8x", "bar2": "aGVsbG8y", "bar3": "aGVsbG8z"}),
        ),
        (
            "secret/data/kv-custom-audience",
            json!({"bar": "hello-custom-audience"}),
        ),
    ] {
        bao.write(path, json!({ "data": data })).await;
    }
    bao.enable_pki(
        "example.com",
        "example-dot-com",
        json!({"allowed_domains": "example.com", "allow_subdomains": true, "max_ttl": "72h"}),
    )
    .await;
}

/// The database engine on `pg` with the classes' role `db-role` (one hour).
pub async fn seed_database(bao: &OpenBao, pg: &Postgres) {
    pg.serve_openbao(bao, "db-role", "1h").await;
}

/// The Vault namespace `acceptance` of `namespace.yaml`: policy `e2e` (as `policy`),
/// kubernetes auth reviewing with the stand-in at `kube_url`, role `kv-namespace-role`, KV v2
/// at `secret/` with `kv1-namespace`.
pub async fn seed_namespace(bao: &OpenBao, kube_url: &str, policy: &str) {
    let ns = "acceptance";
    bao.write(&format!("sys/namespaces/{ns}"), json!({})).await;
    let put = |path: &'static str, body: serde_json::Value| bao.api_ns(ns, "PUT", path, Some(body));
    put("sys/policies/acl/e2e", json!({ "policy": policy })).await;
    put("sys/auth/kubernetes", json!({"type": "kubernetes"})).await;
    put(
        "auth/kubernetes/config",
        json!({
            "kubernetes_host": kube_url,
            "kubernetes_ca_cert": include_str!("../fixtures/kube-ca.crt"),
            "token_reviewer_jwt": super::kube::REVIEWER_TOKEN,
            "disable_local_ca_jwt": true,
        }),
    )
    .await;
    put(
        "auth/kubernetes/role/kv-namespace-role",
        json!({"bound_service_account_names": [SA], "bound_service_account_namespaces": [NS], "token_policies": ["e2e"]}),
    )
    .await;
    put(
        "sys/mounts/secret",
        json!({"type": "kv", "options": {"version": "2"}}),
    )
    .await;
    put(
        "secret/data/kv1-namespace",
        json!({"data": {"greeting": "hello-namespaces"}}),
    )
    .await;
}
