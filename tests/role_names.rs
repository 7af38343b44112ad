//! The role-name spellings (`roleName`, and the OpenBao fork's) and which one wins.

mod common;

use common::features::*;
use common::*;
use serde_json::{Value, json};
use tonic::Code;

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
