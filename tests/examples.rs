//! The classes in deploy/examples, mounted as the driver sends them against real OpenBao
//! (and a real PostgreSQL): the templates (`.pgpass`, a database URL from one lease, a PEM
//! bundle from one PKI issue, a config from two KV paths), allKeys and selectors.

mod common;

use common::features::*;
use common::postgres::{Postgres, SUPERUSER_PASSWORD};
use common::*;
use serde_json::json;
use std::process::{Command, Stdio};

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
    let out = output_with_stdin(Command::new("openssl").args(args), input.as_bytes());
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
