//! Real parts for the integration tests, one fixture each (`tests/README.md` says which
//! test uses what):
//!
//! - `openbao.rs`: an OpenBao dev server with an audit log, and its API as an operator;
//! - `provider.rs`: the provider binary, started the one way every test starts it;
//! - `client.rs`: a pod, the MountRequest the driver builds for it, a driver-like client;
//! - `kube.rs`: the Kubernetes API stand-in (TokenReview, TokenRequest, Secrets, pods);
//! - `tokens.rs`: service-account tokens signed as a cluster signs them;
//! - `e2e.rs`: the Go provider's end-to-end set-up in OpenBao (roles, data, engines);
//! - `features.rs`: the set-up the feature tests share (jwt role `app`, KV v1 and v2);
//! - `fake_vault.rs`: a scripted server for what OpenBao cannot be made to do;
//! - `postgres.rs`, `raft.rs`, `certs.rs`: PostgreSQL, a three-node cluster, certificates;
//! - `kits.rs`: kustomize and kubernetes-validate; `old_driver.rs`, `h2wire.rs`,
//!   `driver_cases.rs`: the driver's own wire, recorded and replayed.
//!
//! Tests needing OpenBao fail (never skip) when it is missing: run `scripts/setup.sh`.
#![allow(dead_code)]

pub mod certs;
mod client;
pub mod driver_cases;
pub mod e2e;
pub mod fake_vault;
pub mod features;
pub mod h2wire;
pub mod kits;
pub mod kube;
pub mod old_driver;
mod openbao;
pub mod postgres;
mod provider;
pub mod raft;
pub mod tokens;

// Every test binary takes what it needs of these.
#[allow(unused_imports)]
pub use client::*;
#[allow(unused_imports)]
pub use openbao::*;
#[allow(unused_imports)]
pub use provider::*;

pub const ROOT_TOKEN: &str = "test-root-token";

/// Runs `cmd` with `input` on its standard input and collects what it printed. The input is
/// written from a thread of its own, so a child that answers before reading all of it (or
/// prints more than a pipe holds) cannot stall the test.
pub fn output_with_stdin(cmd: &mut std::process::Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // A child that exits without reading everything closes the pipe: not the test's error.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}
