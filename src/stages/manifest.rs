//! SecretProviderClass manifests checked before they reach a cluster (the `check`
//! subcommand): every class for `vault` or `openbao` in a YAML stream goes through the very
//! parse a Mount does (its parameters, the objects, templates compiled, selectors, file
//! names, encodings and modes), the operator's tenant limits, and its `secretObjects`
//! against the objects it declares. Pure: nothing is read, no Vault, no Kubernetes, no file
//! a class names (TLS files are checked as paths, never opened).

use crate::stages::flavour::Flavour;
use crate::stages::plan::{self, Attributes, MountPlan, ObjectKind, RawMount};
use crate::stages::policy::TenantPolicy;
use serde::Deserialize;
use serde_yaml_ng::Value;
use std::collections::{BTreeMap, HashMap};

/// The providers whose classes this program serves.
pub const PROVIDERS: [&str; 2] = ["vault", "openbao"];

/// One thing to fix in one class.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The YAML document it is in, counted from 1 in its file (a `kind: List`'s items
    /// share their list's number).
    pub document: usize,
    /// `namespace/name` of the class, or its name when it names no namespace.
    pub class: String,
    /// The parameter (or `secretObjects` entry) at fault, when one is.
    pub parameter: Option<String>,
    pub message: String,
}

/// What one YAML stream holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Classes for `vault` or `openbao` that were checked.
    pub checked: usize,
    /// Documents skipped: other kinds, other providers' classes, empty documents.
    pub skipped: usize,
    pub problems: Vec<Problem>,
}

/// A stream that is not YAML: nothing in it can be checked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("document {document} is not valid YAML: {reason}")]
pub struct NotYaml {
    pub document: usize,
    pub reason: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Metadata {
    name: String,
    namespace: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Spec {
    provider: String,
    parameters: BTreeMap<String, Value>,
    secret_objects: Vec<SecretObject>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SecretObject {
    secret_name: String,
    #[serde(rename = "type")]
    kind: String,
    data: Vec<SyncData>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SyncData {
    key: String,
    object_name: String,
}

/// Checks every class of `text` (one or more YAML documents) for this program's providers.
pub fn check(text: &str, policy: &TenantPolicy) -> Result<Report, NotYaml> {
    let mut report = Report::default();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let value = Value::deserialize(doc).map_err(|e| NotYaml {
            document,
            reason: e.to_string(),
        })?;
        let items = match kind(&value) {
            "List" => value
                .get("items")
                .and_then(Value::as_sequence)
                .cloned()
                .unwrap_or_default(),
            _ => vec![value],
        };
        for item in items {
            if kind(&item) != "SecretProviderClass" || !PROVIDERS.contains(&provider(&item)) {
                report.skipped += 1;
                continue;
            }
            report.checked += 1;
            report
                .problems
                .extend(check_class(&item, policy).into_iter().map(
                    |(class, parameter, message)| Problem {
                        document,
                        class,
                        parameter,
                        message,
                    },
                ));
        }
    }
    Ok(report)
}

fn kind(value: &Value) -> &str {
    value.get("kind").and_then(Value::as_str).unwrap_or("")
}

fn provider(value: &Value) -> &str {
    value
        .get("spec")
        .and_then(|s| s.get("provider"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// One class's problems: (class, parameter, message).
fn check_class(value: &Value, policy: &TenantPolicy) -> Vec<(String, Option<String>, String)> {
    let metadata: Metadata = value
        .get("metadata")
        .and_then(|m| serde_yaml_ng::from_value(m.clone()).ok())
        .unwrap_or_default();
    let class = match &metadata.namespace {
        Some(ns) if !ns.is_empty() => format!("{ns}/{}", metadata.name),
        _ if metadata.name.is_empty() => "(no metadata.name)".to_string(),
        _ => metadata.name.clone(),
    };
    let mut problems = Vec::new();
    let mut problem = |parameter: Option<&str>, message: String| {
        problems.push((class.clone(), parameter.map(str::to_string), message));
    };
    let spec: Spec = match value
        .get("spec")
        .map(|s| serde_yaml_ng::from_value(s.clone()))
    {
        Some(Ok(spec)) => spec,
        Some(Err(e)) => {
            problem(None, format!("spec is not a SecretProviderClass spec: {e}"));
            return problems;
        }
        None => {
            problem(None, "the class has no spec".to_string());
            return problems;
        }
    };
    if metadata.name.is_empty() {
        problem(None, "metadata.name is missing: Kubernetes needs it".into());
    }

    // A key no Mount reads is most likely a misspelling: the Mount would go on without it.
    let known = plan::parameter_names();
    for key in spec.parameters.keys() {
        if !known.contains(key) && !key.starts_with(KUBELET_PREFIX) {
            let hint = closest(key, &known)
                .map(|k| format!(": did you mean {k}?"))
                .unwrap_or_else(|| ": a Mount ignores it".to_string());
            problem(
                Some(key),
                format!("is not a parameter this provider reads{hint}"),
            );
        }
    }

    // Kubernetes keeps only strings in spec.parameters; what is not one would not be applied.
    let mut parameters = HashMap::new();
    for (key, value) in &spec.parameters {
        match value {
            Value::String(s) => {
                parameters.insert(key.clone(), s.clone());
            }
            other => {
                let shown = serde_yaml_ng::to_string(other).unwrap_or_default();
                problem(
                    Some(key),
                    format!(
                        "is not a string ({}): spec.parameters only holds strings, quote the value",
                        shown.trim()
                    ),
                );
            }
        }
    }
    let attributes = Attributes::from_parameters(parameters);
    let raw = RawMount {
        attributes: &attributes,
        secrets: "null",
        // What the driver sends for the default filePermission (0644).
        permission: "420",
        flavour: Flavour::of_provider(&spec.provider),
    };
    let plan = match plan::parse(&raw) {
        Ok(plan) => plan,
        Err(e) => {
            problem(e.parameter(), e.to_string());
            return problems;
        }
    };
    if let Err(refused) = policy.check(&plan) {
        problem(Some(refused.attribute), refused.to_string());
    }
    for (i, object) in spec.secret_objects.iter().enumerate() {
        let at = format!("secretObjects[{i}]");
        if object.secret_name.is_empty() {
            problem(
                Some(&at),
                "secretName is missing: name the Secret to sync".into(),
            );
        }
        if object.kind.is_empty() {
            problem(
                Some(&at),
                "type is missing: the driver needs the Secret's type (Opaque, kubernetes.io/tls, ...)"
                    .into(),
            );
        }
        for (j, data) in object.data.iter().enumerate() {
            let at = format!("{at}.data[{j}]");
            if data.key.is_empty() {
                problem(
                    Some(&at),
                    "key is missing: name the key in the Secret".into(),
                );
            }
            if !declares(&plan, &data.object_name) {
                problem(
                    Some(&at),
                    format!(
                        "objectName {} is not a file of this class: use one of {}",
                        crate::text::quote(&data.object_name),
                        files(&plan)
                    ),
                );
            }
        }
    }
    problems
}

/// The attributes kubelet and the driver add to a class's parameters (pod, service account).
const KUBELET_PREFIX: &str = "csi.storage.k8s.io/";

/// The known name nearest to `key`: the same letters in another case, or at most two
/// edits away (a letter left out, added, changed).
fn closest<'a>(key: &str, known: &'a [String]) -> Option<&'a str> {
    let lower = key.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (edits(&lower, &k.to_ascii_lowercase()), k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

/// Levenshtein distance (keys are short: at most a few dozen bytes are compared).
fn edits(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 2 || a.len() > 64 {
        return usize::MAX;
    }
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Whether a Mount of `plan` writes the file `name`: an object's own file, or a file under
/// an `allKeys` object's directory (its keys are Vault's, not known before the read).
fn declares(plan: &MountPlan, name: &str) -> bool {
    plan.objects.iter().any(|o| match o.kind {
        ObjectKind::AllKeys(_) => name
            .strip_prefix(o.name.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|key| !key.is_empty()),
        _ => o.name == name,
    })
}

/// The class's files, for a message: `a`, `b`, `dir/*`.
fn files(plan: &MountPlan) -> String {
    let names: Vec<String> = plan
        .objects
        .iter()
        .map(|o| match o.kind {
            ObjectKind::AllKeys(_) => format!("{}/<key>", o.name),
            _ => o.name.clone(),
        })
        .collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASS: &str = r#"
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: app, namespace: team}
spec:
  provider: vault
  secretObjects:
    - secretName: app
      type: Opaque
      data:
        - {key: password, objectName: db-password}
        - {key: cfg, objectName: config/user}
  parameters:
    roleName: app
    objects: |
      - objectName: db-password
        secretPath: secret/data/db
        secretKey: password
      - objectName: config
        secretPath: secret/data/cfg
        allKeys: true
"#;

    fn problems(text: &str) -> Vec<Problem> {
        check(text, &TenantPolicy::default()).unwrap().problems
    }

    #[test]
    fn a_good_class_passes_and_other_documents_are_skipped() {
        let stream = format!(
            "{CLASS}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n---\n{}",
            CLASS.replace("provider: vault", "provider: azure")
        );
        let report = check(&stream, &TenantPolicy::default()).unwrap();
        assert_eq!(report.problems, vec![]);
        assert_eq!((report.checked, report.skipped), (1, 2));
    }

    #[test]
    fn each_problem_names_document_class_and_parameter() {
        let stream = format!(
            "{CLASS}---\n{}",
            CLASS
                .replace(
                    "roleName: app\n",
                    "roleName: app\n    vaultSkipTLSVerify: 1\n"
                )
                .replace(
                    "secretKey: password",
                    "secretKey: password\n        encoding: rot13"
                )
                .replace("objectName: config/user", "objectName: nope")
        );
        let p = problems(&stream);
        assert_eq!(p.len(), 2, "{p:#?}");
        assert_eq!(p[0].document, 2);
        assert_eq!(p[0].class, "team/app");
        assert_eq!(p[0].parameter.as_deref(), Some("vaultSkipTLSVerify"));
        assert!(p[0].message.contains("quote"), "{}", p[0].message);
        assert_eq!(p[1].parameter.as_deref(), Some("objects"));
        assert!(p[1].message.contains("rot13"), "{}", p[1].message);
    }

    #[test]
    fn sync_entries_must_name_the_class_files() {
        let p = problems(&CLASS.replace("objectName: config/user", "objectName: db-pass"));
        assert_eq!(p.len(), 1, "{p:#?}");
        assert_eq!(p[0].parameter.as_deref(), Some("secretObjects[0].data[1]"));
        assert!(
            p[0].message.contains("\"db-pass\"") && p[0].message.contains("config/<key>"),
            "{}",
            p[0].message
        );
        let p = problems(&CLASS.replace("      type: Opaque\n", ""));
        assert_eq!(p[0].parameter.as_deref(), Some("secretObjects[0]"));
    }

    #[test]
    fn templates_are_compiled_and_tenant_limits_applied() {
        let broken = CLASS.replace(
            "        allKeys: true\n",
            "        allKeys: true\n      - objectName: t\n        template: \"{{ x \"\n",
        );
        let p = problems(&broken);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(p[0].message.contains("template"), "{}", p[0].message);

        let policy = TenantPolicy {
            vault_addrs: Some(vec!["https://vault.example:8200".into()]),
            ..TenantPolicy::default()
        };
        let elsewhere = CLASS.replace(
            "roleName: app\n",
            "roleName: app\n    vaultAddress: https://evil.example\n",
        );
        let p = check(&elsewhere, &policy).unwrap().problems;
        assert_eq!(p[0].parameter.as_deref(), Some("vaultAddress"));
        assert!(
            p[0].message.contains("-allowed-vault-addrs"),
            "{}",
            p[0].message
        );
    }

    #[test]
    fn a_misspelt_parameter_is_named_with_the_one_meant() {
        let p = problems(&CLASS.replace(
            "roleName: app\n",
            "roleName: app\n    vaultAdress: https://v\n    VaultNamespace: ns\n    colour: red\n",
        ));
        let found: Vec<(&str, &str)> = p
            .iter()
            .map(|p| (p.parameter.as_deref().unwrap(), p.message.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "VaultNamespace",
                    "is not a parameter this provider reads: did you mean vaultNamespace?"
                ),
                (
                    "colour",
                    "is not a parameter this provider reads: a Mount ignores it"
                ),
                (
                    "vaultAdress",
                    "is not a parameter this provider reads: did you mean vaultAddress?"
                ),
            ]
        );
        // Every spelling a Mount reads passes, the OpenBao fork's included.
        let all = CLASS.replace(
            "roleName: app\n",
            "roleName: app\n    baoNamespace: ns\n    openbaoTLSServerName: v\n    vaultKubernetesMountPath: k\n",
        );
        assert_eq!(problems(&all), vec![]);
        assert_eq!(edits("kitten", "sitting"), 3);
        assert_eq!(edits("a", "abcd"), usize::MAX);
        assert_eq!(edits("rolename", "rolenam"), 1);
    }

    #[test]
    fn lists_are_opened_and_bad_yaml_is_unusable() {
        let list = format!(
            "apiVersion: v1\nkind: List\nitems:\n{}",
            CLASS
                .replace("roleName: app", "roleName: ''")
                .trim_start()
                .lines()
                .enumerate()
                .map(|(i, l)| format!("{}{l}\n", if i == 0 { "- " } else { "  " }))
                .collect::<String>()
        );
        let p = problems(&list);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert_eq!(p[0].document, 1);
        let e = check("a: [\n---\n", &TenantPolicy::default()).unwrap_err();
        assert_eq!(e.document, 1);
    }
}
