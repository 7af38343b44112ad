//! The install kits' tools: `kubectl kustomize` to render them, kubernetes-validate
//! (pinned in scripts/setup.sh) to check every object strictly, and
//! `tests/python/crd_validate.py` for the Prometheus Operator's custom resources, which
//! kubernetes-validate does not know. Fail, never skip, when a tool is missing.

use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// kubernetes-validate as pinned in scripts/setup.sh.
pub const KUBERNETES_VALIDATE_VERSION: &str = "1.37.0";
/// The oldest and the newest Kubernetes whose schemas kubernetes-validate 1.37.0 bundles
/// (1.25 to 1.37); the Secrets Store CSI driver needs 1.21 or later, so both are supported.
pub const KUBERNETES_VERSIONS: [&str; 2] = ["1.25.0", "1.37.0"];

pub const SETUP_HINT: &str = "run scripts/setup.sh";

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The node a kit's pod is taken to run on, where the downward API names it.
pub const NODE_NAME: &str = "node-under-test";

/// A container's environment as kubelet resolves it: plain values, and the downward API's
/// `spec.nodeName` (as [`NODE_NAME`]) and `metadata.namespace`.
pub fn container_env(c: &Value) -> Vec<(String, String)> {
    c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let name = e["name"].as_str().expect("env without a name").to_string();
            let value = match (
                e["value"].as_str(),
                e["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
            ) {
                (Some(v), _) => v.to_string(),
                (None, Some("spec.nodeName")) => NODE_NAME.to_string(),
                (None, Some("metadata.namespace")) => "vault-csi-provider".to_string(),
                _ => panic!("{name}: neither a value nor a known downward API field: {e}"),
            };
            (name, value)
        })
        .collect()
}

pub fn in_path(name: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .ok()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

pub fn kubectl() -> PathBuf {
    in_path("kubectl").unwrap_or_else(|| {
        panic!(
            "kubectl was not found in PATH; the install-kit tests render deploy/ with \
             `kubectl kustomize`. {SETUP_HINT} (it installs Debian's kubernetes-client when \
             that is 1.21 or later; Debian 12's is 1.20, too old), or install kubectl 1.21 or \
             later as https://kubernetes.io/docs/tasks/tools/ describes"
        )
    })
}

pub fn kubernetes_validate() -> PathBuf {
    let local = repo().join(".tools/venv/bin/kubernetes-validate");
    let bin = if local.is_file() {
        local
    } else {
        in_path("kubernetes-validate").unwrap_or_else(|| {
            panic!(
                "kubernetes-validate was not found in .tools/venv or PATH: {SETUP_HINT} \
                 (installs kubernetes-validate=={KUBERNETES_VALIDATE_VERSION} into .tools/venv)"
            )
        })
    };
    let out = Command::new(&bin).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        version,
        KUBERNETES_VALIDATE_VERSION,
        "{} is kubernetes-validate {version}, the tests pin {KUBERNETES_VALIDATE_VERSION}: {SETUP_HINT}",
        bin.display()
    );
    bin
}

/// `kubectl kustomize` of one kit; it must render without a word on stderr (a deprecated
/// field is a warning there).
pub fn render(kit: &str) -> String {
    let out = Command::new(kubectl())
        .arg("kustomize")
        .arg(repo().join(kit))
        .output()
        .expect("cannot run kubectl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kubectl kustomize {kit} failed ({}): {stderr}\nkubectl's built-in kustomize must be \
         v4 or later (kubectl 1.21+): `kubectl version --client`",
        out.status
    );
    assert!(
        stderr.trim().is_empty(),
        "kubectl kustomize {kit} warned: {stderr}"
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The documents of a YAML stream, as JSON values.
pub fn documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| serde_yaml_ng::Value::deserialize(d).expect("invalid YAML"))
        .filter(|v| !v.is_null())
        .map(|v| serde_json::to_value(v).unwrap())
        .collect()
}

pub fn object_id(o: &Value) -> String {
    format!(
        "{}/{}",
        o["kind"].as_str().unwrap().to_lowercase(),
        o["metadata"]["name"].as_str().unwrap()
    )
}

/// Validates every object of `files` (a name for messages, the file, its objects) strictly
/// against each of [`KUBERNETES_VERSIONS`], and checks that none was skipped as unknown.
pub fn validate_strictly(files: &[(String, PathBuf, Vec<Value>)]) {
    let validator = kubernetes_validate();
    for version in KUBERNETES_VERSIONS {
        let out = Command::new(&validator)
            .args(["--strict", "-k", version])
            .args(files.iter().map(|(_, f, _)| f))
            .output()
            .unwrap();
        let report = printed(&out);
        assert!(
            out.status.success(),
            "strict validation against Kubernetes {version} failed:\n{report}"
        );
        let minor = version.trim_end_matches(".0");
        // Every object was validated (none skipped as unknown), in every file.
        for (kit, file, objs) in files {
            for o in objs {
                let line = format!(
                    "{} passed for resource {} against version {minor}",
                    file.display(),
                    object_id(o)
                );
                assert!(
                    report.contains(&line),
                    "{kit}: {} not validated against {version}:\n{report}",
                    object_id(o)
                );
            }
        }
    }
}

/// The openAPIV3Schema of each Prometheus Operator CRD that the optional component
/// `deploy/components/prometheus-operator` uses, vendored: its README.md says from where.
pub const CRD_SCHEMAS: &str = "tests/fixtures/prometheus-operator";

/// `tests/python/crd_validate.py` on `files`: every custom resource strictly against its
/// CRD's schema in [`CRD_SCHEMAS`] (an unknown field is an error, as with the API server's
/// strict field validation), `metadata` against ObjectMeta of Kubernetes `version`. Its
/// report (`PASS FILE kind/name` or `FAIL ...` per object), and whether all passed.
pub fn crd_validate(version: &str, files: &[&Path]) -> (bool, String) {
    // The venv's Python has jsonschema and the ObjectMeta schemas: kubernetes-validate's.
    kubernetes_validate();
    let python = repo().join(".tools/venv/bin/python");
    assert!(
        python.is_file(),
        "{} was not found: {SETUP_HINT} (the custom resources are checked with the jsonschema \
         package that kubernetes-validate installs into .tools/venv)",
        python.display()
    );
    let out = Command::new(&python)
        .arg(repo().join("tests/python/crd_validate.py"))
        .arg(repo().join(CRD_SCHEMAS))
        .arg(version)
        .args(files)
        .output()
        .unwrap();
    (out.status.success(), printed(&out))
}

/// What a validator printed, standard output then standard error.
fn printed(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Validates every custom resource of `files` (a name for messages, the file, its objects)
/// with [`crd_validate`] for each of [`KUBERNETES_VERSIONS`], and checks that each object
/// was reported as passed (none without a schema).
pub fn validate_custom_resources(files: &[(String, PathBuf, Vec<Value>)]) {
    let paths: Vec<&Path> = files.iter().map(|(_, f, _)| f.as_path()).collect();
    for version in KUBERNETES_VERSIONS {
        let (passed, report) = crd_validate(version, &paths);
        assert!(
            passed,
            "custom resources against their CRDs (ObjectMeta of Kubernetes {version}) failed:\n{report}"
        );
        for (kit, file, objs) in files {
            for o in objs {
                let line = format!("PASS {} {}", file.display(), object_id(o));
                assert!(
                    report.lines().any(|l| l == line),
                    "{kit}: {} not validated against its CRD:\n{report}",
                    object_id(o)
                );
            }
        }
    }
}
