//! Node-scale benchmark: the provider's release build against a real OpenBao dev server
//! (with a file audit device) and a real PostgreSQL, driven through its Unix socket exactly
//! as the Secrets Store CSI driver drives it. Prints one Markdown table whose figures are
//! ratios or counts measured in the same run, so they hold on a noisy machine.
//!
//! Run with `scripts/bench.sh` (which builds the release binary and sets
//! VCSP_PROVIDER_BIN); not part of the test command.

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use common::postgres::Postgres;
use common::raft::RaftCluster;
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const WARM_N: usize = 500;
const PODS: usize = 500;
const ACCOUNTS: usize = 100;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn class(objects: &str) -> Value {
    json!({"roleName": "bench", "vaultAuthMountPath": "jwt", "objects": objects})
}

const VOLUME: &str = "
- {objectName: config, secretPath: secret/data/bench/obj0, secretKey: value}
- {objectName: tls.crt, secretPath: pki/issue/web, method: PUT, secretArgs: {common_name: app.example.com}, secretKey: certificate}
- {objectName: db-user, secretPath: database/creds/app, secretKey: username}";

struct Counts {
    logins: usize,
    kv_reads: usize,
    leases: usize,
    certs: usize,
    renewals: usize,
}

fn counts(bao: &OpenBao) -> Counts {
    let log = bao.audit_log();
    let c = |f: &dyn Fn(&str, &str) -> bool| bao.audit_requests(&log, f);
    Counts {
        logins: c(&|_, p| p == "auth/jwt/login"),
        kv_reads: c(&|o, p| o == "read" && p.starts_with("secret/data/bench/")),
        leases: c(&|o, p| o == "read" && p == "database/creds/app"),
        certs: c(&|o, p| o == "update" && p == "pki/issue/web"),
        renewals: c(&|_, p| p == "auth/token/renew-self"),
    }
}

#[tokio::main]
async fn main() {
    let started = Instant::now();
    let bao = OpenBao::start().await;
    let pg = Postgres::start();
    bao.policy(
        "bench",
        r#"
path "secret/data/bench/*" { capabilities = ["read"] }
path "pki/issue/web" { capabilities = ["create", "update"] }
path "database/creds/app" { capabilities = ["read"] }
"#,
    )
    .await;
    bao.enable_jwt("jwt").await;
    bao.write(
        "auth/jwt/role/bench",
        json!({"role_type": "jwt", "bound_audiences": ["vault"], "user_claim": "sub",
               "bound_claims_type": "glob", "bound_claims": {"sub": "system:serviceaccount:bench:*"},
               "token_policies": ["bench"], "token_ttl": "1h"}),
    )
    .await;
    for i in 0..20 {
        bao.write(
            &format!("secret/data/bench/obj{i}"),
            json!({"data": {"value": format!("value-{i}-{}", "x".repeat(64))}}),
        )
        .await;
    }
    bao.enable_pki(
        "bench-root",
        "web",
        json!({"allow_any_name": true, "ttl": "1h", "key_type": "ec", "key_bits": 256}),
    )
    .await;
    pg.serve_openbao(&bao, "app", "1h").await;

    // The provider, release build, as a DaemonSet would run it.
    let provider = ProviderProcess::start(&bao.addr, &["-log-level=warn"]).await;
    let pid = provider.child.id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = rss_kib(pid, "VmRSS:");
    let client = provider.client().await;

    // Baseline: a direct HTTP read of the same secret with a Vault token, same machine.
    let http = reqwest::Client::new();
    let pod = Pod::new("bench", "warm");
    let login: Value = http
        .post(format!("{}/v1/auth/jwt/login", bao.addr))
        .json(&json!({"role": "bench", "jwt": pod.token("vault")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let vault_token = login["auth"]["client_token"].as_str().unwrap().to_string();
    let direct_read = || {
        http.get(format!("{}/v1/secret/data/bench/obj0", bao.addr))
            .header("X-Vault-Token", &vault_token)
            .header("X-Vault-Request", "true")
            .send()
    };
    let mut direct = Vec::new();
    let mut one = Vec::new();
    let mut twenty = Vec::new();
    let one_obj =
        class("- {objectName: config, secretPath: secret/data/bench/obj0, secretKey: value}");
    let twenty_obj = class(
        &(0..20)
            .map(|i| format!("- {{objectName: o{i}, secretPath: secret/data/bench/obj{i}, secretKey: value}}\n"))
            .collect::<String>(),
    );
    client.mount(pod.request(one_obj.clone())).await.unwrap(); // the token is now held
    for _ in 0..20 {
        direct_read().await.unwrap().bytes().await.unwrap();
    }
    // Interleaved, so that machine noise hits all three alike.
    for _ in 0..WARM_N {
        let t = Instant::now();
        direct_read().await.unwrap().bytes().await.unwrap();
        direct.push(t.elapsed());
        let req = pod.request(one_obj.clone());
        let t = Instant::now();
        client.mount(req).await.unwrap();
        one.push(t.elapsed());
        let req = pod.request(twenty_obj.clone());
        let t = Instant::now();
        client.mount(req).await.unwrap();
        twenty.push(t.elapsed());
    }
    for v in [&mut direct, &mut one, &mut twenty] {
        v.sort();
    }

    // A fresh provider for the cold burst: nothing held.
    drop(client);
    drop(provider);
    let provider = ProviderProcess::start(&bao.addr, &["-log-level=warn"]).await;
    let pid = provider.child.id();
    let client = provider.client().await;
    let pods: Vec<Pod> = (0..PODS)
        .map(|i| Pod::new("bench", &format!("sa-{}", i % ACCOUNTS)))
        .collect();
    let requests: Vec<_> = pods.iter().map(|p| p.request(class(VOLUME))).collect();
    let before = counts(&bao);
    let burst_start = Instant::now();
    let mut tasks = Vec::new();
    for req in requests.clone() {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = c.mount(req).await;
            (t.elapsed(), r)
        }));
    }
    let mut burst = Vec::new();
    let mut errors = 0;
    let mut first_error = String::new();
    for t in tasks {
        let (d, r) = t.await.unwrap();
        burst.push(d);
        if let Err(e) = r {
            errors += 1;
            if first_error.is_empty() {
                first_error = e.message().to_string();
            }
        }
    }
    let burst_wall = burst_start.elapsed();
    burst.sort();
    let peak_rss = rss_kib(pid, "VmHWM:");
    let after_burst = counts(&bao);

    // Rotation: the same volumes re-mounted, as the driver does about once a minute.
    let polls = 2;
    let mut poll_walls = Vec::new();
    for _ in 0..polls {
        let t = Instant::now();
        let mut tasks = Vec::new();
        for req in requests.clone() {
            let c = client.clone();
            tasks.push(tokio::spawn(async move { c.mount(req).await }));
        }
        for t in tasks {
            if t.await.unwrap().is_err() {
                errors += 1;
            }
        }
        poll_walls.push(t.elapsed());
    }
    let after_polls = counts(&bao);
    let per_poll = |a: usize, b: usize| format!("{:.1}", (b - a) as f64 / polls as f64);

    // Drop the dev server and its provider before the cluster starts: fewer busy processes.
    drop(client);
    drop(provider);
    let steady = lease_lifecycle(&bao, &pg).await;
    let fail = failover().await;
    let hostile_peak = hostile(&bao).await;

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);

    println!("## Benchmark run\n");
    println!(
        "Machine: {cores} cores ({cpu}); OpenBao dev server with a file audit device and PostgreSQL on the same machine; provider release build.\n"
    );
    println!("| # | figure | measured | goal |");
    println!("|---|---|---|---|");
    println!(
        "| 1 | warm Mount of 1 KV object ÷ direct HTTP read, p50 | {:.2} ({} ÷ {}) | ≤ 1.2 |",
        pct(&one, 0.5).as_secs_f64() / pct(&direct, 0.5).as_secs_f64(),
        ms(pct(&one, 0.5)),
        ms(pct(&direct, 0.5))
    );
    println!(
        "| 1 | warm Mount of 1 KV object ÷ direct HTTP read, p99 | {:.2} ({} ÷ {}) | |",
        pct(&one, 0.99).as_secs_f64() / pct(&direct, 0.99).as_secs_f64(),
        ms(pct(&one, 0.99)),
        ms(pct(&direct, 0.99))
    );
    println!(
        "| 2 | warm Mount of 20 objects on 20 paths ÷ direct single read, p50 | {:.2} ({}) | ≤ 2.5 |",
        pct(&twenty, 0.5).as_secs_f64() / pct(&direct, 0.5).as_secs_f64(),
        ms(pct(&twenty, 0.5))
    );
    println!(
        "| 2 | warm Mount of 20 objects on 20 paths ÷ direct single read, p99 | {:.2} ({}) | |",
        pct(&twenty, 0.99).as_secs_f64() / pct(&direct, 0.99).as_secs_f64(),
        ms(pct(&twenty, 0.99))
    );
    println!(
        "| 3 | cold burst: {PODS} pods, {ACCOUNTS} service accounts, 3 objects (KV, PKI issue, database creds): wall time | {} | |",
        ms(burst_wall)
    );
    println!(
        "| 3 | cold burst: p99 Mount latency | {} | |",
        ms(pct(&burst, 0.99))
    );
    println!("| 3 | cold burst: errors | {errors} | 0 |");
    if !first_error.is_empty() {
        println!("| 3 | first error | {} | |", first_error.replace('|', "/"));
    }
    println!(
        "| 3 | cold burst: Vault logins (minimum {ACCOUNTS}) | {} | {ACCOUNTS} |",
        after_burst.logins - before.logins
    );
    println!(
        "| 3 | cold burst: KV reads (minimum {ACCOUNTS}: one per service account; at most {PODS}) | {} | |",
        after_burst.kv_reads - before.kv_reads
    );
    println!(
        "| 3 | cold burst: database leases (at most {PODS}: one per pod) | {} | |",
        after_burst.leases - before.leases
    );
    println!(
        "| 3 | cold burst: certificates issued (at most {PODS}: one per pod) | {} | |",
        after_burst.certs - before.certs
    );
    println!(
        "| 4 | rotation poll of the {PODS} volumes: Vault logins per poll | {} | 0 |",
        per_poll(after_burst.logins, after_polls.logins)
    );
    println!(
        "| 4 | rotation: token renewals per poll | {} | |",
        per_poll(after_burst.renewals, after_polls.renewals)
    );
    println!(
        "| 4 | rotation: KV reads per poll (static data is read fresh) | {} | |",
        per_poll(after_burst.kv_reads, after_polls.kv_reads)
    );
    println!(
        "| 4 | rotation: new database leases per poll | {} | 0 |",
        per_poll(after_burst.leases, after_polls.leases)
    );
    println!(
        "| 4 | rotation: new certificates per poll | {} | 0 |",
        per_poll(after_burst.certs, after_polls.certs)
    );
    println!(
        "| 4 | rotation: wall time per poll | {} | |",
        ms(poll_walls.iter().sum::<Duration>() / polls as u32)
    );
    println!(
        "| 5 | resident memory, idle after start | {:.1} MiB | < 20 MiB |",
        idle_rss as f64 / 1024.0
    );
    println!(
        "| 5 | resident memory, peak during the burst (VmHWM) | {:.1} MiB | < 64 MiB |",
        peak_rss as f64 / 1024.0
    );
    // The run's length depends on the election, so the count alone does not compare
    // between runs; the rate does.
    println!(
        "| 6 | failover: {FAILOVER_WORKERS} pods mounting in a loop against a 3-node raft cluster, its active node killed: Mounts, over the run's seconds (Mounts a second) | {} over {:.1} s ({:.0}/s) | |",
        fail.mounts,
        fail.run.as_secs_f64(),
        fail.mounts as f64 / fail.run.as_secs_f64().max(0.001)
    );
    println!("| 6 | failover: Mounts that failed | {} | 0 |", fail.failed);
    println!(
        "| 6 | failover: new active node after | {} | |",
        ms(fail.election)
    );
    println!(
        "| 6 | failover: Mount latency p50 / p99 / max over the run | {} / {} / {} | |",
        ms(pct(&fail.latencies, 0.5)),
        ms(pct(&fail.latencies, 0.99)),
        ms(*fail.latencies.last().unwrap_or(&Duration::ZERO))
    );
    println!(
        "| 7 | resident memory, peak under a hostile mix (VmHWM) | {:.1} MiB | < 64 MiB |",
        hostile_peak as f64 / 1024.0
    );
    let per_min = |n: usize| n as f64 * 60.0 / STEADY.as_secs_f64();
    println!(
        "| 8 | lease lifecycle: {LIFECYCLE_PODS} pods on the node holding database credentials of a {}-s TTL, {} s steady state: lease renewals per minute (minimum {:.0}: one per lease per TTL) | {:.0} | |",
        LEASE_TTL.as_secs(),
        STEADY.as_secs(),
        LIFECYCLE_PODS as f64 * 60.0 / LEASE_TTL.as_secs_f64(),
        per_min(steady.lease_renewals)
    );
    println!(
        "| 8 | lease lifecycle: Vault token renewals per minute (minimum 0: the token lives 1 h) | {:.1} | 0 |",
        per_min(steady.token_renewals)
    );
    println!(
        "| 8 | lease lifecycle: Kubernetes API requests per minute (minimum 0: one watch stays open) | {:.1} | 0 |",
        per_min(steady.api_requests)
    );
    println!(
        "| 8 | lease lifecycle: database users still logging in at the end | {} of {LIFECYCLE_PODS} | {LIFECYCLE_PODS} |",
        steady.alive
    );
    println!(
        "\n({} warm samples each; benchmark took {:.0} s)",
        WARM_N,
        started.elapsed().as_secs_f64()
    );
}

const LIFECYCLE_PODS: usize = 100;
const LEASE_TTL: Duration = Duration::from_secs(30);
const STEADY: Duration = Duration::from_secs(120);

struct Steady {
    lease_renewals: usize,
    token_renewals: usize,
    api_requests: usize,
    alive: usize,
}

/// Figure 8: a provider given NODE_NAME and the Kubernetes API stand-in with 100 pods on its
/// node, each holding database credentials of a 30-s TTL; over two minutes of steady state
/// (no Mount), the renewals it makes (OpenBao's audit log) and its API requests.
async fn lease_lifecycle(bao: &OpenBao, pg: &Postgres) -> Steady {
    use common::kube::KubeApi;
    bao.write(
        "database/roles/short",
        json!({"db_name": "pg", "default_ttl": "30s", "max_ttl": "24h",
               "creation_statements": ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"]}),
    )
    .await;
    bao.write(
        "database/config/pg",
        json!({"plugin_name": "postgresql-database-plugin",
               "connection_url": format!("postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable", pg.port),
               "username": "postgres", "password": common::postgres::SUPERUSER_PASSWORD,
               "allowed_roles": ["app", "short"], "max_open_connections": 8}),
    )
    .await;
    bao.policy(
        "lifecycle",
        r#"path "database/creds/short" { capabilities = ["read"] }
path "sys/leases/revoke/database/creds/short/*" { capabilities = ["update"] }"#,
    )
    .await;
    bao.write(
        "auth/jwt/role/lifecycle",
        json!({"role_type": "jwt", "bound_audiences": ["vault"], "user_claim": "sub",
               "bound_subject": "system:serviceaccount:bench:app",
               "token_policies": ["lifecycle"], "token_ttl": "1h"}),
    )
    .await;
    let kube = KubeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kube.kubeconfig(dir.path()).display().to_string();
    let provider = ProviderProcess::start_env(
        &bao.addr,
        &["-log-level=warn"],
        &[("KUBECONFIG", &kubeconfig), ("NODE_NAME", "bench-node")],
    )
    .await;
    let client = provider.client().await;
    let objects = "- {objectName: user, secretPath: database/creds/short, secretKey: username}\n- {objectName: pass, secretPath: database/creds/short, secretKey: password}";
    let mut users = Vec::new();
    for i in 0..LIFECYCLE_PODS {
        let name = format!("app-{i}");
        let uid = kube.add_pod("bench", &name, "app", "bench-node");
        let pod = Pod {
            namespace: "bench".into(),
            name,
            uid,
            service_account: "app".into(),
        };
        let req = pod.request(
            json!({"roleName": "lifecycle", "vaultAuthMountPath": "jwt", "objects": objects}),
        );
        let r = client.mount(req).await.expect("lifecycle mount");
        users.push((
            file_str(&r, "user").to_string(),
            file_str(&r, "pass").to_string(),
        ));
    }
    let renewals = || bao.audit_requests(&bao.audit_log(), |_, p| p == "sys/leases/renew");
    let token_renewals =
        || bao.audit_requests(&bao.audit_log(), |_, p| p == "auth/token/renew-self");
    let api = || kube.recorded.lock().unwrap().requests.len();
    let (r0, t0, a0) = (renewals(), token_renewals(), api());
    tokio::time::sleep(STEADY).await;
    let (r1, t1, a1) = (renewals(), token_renewals(), api());
    let alive = users.iter().filter(|(u, p)| pg.can_login(u, p)).count();
    Steady {
        lease_renewals: r1 - r0,
        token_renewals: t1 - t0,
        api_requests: a1 - a0,
        alive,
    }
}

/// Figure 7: a fresh provider under what hostile tenants send at once (`SECURITY.md`):
/// 300 TLS settings, megabyte and 200 KiB role names, deeply nested objects, and a tenant's server
/// answering 7 MiB per read to 16 pods; returns the peak resident memory (VmHWM), KiB.
async fn hostile(bao: &OpenBao) -> u64 {
    use common::fake_vault::{Behaviour, FakeVault};
    let provider = ProviderProcess::start(&bao.addr, &["-log-level=warn"]).await;
    let client = provider.client().await;
    let blob = "x".repeat(7 * 1024 * 1024);
    let fake = FakeVault::start(Behaviour {
        reads: vec![(200, json!({"data": {"value": "v", "blob": blob}}))],
        ..Behaviour::default()
    })
    .await;
    let base = |extra: Value| {
        let mut p =
            class("- {objectName: config, secretPath: secret/data/bench/obj0, secretKey: value}");
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    };
    let mut mixes: Vec<Value> = Vec::new();
    for i in 0..300 {
        mixes.push(base(
            json!({"vaultTLSServerName": format!("name-{i}.example")}),
        ));
    }
    for _ in 0..50 {
        mixes.push(base(json!({"roleName": "r".repeat(1024 * 1024)})));
    }
    for _ in 0..50 {
        mixes.push(base(json!({"roleName": "r".repeat(200 * 1024)})));
    }
    for _ in 0..20 {
        mixes.push(base(
            json!({"objects": format!("{}{}", "[".repeat(50_000), "]".repeat(50_000))}),
        ));
    }
    for _ in 0..16 {
        mixes.push(base(json!({"vaultAddress": fake.addr})));
    }
    let mut tasks = Vec::new();
    for (i, params) in mixes.into_iter().enumerate() {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let pod = Pod::new("bench", &format!("sa-{}", i % ACCOUNTS));
            let _ = c.mount(pod.request(params)).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    rss_kib(provider.child.id(), "VmHWM:")
}

const FAILOVER_WORKERS: usize = 16;

struct Failover {
    mounts: usize,
    failed: usize,
    election: Duration,
    latencies: Vec<Duration>,
    /// From the first Mount to the workers' stop: 3 s, the election, 5 s.
    run: Duration,
}

/// Figure 6: steady Mounts against a three-node raft cluster (all three addresses listed),
/// its active node killed three seconds in; every Mount's outcome and latency.
async fn failover() -> Failover {
    let mut cluster = RaftCluster::start().await;
    let admin = cluster.admin().await;
    admin
        .write(
            "sys/mounts/secret",
            json!({"type": "kv", "options": {"version": "2"}}),
        )
        .await;
    admin
        .policy(
            "bench",
            r#"path "secret/data/*" { capabilities = ["read"] }"#,
        )
        .await;
    admin.enable_jwt("jwt").await;
    admin
        .jwt_role("jwt", "bench", "bench", "failover", &["bench"])
        .await;
    admin
        .write("secret/data/app", json!({"data": {"value": "v"}}))
        .await;
    let provider = ProviderProcess::start(&cluster.addresses(), &["-log-level=warn"]).await;
    let client = provider.client().await;
    let volume = class("- {objectName: config, secretPath: secret/data/app, secretKey: value}");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    let started = Instant::now();
    for _ in 0..FAILOVER_WORKERS {
        let (c, volume, stop) = (client.clone(), volume.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let req = Pod::new("bench", "failover").request(volume.clone());
                let t = Instant::now();
                let ok = c.mount_within(req, Duration::from_secs(60)).await.is_ok();
                out.push((t.elapsed(), ok));
            }
            out
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let active = cluster.active().await.expect("an active node");
    cluster.kill(active);
    let (_, election) = cluster.wait_new_active(active).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let run = started.elapsed();
    let mut latencies = Vec::new();
    let mut failed = 0;
    for w in workers {
        for (d, ok) in w.await.unwrap() {
            latencies.push(d);
            failed += usize::from(!ok);
        }
    }
    latencies.sort();
    Failover {
        mounts: latencies.len(),
        failed,
        election,
        latencies,
        run,
    }
}
