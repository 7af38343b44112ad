//! The install guide (docs/install.md), and the YAML of the migration and troubleshooting
//! pages (docs/migration.md, docs/troubleshooting.md), cannot rot:
//! - every YAML snippet in those pages is a file of `deploy/examples/install/` or
//!   `deploy/examples/migration/`, shown verbatim, and every such file is shown;
//! - every Kubernetes object in them validates strictly against the Kubernetes schemas of
//!   the oldest and newest versions checked (`kubernetes-validate`, pinned in
//!   scripts/setup.sh, as tests/kits.rs validates the kits), kustomizations after
//!   `kubectl kustomize`; a SecretProviderClass, whose CRD the validator does not know, is
//!   checked field by field against the CRD's v1 fields (`apiVersion`, `spec.provider`,
//!   `spec.parameters` all strings, `spec.secretObjects` entries), its metadata and the
//!   Secrets its `secretObjects` make validate as Kubernetes objects; the driver's Helm
//!   values use only values of its chart, with their types;
//! - every `vault` and `bao` command sits in a block the tests run, and they are run, as
//!   written, against a real OpenBao dev server (`vault` is OpenBao's `bao`, which takes
//!   the same arguments and `VAULT_*` environment), with only what the guide's `kubectl`
//!   lines would produce supplied (the API server's address and CA, the reviewer's token:
//!   here those of the Kubernetes API stand-in that answers OpenBao's TokenReviews);
//! - then the guide's provider kit, rendered and started with its own arguments and
//!   environment, mounts the guide's class as the driver would for the guide's pod (its
//!   namespace and service account from the pod's file, the tokens the driver's values ask
//!   for, the socket the class's provider names), before and after the guide's rotation;
//!   and the guide's `mount` subcommand line prints the class's files.
//!
//! Fails, never skips, when kubectl, kubernetes-validate or bao is missing: run
//! scripts/setup.sh.

mod common;

use common::kits::*;
use common::kube::{KubeApi, REVIEWER_TOKEN};
use common::*;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use vault_csi_provider::proto::{MountRequest, MountResponse};

/// Where the guide's files live.
const EXAMPLE_DIRS: [&str; 2] = ["deploy/examples/install", "deploy/examples/migration"];
const VAULT_KIT: &str = "deploy/examples/install/provider";
const OPENBAO_KIT: &str = "deploy/examples/install/provider-openbao";
const VAULT_CLASS: &str = "deploy/examples/install/secretproviderclass.yaml";
const OPENBAO_CLASS: &str = "deploy/examples/install/secretproviderclass-openbao.yaml";
const APP: &str = "deploy/examples/install/app.yaml";
const DRIVER_VALUES: &str = "deploy/examples/install/driver-values.yaml";

/// The pages this test reads, in this order, each with the `## ` section it must hold.
/// Each page is read from its first `## ` heading to its end (its `# ` title and the
/// paragraph saying whom it is for are not part of the guide).
const INSTALL_PAGE: &str = "docs/install.md";
const FIRST_SECTION: &str = "## Install from an empty cluster";
const GUIDE_PAGES: [(&str, &str); 3] = [
    (INSTALL_PAGE, FIRST_SECTION),
    ("docs/migration.md", "## Migrating from the Go provider"),
    ("docs/troubleshooting.md", "## Troubleshooting"),
];

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every file under the guide's directories, as repository paths, sorted.
fn example_files() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    for d in EXAMPLE_DIRS {
        walk(&repo().join(d), &mut files);
    }
    let mut rel: Vec<String> = files
        .iter()
        .map(|p| {
            p.strip_prefix(repo())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    rel.sort();
    assert!(rel.len() >= 8, "{rel:?}");
    rel
}

// ---- The guide's pages ---------------------------------------------------------------

/// A fenced block of a guide page with the marker comment on the line before it, if any.
#[derive(Debug, Clone)]
struct Block {
    lang: String,
    marker: Option<String>,
    text: String,
    /// The page it is on (`docs/install.md`, ...).
    page: &'static str,
    /// The `## ` section it is in.
    section: String,
    /// Its opening fence's line in the page, from 1.
    line: usize,
}

/// One guide page from its first `## ` heading to its end, and the page's line number of
/// that heading (from 1). Panics when the page lacks the section it must hold.
fn page_text(page: &str, section: &str) -> (String, usize) {
    let text = read(page);
    assert!(
        text.lines().any(|l| l == section),
        "{page} has no {section:?} section"
    );
    let first = text
        .lines()
        .position(|l| l.starts_with("## "))
        .unwrap_or_else(|| panic!("{page} has no `## ` section"));
    let rest: Vec<&str> = text.lines().skip(first).collect();
    (rest.join("\n") + "\n", first + 1)
}

/// The guide's pages, concatenated in order (each from its first `## ` heading).
fn guide_text() -> String {
    GUIDE_PAGES
        .iter()
        .map(|(page, section)| page_text(page, section).0)
        .collect()
}

fn blocks() -> Vec<Block> {
    let mut out = Vec::new();
    for (page, section) in GUIDE_PAGES {
        let (text, first_line) = page_text(page, section);
        out.extend(page_blocks(page, &text, first_line));
    }
    out
}

/// The fenced blocks of one page's text, whose first line is the page's `first_line`.
fn page_blocks(page: &'static str, text: &str, first_line: usize) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut section = String::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with("## ") {
            section = line.to_string();
        }
        if let Some(lang) = line.strip_prefix("```") {
            let marker = i
                .checked_sub(1)
                .map(|j| lines[j].trim())
                .filter(|l| l.starts_with("<!--") && l.ends_with("-->"))
                .map(|l| {
                    l.trim_start_matches("<!--")
                        .trim_end_matches("-->")
                        .trim()
                        .to_string()
                });
            let start = i;
            let mut body = String::new();
            i += 1;
            while i < lines.len() && lines[i] != "```" {
                body.push_str(lines[i]);
                body.push('\n');
                i += 1;
            }
            assert!(
                i < lines.len(),
                "{page}: unclosed block at line {}",
                start + first_line
            );
            out.push(Block {
                lang: lang.trim().to_string(),
                marker,
                text: body,
                page,
                section: section.clone(),
                line: start + first_line,
            });
        }
        i += 1;
    }
    out
}

/// The blocks marked `<!-- run: flavor -->`, in order.
fn run_blocks(flavor: &str) -> Vec<Block> {
    let want = format!("run: {flavor}");
    let found: Vec<Block> = blocks()
        .into_iter()
        .filter(|b| b.marker.as_deref() == Some(want.as_str()))
        .collect();
    assert!(!found.is_empty(), "no block marked <!-- {want} -->");
    found
}

/// The commands of a shell block: continuation lines joined, a here-document kept with
/// its command. Each is (the command line, the whole text).
fn commands(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut heredoc: Option<String> = None;
    let mut continued = false;
    for line in text.lines() {
        if let Some(end) = &heredoc {
            let last = out.last_mut().unwrap();
            last.1.push_str(line);
            last.1.push('\n');
            if line.trim() == end {
                heredoc = None;
            }
            continue;
        }
        if continued {
            let last = out.last_mut().unwrap();
            last.0.push(' ');
            last.0.push_str(line.trim());
            last.1.push_str(line);
            last.1.push('\n');
        } else if !line.trim().is_empty() && !line.trim_start().starts_with('#') {
            out.push((line.trim().to_string(), format!("{line}\n")));
        } else {
            continue;
        }
        continued = line.ends_with('\\');
        if continued {
            let last = out.last_mut().unwrap();
            last.0 = last.0.trim_end_matches('\\').trim_end().to_string();
        }
        if let Some(pos) = line.find("<<") {
            let word: String = line[pos + 2..]
                .trim_start_matches('-')
                .trim()
                .trim_matches(|c| c == '\'' || c == '"')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(!word.is_empty(), "a here-document without a word: {line}");
            heredoc = Some(word);
        }
    }
    assert!(heredoc.is_none(), "unterminated here-document in:\n{text}");
    out
}

/// Shell words of a simple command line: single and double quotes, no expansion.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut any = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                any = true;
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                    cur.push(d);
                }
            }
            '"' => {
                any = true;
                for d in chars.by_ref() {
                    if d == '"' {
                        break;
                    }
                    cur.push(d);
                }
            }
            c if c.is_whitespace() => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                any = true;
                cur.push(c);
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// The value of `--flag value` or `--flag=value` in a command's words.
fn flag_value(words: &[String], flag: &str) -> Option<String> {
    words.iter().enumerate().find_map(|(i, w)| {
        if w == flag {
            words.get(i + 1).cloned()
        } else {
            w.strip_prefix(&format!("{flag}=")).map(str::to_string)
        }
    })
}

/// `NAME=value` words of a command, as a map.
fn assignments(words: &[String]) -> BTreeMap<String, String> {
    words
        .iter()
        .filter_map(|w| w.split_once('='))
        .filter(|(k, _)| !k.starts_with('-'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn every_yaml_snippet_of_the_guide_is_a_file_shown_verbatim_and_every_file_is_shown() {
    let mut shown = BTreeSet::new();
    for b in blocks() {
        let file = b
            .marker
            .as_deref()
            .and_then(|m| m.strip_prefix("file: "))
            .map(str::to_string);
        if b.lang == "yaml" || b.lang == "yml" {
            let file = file.unwrap_or_else(|| {
                panic!(
                    "{}:{} ({}): a YAML block without <!-- file: PATH --> before it; every \
                     YAML snippet there is a file of {EXAMPLE_DIRS:?}",
                    b.page, b.line, b.section
                )
            });
            assert!(
                EXAMPLE_DIRS
                    .iter()
                    .any(|d| file.starts_with(&format!("{d}/"))),
                "{file} is not under {EXAMPLE_DIRS:?}"
            );
            assert_eq!(
                b.text,
                read(&file),
                "{}:{} ({}): the snippet of {file} differs from the file; show the file verbatim",
                b.page,
                b.line,
                b.section
            );
            shown.insert(file);
        } else {
            assert!(
                file.is_none(),
                "{}:{}: a file marker on a {} block",
                b.page,
                b.line,
                b.lang
            );
        }
    }
    for f in example_files() {
        assert!(
            shown.contains(&f),
            "{f} is not shown in the guide's pages ({:?})",
            GUIDE_PAGES.map(|(page, _)| page)
        );
    }
}

#[test]
fn every_vault_and_bao_command_of_the_guide_is_in_a_block_the_tests_run() {
    let mut run = 0;
    for b in blocks() {
        let flavor = b
            .marker
            .as_deref()
            .and_then(|m| m.strip_prefix("run: "))
            .map(str::to_string);
        for (cmd, _) in commands(&b.text) {
            for tool in ["vault", "bao"] {
                let uses = cmd.starts_with(&format!("{tool} "))
                    || cmd.contains(&format!("$({tool} "))
                    || cmd.contains(&format!("| {tool} "));
                if uses {
                    assert_eq!(
                        flavor.as_deref(),
                        Some(tool),
                        "{}:{} ({}): `{cmd}` is not in a block marked <!-- run: {tool} -->, \
                         which tests/guide.rs runs against OpenBao",
                        b.page,
                        b.line,
                        b.section
                    );
                }
            }
        }
        if let Some(f) = flavor.as_deref().filter(|f| *f != "mount") {
            assert!(
                ["vault", "bao"].contains(&f),
                "{}:{}: unknown run marker {f:?}",
                b.page,
                b.line
            );
            assert_eq!(b.lang, "sh");
            for (cmd, _) in commands(&b.text) {
                assert!(
                    cmd.starts_with(&format!("{f} ")),
                    "a <!-- run: {f} --> block may hold only {f} commands: `{cmd}`"
                );
            }
            run += 1;
        }
    }
    assert!(run >= 4, "only {run} run blocks");
    // The guide runs its own commands in the Install section only.
    for b in blocks() {
        if b.marker.as_deref().is_some_and(|m| m.starts_with("run: ")) {
            assert_eq!(
                (b.page, b.section.as_str()),
                (INSTALL_PAGE, FIRST_SECTION),
                "run block at {}:{}",
                b.page,
                b.line
            );
        }
    }
}

/// What the guide's `kubectl` lines produce for the `vault`/`bao` blocks: the variables
/// they set and the files they write, with the values the test supplies for them.
fn supplied(kube: &KubeApi, work: &Path) -> (BTreeMap<&'static str, String>, Vec<&'static str>) {
    let vars = BTreeMap::from([
        ("KUBE_HOST", kube.url.clone()),
        ("REVIEWER_JWT", REVIEWER_TOKEN.to_string()),
    ]);
    std::fs::write(
        work.join("kube-ca.crt"),
        include_str!("fixtures/kube-ca.crt"),
    )
    .unwrap();
    (vars, vec!["kube-ca.crt"])
}

#[test]
fn the_variables_and_files_the_commands_use_are_made_by_the_guides_kubectl_lines() {
    // Made by the guide: `NAME=$(kubectl ...)` and `kubectl ... > file`.
    let mut made_vars = BTreeSet::new();
    let mut made_files = BTreeSet::new();
    for b in blocks()
        .iter()
        .filter(|b| b.marker.is_none() && b.lang == "sh")
    {
        for (cmd, _) in commands(&b.text) {
            if let Some((name, _)) = cmd.split_once("=$(kubectl ")
                && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            {
                made_vars.insert(name.to_string());
            }
            if cmd.starts_with("kubectl ")
                && let Some((_, file)) = cmd.rsplit_once(" > ")
            {
                made_files.insert(file.trim().to_string());
            }
        }
    }
    // Used by the commands the test runs.
    let var_re = |text: &str| -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let bytes = text.as_bytes();
        for (i, _) in text.match_indices('$') {
            let rest = &text[i + 1..];
            let rest = rest.strip_prefix('{').unwrap_or(rest);
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if !name.is_empty() && bytes.get(i + 1) != Some(&b'(') {
                out.insert(name);
            }
        }
        out
    };
    let kube_api = ["KUBE_HOST", "REVIEWER_JWT"];
    for flavor in ["vault", "bao"] {
        let prefix = flavor.to_uppercase();
        for b in run_blocks(flavor) {
            for v in var_re(&b.text) {
                if v == format!("{prefix}_ADDR") || v == format!("{prefix}_TOKEN") {
                    continue;
                }
                assert!(
                    made_vars.contains(&v),
                    "`${v}` in a {flavor} block is set by no `{v}=$(kubectl ...)` line of the guide"
                );
                assert!(
                    kube_api.contains(&v.as_str()),
                    "tests/guide.rs does not know what `${v}` stands for: teach supplied()"
                );
            }
            for (cmd, _) in commands(&b.text) {
                for w in words(&cmd) {
                    if let Some((_, f)) = w.split_once("=@") {
                        assert!(
                            made_files.contains(f),
                            "`@{f}` in a {flavor} block is written by no `kubectl ... > {f}` line"
                        );
                        assert_eq!(f, "kube-ca.crt", "teach supplied() about {f}");
                    }
                }
            }
        }
    }
    for v in kube_api {
        assert!(made_vars.contains(v), "the guide no longer sets {v}");
    }
    assert!(made_files.contains("kube-ca.crt"));
}

// ---- The SecretProviderClass, checked against the CRD's v1 fields ---------------------

/// `secrets-store.csi.x-k8s.io/v1` SecretProviderClass, every field the CRD has and no
/// other (kubernetes-sigs/secrets-store-csi-driver apis/v1/secretproviderclass_types.go);
/// `provider` and `parameters` are optional in the CRD but the driver refuses a class
/// without them, as it refuses a secretObject without a name, type or data.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spc {
    #[serde(deserialize_with = "string")]
    api_version: String,
    #[serde(deserialize_with = "string")]
    kind: String,
    metadata: serde_yaml_ng::Value,
    spec: SpcSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SpcSpec {
    #[serde(deserialize_with = "string")]
    provider: String,
    #[serde(deserialize_with = "string_map")]
    parameters: BTreeMap<String, String>,
    #[serde(default)]
    secret_objects: Vec<SecretObject>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SecretObject {
    #[serde(deserialize_with = "string")]
    secret_name: String,
    #[serde(rename = "type", deserialize_with = "string")]
    secret_type: String,
    #[serde(default, deserialize_with = "string_map")]
    labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "string_map")]
    annotations: BTreeMap<String, String>,
    data: Vec<SecretObjectData>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SecretObjectData {
    #[serde(deserialize_with = "string")]
    object_name: String,
    #[serde(deserialize_with = "string")]
    key: String,
}

/// A YAML string and nothing else: the CRD's `type: string` (the YAML library would turn
/// `5` or `true` into text, the API server refuses them).
fn string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_yaml_ng::Value::deserialize(d)? {
        serde_yaml_ng::Value::String(s) => Ok(s),
        other => Err(serde::de::Error::custom(format!(
            "{other:?} is not a string"
        ))),
    }
}

/// A map of strings to strings (`additionalProperties: {type: string}`).
fn string_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let map = BTreeMap::<String, serde_yaml_ng::Value>::deserialize(d)?;
    map.into_iter()
        .map(|(k, v)| match v {
            serde_yaml_ng::Value::String(s) => Ok((k, s)),
            other => Err(serde::de::Error::custom(format!(
                "{k}: {other:?} is not a string"
            ))),
        })
        .collect()
}

/// An object of a class's `objects` parameter, as far as the guide uses it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GuideObject {
    object_name: String,
    secret_path: String,
    secret_key: String,
}

/// Parses and checks one SecretProviderClass file; returns it and the Kubernetes objects
/// that stand for its metadata (a ConfigMap with the same metadata) and for the Secrets
/// its secretObjects make, to be validated strictly with the rest.
fn check_class(text: &str) -> Result<(Spc, Vec<Value>), String> {
    let spc: Spc = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    if spc.api_version != "secrets-store.csi.x-k8s.io/v1" {
        return Err(format!("apiVersion {}", spc.api_version));
    }
    if spc.kind != "SecretProviderClass" {
        return Err(format!("kind {}", spc.kind));
    }
    if !["vault", "openbao"].contains(&spc.spec.provider.as_str()) {
        return Err(format!("spec.provider {}", spc.spec.provider));
    }
    if spc.spec.parameters.is_empty() {
        return Err("no spec.parameters".into());
    }
    spc.metadata["name"].as_str().ok_or("no metadata.name")?;
    let namespace = spc.metadata["namespace"]
        .as_str()
        .ok_or("no metadata.namespace")?;
    let mut objects = vec![json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": serde_json::to_value(&spc.metadata).unwrap(),
    })];
    let files: Vec<GuideObject> =
        serde_yaml_ng::from_str(spc.spec.parameters.get("objects").ok_or("no objects")?)
            .map_err(|e| format!("objects: {e}"))?;
    for so in &spc.spec.secret_objects {
        if so.secret_name.is_empty() || so.secret_type.is_empty() || so.data.is_empty() {
            return Err(format!("secretObject {so:?} lacks a name, type or data"));
        }
        let mut data = serde_json::Map::new();
        for d in &so.data {
            if !files.iter().any(|f| f.object_name == d.object_name) {
                return Err(format!(
                    "secretObjects {} syncs {}, which is no object of the class",
                    so.secret_name, d.object_name
                ));
            }
            data.insert(d.key.clone(), json!("c3luY2Vk"));
        }
        objects.push(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": so.secret_name,
                "namespace": namespace,
                "labels": so.labels,
                "annotations": so.annotations,
            },
            "type": so.secret_type,
            "data": data,
        }));
    }
    Ok((spc, objects))
}

fn class_objects(spc: &Spc) -> Vec<GuideObject> {
    serde_yaml_ng::from_str(&spc.spec.parameters["objects"]).unwrap()
}

#[test]
fn the_class_check_is_strict() {
    let good = read(VAULT_CLASS);
    check_class(&good).unwrap();
    for (what, bad) in [
        (
            "a field the CRD does not have",
            good.replace("secretObjects:", "secretObject:"),
        ),
        (
            "a parameter that is not a string",
            good.replace("roleName: app", "roleName: 5"),
        ),
        (
            "another apiVersion",
            good.replace(
                "secrets-store.csi.x-k8s.io/v1",
                "secrets-store.csi.x-k8s.io/v2",
            ),
        ),
        (
            "a data entry without key",
            good.replace("          key: password\n", ""),
        ),
        (
            "a synced object that is no object of the class",
            good.replace(
                "objectName: db-password\n          key",
                "objectName: db-pass\n          key",
            ),
        ),
        (
            "another provider",
            good.replace("provider: vault", "provider: azure"),
        ),
    ] {
        assert_ne!(bad, good, "{what}: the replacement did not apply");
        assert!(check_class(&bad).is_err(), "{what} passed the class check");
    }
}

/// The chart values the guide may use, with their types (the chart's README).
fn check_driver_values(text: &str) -> Result<Vec<String>, String> {
    let v: Value = serde_json::to_value(
        serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text).map_err(|e| e.to_string())?,
    )
    .unwrap();
    let map = v.as_object().ok_or("not a map")?;
    let mut audiences = Vec::new();
    for (k, val) in map {
        match k.as_str() {
            "syncSecret" => {
                let m = val.as_object().ok_or("syncSecret is not a map")?;
                for (k2, v2) in m {
                    if k2 != "enabled" || !v2.is_boolean() {
                        return Err(format!("syncSecret.{k2}: {v2}"));
                    }
                }
            }
            "enableSecretRotation" if val.is_boolean() => {}
            "rotationPollInterval" => {
                let s = val.as_str().ok_or("rotationPollInterval is not a string")?;
                let ok = !s.is_empty()
                    && s.split_inclusive(['s', 'm', 'h']).all(|part| {
                        part.len() >= 2
                            && part[..part.len() - 1].chars().all(|c| c.is_ascii_digit())
                    });
                if !ok {
                    return Err(format!("rotationPollInterval {s:?} is not a Go duration"));
                }
            }
            "tokenRequests" => {
                for t in val.as_array().ok_or("tokenRequests is not a list")? {
                    let m = t.as_object().ok_or("a tokenRequest is not a map")?;
                    for (k2, v2) in m {
                        match (k2.as_str(), v2) {
                            ("audience", Value::String(a)) => audiences.push(a.clone()),
                            ("expirationSeconds", Value::Number(_)) => {}
                            _ => return Err(format!("tokenRequests[].{k2}: {v2}")),
                        }
                    }
                }
            }
            _ => {
                return Err(format!(
                    "{k}: {val} is not a value of the chart the guide uses"
                ));
            }
        }
    }
    Ok(audiences)
}

#[test]
fn the_drivers_values_enable_sync_and_rotation_and_ask_for_both_audiences() {
    let text = read(DRIVER_VALUES);
    let audiences = check_driver_values(&text).unwrap();
    assert_eq!(audiences, ["vault", "openbao"]);
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    assert_eq!(v["syncSecret"]["enabled"], true);
    assert_eq!(v["enableSecretRotation"], true);
    for bad in [
        text.replace(
            "enableSecretRotation: true",
            "enableSecretRotation: \"true\"",
        ),
        text.replace(
            "rotationPollInterval: 2m",
            "rotationPollInterval: 2 minutes",
        ),
        text.replace("syncSecret:", "syncSecrets:"),
    ] {
        assert!(check_driver_values(&bad).is_err(), "{bad}");
    }
}

#[test]
fn every_kubernetes_object_of_the_guide_validates_strictly_on_the_oldest_and_newest_kubernetes() {
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<(String, PathBuf, Vec<Value>)> = Vec::new();
    let mut kits = 0;
    let mut classes = 0;
    for f in example_files() {
        let text;
        let name = f.replace('/', "_");
        if f.ends_with("/kustomization.yaml") {
            let kit = f.trim_end_matches("/kustomization.yaml");
            text = render(kit);
            kits += 1;
        } else if f == DRIVER_VALUES {
            continue; // Helm values, checked above.
        } else {
            let raw = read(&f);
            if documents(&raw)
                .iter()
                .any(|d| d["kind"] == "SecretProviderClass")
            {
                let (_, objs) = check_class(&raw).unwrap_or_else(|e| panic!("{f}: {e}"));
                text = objs
                    .iter()
                    .map(|o| serde_yaml_ng::to_string(o).unwrap())
                    .collect::<Vec<_>>()
                    .join("---\n");
                classes += 1;
            } else {
                text = raw;
            }
        }
        let objs = documents(&text);
        assert!(!objs.is_empty(), "{f}: no objects");
        let file = dir.path().join(name);
        std::fs::write(&file, &text).unwrap();
        files.push((f, file, objs));
    }
    assert!(kits >= 3 && classes >= 2, "kits {kits}, classes {classes}");
    validate_strictly(&files);
}

#[test]
fn the_guides_names_agree_with_each_other() {
    let app = documents(&read(APP));
    let pod = app.iter().find(|o| o["kind"] == "Pod").unwrap();
    let sa = app.iter().find(|o| o["kind"] == "ServiceAccount").unwrap();
    assert_eq!(pod["spec"]["serviceAccountName"], sa["metadata"]["name"]);
    let volume = &pod["spec"]["volumes"][0];
    let mount_path = pod["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .unwrap()["mountPath"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(volume["csi"]["driver"], "secrets-store.csi.k8s.io");
    let pod_ns = pod["metadata"]["namespace"].as_str().unwrap();
    let pod_name = pod["metadata"]["name"].as_str().unwrap();
    let guide = guide_text();
    for class in [VAULT_CLASS, OPENBAO_CLASS] {
        let (spc, _) = check_class(&read(class)).unwrap();
        let spc_name = spc.metadata["name"].as_str().unwrap();
        assert_eq!(
            volume["csi"]["volumeAttributes"]["secretProviderClass"],
            spc_name
        );
        assert_eq!(spc.metadata["namespace"], pod_ns, "{class}");
        let files: Vec<String> = class_objects(&spc)
            .into_iter()
            .map(|o| o.object_name)
            .collect();
        // The pod's Secret reference and the guide's kubectl lines name what the class makes.
        let env = &pod["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"];
        let synced = &spc.spec.secret_objects[0];
        assert_eq!(env["name"], synced.secret_name.as_str());
        assert!(synced.data.iter().any(|d| env["key"] == d.key.as_str()));
        for b in blocks()
            .iter()
            .filter(|b| b.page == INSTALL_PAGE && b.section == FIRST_SECTION)
        {
            for (cmd, _) in commands(&b.text) {
                let w = words(&cmd);
                if cmd.starts_with("kubectl exec ") {
                    assert_eq!(w[2], pod_name, "{cmd}");
                    for path in w.iter().filter(|x| x.starts_with('/')) {
                        let rel = path.strip_prefix(&format!("{mount_path}/"));
                        if let Some(rel) = rel.filter(|r| !r.is_empty()) {
                            assert!(files.contains(&rel.to_string()), "{cmd}: {rel}");
                        } else {
                            assert_eq!(path.trim_end_matches('/'), mount_path, "{cmd}");
                        }
                    }
                }
                if cmd.starts_with("kubectl get secret ") {
                    assert_eq!(w[3], synced.secret_name, "{cmd}");
                    let key = cmd.split("{.data.").nth(1).unwrap().split('}').next();
                    assert!(synced.data.iter().any(|d| Some(d.key.as_str()) == key));
                }
                if cmd.starts_with("kubectl get secretproviderclasspodstatus ") {
                    // The driver names it <pod>-<namespace>-<class>.
                    assert_eq!(w[3], format!("{pod_name}-{pod_ns}-{spc_name}"), "{cmd}");
                }
                if cmd.starts_with("kubectl wait ") {
                    assert!(cmd.contains(&format!("pod/{pod_name}")), "{cmd}");
                }
            }
        }
    }
    // The kits put the socket where the driver looks (install) or where the chart had it.
    for (kit, dir) in [
        (VAULT_KIT, "/var/run/secrets-store-csi-providers"),
        (OPENBAO_KIT, "/var/run/secrets-store-csi-providers"),
        (
            "deploy/examples/migration/from-helm",
            "/etc/kubernetes/secrets-store-csi-providers",
        ),
    ] {
        let ds = daemonset(&documents(&render(kit)));
        let vol = ds["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "providervol")
            .unwrap()
            .clone();
        assert_eq!(vol["hostPath"]["path"], dir, "{kit}");
        assert!(guide.contains(dir));
    }
}

// ---- Running the guide -----------------------------------------------------------------

fn daemonset(objs: &[Value]) -> Value {
    objs.iter()
        .find(|o| o["kind"] == "DaemonSet")
        .expect("no DaemonSet")
        .clone()
}

/// The provider container of a rendered kit, started as rendered: its arguments (sockets
/// in `providers`, health on a free port of loopback) and environment (its Vault address
/// replaced by `vault_addr`), with the Kubernetes API stand-in as its cluster. Returns the
/// process once every socket of `-endpoint` answers.
async fn start_kit(kit: &str, providers: &Path, vault_addr: &str, kubeconfig: &Path) -> Running {
    let ds = daemonset(&documents(&render(kit)));
    let c = ds["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "provider")
        .unwrap()
        .clone();
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "providervol")
        .unwrap()["mountPath"]
        .as_str()
        .unwrap()
        .to_string();
    let port = free_port();
    let args: Vec<String> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .map(|a| {
            if a.starts_with("-health-addr=") {
                format!("-health-addr=127.0.0.1:{port}")
            } else {
                a.replace(&format!("{mount}/"), &format!("{}/", providers.display()))
            }
        })
        .collect();
    let sockets = endpoints(&args);
    let mut set_addr = false;
    let env: Vec<(String, String)> = common::kits::container_env(&c)
        .into_iter()
        .map(|(name, value)| {
            if name == "VAULT_ADDR" {
                set_addr = true;
                (name, vault_addr.to_string())
            } else {
                (name, value)
            }
        })
        .chain([("KUBECONFIG".to_string(), kubeconfig.display().to_string())])
        .collect();
    assert!(set_addr, "{kit}: the provider has no VAULT_ADDR");
    let cmd = provider_command(&args, providers, env);
    Running::provider(cmd, providers.with_extension("log"), &sockets).await
}

/// The guide's pod, as kubelet describes it to the driver.
fn guide_pod() -> Pod {
    let app = documents(&read(APP));
    let pod = app.iter().find(|o| o["kind"] == "Pod").unwrap();
    Pod {
        namespace: pod["metadata"]["namespace"].as_str().unwrap().into(),
        name: pod["metadata"]["name"].as_str().unwrap().into(),
        uid: format!("uid-guide-{}", rand_suffix()),
        service_account: pod["spec"]["serviceAccountName"].as_str().unwrap().into(),
    }
}

/// The Mount the driver sends for the class and pod, with a token for every audience its
/// values' `tokenRequests` name (the driver passes them all).
fn driver_request(class_yaml: &str, pod: &Pod) -> MountRequest {
    let audiences = check_driver_values(&read(DRIVER_VALUES)).unwrap();
    let mut req =
        vault_csi_provider::driver_request(class_yaml, &pod.token(&audiences[0]), &BTreeMap::new())
            .unwrap();
    let tokens: serde_json::Map<String, Value> = audiences
        .iter()
        .map(|a| {
            (
                a.clone(),
                json!({"token": pod.token(a), "expirationTimestamp": "2099-01-01T00:00:00Z"}),
            )
        })
        .collect();
    let mut attrs: Value = serde_json::from_str(&req.attributes).unwrap();
    attrs["csi.storage.k8s.io/serviceAccount.tokens"] = json!(Value::Object(tokens).to_string());
    req.attributes = attrs.to_string();
    req
}

/// Runs one block of the guide with `sh -eu`, as a reader pastes it; panics with its
/// output when it fails.
fn run_sh(text: &str, work: &Path, env: &[(String, String)], remove: &[&str]) -> String {
    let mut cmd = Command::new("sh");
    cmd.args(["-eu", "-c", text]).current_dir(work);
    for r in remove {
        cmd.env_remove(r);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("cannot run sh");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "the guide's block failed ({}):\n{text}\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The value each of the class's files must have after the `kv put` lines run so far.
fn expected_files(
    spc: &Spc,
    puts: &BTreeMap<String, BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    class_objects(spc)
        .into_iter()
        .map(|o| {
            // A KV v2 API path (secret/data/app/db) and the CLI's (secret/app/db).
            let (mount, rest) = o.secret_path.split_once("/data/").unwrap();
            let kv = format!("{mount}/{rest}");
            let value = puts
                .get(&kv)
                .and_then(|m| m.get(&o.secret_key))
                .unwrap_or_else(|| panic!("the guide puts no {} at {kv}", o.secret_key));
            (o.object_name, value.clone())
        })
        .collect()
}

fn files_of(resp: &MountResponse) -> BTreeMap<String, String> {
    resp.files
        .iter()
        .map(|f| {
            (
                f.path.clone(),
                String::from_utf8(f.contents.clone()).unwrap(),
            )
        })
        .collect()
}

/// The guide for one flavour, as a reader follows it: an OpenBao with nothing set up (no
/// KV at `secret/`), the guide's kubectl outputs supplied, each `run:` block in turn, and
/// after each the guide's pod mounting the guide's class through the guide's provider kit.
async fn follow_the_guide(flavor: &str, kit: &str, class: &str) {
    let bao = OpenBao::start().await;
    bao.api("DELETE", "sys/mounts/secret", None).await;
    let kube = KubeApi::start().await;
    let work = tempfile::tempdir().unwrap();
    let (vars, _) = supplied(&kube, work.path());
    let bin = work.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(bao_binary(), bin.join(flavor)).unwrap();
    let prefix = flavor.to_uppercase();
    let mut env: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    env.push((format!("{prefix}_ADDR"), bao.addr.clone()));
    env.push((format!("{prefix}_TOKEN"), ROOT_TOKEN.into()));
    env.push(("HOME".into(), work.path().display().to_string()));
    env.push((
        "PATH".into(),
        format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
    ));
    let remove = [
        "VAULT_ADDR",
        "VAULT_TOKEN",
        "BAO_ADDR",
        "BAO_TOKEN",
        "VAULT_NAMESPACE",
        "BAO_NAMESPACE",
    ];

    let providers = work.path().join("providers");
    std::fs::create_dir(&providers).unwrap();
    let kubeconfig = kube.kubeconfig(work.path());
    let provider = start_kit(kit, &providers, &bao.addr, &kubeconfig).await;

    let class_yaml = read(class);
    let (spc, _) = check_class(&class_yaml).unwrap();
    let socket = providers.join(format!("{}.sock", spc.spec.provider));
    let client = Client::connect(&socket).await;
    let pod = guide_pod();
    let mut puts: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut last: Option<MountResponse> = None;
    for block in run_blocks(flavor) {
        run_sh(&block.text, work.path(), &env, &remove);
        for (cmd, _) in commands(&block.text) {
            let w = words(&cmd);
            if w.len() > 3 && w[1] == "kv" && w[2] == "put" {
                puts.insert(w[3].clone(), assignments(&w[4..]));
            }
        }
        let resp = client
            .mount(driver_request(&class_yaml, &pod))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{class} after the block at {}:{}: {:?}: {}\nprovider:\n{}",
                    block.page,
                    block.line,
                    e.code(),
                    e.message(),
                    provider.log_text()
                )
            });
        assert_eq!(files_of(&resp), expected_files(&spc, &puts), "{class}");
        for f in &resp.files {
            assert_eq!(f.mode, 0o644, "{}", f.path);
        }
        for so in &spc.spec.secret_objects {
            for d in &so.data {
                assert!(resp.files.iter().any(|f| f.path == d.object_name));
            }
        }
        assert_eq!(resp.object_version.len(), resp.files.len());
        for v in &resp.object_version {
            assert_eq!(v.version.len(), 44, "{v:?}");
        }
        // Rotation: a changed value is a new version, an unchanged one keeps its version.
        if let Some(before) = &last {
            let old = files_of(before);
            for f in &resp.files {
                let same =
                    old.get(&f.path) == Some(&String::from_utf8(f.contents.clone()).unwrap());
                assert_eq!(
                    version(before, &f.path) == version(&resp, &f.path),
                    same,
                    "{}",
                    f.path
                );
            }
            assert_ne!(old, files_of(&resp), "the rotation block changed nothing");
        }
        last = Some(resp);
    }
    assert!(last.is_some());
    drop(provider);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_vault_commands_run_and_its_class_mounts_through_its_provider() {
    follow_the_guide("vault", VAULT_KIT, VAULT_CLASS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_bao_commands_run_and_its_openbao_class_mounts_on_openbao_sock() {
    follow_the_guide("bao", OPENBAO_KIT, OPENBAO_CLASS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_mount_subcommand_line_prints_the_classs_files() {
    let blocks = run_blocks("mount");
    assert_eq!(blocks.len(), 1);
    let block = &blocks[0];
    let bao = OpenBao::start().await;
    bao.api("DELETE", "sys/mounts/secret", None).await;
    let kube = KubeApi::start().await;
    let work = tempfile::tempdir().unwrap();
    let (vars, _) = supplied(&kube, work.path());
    let bin = work.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(bao_binary(), bin.join("vault")).unwrap();
    std::os::unix::fs::symlink(provider_binary(), bin.join("vault-csi-provider")).unwrap();
    std::os::unix::fs::symlink(repo().join("deploy"), work.path().join("deploy")).unwrap();
    let mut env: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    env.push(("VAULT_ADDR".into(), bao.addr.clone()));
    env.push(("VAULT_TOKEN".into(), ROOT_TOKEN.into()));
    env.push(("HOME".into(), work.path().display().to_string()));
    env.push((
        "PATH".into(),
        format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
    ));
    let remove = [
        "BAO_ADDR",
        "BAO_TOKEN",
        "KUBECONFIG",
        "VAULT_NAMESPACE",
        "KUBERNETES_SERVICE_HOST",
        "KUBERNETES_SERVICE_PORT",
    ];
    // Vault as the guide sets it up before a pod mounts.
    run_sh(&run_blocks("vault")[0].text, work.path(), &env, &remove);

    let pod = guide_pod();
    let mut ran = 0;
    for (cmd, _) in commands(&block.text) {
        let w = words(&cmd);
        if cmd.starts_with("kubectl create token ") {
            // What kubectl prints: a token of the service account for that audience.
            assert_eq!(w[3], pod.service_account, "{cmd}");
            assert_eq!(
                flag_value(&w, "--namespace").as_deref(),
                Some(pod.namespace.as_str())
            );
            let audience = flag_value(&w, "--audience").expect("--audience");
            let (_, file) = cmd.rsplit_once(" > ").expect("> file");
            std::fs::write(work.path().join(file.trim()), pod.token(&audience)).unwrap();
        } else if cmd.starts_with("vault-csi-provider mount ") {
            let out = run_sh(&cmd, work.path(), &env, &remove);
            let class = flag_value(&w, "-class").unwrap();
            let (spc, _) = check_class(&read(&class)).unwrap();
            for o in class_objects(&spc) {
                assert!(
                    out.lines()
                        .any(|l| l.starts_with("0644 ")
                            && l.ends_with(&format!(" {}", o.object_name))),
                    "{cmd}: no {} in\n{out}",
                    o.object_name
                );
            }
            assert!(out.contains("values hidden"), "{out}");
            assert!(!out.contains("s3cret-from-vault"), "{out}");
            ran += 1;
        } else {
            panic!("the mount block holds a command tests/guide.rs does not know: {cmd}");
        }
    }
    assert_eq!(ran, 1);
}
