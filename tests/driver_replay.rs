//! What every Secrets Store CSI driver release sends, replayed byte for byte.
//!
//! `tests/fixtures/driver/<tag>.json` holds, per release from v0.0.21 to v1.6.0, the bytes
//! the driver's own client code wrote on the provider's socket in each case that matters
//! (an ordinary pod whose `secrets` is `null`, a token the provider must request, a
//! nodePublishSecretRef, tokens in `secrets`, the rotation call with current versions, a
//! class's mistake), with their provenance and what the real client received. Each is sent
//! here, call by call, to the provider over its socket, against an OpenBao seeded as it
//! was when recorded; the answer must give the expected files and modes, the versions the
//! real client got, and the error line the driver would log. `scripts/driver-client.sh`
//! makes the recordings again from the real client (tests/driver_client.rs).

mod common;

use common::driver_cases::{self as dc, Answer, Case, TagRecordings};
use std::collections::BTreeMap;

async fn replay_tag(tag: &str) {
    let path = dc::fixture_path(tag);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; make it with scripts/driver-client.sh record",
            path.display()
        )
    });
    let file: TagRecordings = serde_json::from_str(&text).unwrap();
    assert_eq!(file.provenance.driver_tag, tag);
    assert_eq!(
        file.provenance.driver_commit.len(),
        40,
        "{:?}",
        file.provenance
    );
    let cases: Vec<Case> = file.recordings.iter().map(|r| r.case).collect();
    assert_eq!(
        cases,
        Case::ALL,
        "{tag}: every case recorded once, in order"
    );

    let setup = dc::setup().await;
    let p = &setup.provider;
    let old_grpc = !tag.starts_with("v1.6");

    for r in &file.recordings {
        use base64::Engine;
        let what = format!("{tag} {:?}", r.case);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&r.client_bytes)
            .unwrap();

        // The bytes say what the summary says.
        let decoded = dc::decode(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(decoded, r.decoded, "{what}: the bytes and their summary");
        // What this release sends, as read from its code.
        assert_eq!(decoded.permission, "420", "{what}");
        assert!(decoded.grpc_timeout.ends_with('m') || decoded.grpc_timeout.ends_with('u'));
        if old_grpc {
            assert!(
                decoded.authority.ends_with("/vault.sock"),
                "{what}: grpc-go before 1.60 sends the socket path: {}",
                decoded.authority
            );
        } else {
            assert_eq!(decoded.authority, "localhost", "{what}");
        }
        let mount = "/v1alpha1.CSIDriverProvider/Mount".to_string();
        let expected_calls = if tag == "v0.0.21" {
            vec![mount]
        } else {
            vec!["/v1alpha1.CSIDriverProvider/Version".to_string(), mount]
        };
        assert_eq!(decoded.calls, expected_calls, "{what}");
        let secrets: serde_json::Value = serde_json::from_str(&decoded.secrets).unwrap();
        let reconciler = r.case == Case::Rotation && old_grpc;
        match r.case {
            Case::NodePublishSecretRef => assert_eq!(secrets["username"], "np-user", "{what}"),
            Case::TokensInSecrets => assert!(
                secrets["csi.storage.k8s.io/serviceAccount.tokens"].is_string(),
                "{what}"
            ),
            _ if reconciler => assert_eq!(decoded.secrets, "{}", "{what}"),
            _ => assert_eq!(decoded.secrets, "null", "{what}: a nil map"),
        }
        assert_eq!(
            decoded.current_object_version.is_empty(),
            !reconciler,
            "{what}: current versions only from the rotation reconciler"
        );

        let answer = dc::replay(&p.socket, &bytes)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}\n{}", p.log_text()));
        let recorded_error = r.driver["node_publish_error"].as_str().unwrap_or_default();
        match answer {
            Answer::Files(resp) => {
                assert!(
                    r.case.succeeds(),
                    "{what}: succeeded, but the driver saw {recorded_error}"
                );
                let got: Vec<(String, u32, Vec<u8>)> = resp
                    .files
                    .iter()
                    .map(|f| (f.path.clone(), f.mode as u32, f.contents.clone()))
                    .collect();
                let want: Vec<(String, u32, Vec<u8>)> = dc::expected_files()
                    .into_iter()
                    .map(|e| (e.path, e.mode, e.contents))
                    .collect();
                assert_eq!(got, want, "{what}: files and modes");
                let versions: BTreeMap<String, String> = resp
                    .object_version
                    .iter()
                    .map(|v| (v.id.clone(), v.version.clone()))
                    .collect();
                let seen: BTreeMap<String, String> =
                    serde_json::from_value(r.driver["object_versions"].clone()).unwrap();
                assert_eq!(versions, seen, "{what}: the versions the real client got");
                check_recorded_target(&what, &r.driver);
            }
            Answer::Status(code, message) => {
                assert!(!r.case.succeeds(), "{what}: failed: {code} {message}");
                let line = dc::node_publish_error(&code, &message);
                assert_eq!(
                    line, recorded_error,
                    "{what}: the error as the driver logs it"
                );
                assert!(
                    line.contains("code = InvalidArgument desc = vault-csi-provider: missing parameter roleName"),
                    "{what}: {line}"
                );
            }
        }
    }
}

/// The files the driver's atomic writer left, as recorded: each expected file with its
/// mode and size (under `..<timestamp>/` from v0.0.22, where `..data` points).
fn check_recorded_target(what: &str, driver: &serde_json::Value) {
    let listing = driver["target"].as_array().cloned().unwrap_or_default();
    for e in dc::expected_files() {
        let found = listing.iter().find(|entry| {
            let p = entry["path"].as_str().unwrap_or_default();
            entry["type"] == "file"
                && (p == e.path || (p.starts_with("..") && p.ends_with(&format!("/{}", e.path))))
        });
        let entry = found.unwrap_or_else(|| panic!("{what}: {} not written: {listing:?}", e.path));
        assert_eq!(
            entry["mode"],
            format!("{:04o}", e.mode),
            "{what}: {}",
            e.path
        );
        assert_eq!(entry["size"], e.contents.len(), "{what}: {}", e.path);
    }
}

macro_rules! tags {
    ($($name:ident => $tag:literal),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                replay_tag($tag).await;
            }
        )*

        #[test]
        fn every_recorded_release_is_replayed() {
            let replayed = [$($tag),*];
            assert_eq!(replayed, dc::TAGS);
        }
    };
}

tags! {
    driver_v0_0_21 => "v0.0.21",
    driver_v0_0_22 => "v0.0.22",
    driver_v1_0_1 => "v1.0.1",
    driver_v1_1_2 => "v1.1.2",
    driver_v1_2_4 => "v1.2.4",
    driver_v1_3_4 => "v1.3.4",
    driver_v1_4_8 => "v1.4.8",
    driver_v1_5_6 => "v1.5.6",
    driver_v1_6_0 => "v1.6.0",
}
