use super::objects::MAX_OBJECTS_TEXT;
use super::paths::normalise_secret_path;
use super::request::TokenClaims;
use super::*;
use serde_json::Value;
use serde_json::json;

fn attrs(objects: &str) -> serde_json::Map<String, Value> {
    let v = json!({
        "roleName": "app",
        "objects": objects,
        "csi.storage.k8s.io/pod.name": "web-0",
        "csi.storage.k8s.io/pod.namespace": "default",
        "csi.storage.k8s.io/pod.uid": "uid-1",
        "csi.storage.k8s.io/serviceAccount.name": "web",
        "secretProviderClass": "web-secrets",
    });
    v.as_object().unwrap().clone()
}

/// Parses a request given as the driver's strings.
fn parse_text(
    attributes: &str,
    secrets: &str,
    permission: &str,
    flavour: Flavour,
) -> Result<MountPlan, PlanError> {
    parse(&RawMount {
        attributes: &Attributes::parse(attributes)?,
        secrets,
        permission,
        flavour,
    })
}

fn plan_with(map: serde_json::Map<String, Value>, secrets: &str) -> Result<MountPlan, PlanError> {
    let attributes = Value::Object(map).to_string();
    parse_text(&attributes, secrets, "420", Flavour::Vault)
}

fn plan(objects: &str) -> Result<MountPlan, PlanError> {
    plan_with(attrs(objects), "{}")
}

const ONE: &str = "- objectName: a\n  secretPath: secret/data/a\n  secretKey: k\n";

#[test]
fn pod_and_role_are_read() {
    let p = plan(ONE).unwrap();
    assert_eq!(p.role, "app");
    assert_eq!(p.pod.name, "web-0");
    assert_eq!(p.pod.namespace, "default");
    assert_eq!(p.pod.service_account, "web");
    assert_eq!(p.audience, "vault");
    assert_eq!(p.explicit_audience, None);
    assert_eq!(p.objects[0].mode, 0o644);
    assert_eq!(p.objects[0].kind, ObjectKind::Key("k".into()));
}

#[test]
fn secret_path_forms_normalise_to_v1() {
    for form in [
        "/v1/secret/data/a",
        "v1/secret/data/a",
        "/secret/data/a",
        "secret/data/a",
    ] {
        let (path, query) = normalise_secret_path(form).unwrap();
        assert_eq!(path, "/v1/secret/data/a", "{form}");
        assert!(query.is_empty());
    }
    let (path, query) = normalise_secret_path("secret/data/a?version=2&x=a%20b").unwrap();
    assert_eq!(path, "/v1/secret/data/a");
    assert_eq!(
        query,
        vec![("version".into(), "2".into()), ("x".into(), "a b".into())]
    );
    for bad in [
        "", "/", "v1/", "/v1/", "a//b", "a/../b", "./a", "a b", "a\nb", "a#b", "a/",
    ] {
        assert!(normalise_secret_path(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn file_permission_forms() {
    let cases = [
        ("0600", 0o600),
        ("0o600", 0o600),
        ("420", 420),
        ("\"0640\"", 0o640),
        ("0x1a4", 0o644),
        ("0", 0),
        ("0777", 0o777),
    ];
    for (text, want) in cases {
        let objects = format!("- objectName: a\n  secretPath: s/a\n  filePermission: {text}\n");
        let p = plan(&objects).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(p.objects[0].mode, want, "{text}");
    }
    for bad in ["01000", "512", "-1", "rw", "0o9", "[1]"] {
        let objects = format!("- objectName: a\n  secretPath: s/a\n  filePermission: {bad}\n");
        assert!(plan(&objects).is_err(), "{bad} accepted");
    }
    // The request's permission is the default.
    let attributes = Value::Object(attrs(ONE)).to_string();
    let p = parse_text(&attributes, "{}", "384", Flavour::Vault).unwrap();
    assert_eq!(p.objects[0].mode, 0o600);
    assert!(parse_text(&attributes, "{}", "x", Flavour::Vault).is_err());
    assert!(parse_text(&attributes, "{}", "4096", Flavour::Vault).is_err());
}

#[test]
fn encodings_are_case_insensitive_and_checked() {
    for (text, want) in [
        ("base64", Encoding::Base64),
        ("HEX", Encoding::Hex),
        ("UTF-8", Encoding::Utf8),
    ] {
        let p = plan(&format!(
            "- objectName: a\n  secretPath: s/a\n  encoding: {text}\n"
        ))
        .unwrap();
        assert_eq!(p.objects[0].encoding, want);
    }
    let err = plan("- objectName: a\n  secretPath: s/a\n  encoding: rot13\n").unwrap_err();
    assert!(err.to_string().contains("rot13"), "{err}");
    assert!(err.to_string().contains("utf-8, base64 or hex"), "{err}");
}

#[test]
fn reads_are_shared_only_when_identical() {
    let objects = r#"
- objectName: user
  secretPath: database/creds/app
  secretKey: username
- objectName: pass
  secretPath: /v1/database/creds/app
  secretKey: password
- objectName: cert-a
  secretPath: pki/issue/web
  method: PUT
  secretArgs: {common_name: a.example.com}
- objectName: cert-b
  secretPath: pki/issue/web
  method: PUT
  secretArgs: {common_name: b.example.com}
- objectName: cert-a-key
  secretPath: pki/issue/web
  method: put
  secretArgs: {common_name: a.example.com}
  secretKey: private_key
- objectName: v1
  secretPath: secret/data/a?version=1
- objectName: v2
  secretPath: secret/data/a?version=2
"#;
    let p = plan(objects).unwrap();
    assert_eq!(p.reads.len(), 5);
    let read_of = |n: &str| {
        p.objects
            .iter()
            .find(|o| o.name == n)
            .unwrap()
            .read
            .unwrap()
    };
    assert_eq!(read_of("user"), read_of("pass"));
    assert_eq!(read_of("cert-a"), read_of("cert-a-key"));
    assert_ne!(read_of("cert-a"), read_of("cert-b"));
    assert_ne!(read_of("v1"), read_of("v2"));
    assert_eq!(
        p.reads[read_of("cert-a")].body.as_deref(),
        Some(r#"{"common_name":"a.example.com"}"#)
    );
}

#[test]
fn request_errors_name_what_to_fix() {
    let mut no_role = attrs(ONE);
    no_role.remove("roleName");
    assert_eq!(
        plan_with(no_role, "{}").unwrap_err(),
        PlanError::MissingRole
    );

    let mut both = attrs(ONE);
    both.insert("vaultAuthMountPath".into(), json!("jwt"));
    both.insert("vaultKubernetesMountPath".into(), json!(""));
    assert!(matches!(
        plan_with(both, "{}").unwrap_err(),
        PlanError::ConflictingMountPath { .. }
    ));

    let mut no_objects = attrs(ONE);
    no_objects.remove("objects");
    assert_eq!(
        plan_with(no_objects, "{}").unwrap_err(),
        PlanError::NoObjects
    );
    assert_eq!(plan("[]").unwrap_err(), PlanError::NoObjects);
    assert!(matches!(
        plan("- objectName: [unclosed").unwrap_err(),
        PlanError::ObjectsSyntax(_)
    ));
    assert!(matches!(
        plan("objectName: a").unwrap_err(),
        PlanError::ObjectsSyntax(_)
    ));

    let dup = "- objectName: a\n  secretPath: s/a\n- objectName: a\n  secretPath: s/b\n";
    assert_eq!(plan(dup).unwrap_err(), PlanError::DuplicateName("a".into()));
    let nested = "- objectName: a\n  secretPath: s/a\n- objectName: a/b\n  secretPath: s/b\n";
    assert!(matches!(
        plan(nested).unwrap_err(),
        PlanError::FileDirConflict { .. }
    ));
    let sibling = "- objectName: a\n  secretPath: s/a\n- objectName: a-b/c\n  secretPath: s/b\n";
    assert!(plan(sibling).is_ok());

    assert!(
        plan("- secretPath: s/a\n")
            .unwrap_err()
            .to_string()
            .contains("objectName is missing")
    );
    assert!(
        plan("- objectName: a\n")
            .unwrap_err()
            .to_string()
            .contains("secretPath is missing")
    );
    assert!(plan("- objectName: a\n  secretPath: s/a\n  method: DELETE\n").is_err());

    for bad in ["{", "[]", "{\"a\": 1}"] {
        let e = parse_text(bad, "{}", "420", Flavour::Vault).unwrap_err();
        assert!(
            matches!(
                e,
                PlanError::Malformed {
                    field: "attributes",
                    ..
                }
            ),
            "{bad}: {e}"
        );
    }
    let attributes = Value::Object(attrs(ONE)).to_string();
    let e = parse_text(&attributes, "nope", "420", Flavour::Vault).unwrap_err();
    assert!(matches!(
        e,
        PlanError::Malformed {
            field: "secrets",
            ..
        }
    ));

    let mut bad_bool = attrs(ONE);
    bad_bool.insert("vaultSkipTLSVerify".into(), json!("yes"));
    assert!(
        plan_with(bad_bool, "{}")
            .unwrap_err()
            .to_string()
            .contains("vaultSkipTLSVerify")
    );
    let mut half_cert = attrs(ONE);
    half_cert.insert("vaultTLSClientCertPath".into(), json!("/c.pem"));
    assert!(
        plan_with(half_cert, "{}")
            .unwrap_err()
            .to_string()
            .contains("vaultTLSClientKeyPath")
    );
    let mut bad_addr = attrs(ONE);
    bad_addr.insert("vaultAddress".into(), json!("vault:8200"));
    assert!(
        plan_with(bad_addr, "{}")
            .unwrap_err()
            .to_string()
            .contains("vaultAddress")
    );
}

#[test]
fn unsafe_file_names_are_refused() {
    for bad in [
        "/etc/passwd",
        "../x",
        "..data",
        "a/../b",
        "a/./b",
        "./a",
        "a/",
        "a//b",
        ".",
        "a\0b",
        "a\nb",
    ] {
        assert!(validate_file_name(bad).is_err(), "{bad:?} accepted");
        let objects = format!("- objectName: {}\n  secretPath: s/a\n", json!(bad));
        assert!(
            matches!(
                plan(&objects).unwrap_err(),
                PlanError::BadNamedObject { .. }
            ),
            "{bad:?}"
        );
    }
    assert!(validate_file_name(&"a".repeat(256)).is_err());
    assert!(validate_file_name(&["a"; 2100].join("/")).is_err());
    for good in [
        "a", "a.b", "dir/file", ".hidden", "a..b", "a/..b", "tls.crt",
    ] {
        assert!(validate_file_name(good).is_ok(), "{good:?} refused");
    }
}

#[test]
fn tokens_come_from_secrets_first_then_attributes() {
    let tokens = |t: &str| {
        json!({"vault": {"token": t, "expirationTimestamp": "2030-01-01T00:00:00Z"}}).to_string()
    };
    let mut a = attrs(ONE);
    a.insert(TOKENS_KEY.into(), json!(tokens("from-attributes")));
    let p = plan_with(a.clone(), "{}").unwrap();
    assert_eq!(p.token.unwrap().token.expose(), "from-attributes");
    let secrets = json!({ TOKENS_KEY: tokens("from-secrets"), "other": "x" }).to_string();
    let p = plan_with(a.clone(), &secrets).unwrap();
    assert_eq!(p.token.unwrap().token.expose(), "from-secrets");

    a.insert("audience".into(), json!("other"));
    assert!(plan_with(a.clone(), "{}").unwrap().token.is_none());
    a.insert(TOKENS_KEY.into(), json!("not json"));
    assert!(plan_with(a, "{}").is_err());
}

#[test]
fn openbao_spellings_win_in_order() {
    let mut a = attrs(ONE);
    a.insert("vaultAddress".into(), json!("http://vault:8200"));
    a.insert("openbaoAddress".into(), json!("http://openbao:8200"));
    assert_eq!(
        plan_with(a.clone(), "{}")
            .unwrap()
            .connection
            .address
            .as_deref(),
        Some("http://openbao:8200")
    );
    a.insert("baoAddress".into(), json!("http://bao:8200"));
    assert_eq!(
        plan_with(a.clone(), "{}")
            .unwrap()
            .connection
            .address
            .as_deref(),
        Some("http://bao:8200")
    );
    a.insert("baoAuthMountPath".into(), json!("jwt"));
    assert_eq!(
        plan_with(a.clone(), "{}").unwrap().auth_mount.as_deref(),
        Some("jwt")
    );
    a.insert("vaultKubernetesMountPath".into(), json!("k8s"));
    assert!(plan_with(a, "{}").is_err());
}

#[test]
fn versions_config_differs_by_settings() {
    let a = plan("- objectName: a\n  secretPath: s/a\n  secretKey: k\n").unwrap();
    let b = plan("- objectName: a\n  secretPath: s/a\n  secretKey: j\n").unwrap();
    assert_ne!(a.objects[0].config, b.objects[0].config);
}

#[test]
fn scalars_as_names_and_keys() {
    let p = plan("- objectName: 123\n  secretPath: s/a\n  secretKey: 007\n").unwrap();
    assert_eq!(p.objects[0].name, "123");
    assert_eq!(p.objects[0].kind, ObjectKind::Key("007".into()));
}

#[test]
fn token_claims_give_the_service_account_uid() {
    use base64::Engine;
    let payload = json!({"kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "web", "uid": "sa-uid-1"}, "pod": {"name": "web-0", "uid": "uid-1"}}, "exp": 10});
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let jwt = format!("{}.{}.sig", b64(&json!({"alg": "RS256"})), b64(&payload));
    let c = token_claims(&jwt);
    assert_eq!(c.service_account_uid.as_deref(), Some("sa-uid-1"));
    assert_eq!(c.pod_uid.as_deref(), Some("uid-1"));
    assert_eq!(c.expiration, Some(10));
    assert_eq!(token_claims("garbage"), TokenClaims::default());
    let mut a = attrs(ONE);
    let tokens = json!({"vault": {"token": jwt, "expirationTimestamp": ""}}).to_string();
    a.insert(TOKENS_KEY.into(), json!(tokens));
    let p = plan_with(a, "{}").unwrap();
    assert_eq!(
        p.token.unwrap().service_account_uid.as_deref(),
        Some("sa-uid-1")
    );
    // A token of another namespace or service account is refused; one bound to another
    // pod of the same account is not (the sync controller mounts under its own pod).
    for (field, other, refused) in [
        ("/kubernetes.io/namespace", "other", true),
        ("/kubernetes.io/serviceaccount/name", "other", true),
        ("/kubernetes.io/pod/name", "other-0", false),
        ("/kubernetes.io/pod/uid", "uid-2", false),
    ] {
        let mut bad = payload.clone();
        *bad.pointer_mut(field).unwrap() = json!(other);
        let jwt = format!("{}.{}.sig", b64(&json!({"alg": "RS256"})), b64(&bad));
        let mut a = attrs(ONE);
        let tokens = json!({"vault": {"token": jwt, "expirationTimestamp": ""}}).to_string();
        a.insert(TOKENS_KEY.into(), json!(tokens));
        match plan_with(a, "{}") {
            Err(e) => assert!(
                refused && matches!(e, PlanError::TokenMismatch { .. }),
                "{field}: {e}"
            ),
            Ok(_) => assert!(!refused, "{field}: accepted"),
        }
    }
}

#[test]
fn templates_selectors_and_all_keys_are_planned() {
    let p = plan(
        "- objectName: a\n  secretPath: secret/data/a\n  allKeys: true\n  filePermission: 0600\n\
         - objectName: b\n  secretPath: secret/data/a\n  selector: /db/pass\n\
         - objectName: c\n  template: \"{{ objects.b }}\"\n\
         - objectName: d\n  secretPath: secret/data/a\n  template: \"{{ secret.x }}\"\n",
    )
    .unwrap();
    assert_eq!(p.reads.len(), 1, "one read for the same path");
    assert_eq!(p.objects[0].kind, ObjectKind::AllKeys(None));
    assert_eq!(p.objects[0].mode, 0o600);
    assert!(matches!(&p.objects[1].kind, ObjectKind::Pointer(ptr) if ptr.tokens == ["db", "pass"]));
    assert_eq!(p.objects[2].read, None);
    assert_eq!(p.objects[3].read, Some(0));
    assert!(p.has_templates());
    // Only fields this provider adds appear in the version config, and only when used.
    assert!(p.objects[0].config.contains("\"allKeys\":true"));
    assert!(!p.objects[1].config.contains("allKeys"));
}

#[test]
fn conflicting_fields_and_bad_templates_are_refused_before_vault() {
    for (objects, needle) in [
        (
            "- objectName: a\n  template: x\n  secretKey: k\n  secretPath: s/a\n",
            "template and secretKey",
        ),
        (
            "- objectName: a\n  template: x\n  selector: /k\n  secretPath: s/a\n",
            "template and selector",
        ),
        (
            "- objectName: a\n  template: x\n  allKeys: true\n  secretPath: s/a\n",
            "template and allKeys",
        ),
        (
            "- objectName: a\n  secretKey: k\n  selector: /k\n  secretPath: s/a\n",
            "secretKey and selector",
        ),
        (
            "- objectName: a\n  secretKey: k\n  allKeys: true\n  secretPath: s/a\n",
            "secretKey and allKeys",
        ),
        (
            "- objectName: a\n  selector: k\n  secretPath: s/a\n",
            "JSON Pointer",
        ),
        ("- objectName: a\n  template: \"{{ x \"\n", "line 1"),
        (
            "- objectName: a\n  template: x\n  encoding: base64\n",
            "encoding",
        ),
        (
            "- objectName: a\n  allKeys: true\n",
            "secretPath is missing",
        ),
    ] {
        let e = plan(objects).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(needle), "{objects:?}: {msg}");
        assert!(msg.contains("\"a\""), "names the object: {msg}");
    }
}

#[test]
fn files_cannot_sit_inside_other_files_or_all_keys_directories() {
    // Not only neighbours in sort order: certs-old sorts between certs and certs/tls.crt.
    let e = plan(
        "- {objectName: certs, secretPath: s/a}\n- {objectName: certs-old, secretPath: s/a}\n- {objectName: certs/tls.crt, secretPath: s/a}\n",
    )
    .unwrap_err();
    assert!(matches!(e, PlanError::FileDirConflict { .. }), "{e}");
    let e = plan("- {objectName: a, secretPath: s/a}\n- {objectName: a/b/c, secretPath: s/a}\n")
        .unwrap_err();
    assert!(matches!(e, PlanError::FileDirConflict { .. }), "{e}");
    let e = plan(
        "- {objectName: d, secretPath: s/a, allKeys: true}\n- {objectName: d/k, secretPath: s/b}\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("allKeys"), "{e}");
    assert!(
        plan("- {objectName: a/b, secretPath: s/a}\n- {objectName: a/c, secretPath: s/a}\n")
            .is_ok()
    );
}

#[test]
fn openbao_role_name_spellings_and_their_precedence() {
    let with = |pairs: &[(&str, &str)]| {
        let mut m = attrs(ONE);
        m.remove("roleName");
        for (k, v) in pairs {
            m.insert(k.to_string(), Value::String(v.to_string()));
        }
        plan_with(m, "{}").map(|p| p.role)
    };
    assert_eq!(with(&[("vaultRoleName", "v")]).unwrap(), "v");
    assert_eq!(
        with(&[("roleName", "r"), ("vaultRoleName", "v")]).unwrap(),
        "v"
    );
    assert_eq!(
        with(&[("vaultRoleName", "v"), ("openbaoRoleName", "o")]).unwrap(),
        "o"
    );
    assert_eq!(
        with(&[
            ("roleName", "r"),
            ("vaultRoleName", "v"),
            ("openbaoRoleName", "o"),
            ("baoRoleName", "b")
        ])
        .unwrap(),
        "b"
    );
    assert_eq!(
        with(&[("baoRoleName", ""), ("roleName", "r")]).unwrap(),
        "r",
        "empty counts as unset"
    );
    assert_eq!(with(&[]).unwrap_err(), PlanError::MissingRole);
}

/// Whatever a class or a pod's attributes say, parsing ends in a plan or an error that
/// names what to change, never a panic; and a plan's files never sit inside one another.
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn field() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            Just("a".to_string()),
            Just("a/b".to_string()),
            Just("../x".to_string()),
            Just("".to_string()),
            "[a-z./]{1,8}",
        ];
        let value = prop_oneof![
            Just("x".to_string()),
            Just("secret/data/a".to_string()),
            Just("/db/0".to_string()),
            Just("true".to_string()),
            Just("0644".to_string()),
            Just("'{{ secret.k }}'".to_string()),
            Just("'{% for %}'".to_string()),
            Just("{a: [1, {b: c}]}".to_string()),
            "[ -~]{0,12}".prop_map(|s| format!("{s:?}")),
        ];
        let key = prop_oneof![
            Just("objectName"),
            Just("secretPath"),
            Just("secretKey"),
            Just("selector"),
            Just("allKeys"),
            Just("template"),
            Just("encoding"),
            Just("method"),
            Just("secretArgs"),
            Just("filePermission"),
        ];
        (key, name, value).prop_map(|(k, n, v)| {
            if k == "objectName" {
                format!("{k}: {n:?}")
            } else {
                format!("{k}: {v}")
            }
        })
    }

    fn objects() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::collection::vec(prop::collection::vec(field(), 1..6), 0..6).prop_map(|objs| {
                objs.iter()
                    .map(|fields| format!("- {{{}}}\n", fields.join(", ")))
                    .collect::<String>()
            }),
            "[ -~\n]{0,200}",
        ]
    }

    proptest! {
        #[test]
        fn objects_parse_or_say_why(text in objects()) {
            match plan(&text) {
                Ok(p) => {
                    let names: std::collections::HashSet<&str> =
                        p.objects.iter().map(|o| o.name.as_str()).collect();
                    for o in &p.objects {
                        prop_assert!(validate_file_name(&o.name).is_ok());
                        let mut prefix = o.name.as_str();
                        while let Some((parent, _)) = prefix.rsplit_once('/') {
                            prop_assert!(!names.contains(parent), "{} inside {}", o.name, parent);
                            prefix = parent;
                        }
                        if let Some(r) = o.read {
                            prop_assert!(r < p.reads.len());
                        }
                    }
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }

        /// A secretPath that is accepted always names a path under /v1/ with no segment
        /// that is, or decodes to, `.` or `..`, whatever encoding it was written in.
        #[test]
        fn accepted_paths_cannot_leave_their_prefix(
            raw in "(/|v1/|%2[eEfF]|%5[cC]|\\.|\\.\\.|[a-z]|/){0,24}(\\?[a-z=&]{0,8})?",
        ) {
            if let Ok((path, _)) = normalise_secret_path(&raw) {
                prop_assert!(path.starts_with("/v1/"));
                for segment in path.trim_start_matches("/v1/").split('/') {
                    let decoded = segment.replace("%2e", ".").replace("%2E", ".");
                    prop_assert!(decoded != "." && decoded != ".." && !segment.is_empty(), "{}", path);
                    prop_assert!(!segment.to_ascii_lowercase().contains("%2f"), "{}", path);
                }
                let url = url::Url::parse("http://v/").unwrap().join(path.trim_start_matches('/')).unwrap();
                prop_assert!(url.path().starts_with("/v1/"), "{} -> {}", path, url.path());
            }
        }

        #[test]
        fn any_attributes_parse_or_say_why(text in "[ -~]{0,200}") {
            let _ = parse_text(&text, "{}", "420", Flavour::Vault);
            let _ = parse_text("{}", &text, &text, Flavour::Vault);
        }
    }
}

#[test]
fn encoded_dots_control_characters_and_sizes_are_refused_before_vault() {
    for path in [
        "secret/%2e%2e/%2e%2e/sys/mounts",
        "secret/%2E./x",
        "secret/a%2fb",
        "secret/%00",
    ] {
        let e = plan(&format!("- {{objectName: a, secretPath: {path:?}}}")).unwrap_err();
        assert!(e.to_string().contains("percent-encoded"), "{path}: {e}");
    }
    assert!(plan("- {objectName: a, secretPath: \"secret/data/a%20b\"}").is_ok());
    let with = |k: &str, v: &str| {
        let mut m = attrs(ONE);
        m.insert(k.into(), Value::String(v.into()));
        plan_with(m, "{}")
    };
    let e = with("vaultNamespace", "team\r\nX-Evil: 1").unwrap_err();
    assert!(
        matches!(&e, PlanError::BadParameter { key, .. } if key == "vaultNamespace"),
        "{e}"
    );
    let e = with("roleName", &"r".repeat(1024 * 1024)).unwrap_err();
    assert!(e.to_string().len() < 300, "short: {e}");
    assert!(matches!(&e, PlanError::BadParameter { key, .. } if key == "roleName"));
    let e = with("vaultCACertPath", &"/a".repeat(5000)).unwrap_err();
    assert!(matches!(&e, PlanError::BadParameter { key, .. } if key == "vaultCACertPath"));
    let e = plan(&"x".repeat(MAX_OBJECTS_TEXT + 1)).unwrap_err();
    assert!(matches!(e, PlanError::ObjectsSyntax(_)));
    // Deep nesting is refused at once, not parsed (its parse time grows with the square).
    for deep in [
        format!("{}{}", "[".repeat(60_000), "]".repeat(60_000)),
        format!(
            "- objectName: a\n  secretArgs: {}1{}",
            "{a: ".repeat(40_000),
            "}".repeat(40_000)
        ),
        (0..1_000)
            .map(|i| format!("{}- x\n", " ".repeat(i % 400)))
            .collect(),
        "- ".repeat(60_000),
    ] {
        let started = std::time::Instant::now();
        let e = plan(&deep).unwrap_err();
        assert!(e.to_string().contains("levels deep"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
    }
    // What a class really has passes.
    assert!(plan("- objectName: a\n  secretPath: s/a\n  secretArgs: {a: [1, {b: c}], d: \"[[[\"}\n  template: |\n    {% if x %}\n        {{ y }}\n    {% endif %}\n").is_ok());
}

/// What every driver release sends in `secrets`: `null` from the node server for a volume
/// without nodePublishSecretRef (a nil Go map), `{}` from the rotation reconciler and the
/// sync controller, a Secret's data with nodePublishSecretRef, the tokens on Kubernetes 1.35+.
#[test]
fn secrets_as_every_driver_sends_them() {
    for secrets in [
        "null",
        " null ",
        "",
        "{}",
        "{\"username\":\"u\",\"password\":\"p\"}",
    ] {
        let p = plan_with(attrs(ONE), secrets).unwrap_or_else(|e| panic!("{secrets:?}: {e}"));
        assert!(p.token.is_none(), "{secrets:?}");
    }
    // A nodePublishSecretRef's data is the pod's business: whatever it holds is not read.
    assert!(plan_with(attrs(ONE), "{\"n\": 1, \"list\": [true]}").is_ok());
    // The tokens key may be null (no tokens) in either place.
    let mut a = attrs(ONE);
    a.insert(TOKENS_KEY.into(), json!("null"));
    assert!(
        plan_with(a, &json!({ TOKENS_KEY: null }).to_string())
            .unwrap()
            .token
            .is_none()
    );
    // Not an object, nor null: the driver never sends it, and it is named.
    for bad in ["[]", "\"x\"", "1", "{"] {
        let e = plan_with(attrs(ONE), bad).unwrap_err();
        assert!(
            matches!(
                e,
                PlanError::Malformed {
                    field: "secrets",
                    ..
                }
            ),
            "{bad}: {e}"
        );
    }
    // The attributes may be null too (a caller with no parameters): the class's mistake shows.
    let e = parse_text("null", "null", "420", Flavour::Vault).unwrap_err();
    assert_eq!(e, PlanError::MissingRole);
}

/// The class's own mistakes are named before anything only the driver controls.
#[test]
fn the_class_is_checked_before_the_driver_fields() {
    let mut no_role = attrs(ONE);
    no_role.remove("roleName");
    for secrets in ["null", "[]", "{"] {
        let e = plan_with(no_role.clone(), secrets).unwrap_err();
        assert_eq!(e, PlanError::MissingRole, "{secrets}");
    }
    let attributes = Value::Object(attrs("- objectName: a\n")).to_string();
    let e = parse_text(&attributes, "[]", "-1", Flavour::Vault).unwrap_err();
    assert!(e.to_string().contains("secretPath is missing"), "{e}");
    let attributes = Value::Object(attrs(ONE)).to_string();
    let e = parse_text(&attributes, "[]", "-1", Flavour::Vault).unwrap_err();
    assert!(
        matches!(
            e,
            PlanError::Malformed {
                field: "permission",
                ..
            }
        ),
        "{e}"
    );
    // A malformed token of the driver's comes after the class too.
    let mut bad_token = no_role.clone();
    bad_token.insert(TOKENS_KEY.into(), json!("not json"));
    assert_eq!(
        plan_with(bad_token, "null").unwrap_err(),
        PlanError::MissingRole
    );
}

#[test]
fn the_objects_parse_names_what_is_wrong() {
    let e = plan("a: b\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "parameter objects is not a valid YAML list of objects: invalid type: map, expected a list of objects"
    );
    let e = plan("- objectName: a\n  secretPath: s/a\n  secretArgs: [1]\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "object 1: secretArgs is not a mapping: write the request's arguments as key: value"
    );
    // One parse gives both: the plan's settings and the Go provider's version input.
    let p = plan("- objectName: a\n  secretPath: s/a\n  secretKey: k\n  filePermission: 0600\n  secretArgs: {n: 0600, q: '0600'}\n").unwrap();
    assert_eq!(p.objects[0].mode, 0o600);
    assert_eq!(
        p.reads[0].body.as_deref(),
        Some(r#"{"n":"0600","q":"0600"}"#)
    );
    match &p.objects[0].version {
        VersionInput::Go(json) => assert!(
            json.contains(r#""SecretArgs":{"n":384,"q":"0600"}"#),
            "{json}"
        ),
        other => panic!("{other:?}"),
    }
}
