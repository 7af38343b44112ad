//! Running it on a cluster: `/metrics` after real Mounts against OpenBao, parsed with the
//! Prometheus project's own parsers; the Grafana dashboard's and the alert rules' queries
//! against what is exposed; readiness through start, drain and socket loss; JSON logs.

mod common;

use common::fake_vault::{Behaviour, FakeVault};
use common::*;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tonic::Code;

/// One sample of a scrape: name, labels, value.
type Sample = (String, serde_json::Map<String, Value>, f64);

async fn scrape(health: &str, openmetrics: bool) -> (String, String) {
    let mut req = reqwest::Client::new().get(format!("http://{health}/metrics"));
    if openmetrics {
        req = req.header(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        );
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let kind = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (resp.text().await.unwrap(), kind)
}

/// Parses a scrape with prometheus_client (Python), as Prometheus itself would read it.
fn parse(text: &str, format: &str) -> Vec<Sample> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/python");
    assert!(
        python.exists(),
        "Python venv missing: run scripts/setup.sh (installs prometheus-client)"
    );
    let out = output_with_stdin(
        Command::new(python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/metrics.py"))
            .arg(format),
        text.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{format} does not parse: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<(String, serde_json::Map<String, Value>, f64)> =
        serde_json::from_slice(&out.stdout).unwrap();
    v
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).and_then(|x| x.as_str()) == Some(v))
        })
        .map(|(_, _, v)| *v)
}

fn class(objects: &str) -> Value {
    json!({ "roleName": "app", "objects": objects })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_happened_and_name_no_pod_path_or_token() {
    let bao = OpenBao::with_app_role().await;
    let p = ProviderProcess::start(&bao.addr, &["-vault-mount=jwt"]).await;
    let c = p.client().await;
    let ok = "- {objectName: k, secretPath: secret/data/app, secretKey: k}";
    let pods: Vec<Pod> = (0..3).map(|_| Pod::new("default", "app")).collect();
    for pod in &pods {
        c.mount(pod.request(class(ok))).await.unwrap();
    }
    let bad = c
        .mount(pods[0].request(json!({"objects": ok})))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let missing = c
        .mount(pods[0].request(class(
            "- {objectName: k, secretPath: secret/data/app, secretKey: nope}",
        )))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let denied = c
        .mount(pods[0].request(class(
            "- {objectName: k, secretPath: sys/mounts, secretKey: x}",
        )))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    let (text, kind) = scrape(&p.health, false).await;
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    let s = parse(&text, "prometheus");
    let m = |name: &str, labels: &[(&str, &str)]| value(&s, name, labels);
    assert_eq!(
        m("vault_csi_provider_mounts_total", &[("code", "OK")]),
        Some(3.0)
    );
    for code in ["INVALID_ARGUMENT", "NOT_FOUND", "PERMISSION_DENIED"] {
        assert_eq!(
            m("vault_csi_provider_mounts_total", &[("code", code)]),
            Some(1.0),
            "{code}"
        );
    }
    assert_eq!(
        m(
            "vault_csi_provider_rejected_requests_total",
            &[("reason", "bad_request")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m(
            "vault_csi_provider_mount_duration_seconds_count",
            &[("result", "ok")]
        ),
        Some(3.0)
    );
    assert_eq!(
        m(
            "vault_csi_provider_mount_duration_seconds_count",
            &[("result", "error")]
        ),
        Some(3.0)
    );
    assert_eq!(m("vault_csi_provider_mounts_in_flight", &[]), Some(0.0));
    // One login for the first Mount; one more when Vault refused a read with the held
    // token (the provider logs in again once before giving up with PERMISSION_DENIED).
    assert_eq!(
        m("vault_csi_provider_logins_total", &[("result", "ok")]),
        Some(2.0)
    );
    assert!(m("vault_csi_provider_token_cache_hits_total", &[]).unwrap() >= 3.0);
    assert_eq!(
        m("vault_csi_provider_token_cache_misses_total", &[]),
        Some(2.0)
    );
    assert_eq!(m("vault_csi_provider_identities", &[]), Some(1.0));
    assert_eq!(
        m(
            "vault_csi_provider_vault_requests_total",
            &[("operation", "login"), ("status", "2xx")]
        ),
        Some(2.0)
    );
    assert!(
        m(
            "vault_csi_provider_vault_requests_total",
            &[("operation", "read"), ("status", "2xx")]
        )
        .unwrap()
            >= 4.0
    );
    assert_eq!(
        m(
            "vault_csi_provider_vault_requests_total",
            &[("operation", "read"), ("status", "4xx")]
        ),
        Some(2.0)
    );
    assert!(
        m(
            "vault_csi_provider_vault_request_duration_seconds_count",
            &[("operation", "read")]
        )
        .unwrap()
            >= 5.0
    );
    assert_eq!(m("vault_csi_provider_version_key_loaded", &[]), Some(1.0));
    assert_eq!(
        m(
            "vault_csi_provider_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert!(m("process_resident_memory_bytes", &[]).unwrap() > 1e6);
    assert!(m("process_start_time_seconds", &[]).unwrap() > 1.6e9);
    for family in [
        "vault_csi_provider_vault_retries_total",
        "vault_csi_provider_vault_failovers_total",
        "vault_csi_provider_vault_rate_limited_total",
        "vault_csi_provider_coalesced_reads_total",
        "vault_csi_provider_leases_reused_total",
        "vault_csi_provider_leases_replaced_total",
        "vault_csi_provider_lease_store_entries",
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        assert!(m(family, &[]).is_some(), "{family} missing");
    }
    // Nothing of a pod, a path or a token.
    for pod in &pods {
        for needle in [&pod.name, &pod.uid, &pod.token("vault")] {
            assert!(!text.contains(needle.as_str()), "{needle} in /metrics");
        }
    }
    for needle in ["secret/data", "sys/mounts", "default", "s.", "hvs."] {
        assert!(
            !s.iter().any(|(_, l, _)| l
                .values()
                .any(|v| v.as_str().is_some_and(|v| v.contains(needle)))),
            "a label holds {needle}"
        );
    }

    // OpenMetrics when asked.
    let (om, kind) = scrape(&p.health, true).await;
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert!(om.ends_with("# EOF\n"));
    let s = parse(&om, "openmetrics");
    assert_eq!(
        value(&s, "vault_csi_provider_mounts_total", &[("code", "OK")]),
        Some(3.0)
    );
}

/// Every metric name a dashboard panel or an alert rule queries.
fn queried_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        let word = &text[start..i];
        if (word.starts_with("vault_csi_provider_") || word.starts_with("process_"))
            && !names.iter().any(|n| n == word)
        {
            names.push(word.to_string());
        }
        i = i.max(start + 1);
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alert_queries_all_resolve() {
    let bao = OpenBao::with_app_role().await;
    let p = ProviderProcess::start(&bao.addr, &["-vault-mount=jwt"]).await;
    let c = p.client().await;
    let pod = Pod::new("default", "app");
    c.mount(pod.request(class(
        "- {objectName: k, secretPath: secret/data/app, secretKey: k}",
    )))
    .await
    .unwrap();
    let _ = c.mount(pod.request(json!({}))).await;
    let (text, _) = scrape(&p.health, false).await;
    let exposed: Vec<String> = parse(&text, "prometheus")
        .into_iter()
        .map(|(n, _, _)| n)
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(
        exprs.len() >= 8,
        "the dashboard has {} queries",
        exprs.len()
    );
    let rules = std::fs::read_to_string(root.join("prometheus-rules.yaml")).unwrap();
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(&rules).unwrap();
    assert_eq!(rules["kind"].as_str(), Some("PrometheusRule"));
    for group in rules["spec"]["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            assert!(rule["alert"].as_str().is_some());
            exprs.push(rule["expr"].as_str().unwrap().to_string());
        }
    }
    let mut checked = 0;
    for expr in &exprs {
        let names = queried_names(expr);
        assert!(!names.is_empty(), "a query names no metric of ours: {expr}");
        for name in names {
            assert!(
                exposed.contains(&name),
                "{name} (in {expr}) is not exposed; exposed: {exposed:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10);
}

async fn get(health: &str, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{health}{path}"))
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_sockets_and_the_drain() {
    let fake = FakeVault::start(Behaviour {
        read_delay: Duration::from_secs(3),
        ..Behaviour::default()
    })
    .await;
    let mut p = ProviderProcess::start(&fake.addr, &["-shutdown-grace=10s"]).await;
    assert_eq!(get(&p.health, "/health/ready").await.0, 200);
    assert_eq!(get(&p.health, "/health/live").await.0, 200);

    // A socket that is gone (deleted by hand, a hostPath wiped) makes it not ready.
    std::fs::remove_file(&p.socket).unwrap();
    let (code, body) = get(&p.health, "/health/ready").await;
    assert_eq!(code, 503);
    assert!(body.contains("vault.sock"), "{body}");
    assert_eq!(get(&p.health, "/health/live").await.0, 200, "still alive");

    // Draining: a Mount in flight, SIGTERM; not ready while it finishes, still alive.
    let p2 = ProviderProcess::start(&fake.addr, &["-shutdown-grace=10s"]).await;
    let client = p2.client().await;
    let pod = Pod::new("default", "app");
    let req = pod.request(class(
        "- {objectName: k, secretPath: secret/data/app, secretKey: k}",
    ));
    let mount = tokio::spawn(async move { client.mount(req).await });
    let start = Instant::now();
    while fake.reads.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p2.signal("TERM");
    let start = Instant::now();
    loop {
        let (code, body) = get(&p2.health, "/health/ready").await;
        if code == 503 {
            assert!(body.contains("shutting down"), "{body}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still ready after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(&p2.health, "/health/live").await.0, 200);
    assert!(mount.await.unwrap().is_ok(), "the Mount in flight finished");
    p.signal("TERM");
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_listener_takes_ipv6_and_drops_silent_connections() {
    let fake = FakeVault::start(Behaviour::default()).await;
    let port = free_port();
    let p = ProviderProcess::start(&fake.addr, &[&format!("-health-addr=:{port}")]).await;
    for host in ["127.0.0.1", "[::1]"] {
        let r = reqwest::get(format!("http://{host}:{port}/health/live")).await;
        match (host, r) {
            (_, Ok(r)) => assert_eq!(r.status(), 200),
            ("[::1]", Err(e)) if !Path::new("/proc/net/if_inet6").exists() => {
                println!("no IPv6 on this machine: {e}")
            }
            (_, Err(e)) => panic!("{host}: {e}"),
        }
    }
    // A connection that sends nothing is closed within a few seconds.
    use tokio::io::AsyncReadExt;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
    assert!(closed.is_ok(), "an idle connection stayed open");
    drop(p);
}

/// One probe as kubelet makes it: a new connection, `GET`, `Connection: close`.
async fn probe(port: u16, path: &str) -> Result<u16, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    let head = String::from_utf8_lossy(&answer);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line: {head:?}"))
}

/// Anyone on the pod network can open connections to the health port. Hundreds of them held
/// open, silent or sending a request head a byte at a time, must not delay kubelet's probes
/// (a failed liveness probe restarts the provider and every Mount of the node with it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_are_answered_while_hundreds_of_idle_connections_are_held() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fake = FakeVault::start(Behaviour::default()).await;
    let port = free_port();
    let p = ProviderProcess::start(&fake.addr, &[&format!("-health-addr=127.0.0.1:{port}")]).await;

    // 200 silent connections, then 200 that send the start of a request head and stall:
    // more than the listener keeps, so the oldest make room.
    let mut held = Vec::new();
    for i in 0..400 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("connection {i} refused: {e}"));
        if i >= 200 {
            s.write_all(b"GET /health/live HTTP/1.1\r\nHo")
                .await
                .unwrap();
        }
        held.push(s);
    }
    let opened = Instant::now();
    for round in 0..5 {
        for path in ["/health/live", "/health/ready"] {
            let started = Instant::now();
            let code = tokio::time::timeout(Duration::from_secs(1), probe(port, path))
                .await
                .unwrap_or_else(|_| panic!("probe {round} of {path} took over 1 s"));
            assert_eq!(code, Ok(200), "probe {round} of {path}");
            println!("probe {round} {path}: {:?}", started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every held connection is closed by the provider within 30 s.
    let mut closes = Vec::new();
    for (i, mut s) in held.into_iter().enumerate() {
        let left = Duration::from_secs(30).saturating_sub(opened.elapsed());
        let mut buf = [0u8; 256];
        let closed = tokio::time::timeout(left, async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    // A 408 or 400 may come before the close; the close is what counts.
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "held connection {i} still open after 30 s");
        closes.push(opened.elapsed());
    }
    println!(
        "last held connection closed after {:?}",
        closes.iter().max()
    );
    // And the listener still answers.
    assert_eq!(probe(port, "/health/live").await, Ok(200));
    drop(p);
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_severity_and_the_mount_fields_at_the_top() {
    let bao = OpenBao::with_app_role().await;
    let p = ProviderProcess::start(&bao.addr, &["-vault-mount=jwt", "-log-format=json"]).await;
    let c = p.client().await;
    let pod = Pod::new("default", "app");
    c.mount(pod.request(class(
        "- {objectName: k, secretPath: secret/data/app, secretKey: k}",
    )))
    .await
    .unwrap();
    let _ = c.mount(pod.request(json!({"objects": "x"}))).await;
    let lines = json_lines(&p.log_text());
    let mounted = lines
        .iter()
        .find(|l| l["message"] == "mounted")
        .expect("a mounted line");
    assert_eq!(mounted["severity"], "INFO");
    assert_eq!(mounted["namespace"], "default");
    assert_eq!(mounted["pod"], pod.name.as_str());
    assert_eq!(mounted["class"], "test-class");
    assert_eq!(mounted["files"], 1);
    assert!(mounted["timestamp"].as_str().unwrap().ends_with('Z'));
    let failed = lines
        .iter()
        .find(|l| l["message"] == "mount failed")
        .expect("a failure line");
    assert_eq!(failed["severity"], "WARNING");
    assert_eq!(failed["pod"], pod.name.as_str());
    for l in &lines {
        assert!(l["severity"].is_string(), "{l}");
    }

    // On stdout when asked.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vault.sock");
    let out = dir.path().join("stdout.log");
    let no_vars: [(&str, &str); 0] = [];
    let mut child = provider_command(
        [
            &format!("-endpoint={}", socket.display()),
            "-health-addr=",
            "-log-format=json",
            "-log-stream=stdout",
            &format!("-vault-addr={}", bao.addr),
        ],
        Path::new(NO_HOME),
        no_vars,
    )
    .stdout(std::fs::File::create(&out).unwrap())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let start = Instant::now();
    while !socket.exists() {
        assert!(start.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let lines = json_lines(&std::fs::read_to_string(&out).unwrap());
    assert!(
        lines.iter().any(|l| l["message"] == "serving provider API"),
        "{lines:?}"
    );
}
