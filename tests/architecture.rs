//! The shape of `src/`, read from the code itself: no import cycle between its files, every
//! import going down the layers (the command line over the server over the provider over
//! Vault and Kubernetes over settings over the pure stages over the leaves), the pure stages
//! free of gRPC, Tokio, HTTP and metrics, no file over about 500 lines of code outside its
//! tests, and the module maps (`src/lib.rs`, docs/architecture.md) naming every module there
//! is.
//!
//! Imports are the `crate::…` and `super::…` paths in the code (a `use`, or a path written
//! out); a `mod` declaration is not one. Files are found by walking `src/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, as its module path (`provider::fetch`, `stages::plan`),
/// with its text. `tests.rs` files are the tests of their parent module and left out.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
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
    walk(&src(), &mut files);
    let mut out = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src()).unwrap().with_extension("");
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        match parts.last().map(String::as_str) {
            Some("tests") | Some("main") => continue,
            Some("mod") | Some("lib") => {
                parts.pop();
            }
            _ => {}
        }
        out.insert(parts.join("::"), std::fs::read_to_string(&f).unwrap());
    }
    out
}

/// The text of a file without its `#[cfg(test)]` module (a file's tests may reach
/// anywhere) and without comments.
fn code(text: &str) -> String {
    let text = match text.find("\n#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules `module`'s code names with `crate::…` and `super::…` paths, each resolved
/// to the longest module that exists.
fn imports(module: &str, text: &str, all: &BTreeMap<String, String>) -> BTreeSet<String> {
    let code = code(text);
    let mut out = BTreeSet::new();
    let bytes = code.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    for (start, prefix) in [("crate::", ""), ("super::", "super")] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            if at > 0 && (is_ident(bytes[at - 1]) || bytes[at - 1] == b':') {
                continue;
            }
            // The path's segments, through `{` for grouped imports: `a::b::{c, d}`.
            let rest = &code[from..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let mut segments: Vec<String> = rest[..end]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            let base: Vec<String> = if prefix == "super" {
                let mut m: Vec<String> = module.split("::").map(str::to_string).collect();
                // `super` of a file module is its parent; of a folder's mod.rs, the folder's parent.
                m.pop();
                m
            } else {
                Vec::new()
            };
            let mut path = base;
            path.append(&mut segments);
            // The longest prefix that is a module of ours.
            while !path.is_empty() {
                let candidate = path.join("::");
                if all.contains_key(&candidate) {
                    if candidate != module {
                        out.insert(candidate);
                    }
                    break;
                }
                path.pop();
            }
        }
    }
    out
}

/// The layers, top to bottom; a module is in the first layer one of whose prefixes it
/// starts with. An import may go down or stay in its layer, never up.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["server"],
    &["proto"],
    &["provider"],
    &["vault", "kube"],
    &["tls", "logs", "metrics"],
    &["settings"],
    &["stages"],
    &["text", "address", "goflag", "secret", ""],
];

fn layer(module: &str) -> usize {
    let top = module.split("::").next().unwrap_or("");
    LAYERS
        .iter()
        .position(|l| l.contains(&top))
        .unwrap_or_else(|| panic!("module {module:?} is in no layer: add it to LAYERS"))
}

#[test]
fn no_import_cycle_between_files_and_none_runs_up_a_layer() {
    let all = modules();
    let graph: BTreeMap<String, BTreeSet<String>> = all
        .iter()
        .map(|(m, text)| (m.clone(), imports(m, text, &all)))
        .collect();
    assert!(graph.len() > 40, "{} modules read", graph.len());
    // Up: an import to a higher layer.
    let mut up = Vec::new();
    for (m, targets) in &graph {
        for t in targets {
            if t.is_empty() {
                continue;
            }
            if layer(t) < layer(m) {
                up.push(format!("{m} -> {t}"));
            }
        }
    }
    assert!(up.is_empty(), "imports that run up a layer: {up:#?}");
    // Cycles: depth-first search for a back edge.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(m.to_string(), 1);
        stack.push(m.to_string());
        for t in graph.get(m).into_iter().flatten() {
            match state.get(t.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|s| s == t).unwrap();
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(t.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(t, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in graph.keys() {
        if state.get(m.as_str()).copied().unwrap_or(0) == 0
            && let Some(cycle) = visit(m, &graph, &mut state, &mut Vec::new())
        {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_checker_sees_a_cycle_and_an_import_up() {
    // The checks above must be able to fail: a made-up pair that imports each other, and a
    // stage that imports the server.
    let mut all = BTreeMap::new();
    all.insert(
        "stages::a".to_string(),
        "use crate::stages::b::X;".to_string(),
    );
    all.insert(
        "stages::b".to_string(),
        "fn f() { crate::stages::a::y() }".to_string(),
    );
    all.insert("server".to_string(), "use super::x;".to_string());
    all.insert(
        "stages::c".to_string(),
        "use crate::server::Thing;".to_string(),
    );
    assert_eq!(
        imports("stages::a", &all["stages::a"], &all),
        BTreeSet::from(["stages::b".to_string()])
    );
    assert_eq!(
        imports("stages::b", &all["stages::b"], &all),
        BTreeSet::from(["stages::a".to_string()])
    );
    let up = imports("stages::c", &all["stages::c"], &all);
    assert!(up.iter().any(|t| layer(t) < layer("stages::c")), "{up:?}");
}

#[test]
fn the_pure_stages_import_nothing_of_grpc_tokio_http_or_metrics() {
    for (m, text) in modules() {
        if !m.starts_with("stages") {
            continue;
        }
        let code = code(&text);
        for banned in [
            "tonic::",
            "tokio::",
            "reqwest::",
            "prost::",
            "hyper::",
            "crate::proto",
            "crate::metrics",
            "crate::settings",
        ] {
            assert!(!code.contains(banned), "stage {m} uses {banned}");
        }
    }
}

#[test]
fn no_file_holds_more_than_about_500_lines_of_code() {
    let mut long = Vec::new();
    for (m, text) in modules() {
        let lines = code(&text).lines().filter(|l| !l.trim().is_empty()).count();
        if lines > 500 {
            long.push(format!("{m}: {lines}"));
        }
    }
    assert!(long.is_empty(), "split these: {long:?}");
}

/// Every file under `src/`, as its path there (`provider/fetch.rs`).
fn files() -> BTreeSet<String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, root, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(root).unwrap();
                out.insert(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&src(), &src(), &mut out);
    out
}

/// The files a tree drawn as text names: one entry per line, `name.rs` or `folder/` first,
/// indented two spaces per level under `src/`; lines whose first word is neither continue
/// the line above.
fn drawn_tree(block: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut folders: Vec<String> = Vec::new();
    for line in block.lines() {
        let word = line.split_whitespace().next().unwrap_or("");
        if line.trim() == "src/" || !(word.ends_with(".rs") || word.ends_with('/')) {
            continue;
        }
        let depth = (line.len() - line.trim_start().len()) / 2;
        assert!(depth >= 1, "{line:?} is not under src/");
        folders.truncate(depth - 1);
        if let Some(folder) = word.strip_suffix('/') {
            folders.push(folder.to_string());
        } else {
            let mut path = folders.join("/");
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(word);
            out.insert(path);
        }
    }
    out
}

/// The document that draws the tree of `src/`.
const TREE_DOC: &str = "docs/architecture.md";

#[test]
fn the_architecture_page_draws_the_tree_of_src_as_it_is() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(TREE_DOC)).unwrap();
    let start = doc
        .find("```text\nsrc/\n")
        .unwrap_or_else(|| panic!("{TREE_DOC}'s module map: a ```text block starting with src/"));
    let block = &doc[start + 8..];
    let block = &block[..block.find("```").unwrap()];
    let drawn = drawn_tree(block);
    let real = files();
    let missing: Vec<_> = real.difference(&drawn).collect();
    let extra: Vec<_> = drawn.difference(&real).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{TREE_DOC}'s module map and src/ differ: not drawn {missing:?}, drawn but absent \
         {extra:?}"
    );
}

#[test]
fn the_tree_reader_sees_a_file_missing_or_misplaced() {
    let block = "src/\n  a.rs   x\n  b/     y\n    c.rs  z\n          c.rs continues\n  d.rs\n";
    assert_eq!(
        drawn_tree(block),
        BTreeSet::from(["a.rs", "b/c.rs", "d.rs"].map(String::from))
    );
}

#[test]
fn src_lib_maps_every_top_level_module() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let map = &lib[..lib.find("#![forbid").unwrap()];
    let tops: BTreeSet<String> = files()
        .iter()
        .filter(|f| *f != "lib.rs" && *f != "main.rs")
        .map(|f| match f.split_once('/') {
            Some((dir, _)) => format!("{dir}/"),
            None => f.clone(),
        })
        .collect();
    assert!(tops.len() > 10, "{tops:?}");
    for name in &tops {
        assert!(
            map.contains(name.as_str()),
            "src/lib.rs's module map does not name {name}"
        );
    }
}

/// Names of files and folders of `src/` that prose mentions, so that a move leaves no
/// stale pointer: `src/...` paths in the documents, and `name.rs` in the code's comments.
#[test]
fn every_source_path_the_documents_and_comments_name_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stale = Vec::new();
    let mut docs: Vec<String> = vec![
        "README.md".into(),
        "SECURITY.md".into(),
        "BENCHMARKS.md".into(),
        "CONTRIBUTING.md".into(),
    ];
    for e in std::fs::read_dir(root.join("docs")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            docs.push(format!("docs/{name}"));
        }
    }
    assert!(docs.len() > 4, "no pages under docs/: {docs:?}");
    for doc in &docs {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        for (i, _) in text.match_indices("src/") {
            if i > 0 && text.as_bytes()[i - 1].is_ascii_alphanumeric() {
                continue;
            }
            let path: String = text[i..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || "_/.-*".contains(*c))
                .collect();
            let path = path.trim_end_matches(['.', '*']).trim_end_matches('/');
            if path != "src" && !root.join(path).exists() {
                stale.push(format!("{doc}: {path}"));
            }
        }
    }
    let names: BTreeSet<String> = files()
        .iter()
        .flat_map(|f| f.split('/').map(str::to_string).collect::<Vec<_>>())
        .collect();
    for (m, text) in modules() {
        for line in text.lines().filter(|l| l.trim_start().starts_with("//")) {
            for piece in line.split('`').skip(1).step_by(2) {
                if piece.ends_with(".rs") && !piece.contains('/') && !names.contains(piece) {
                    stale.push(format!("{m}: `{piece}`"));
                }
            }
        }
    }
    assert!(stale.is_empty(), "paths that no longer exist: {stale:#?}");
}

/// `tests/README.md` maps every test file and fixture: a new one without a line fails here.
#[test]
fn the_test_map_names_every_test_file_and_fixture() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let map = std::fs::read_to_string(tests.join("README.md")).unwrap();
    let mut unnamed = Vec::new();
    for (dir, prefix) in [(tests.clone(), ""), (tests.join("common"), "common/")] {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".rs") && !map.contains(&format!("`{prefix}{name}`")) {
                unnamed.push(format!("{prefix}{name}"));
            }
        }
    }
    assert!(
        unnamed.is_empty(),
        "tests/README.md does not name {unnamed:?}"
    );
}
