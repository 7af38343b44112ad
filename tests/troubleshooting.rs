//! The Troubleshooting tables (docs/troubleshooting.md) cover every error the provider
//! returns:
//! - every variant of every error type a Mount can fail with (`MountError`, `PlanError`,
//!   `RenderError`, `TemplateError`, `VaultError`, `KubeError` and `Refused`, each found by
//!   its name wherever it lives under src/), read from the source, has a row marked
//!   `<!-- Type::Variant -->`, and the row quotes the fixed words of the variant's
//!   `#[error(...)]` message; a marker naming no variant is refused too. Adding a variant
//!   without a row fails here.
//! - the common failures, produced for real (a provider against a real OpenBao, called as
//!   the driver calls it), appear in the tables word for word, with their gRPC code.

mod common;

use common::kube::KubeApi;
use common::*;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use tonic::Code;

/// The error types of a Mount (found in the source by name, wherever they are defined).
const ERROR_TYPES: [(&str, &str); 7] = [
    ("enum", "MountError"),
    ("enum", "PlanError"),
    ("enum", "RenderError"),
    ("enum", "TemplateError"),
    ("enum", "VaultError"),
    ("enum", "KubeError"),
    ("struct", "Refused"),
];

/// The source file under `src/` that defines `pub {item} {name}` (exactly one).
fn defining(item: &str, name: &str) -> String {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo().join("src"), &mut files);
    let head = format!("pub {item} {name} ");
    let found: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .filter(|text| text.contains(&head))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "`{head}` is defined in {} files",
        found.len()
    );
    found.into_iter().next().unwrap()
}

/// A fixed piece of a message shorter than this is not looked for (`object `, `: `).
const MIN_FRAGMENT: usize = 12;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The page holding the Troubleshooting tables.
const PAGE: &str = "docs/troubleshooting.md";

/// The page's Troubleshooting section.
fn section() -> String {
    let page = read(PAGE);
    let start = page
        .find("\n## Troubleshooting\n")
        .unwrap_or_else(|| panic!("{PAGE} has no \"## Troubleshooting\" section"));
    let rest = &page[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 4);
    rest[..end].to_string()
}

// ---- Reading the error types from the source --------------------------------------------

/// A Rust source scanner that knows strings, raw strings, chars and comments, enough to
/// walk an enum's body.
struct Scan<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self, k: usize) -> u8 {
        *self.s.get(self.i + k).unwrap_or(&0)
    }

    /// Skips a comment, string or char literal at the cursor; returns the string's text
    /// when it was a string.
    fn skip_literal(&mut self) -> Option<Option<String>> {
        let c = self.peek(0);
        if c == b'/' && self.peek(1) == b'/' {
            while self.i < self.s.len() && self.s[self.i] != b'\n' {
                self.i += 1;
            }
            return Some(None);
        }
        if c == b'/' && self.peek(1) == b'*' {
            self.i += 2;
            while self.i < self.s.len() && !(self.peek(0) == b'*' && self.peek(1) == b'/') {
                self.i += 1;
            }
            self.i += 2;
            return Some(None);
        }
        if c == b'r' && (self.peek(1) == b'"' || (self.peek(1) == b'#' && self.peek(2) != b'[')) {
            let start = self.i;
            self.i += 1;
            let mut hashes = 0;
            while self.peek(0) == b'#' {
                hashes += 1;
                self.i += 1;
            }
            if self.peek(0) != b'"' {
                self.i = start;
                return None;
            }
            self.i += 1;
            let body_start = self.i;
            loop {
                if self.peek(0) == b'"' && (1..=hashes).all(|k| self.peek(k) == b'#') {
                    let text = String::from_utf8_lossy(&self.s[body_start..self.i]).into_owned();
                    self.i += 1 + hashes;
                    return Some(Some(text));
                }
                self.i += 1;
            }
        }
        if c == b'"' {
            self.i += 1;
            let mut text = Vec::new();
            while self.peek(0) != b'"' {
                if self.peek(0) == b'\\' {
                    let e = self.peek(1);
                    self.i += 2;
                    match e {
                        b'n' => text.push(b'\n'),
                        b'"' => text.push(b'"'),
                        b'\\' => text.push(b'\\'),
                        b'\n' => {
                            while self.peek(0).is_ascii_whitespace() {
                                self.i += 1;
                            }
                        }
                        other => {
                            text.push(b'\\');
                            text.push(other);
                        }
                    }
                    continue;
                }
                text.push(self.peek(0));
                self.i += 1;
            }
            self.i += 1;
            return Some(Some(String::from_utf8_lossy(&text).into_owned()));
        }
        if c == b'\'' && self.peek(2) == b'\'' {
            self.i += 3;
            return Some(None);
        }
        if c == b'\'' && self.peek(1) == b'\\' {
            self.i += 2;
            while self.peek(0) != b'\'' {
                self.i += 1;
            }
            self.i += 1;
            return Some(None);
        }
        None
    }

    /// Skips a balanced group opened at the cursor (`(`, `[` or `{`); returns the first
    /// string literal inside it.
    fn skip_group(&mut self) -> Option<String> {
        let mut depth = 0;
        let mut first = None;
        loop {
            if let Some(lit) = self.skip_literal() {
                if first.is_none() {
                    first = lit;
                }
                continue;
            }
            let c = self.peek(0);
            assert!(c != 0, "unbalanced source");
            self.i += 1;
            match c {
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        return first;
                    }
                }
                _ => {}
            }
        }
    }
}

/// The variants of `enum name` in `src`, each with the message template of its
/// `#[error(...)]`; for a struct, the struct's own.
fn variants(src: &str, item: &str, name: &str) -> Vec<(String, Option<String>)> {
    let head = format!("pub {item} {name}");
    let at = src
        .find(&head)
        .unwrap_or_else(|| panic!("no `{head}` in the source"));
    if item == "struct" {
        // The attribute before the struct.
        let before = &src[..at];
        let attr = before.rfind("#[error(").expect("no #[error] on the struct");
        let mut sc = Scan {
            s: before.as_bytes(),
            i: attr + 1,
        };
        let template = sc.skip_group();
        return vec![(name.to_string(), template)];
    }
    let open = at + src[at..].find('{').unwrap();
    let mut sc = Scan {
        s: src.as_bytes(),
        i: open + 1,
    };
    let mut out = Vec::new();
    let mut template: Option<String> = None;
    let mut errors = 0;
    loop {
        if sc.skip_literal().is_some() {
            continue;
        }
        let c = sc.peek(0);
        if c == b'}' {
            break;
        }
        if c == b'#' {
            sc.i += 1;
            let start = sc.i;
            let lit = sc.skip_group();
            if src[start..].starts_with("[error(") {
                errors += 1;
                template = lit;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = sc.i;
            while sc.peek(0).is_ascii_alphanumeric() || sc.peek(0) == b'_' {
                sc.i += 1;
            }
            let variant = src[start..sc.i].to_string();
            // The variant's fields, up to its comma.
            loop {
                if sc.skip_literal().is_some() {
                    continue;
                }
                match sc.peek(0) {
                    b'(' | b'{' => {
                        sc.skip_group();
                    }
                    b',' => {
                        sc.i += 1;
                        break;
                    }
                    b'}' => break,
                    _ => sc.i += 1,
                }
            }
            out.push((variant, template.take()));
            continue;
        }
        sc.i += 1;
    }
    assert_eq!(
        errors,
        out.len(),
        "{name}: {} variants but {errors} #[error] attributes; the scanner misread the source",
        out.len()
    );
    out
}

/// Every error variant: `Type::Variant` with its message template.
fn all_variants() -> BTreeMap<String, Option<String>> {
    let mut all = BTreeMap::new();
    for (item, name) in ERROR_TYPES {
        let vs = variants(&defining(item, name), item, name);
        assert!(!vs.is_empty(), "{name}: no variants");
        for (v, t) in vs {
            let key = if item == "struct" {
                format!("policy::{v}")
            } else {
                format!("{name}::{v}")
            };
            all.insert(key, t);
        }
    }
    all
}

/// The fixed text of a message template: the pieces between `{...}` placeholders.
fn fragments(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = template.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '{' if chars.get(i + 1) == Some(&'{') => {
                cur.push('{');
                i += 2;
            }
            '}' if chars.get(i + 1) == Some(&'}') => {
                cur.push('}');
                i += 2;
            }
            '{' => {
                out.push(std::mem::take(&mut cur));
                while i < chars.len() && chars[i] != '}' {
                    i += 1;
                }
                i += 1;
            }
            c => {
                cur.push(c);
                i += 1;
            }
        }
    }
    out.push(cur);
    out.into_iter()
        .filter(|f| f.trim().len() >= MIN_FRAGMENT)
        .collect()
}

/// The table rows of the section carrying each `<!-- Type::Variant -->` marker.
fn marked_rows(section: &str) -> BTreeMap<String, Vec<String>> {
    let mut rows: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with('|')) {
        let mut rest = line;
        while let Some(at) = rest.find("<!--") {
            let end = rest[at..].find("-->").expect("unclosed comment") + at;
            let marker = rest[at + 4..end].trim().to_string();
            rows.entry(marker).or_default().push(line.to_string());
            rest = &rest[end + 3..];
        }
    }
    rows
}

#[test]
fn the_scanner_reads_every_variant() {
    // Known variants of each type, so a scanner that reads nothing cannot pass.
    let all = all_variants();
    for v in [
        "MountError::Plan",
        "MountError::Login",
        "MountError::Internal",
        "PlanError::MissingRole",
        "PlanError::FileDirConflict",
        "RenderError::KeyMissing",
        "RenderError::Decode",
        "TemplateError::Syntax",
        "VaultError::Unreachable",
        "VaultError::Tls",
        "KubeError::Config",
        "policy::Refused",
    ] {
        assert!(all.contains_key(v), "{v} not read: {:?}", all.keys());
    }
    assert!(all.len() >= 50, "{}", all.len());
    assert_eq!(
        all["PlanError::MissingRole"].as_deref(),
        Some(
            "missing parameter roleName: set it in the SecretProviderClass to the Vault role to log in with"
        )
    );
    assert_eq!(
        fragments("secretKey {} is not in the answer; keys present: {present}"),
        [" is not in the answer; keys present: "]
    );
}

#[test]
fn every_error_variant_has_a_row_quoting_its_message() {
    let section = section();
    let rows = marked_rows(&section);
    let all = all_variants();
    let mut missing = Vec::new();
    let mut unquoted = Vec::new();
    for (variant, template) in &all {
        let Some(lines) = rows.get(variant) else {
            missing.push(variant.clone());
            continue;
        };
        for f in fragments(template.as_deref().unwrap_or("")) {
            if !lines.iter().any(|l| l.contains(&f)) {
                unquoted.push(format!("{variant}: {f:?}"));
            }
        }
    }
    assert!(
        unquoted.is_empty(),
        "{PAGE}: rows that do not quote their message's fixed words:\n{}",
        unquoted.join("\n")
    );
    assert!(
        missing.is_empty(),
        "error variants without a row in {PAGE}'s Troubleshooting (mark the row \
         `<!-- Type::Variant -->`): {missing:?}"
    );
    let stale: Vec<&String> = rows.keys().filter(|m| !all.contains_key(*m)).collect();
    assert!(
        stale.is_empty(),
        "Troubleshooting rows marked for variants that do not exist: {stale:?}"
    );
}

#[test]
fn the_section_shows_the_drivers_event_and_names_the_mount_subcommand_first() {
    let section = section();
    // The driver's and kubelet's words around ours (kubernetes-sigs/secrets-store-csi-driver
    // pkg/secrets-store/nodeserver.go, kubelet's operation generator).
    for words in [
        "FailedMount",
        "MountVolume.SetUp failed for volume \"secrets-store-inline\" : rpc error: code = Unknown desc = failed to mount secrets store objects for pod default/app, err: rpc error: code = ",
        " desc = vault-csi-provider: ",
    ] {
        assert!(section.contains(words), "{words}");
    }
    let first_table = section.find("\n|").unwrap();
    let mount = section
        .find("**First try the `mount`")
        .expect("the `mount` subcommand is not named first");
    assert!(mount < first_table);
}

// ---- Real failures, word for word ----------------------------------------------------

fn code_name(c: Code) -> &'static str {
    match c {
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::NotFound => "NOT_FOUND",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::Unavailable => "UNAVAILABLE",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::Internal => "INTERNAL",
        other => panic!("unexpected code {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn common_failures_appear_in_the_tables_word_for_word_with_their_code() {
    let bao = OpenBao::start().await;
    let kube = KubeApi::start().await;
    kube.recorded.lock().unwrap().deny_token_requests = true;
    bao.policy(
        "app",
        r#"path "secret/data/app/*" { capabilities = ["read"] }"#,
    )
    .await;
    bao.enable_kubernetes("kubernetes", &kube.url).await;
    bao.kubernetes_role("kubernetes", "app", "default", "app", &["app"])
        .await;
    bao.write(
        "secret/data/app/db",
        json!({"data": {"username": "app", "password": "pw"}}),
    )
    .await;
    bao.write(
        "secret/data/app/more",
        json!({"data": {"ca": "!!notb64", "brokers": ["a", "b"]}}),
    )
    .await;
    bao.write("secret/data/app/env", json!({"data": {"../x": "1"}}))
        .await;
    bao.write("secret/data/app/empty", json!({"data": {}}))
        .await;
    bao.write("secret/data/other", json!({"data": {"k": "v"}}))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kube.kubeconfig(dir.path()).display().to_string();
    let unreachable = "http://127.0.0.1:1";
    let provider = ProviderProcess::start_env(
        &bao.addr,
        &[
            &format!("-allowed-vault-addrs={unreachable}"),
            "-template-fuel=1000",
        ],
        &[("KUBECONFIG", &kubeconfig)],
    )
    .await;
    let client = provider.client().await;
    // The pod of the page's examples: default/app.
    let pod = |sa: &str, ns: &str| Pod {
        namespace: ns.into(),
        name: "app".into(),
        uid: format!("uid-{}", rand_suffix()),
        service_account: sa.into(),
    };
    let app = pod("app", "default");
    let class = |objects: &str| json!({"roleName": "app", "objects": objects});
    let db = "- {objectName: db-password, secretPath: secret/data/app/db, secretKey: password}";
    let mut mismatch = app.request(class(db));
    {
        let mut attrs: serde_json::Value = serde_json::from_str(&mismatch.attributes).unwrap();
        let other = Pod {
            name: "web".into(),
            ..pod("web", "default")
        };
        attrs["csi.storage.k8s.io/serviceAccount.tokens"] = json!(
            json!({"vault": {"token": other.token("vault"), "expirationTimestamp": ""}})
                .to_string()
        );
        mismatch.attributes = attrs.to_string();
    }
    let big = "x".repeat(70000);
    let with = |extra: serde_json::Value, objects: &str| {
        let mut c = class(objects);
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let cases = vec![
        ("wrong service account", pod("web", "default").request(class(db))),
        ("wrong namespace", pod("app", "prod").request(class(db))),
        ("no such role", app.request(json!({"roleName": "ap", "objects": db}))),
        (
            "no such auth mount",
            app.request(with(json!({"vaultAuthMountPath": "k8s"}), db)),
        ),
        (
            "read denied",
            app.request(class(
                "- {objectName: other, secretPath: secret/data/other, secretKey: k}",
            )),
        ),
        (
            "no secret",
            app.request(class(
                "- {objectName: db, secretPath: secret/data/app/dbb, secretKey: password}",
            )),
        ),
        (
            "missing key",
            app.request(class(
                "- {objectName: db-password, secretPath: secret/data/app/db, secretKey: pasword}",
            )),
        ),
        (
            "unreachable",
            app.request(with(json!({"vaultAddress": unreachable}), db)),
        ),
        (
            "refused address",
            app.request(with(
                json!({"vaultAddress": "https://vault.example.com"}),
                db,
            )),
        ),
        (
            "unknown encoding",
            app.request(class("- {objectName: db-password, secretPath: secret/data/app/db, secretKey: password, encoding: b64}")),
        ),
        (
            "bad file mode",
            app.request(class("- {objectName: db-password, secretPath: secret/data/app/db, secretKey: password, filePermission: 0999}")),
        ),
        (
            "duplicate",
            app.request(class("- {objectName: a, secretPath: secret/data/app/db, secretKey: password}\n- {objectName: a, secretPath: secret/data/app/db, secretKey: username}")),
        ),
        (
            "file and directory",
            app.request(class("- {objectName: a, secretPath: secret/data/app/db}\n- {objectName: a/b, secretPath: secret/data/app/db}")),
        ),
        (
            "no role",
            app.request(json!({"objects": "- {objectName: a, secretPath: secret/data/app/db}"})),
        ),
        ("no objects", app.request(json!({"roleName": "app"}))),
        (
            "tab in YAML",
            app.request(class("- objectName: a\n\tsecretPath: x")),
        ),
        ("no objectName", app.request(class("- {secretPath: secret/data/app/db}"))),
        ("no secretPath", app.request(class("- {objectName: a}"))),
        ("unsafe name", app.request(class("- {objectName: ../a, secretPath: secret/data/app/db}"))),
        (
            "both key and selector",
            app.request(class("- {objectName: a, secretPath: secret/data/app/db, secretKey: x, selector: /x}")),
        ),
        (
            "bad method",
            app.request(class("- {objectName: a, secretPath: secret/data/app/db, method: DELETE}")),
        ),
        (
            "not a boolean",
            app.request(with(
                json!({"vaultSkipTLSVerify": "yes"}),
                "- {objectName: a, secretPath: secret/data/app/db}",
            )),
        ),
        (
            "both auth mounts",
            app.request(with(
                json!({"vaultAuthMountPath": "a", "vaultKubernetesMountPath": "b"}),
                "- {objectName: a, secretPath: secret/data/app/db}",
            )),
        ),
        ("another pod's token", mismatch),
        (
            "token request refused",
            app.request_with(class(db), None, false),
        ),
        (
            "selector",
            app.request(class("- {objectName: a, secretPath: secret/data/app/db, selector: /db/password}")),
        ),
        (
            "index",
            app.request(class("- {objectName: b, secretPath: secret/data/app/more, selector: /brokers/5}")),
        ),
        (
            "not a map",
            app.request(class("- {objectName: env, secretPath: secret/data/app/more, selector: /brokers, allKeys: true}")),
        ),
        (
            "no keys",
            app.request(class("- {objectName: env, secretPath: secret/data/app/empty, allKeys: true}")),
        ),
        (
            "unsafe key",
            app.request(class("- {objectName: env, secretPath: secret/data/app/env, allKeys: true}")),
        ),
        (
            "not base64",
            app.request(class("- {objectName: ca.der, secretPath: secret/data/app/more, secretKey: ca, encoding: base64}")),
        ),
        (
            "template syntax",
            app.request(class("- {objectName: a, secretPath: secret/data/app/db, template: '{{ secret.password '}")),
        ),
        (
            "template undefined",
            app.request(class("- {objectName: a, secretPath: secret/data/app/db, template: '{{ secret.pasword }}'}")),
        ),
        (
            "unknown filter",
            app.request(class("- {objectName: a, secretPath: secret/data/app/db, template: '{{ secret.password | sha256 }}'}")),
        ),
        (
            "out of fuel",
            app.request(class("- {objectName: a, secretPath: secret/data/app/db, template: '{% for i in range(100000) %}x{% endfor %}'}")),
        ),
        (
            "template too long",
            app.request(class(&format!(
                "- {{objectName: a, secretPath: secret/data/app/db, template: '{big}'}}"
            ))),
        ),
        (
            "template render",
            app.request(class("- {objectName: a, secretPath: secret/data/app/db, template: '{{ secret.brokers | b64decode }}'}")),
        ),
        (
            "unreadable CA file",
            app.request(with(
                json!({"vaultCACertPath": "/vault/tls/ca.pem"}),
                "- {objectName: a, secretPath: secret/data/app/db}",
            )),
        ),
    ];
    let section = section();
    let table_lines: Vec<&str> = section.lines().filter(|l| l.starts_with('|')).collect();
    let mut seen = BTreeSet::new();
    for (what, req) in cases {
        let err = match client.mount(req).await {
            Ok(r) => panic!(
                "{what}: mounted {:?}",
                r.files.iter().map(|f| &f.path).collect::<Vec<_>>()
            ),
            Err(e) => e,
        };
        let message = err
            .message()
            .strip_prefix("vault-csi-provider: ")
            .unwrap_or_else(|| panic!("{what}: {}", err.message()))
            // The page's examples name the cluster's Vault and the provider's namespace.
            .replace(unreachable, "https://vault.vault.svc:8200")
            .replace(
                "system:serviceaccount:csi:",
                "system:serviceaccount:vault-csi-provider:",
            );
        let quoted = format!("`{message}`");
        let row = table_lines
            .iter()
            .find(|l| l.contains(&quoted))
            .unwrap_or_else(|| {
                panic!(
                    "{what}: the Troubleshooting tables of {PAGE} do not show the real \
                     message word for word:\n{quoted}"
                )
            });
        let code = code_name(err.code());
        assert!(
            row.contains(&format!("| {code} |")),
            "{what}: the row does not give the code {code}:\n{row}"
        );
        seen.insert(what);
    }
    assert_eq!(seen.len(), 38);
}
