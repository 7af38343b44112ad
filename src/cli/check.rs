//! `vault-csi-provider check FILE|DIR|-`: SecretProviderClass manifests validated in a
//! pipeline, before a pod meets them as a FailedMount. Reads the files (a directory's
//! `.yaml` and `.yml` files, or standard input), hands each to [`manifest::check`], prints
//! one line per problem (or JSON), and exits 0 when clean, 1 on any problem, 2 when an
//! input cannot be used.

use super::help::{self, Usage};
use crate::goflag::{self, Flag, Kind};
use crate::settings::{self, SERVER_FLAGS};
use crate::stages::manifest::{self, Problem};
use std::path::{Path, PathBuf};

pub const USAGE: Usage = Usage {
    name: "check",
    synopsis: "[flags] FILE|DIR|- ...",
    about: "validate SecretProviderClass manifests offline with the parser a Mount uses (for CI)",
    examples: &[
        "check deploy/",
        "check -output json -allowed-vault-addrs=https://vault.vault.svc:8200 class.yaml",
    ],
};

const OWN_FLAGS: &[Flag] = &[Flag::new(
    "output",
    Kind::String,
    "text",
    "text (one line per problem) or json (an array of {file, document, class, parameter, message})",
)];

/// The operator's tenant limits, which a class is checked against when given.
const SHARED: &[&str] = &[
    "allowed-vault-addrs",
    "allowed-tls-dirs",
    "allow-class-audience",
    "allow-class-auth-mount",
];

pub fn flags() -> Vec<Flag> {
    let mut v = OWN_FLAGS.to_vec();
    v.extend(SERVER_FLAGS.iter().filter(|f| SHARED.contains(&f.name)));
    v
}

/// A problem with the file it is in.
#[derive(serde::Serialize)]
struct Found<'a> {
    file: &'a str,
    #[serde(flatten)]
    problem: &'a Problem,
}

pub fn main(args: &[String]) -> i32 {
    let flags = flags();
    let parsed = match goflag::parse_anywhere(&flags, args) {
        Ok(p) => p,
        Err(e) => return super::usage_error(&e, &USAGE, &flags),
    };
    let json = match parsed.get("output").unwrap_or("text") {
        "text" => false,
        "json" => true,
        other => {
            eprintln!("invalid value {other:?} for -output: use text or json");
            return 2;
        }
    };
    if parsed.rest.is_empty() {
        eprintln!("name the manifests to check: a file, a directory, or - for standard input\n");
        eprint!("{}", help::command(&USAGE, &flags));
        return 2;
    }
    let policy = match settings::tenant_policy(&parsed) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let inputs = match inputs(&parsed.rest) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{}: {e}", help::PROGRAM);
            return 2;
        }
    };
    let (mut checked, mut found) = (0, Vec::new());
    for (name, text) in &inputs {
        match manifest::check(text, &policy) {
            Ok(report) => {
                checked += report.checked;
                found.extend(report.problems.into_iter().map(|p| (name.as_str(), p)));
            }
            Err(e) => {
                eprintln!("{}: {name}: {e}", help::PROGRAM);
                return 2;
            }
        }
    }
    if json {
        let rows: Vec<Found> = found
            .iter()
            .map(|(file, problem)| Found { file, problem })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_else(|_| "[]".into())
        );
    } else {
        for (file, p) in &found {
            let parameter = p
                .parameter
                .as_deref()
                .map(|p| format!("parameter {p}: "))
                .unwrap_or_default();
            println!(
                "{file}: document {}: class {}: {parameter}{}",
                p.document, p.class, p.message
            );
        }
    }
    eprintln!(
        "checked {checked} SecretProviderClass{} for vault or openbao in {} input{}: {} problem{}",
        if checked == 1 { "" } else { "es" },
        inputs.len(),
        if inputs.len() == 1 { "" } else { "s" },
        found.len(),
        if found.len() == 1 { "" } else { "s" },
    );
    i32::from(!found.is_empty())
}

/// Each argument's texts, named as given: a file, every `.yaml`/`.yml` file under a
/// directory (sorted), or standard input for `-`.
fn inputs(args: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for arg in args {
        if arg == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| format!("reading standard input: {e}"))?;
            out.push(("<stdin>".to_string(), text));
            continue;
        }
        let path = Path::new(arg);
        let files = if path.is_dir() {
            let mut files = Vec::new();
            yaml_files(path, &mut files).map_err(|e| format!("{arg}: {e}"))?;
            if files.is_empty() {
                return Err(format!("{arg}: no .yaml or .yml files in this directory"));
            }
            files.sort();
            files
        } else {
            vec![path.to_path_buf()]
        };
        for file in files {
            let name = file.to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&file).map_err(|e| format!("{name}: {e}"))?;
            out.push((name, text));
        }
    }
    Ok(out)
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            yaml_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}
