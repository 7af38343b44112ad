//! Dynamic secrets that live exactly as long as their pod, against real OpenBao with its
//! database engine on a real PostgreSQL, the provider given `NODE_NAME`, and the Kubernetes
//! API stand-in serving this node's pods (list, watch with resource versions, a watch the
//! server closes, deletion events): leases renewed while the pod runs, revoked within
//! seconds when it is gone, a pod replaced under its name, forty pods on this node and ten
//! on another, a watch that was down while a pod went, a policy without
//! `sys/leases/revoke`, and no `NODE_NAME` at all.

mod common;

use common::kube::KubeApi;
use common::postgres::Postgres;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

const NODE: &str = "node-a";
const OTHER_NODE: &str = "node-b";
const OBJECTS: &str = "- {objectName: username, secretPath: database/creds/app, secretKey: username}\n- {objectName: password, secretPath: database/creds/app, secretKey: password}";

/// OpenBao with jwt auth (role `app` for service account default/app, its Vault tokens
/// living `token_ttl`), the database engine on PostgreSQL (credentials living 10 s,
/// renewable up to 10 min), the stand-in API, and a provider watching `NODE`.
struct Env {
    _bao: OpenBao,
    pg: Postgres,
    kube: KubeApi,
    p: ProviderProcess,
    client: Client,
    _dir: tempfile::TempDir,
}

async fn env(token_ttl: &str, revoke_policy: bool, node_name: Option<&str>) -> Env {
    env_ttl(token_ttl, ("10s", "10m"), revoke_policy, node_name).await
}

/// The same, with the database credentials' TTL and maximum TTL.
async fn env_ttl(
    token_ttl: &str,
    (db_ttl, db_max_ttl): (&str, &str),
    revoke_policy: bool,
    node_name: Option<&str>,
) -> Env {
    let bao = OpenBao::start().await;
    let pg = Postgres::start();
    pg.serve_openbao_max(&bao, "app", db_ttl, db_max_ttl).await;
    let mut policy = r#"path "database/creds/app" { capabilities = ["read"] }"#.to_string();
    if revoke_policy {
        // Only the role's own leases: the provider revokes by path.
        policy.push_str(
            "\npath \"sys/leases/revoke/database/creds/app/*\" { capabilities = [\"update\"] }",
        );
    }
    bao.policy("app", &policy).await;
    bao.enable_jwt("jwt").await;
    bao.write(
        "auth/jwt/role/app",
        json!({
            "role_type": "jwt",
            "bound_audiences": ["vault"],
            "user_claim": "sub",
            "bound_subject": "system:serviceaccount:default:app",
            "token_policies": ["app"],
            "token_ttl": token_ttl,
            "token_max_ttl": "2h",
        }),
    )
    .await;
    let kube = KubeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kube.kubeconfig(dir.path()).display().to_string();
    let mut vars = vec![("KUBECONFIG", kubeconfig.as_str())];
    if let Some(n) = node_name {
        vars.push(("NODE_NAME", n));
    }
    let p = ProviderProcess::start_env(&bao.addr, &["-vault-mount=jwt"], &vars).await;
    let client = p.client().await;
    Env {
        _bao: bao,
        pg,
        kube,
        p,
        client,
        _dir: dir,
    }
}

/// A pod of service account default/app on `node`, created in the API.
fn pod(e: &Env, name: &str, node: &str) -> Pod {
    let uid = e.kube.add_pod("default", name, "app", node);
    Pod {
        namespace: "default".into(),
        name: name.into(),
        uid,
        service_account: "app".into(),
    }
}

/// The database user and password a Mount of `pod` gives.
async fn mount(e: &Env, pod: &Pod) -> (String, String, String) {
    let r = e
        .client
        .mount(pod.request(json!({"roleName": "app", "objects": OBJECTS})))
        .await
        .unwrap_or_else(|s| panic!("{}: {s}\n{}", pod.name, e.p.log_text()));
    (
        file_str(&r, "username").to_string(),
        file_str(&r, "password").to_string(),
        version(&r, "password"),
    )
}

fn can_login(e: &Env, user: &(String, String, String)) -> bool {
    e.pg.can_login(&user.0, &user.1)
}

/// Waits until `cond` holds, at most `limit`; how long it took.
async fn within(limit: Duration, what: &str, e: &Env, cond: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "{what} did not happen within {limit:?}\n{}",
            e.p.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    start.elapsed()
}

/// Waits until the provider's watch has listed this node's pods.
async fn watching(e: &Env) {
    within(Duration::from_secs(20), "the pod watch", e, || {
        !e.kube.pod_calls().is_empty()
    })
    .await;
}

/// A metric's value from a scrape (counters carry `_total`).
async fn metric(e: &Env, name: &str, labels: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", e.p.health))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let wanted = if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{labels}}}")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{wanted} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// 1. Credentials living 10 s and a Vault token living 15 s, mounted once and left alone for
/// 30 s: the database user still logs in, and the pod's next rotation poll gets the same
/// credentials and version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_and_their_token_are_renewed_while_the_pod_runs() {
    let e = env("15s", true, Some(NODE)).await;
    watching(&e).await;
    let p = pod(&e, "db-client", NODE);
    let first = mount(&e, &p).await;
    assert!(can_login(&e, &first));
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        can_login(&e, &first),
        "the user of a running pod was dropped after 30 s\n{}",
        e.p.log_text()
    );
    let again = mount(&e, &p).await;
    assert_eq!(again, first, "same credentials and version while renewed");
    let renewals = metric(
        &e,
        "vault_csi_provider_lease_renewals_total",
        "result=\"ok\"",
    )
    .await;
    assert!(renewals >= 4.0, "lease renewals in 30 s: {renewals}");
    let tokens = metric(
        &e,
        "vault_csi_provider_token_renewals_total",
        "result=\"ok\"",
    )
    .await;
    assert!(tokens >= 2.0, "token renewals in 30 s: {tokens}");
    assert_eq!(metric(&e, "vault_csi_provider_pods_watched", "").await, 1.0);
}

/// Renewed until the lease's maximum TTL is near: then the pod's next Mount gets new
/// credentials while the old ones still work, as without renewal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_the_maximum_the_next_mount_gets_new_credentials_in_time() {
    let e = env_ttl("1h", ("6s", "20s"), true, Some(NODE)).await;
    watching(&e).await;
    let p = pod(&e, "capped", NODE);
    let first = mount(&e, &p).await;
    let started = Instant::now();
    let switched = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = mount(&e, &p).await;
        if now != first {
            break now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "still the first credentials at their maximum TTL\n{}",
            e.p.log_text()
        );
    };
    let at = started.elapsed();
    println!("new credentials after {at:?}");
    assert!(
        at > Duration::from_secs(8),
        "replaced at {at:?}: before the first 6 s lease was renewed"
    );
    assert!(
        can_login(&e, &first),
        "the old ones still work when replaced"
    );
    assert!(can_login(&e, &switched));
    assert_ne!(switched.2, first.2, "a new version");
}

/// 2. The pod deleted: its database user is gone within 20 s; another pod of the same
/// service account keeps a working user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pods_leases_are_revoked_and_no_one_elses() {
    let e = env("1h", true, Some(NODE)).await;
    watching(&e).await;
    let (a, b) = (pod(&e, "a", NODE), pod(&e, "b", NODE));
    let (ua, ub) = (mount(&e, &a).await, mount(&e, &b).await);
    assert_ne!(ua.0, ub.0);
    e.kube.delete_pod("default", "a");
    let took = within(Duration::from_secs(20), "revocation", &e, || {
        !can_login(&e, &ua)
    })
    .await;
    println!("revoked {took:?} after the deletion");
    assert!(can_login(&e, &ub), "the other pod's user was revoked too");
    assert_eq!(
        metric(
            &e,
            "vault_csi_provider_lease_revocations_total",
            "result=\"ok\""
        )
        .await,
        1.0
    );
    // Still serving.
    mount(&e, &b).await;
}

/// 3. A pod replaced under the same name with a new uid (a StatefulSet's): the old user is
/// revoked, the new one works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_replaced_under_its_name_loses_its_predecessors_user() {
    let e = env("1h", true, Some(NODE)).await;
    watching(&e).await;
    let old = pod(&e, "web-0", NODE);
    let old_user = mount(&e, &old).await;
    // The API shows another uid under the name, without a deletion event.
    let new = pod(&e, "web-0", NODE);
    assert_ne!(new.uid, old.uid);
    let new_user = mount(&e, &new).await;
    within(
        Duration::from_secs(20),
        "revocation of the old user",
        &e,
        || !can_login(&e, &old_user),
    )
    .await;
    assert!(can_login(&e, &new_user));
}

/// 4. Forty pods on this node and ten on another: a few pod list and watch calls over 20 s,
/// not one per pod; five deleted, exactly those five revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_pods_cost_a_few_api_calls_and_five_deleted_are_exactly_revoked() {
    let e = env("1h", true, Some(NODE)).await;
    let pods: Vec<Pod> = (0..40)
        .map(|i| pod(&e, &format!("p{i:02}"), NODE))
        .collect();
    for i in 0..10 {
        pod(&e, &format!("elsewhere-{i}"), OTHER_NODE);
    }
    watching(&e).await;
    let mut users = Vec::new();
    for p in &pods {
        users.push(mount(&e, p).await);
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(20)).await;
    for i in 0..5 {
        e.kube.delete_pod("default", &format!("p{i:02}"));
        e.kube.delete_pod("default", &format!("elsewhere-{i}"));
    }
    within(Duration::from_secs(20), "five revocations", &e, || {
        users[..5].iter().all(|u| !can_login(&e, u))
    })
    .await;
    let calls = e.kube.pod_calls();
    println!(
        "{} pod calls in {:?}: {calls:?}",
        calls.len(),
        started.elapsed()
    );
    assert!(
        calls.len() <= 4,
        "pod API calls grow with the pods: {calls:?}"
    );
    assert!(
        calls
            .iter()
            .all(|c| c.contains("fieldSelector=spec.nodeName%3Dnode-a")
                || c.contains("fieldSelector=spec.nodeName=node-a")),
        "{calls:?}"
    );
    for (i, u) in users.iter().enumerate().skip(5) {
        assert!(can_login(&e, u), "pod p{i:02}'s user was revoked");
    }
    assert_eq!(
        metric(&e, "vault_csi_provider_pods_watched", "").await,
        35.0
    );
    assert_eq!(
        metric(
            &e,
            "vault_csi_provider_lease_revocations_total",
            "result=\"ok\""
        )
        .await,
        5.0
    );
}

/// 5. The watch closed by the server and not re-established for a while, a pod deleted
/// meanwhile: revoked once the provider resumes (from its resource version, or, when that
/// was compacted away, from a new list).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_deleted_while_the_watch_was_down_is_revoked_after_it_resumes() {
    let e = env("1h", true, Some(NODE)).await;
    watching(&e).await;
    for compacted in [false, true] {
        let name = if compacted {
            "after-relist"
        } else {
            "after-resume"
        };
        let p = pod(&e, name, NODE);
        let user = mount(&e, &p).await;
        let calls_before = e.kube.pod_calls().len();
        e.kube.refuse_watches(true);
        e.kube.delete_pod("default", name);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(can_login(&e, &user), "revoked while the watch was down?");
        if compacted {
            e.kube.compact();
        }
        e.kube.refuse_watches(false);
        let took = within(
            Duration::from_secs(60),
            "revocation after resuming",
            &e,
            || !can_login(&e, &user),
        )
        .await;
        let calls: Vec<String> = e.kube.pod_calls()[calls_before..].to_vec();
        let relisted = calls.iter().any(|c| !c.contains("watch="));
        println!("{name}: revoked {took:?} after the watch came back; calls {calls:?}");
        assert_eq!(relisted, compacted, "{calls:?}");
    }
}

/// 6. A role whose policy lacks `sys/leases/revoke`: the provider keeps serving and says,
/// once, what the policy needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_without_revoke_is_named_once_and_serving_goes_on() {
    let e = env("1h", false, Some(NODE)).await;
    watching(&e).await;
    for name in ["x", "y"] {
        let p = pod(&e, name, NODE);
        mount(&e, &p).await;
        e.kube.delete_pod("default", name);
    }
    within(Duration::from_secs(20), "the warning", &e, || {
        e.p.log_text().contains("refused to revoke")
    })
    .await;
    let start = Instant::now();
    while metric(
        &e,
        "vault_csi_provider_lease_revocations_total",
        "result=\"error\"",
    )
    .await
        < 2.0
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            e.p.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let p = pod(&e, "z", NODE);
    let user = mount(&e, &p).await;
    assert!(can_login(&e, &user), "still serving");
    let log = e.p.log_text();
    assert_eq!(
        log.matches("refused to revoke").count(),
        1,
        "one warning per identity\n{log}"
    );
    assert!(
        log.contains(
            r#"path "sys/leases/revoke/database/creds/app/*" { capabilities = ["update"] }"#
        ),
        "the policy line the role needs: {log}"
    );
}

/// 7. Without NODE_NAME: Mounts work as before, nothing is watched, and the provider says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_node_name_mounts_work_as_before() {
    let e = env("1h", true, None).await;
    let p = pod(&e, "plain", NODE);
    let user = mount(&e, &p).await;
    assert!(can_login(&e, &user));
    assert_eq!(
        mount(&e, &p).await,
        user,
        "reused within two thirds, as before"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(e.kube.pod_calls().is_empty(), "{:?}", e.kube.pod_calls());
    assert!(
        e.p.log_text().contains("no NODE_NAME"),
        "{}",
        e.p.log_text()
    );
    assert_eq!(
        metric(
            &e,
            "vault_csi_provider_lease_renewals_total",
            "result=\"ok\""
        )
        .await,
        0.0
    );
}
