//! `vault-csi-provider check`: SecretProviderClass manifests validated offline, as a CI step
//! would run it (the binary, its exit status, its lines and its JSON), and the program's
//! help (subcommands, environment, typed flags).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `check` with `stdin` on standard input.
fn check_stdin(args: &[&str], stdin: &str) -> Output {
    let no_vars: [(&str, &str); 0] = [];
    output_with_stdin(
        &mut provider_command(["check"].iter().chain(args), Path::new(NO_HOME), no_vars),
        stdin.as_bytes(),
    )
}

const GOOD: &str = r#"apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: app
  namespace: team
spec:
  provider: vault
  secretObjects:
    - secretName: app
      type: Opaque
      data:
        - key: password
          objectName: db-password
  parameters:
    roleName: app
    vaultAddress: https://vault.invalid:8200
    vaultCACertPath: /nonexistent/ca.pem
    objects: |
      - objectName: db-password
        secretPath: secret/data/db
        secretKey: password
      - objectName: url
        secretPath: secret/data/db
        template: "postgres://{{ secret.data.data.user }}@db"
"#;

/// A directory of manifests: a good class, a bad one, other kinds, another provider's.
fn manifests() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a-good.yaml"), GOOD).unwrap();
    let bad = GOOD
        .replace("name: app\n  namespace", "name: bad\n  namespace")
        .replace(
            "objectName: db-password\n  parameters",
            "objectName: nope\n  parameters",
        )
        .replace(
            "secretKey: password\n",
            "secretKey: password\n        encoding: rot13\n",
        );
    let other = GOOD
        .replace("provider: vault", "provider: azure")
        .replace("rot13", "x");
    std::fs::write(
        dir.path().join("b-bad.yml"),
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n---\n{bad}---\n{other}"),
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not read").unwrap();
    dir
}

#[test]
fn a_pipeline_gets_one_line_per_problem_and_exit_status_one() {
    let dir = manifests();
    let d = dir.path().display().to_string();
    let out = run_provider(["check", d.as_str()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let bad = format!("{d}/b-bad.yml");
    // The objects' error comes first (a Mount would stop there); the sync entry cannot be
    // checked against objects that do not parse, so a clean objects list is needed for it.
    assert_eq!(
        stdout,
        format!(
            "{bad}: document 2: class team/bad: parameter objects: object \"db-password\": \
             encoding \"rot13\" is not known: use utf-8, base64 or hex\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "checked 2 SecretProviderClasses for vault or openbao in 2 inputs: 1 problem"
        ),
        "{stderr}"
    );

    // The sync entry alone, in JSON for CI.
    let only_sync = GOOD.replace(
        "objectName: db-password\n  parameters",
        "objectName: nope\n  parameters",
    );
    let out = check_stdin(&["-output", "json", "-"], &only_sync);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        rows,
        serde_json::json!([{
            "file": "<stdin>",
            "document": 1,
            "class": "team/app",
            "parameter": "secretObjects[0].data[0]",
            "message": "objectName \"nope\" is not a file of this class: use one of db-password, url"
        }])
    );
}

#[test]
fn a_clean_class_passes_without_vault_kubernetes_or_its_tls_files() {
    // The class names an address that does not resolve and a CA file that does not exist:
    // neither is touched. No KUBECONFIG, no HOME: nothing to reach Kubernetes with.
    let out = check_stdin(&["-"], GOOD);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(stdout, "");
    assert!(
        stderr
            .contains("checked 1 SecretProviderClass for vault or openbao in 1 input: 0 problems"),
        "{stderr}"
    );

    // The operator's tenant limits, when given, apply as on the node.
    let out = check_stdin(
        &[
            "-",
            "-allowed-tls-dirs=/etc/vault-tls",
            "-allowed-vault-addrs",
            "https://vault.invalid:8200",
        ],
        GOOD,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("<stdin>: document 1: class team/app: parameter vaultCACertPath: ")
            && stdout.contains("-allowed-tls-dirs"),
        "{stdout}"
    );
    let out = check_stdin(
        &["-allow-class-audience=false", "-"],
        &GOOD.replace("roleName: app", "roleName: app\n    audience: other"),
    );
    let (stdout, _) = text(&out);
    assert!(stdout.contains("parameter audience: "), "{stdout}");
}

#[test]
fn unusable_input_is_exit_status_two() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml").display().to_string();
    let cases: Vec<(Vec<String>, &str, &str)> = vec![
        (vec![missing.clone()], "", "missing.yaml: No such file"),
        (
            vec!["-".into()],
            "a: [\n",
            "<stdin>: document 1 is not valid YAML",
        ),
        (
            vec![dir.path().display().to_string()],
            "",
            "no .yaml or .yml files",
        ),
        (
            vec!["-output=xml".into(), "-".into()],
            "",
            "use text or json",
        ),
        (vec![], "", "name the manifests to check"),
        (
            vec!["-allowed-tls-dirs=relative".into(), "-".into()],
            "",
            "use absolute directories",
        ),
    ];
    for (args, stdin, says) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = check_stdin(&args, stdin);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// Every kit, example and documented class passes: the files under deploy/, each kit as
/// kustomize renders it, and every SecretProviderClass shown in the README and the pages of docs/.
#[test]
fn the_projects_own_classes_pass() {
    let deploy = repo().join("deploy").display().to_string();
    let out = run_provider(["check", deploy.as_str()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "deploy/: {stdout}{stderr}");
    let checked: usize = stderr
        .split("checked ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        checked >= 8,
        "deploy/ holds the examples' classes: {stderr}"
    );

    let mut kits = Vec::new();
    find_kustomizations(&repo().join("deploy"), &mut kits);
    assert!(kits.len() >= 5, "{kits:?}");
    for kit in kits {
        let rendered = Command::new("kubectl")
            .args(["kustomize", &kit.display().to_string()])
            .output()
            .expect("kubectl is needed (scripts/setup.sh installs it)");
        assert!(rendered.status.success(), "{}: {rendered:?}", kit.display());
        let out = check_stdin(&["-"], &String::from_utf8_lossy(&rendered.stdout));
        let (stdout, stderr) = text(&out);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {stdout}{stderr}",
            kit.display()
        );
    }

    let mut shown = 0;
    let mut docs: Vec<PathBuf> = vec![repo().join("README.md")];
    if let Ok(entries) = std::fs::read_dir(repo().join("docs")) {
        docs.extend(entries.map(|e| e.unwrap().path()));
    }
    for doc in docs
        .iter()
        .filter(|d| d.extension().is_some_and(|e| e == "md"))
    {
        let markdown = std::fs::read_to_string(doc).unwrap();
        for block in markdown.split("```yaml\n").skip(1) {
            let block = block.split("\n```").next().unwrap();
            if !block.contains("kind: SecretProviderClass") {
                continue;
            }
            shown += 1;
            let out = check_stdin(&["-"], block);
            let (stdout, stderr) = text(&out);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}: {stdout}{stderr}\n{block}",
                doc.display()
            );
        }
    }
    assert!(shown >= 2, "the docs show classes: {shown}");
}

fn find_kustomizations(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            find_kustomizations(&p, out);
        } else if p.file_name().is_some_and(|n| n == "kustomization.yaml")
            && !std::fs::read_to_string(&p)
                .unwrap()
                .contains("kind: Component")
            // The Helm post-renderer's kustomization reads the chart's output at run time.
            && !dir.ends_with("deploy/helm")
        {
            out.push(dir.to_path_buf());
        }
    }
}

// ---- Help ---------------------------------------------------------------------------

#[test]
fn help_lists_subcommands_environment_and_typed_flags() {
    for args in [&["help"][..], &["-h"], &["--help"]] {
        let out = run_provider(args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        for line in [
            "vault-csi-provider mount -class FILE -token-file FILE [flags]",
            "vault-csi-provider check [flags] FILE|DIR|- ...",
            "vault-csi-provider version [-output json|yaml|json-pretty]",
            "vault-csi-provider help [SUBCOMMAND]",
            "  -cache-size int\n",
            "  -shutdown-grace duration\n",
            "  -lease-renewal\n",
            "(default true)",
        ] {
            assert!(stdout.contains(line), "{args:?} lacks {line:?}:\n{stdout}");
        }
        // Every variable the source reads from the environment is listed.
        for name in env_names_in_source() {
            assert!(
                stdout.contains(&format!("\n  {name} ")),
                "{name} not in the help"
            );
        }
    }
    for sub in ["mount", "check", "version"] {
        let out = run_provider(["help", sub]);
        let (stdout, _) = text(&out);
        assert_eq!(out.status.code(), Some(0));
        assert!(
            stdout.starts_with(&format!("Usage: vault-csi-provider {sub} ")),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("Example:\n  vault-csi-provider {sub} ")),
            "{stdout}"
        );
        let out = run_provider([sub, "-h"]);
        assert_eq!(text(&out).0, stdout, "{sub} -h is help {sub}");
    }
    let out = run_provider(["help", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run_provider(["help", "help"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out).0, text(&run_provider(["help"])).0);
    let out = run_provider(["version", "-output=yaml"]);
    assert!(text(&out).0.contains("commit: "), "{:?}", out);
}

/// `"VAULT_..."`, `"NODE_NAME"` and `"KUBECONFIG"` as string literals in src/.
fn env_names_in_source() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for start in ["\"VAULT_", "\"NODE_NAME\"", "\"KUBECONFIG\""] {
                    for (i, _) in text.match_indices(start) {
                        let name: String = text[i + 1..]
                            .chars()
                            .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                            .collect();
                        if text[i + 1 + name.len()..].starts_with('"') {
                            out.push(name);
                        }
                    }
                }
            }
        }
    }
    let mut names = Vec::new();
    walk(&repo().join("src"), &mut names);
    names.sort();
    names.dedup();
    assert!(names.len() >= 12, "{names:?}");
    names
}

/// docs/configuration.md's flag table (its "## Flags" section, first column, flags
/// separated by ", ") names exactly the server's flags, as `help` prints them.
#[test]
fn the_flag_reference_lists_exactly_the_binarys_flags() {
    let out = run_provider(["help"]);
    let (stdout, _) = text(&out);
    let server = stdout
        .split("\nFlags of the server:\n")
        .nth(1)
        .expect("help has the server's flags");
    let binary: std::collections::BTreeSet<String> = server
        .lines()
        .filter_map(|l| l.strip_prefix("  -"))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    assert!(binary.len() >= 30, "{binary:?}");

    let page = std::fs::read_to_string(repo().join("docs/configuration.md")).unwrap();
    let section = page
        .split("\n## Flags\n")
        .nth(1)
        .expect("docs/configuration.md has a \"## Flags\" section")
        .split("\n## ")
        .next()
        .unwrap();
    let mut documented = std::collections::BTreeSet::new();
    for row in section.lines().filter(|l| l.starts_with("| `-")) {
        let first = row.split('|').nth(1).unwrap();
        for flag in first.split(", ") {
            let name = flag.trim().trim_matches('`').trim_start_matches('-');
            assert!(
                documented.insert(name.to_string()),
                "-{name} is listed twice"
            );
        }
    }
    let missing: Vec<_> = binary.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&binary).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/configuration.md's flag table: not listed {missing:?}, not flags of the binary {extra:?}"
    );
}
