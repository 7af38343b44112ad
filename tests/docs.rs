//! The documents cannot send a reader nowhere:
//! - every relative link of README.md, CONTRIBUTING.md, SECURITY.md, BENCHMARKS.md,
//!   tests/README.md and docs/*.md (`[text](path)`, `[text](path#anchor)`, `[text](#anchor)`)
//!   names a file or directory that exists, relative to the linking file, and its anchor, if
//!   any, names a heading of the target markdown file as GitHub makes anchors of headings
//!   (lowercase; every character but letters, digits, spaces, hyphens and underscores
//!   dropped; spaces become hyphens; a repeated heading gets `-1`, `-2`, ...). Links in
//!   fenced code blocks and in inline code, and http(s) and mailto links, are not checked;
//! - every page under docs/ says whom it is for, in the paragraph after its `# ` title.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The pages under `docs/`, as paths under `root`, sorted.
fn pages(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root.join("docs")).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "md") {
            out.push(p.strip_prefix(root).unwrap().to_path_buf());
        }
    }
    out.sort();
    out
}

/// The documents whose links are checked, as paths under `root`.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = [
        "README.md",
        "CONTRIBUTING.md",
        "SECURITY.md",
        "BENCHMARKS.md",
        "tests/README.md",
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect();
    out.extend(pages(root));
    out
}

/// GitHub's anchor of a heading's text: lowercase, every character that is not a letter, a
/// digit, a space, a hyphen or an underscore dropped, spaces turned into hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(*c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Whether a line opens or closes a fenced code block.
fn is_fence(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("```") || t.starts_with("~~~")
}

/// The anchors GitHub gives the headings of a markdown text, in order: each heading's slug,
/// a repeated one with `-1`, `-2`, ... after it. Lines of fenced code are not headings.
fn anchors(text: &str) -> Vec<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if is_fence(line) {
            fenced = !fenced;
            continue;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if fenced || !(1..=6).contains(&hashes) {
            continue;
        }
        let Some(title) = line[hashes..].strip_prefix(' ') else {
            continue;
        };
        let base = slug(title.trim().trim_end_matches('#'));
        let n = seen.entry(base.clone()).or_insert(0);
        out.push(if *n == 0 { base } else { format!("{base}-{n}") });
        *n += 1;
    }
    out
}

/// Inline code spans (a run of backticks up to the next run of as many, within one
/// paragraph) replaced by spaces; newlines are kept.
fn blank_code_spans(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = chars.clone();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|c| **c == '`').count();
        let mut close = None;
        let mut j = i + run;
        while j < chars.len() {
            if chars[j] == '\n' && chars.get(j + 1) == Some(&'\n') {
                break;
            }
            if chars[j] != '`' {
                j += 1;
                continue;
            }
            let n = chars[j..].iter().take_while(|c| **c == '`').count();
            if n == run {
                close = Some(j + n);
                break;
            }
            j += n;
        }
        match close {
            Some(end) => {
                for c in &mut out[i..end] {
                    if *c != '\n' {
                        *c = ' ';
                    }
                }
                i = end;
            }
            None => i += run,
        }
    }
    out.into_iter().collect()
}

/// The text with fenced code blocks and inline code blanked out, where a link is not a link;
/// lines stay where they were.
fn prose(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut fenced = false;
    for line in text.lines() {
        if is_fence(line) {
            fenced = !fenced;
        } else if !fenced {
            out.push_str(line);
        }
        out.push('\n');
    }
    blank_code_spans(&out)
}

/// The links of a markdown text that lead into the repository: (line, target) for each
/// `](target)` outside code, http(s) and mailto links left out.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose(text).lines().enumerate() {
        for (i, _) in line.match_indices("](") {
            let rest = &line[i + 2..];
            let Some(end) = rest.find(')') else {
                continue;
            };
            let target = rest[..end].split_whitespace().next().unwrap_or("");
            let external = ["http://", "https://", "mailto:"]
                .iter()
                .any(|s| target.starts_with(s));
            if !target.is_empty() && !external {
                out.push((n + 1, target.to_string()));
            }
        }
    }
    out
}

/// What is wrong with the links of `doc` (a path under `root`), one line each.
fn broken_links(root: &Path, doc: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(root.join(doc))
        .unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
    let dir = doc.parent().unwrap_or(Path::new(""));
    let mut broken = Vec::new();
    for (line, target) in links(&text) {
        let (path, anchor) = match target.split_once('#') {
            Some((path, anchor)) => (path, Some(anchor)),
            None => (target.as_str(), None),
        };
        let file = if path.is_empty() {
            doc.to_path_buf()
        } else {
            dir.join(path)
        };
        let at = format!("{}:{line}: ({target})", doc.display());
        if !root.join(&file).exists() {
            broken.push(format!("{at}: {} does not exist", file.display()));
            continue;
        }
        let Some(anchor) = anchor else {
            continue;
        };
        if file.extension().is_none_or(|x| x != "md") {
            continue;
        }
        let heads = anchors(&std::fs::read_to_string(root.join(&file)).unwrap_or_default());
        if !heads.iter().any(|h| h == anchor) {
            broken.push(format!(
                "{at}: {} has no heading whose anchor is #{anchor}",
                file.display()
            ));
        }
    }
    broken
}

/// The first paragraph after a page's `# ` title, its lines joined; `None` when the page
/// does not open with a title followed by a paragraph.
fn first_paragraph(text: &str) -> Option<String> {
    let mut lines = text.lines();
    if !lines.next()?.starts_with("# ") {
        return None;
    }
    let paragraph: Vec<&str> = lines
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| !l.trim().is_empty())
        .collect();
    let first = paragraph.first()?;
    if first.starts_with('#') || is_fence(first) {
        return None;
    }
    Some(paragraph.join(" "))
}

/// Whether a paragraph names its readers: it holds the word "for".
fn names_its_readers(paragraph: &str) -> bool {
    paragraph
        .split(|c: char| !c.is_alphanumeric())
        .any(|w| w.eq_ignore_ascii_case("for"))
}

#[test]
fn every_relative_link_of_the_documents_resolves() {
    let root = repo();
    let docs = documents(root);
    assert!(pages(root).len() >= 6, "the pages under docs/: {docs:?}");
    let broken: Vec<String> = docs.iter().flat_map(|d| broken_links(root, d)).collect();
    assert!(
        broken.is_empty(),
        "links that lead nowhere:\n{}",
        broken.join("\n")
    );
}

#[test]
fn every_page_says_whom_it_is_for() {
    let root = repo();
    for page in pages(root) {
        let text = std::fs::read_to_string(root.join(&page)).unwrap();
        let first = first_paragraph(&text).unwrap_or_else(|| {
            panic!(
                "{}: open with a `# ` title and a paragraph saying whom the page is for",
                page.display()
            )
        });
        assert!(
            names_its_readers(&first),
            "{}: the paragraph after the title does not say whom the page is for: {first:?}",
            page.display()
        );
    }
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    for (heading, anchor) in [
        ("What would my pod get?", "what-would-my-pod-get"),
        ("`check` in CI", "check-in-ci"),
        (
            "Templates, every key, nested values",
            "templates-every-key-nested-values",
        ),
        ("The driver's own client", "the-drivers-own-client"),
        ("Vault clusters (HA)", "vault-clusters-ha"),
        (
            "The `:authority` of old drivers",
            "the-authority-of-old-drivers",
        ),
        ("snake_case and-hyphens", "snake_case-and-hyphens"),
    ] {
        assert_eq!(slug(heading), anchor, "{heading:?}");
    }
    let text = "# T\n\n## A b\n\n```sh\n## not a heading\n```\n\n## A b\n### A b\n#not one\n";
    assert_eq!(anchors(text), ["t", "a-b", "a-b-1", "a-b-2"]);
}

#[test]
fn a_broken_link_or_anchor_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("docs")).unwrap();
    std::fs::write(dir.path().join("docs/b.md"), "# B\n\n## Yes, this\n").unwrap();
    let a = "# A\n\n## Here\n\n\
             [ok](b.md#yes-this) [ok](#here) [ok](../docs) [web](https://example.invalid/x)\n\
             [gone](missing.md) and [no heading](b.md#no) and [no heading here](#nowhere)\n\
             `[code](missing.md)` and ``[code](missing.md)``\n\
             \n\
             ```md\n[fenced](missing.md)\n```\n";
    std::fs::write(dir.path().join("docs/a.md"), a).unwrap();
    let broken = broken_links(dir.path(), Path::new("docs/a.md"));
    assert_eq!(broken.len(), 3, "{broken:#?}");
    assert!(
        broken.iter().all(|b| b.starts_with("docs/a.md:6: ")),
        "{broken:#?}"
    );
    assert!(
        broken[0].contains("missing.md does not exist"),
        "{}",
        broken[0]
    );
    assert!(broken[1].contains("#no"), "{}", broken[1]);
    assert!(broken[2].contains("#nowhere"), "{}", broken[2]);
}

#[test]
fn a_page_without_its_readers_is_reported() {
    let named = first_paragraph("# Title\n\nFor the platform engineer: what it does.\n");
    assert!(named.as_deref().is_some_and(names_its_readers), "{named:?}");
    let unnamed = first_paragraph("# Title\n\nWhat it does, and how.\n").unwrap();
    assert!(!names_its_readers(&unnamed), "{unnamed:?}");
    assert!(!names_its_readers("Information, forever."));
    assert_eq!(first_paragraph("# Title\n\n## A section\n"), None);
    assert_eq!(first_paragraph("No title\n\nFor you.\n"), None);
}
