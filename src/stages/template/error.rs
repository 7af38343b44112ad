//! Why a template could not be used, said without a value of its context: the position in
//! the template, the undefined name with its whole path and what exists, the limit hit and
//! the flag that raises it. Anything of the context that would appear in a message is
//! scrubbed first. Pure.

use super::MAX_SOURCE;
use crate::text::{cap, quote};
use minijinja::ErrorKind;
use minijinja::value::{Value, ValueKind};
use std::collections::BTreeSet;

/// Why a template could not be used. Never carries a value of the context.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template source is longer than a template may be.
    #[error("template is {0} bytes, more than the {MAX_SOURCE} allowed")]
    TooLong(usize),
    /// The template does not parse; the line and column say where.
    #[error("template syntax error{at}: {detail}")]
    Syntax { at: String, detail: String },
    /// The template uses a name its context does not have.
    #[error("template{at} uses {name}, which is undefined; {present}")]
    Undefined {
        at: String,
        name: String,
        present: String,
    },
    /// The template ran out of fuel, recursion depth or output room.
    #[error("template{at} {what}: simplify it, or raise {flag} if it really needs more")]
    Limit {
        at: String,
        what: &'static str,
        flag: &'static str,
    },
    /// The template uses a filter, function or test templates do not have.
    #[error(
        "template{at}: {detail}: docs/configuration.md lists the filters and functions templates have"
    )]
    Unknown { at: String, detail: String },
    /// Rendering failed otherwise (a filter refused its input, a type error).
    #[error("template error{at}: {detail}")]
    Render { at: String, detail: String },
}

/// Every string of the context at least 4 bytes long: what a message must never show.
pub(super) fn secret_strings(root: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut BTreeSet<String>, depth: usize) {
        if depth > 64 || out.len() > 10_000 {
            return;
        }
        match v.kind() {
            ValueKind::String => {
                if let Some(s) = v.as_str()
                    && s.len() >= 4
                {
                    out.insert(s.to_string());
                }
            }
            ValueKind::Bytes => {
                if let Some(b) = v.as_bytes()
                    && b.len() >= 4
                {
                    out.insert(String::from_utf8_lossy(b).into_owned());
                }
            }
            ValueKind::Map => {
                if let Ok(keys) = v.try_iter() {
                    for k in keys {
                        if let Ok(child) = v.get_item(&k) {
                            walk(&child, out, depth + 1);
                        }
                    }
                }
            }
            ValueKind::Seq => {
                if let Ok(items) = v.try_iter() {
                    for child in items {
                        walk(&child, out, depth + 1);
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(root, &mut out, 0);
    // Longest first, so that a value containing another is hidden whole.
    let mut v: Vec<String> = out.into_iter().collect();
    v.sort_by_key(|s| std::cmp::Reverse(s.len()));
    v
}

/// Replaces every context value in `text`.
fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "[value hidden]");
        }
    }
    out
}

/// Line and column (1-based, in characters) of a byte offset.
fn position(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count() + 1)
        .unwrap_or(1);
    (line, column)
}

/// A minijinja error as a [`TemplateError`] with its line and column, without values.
pub(super) fn describe(
    e: &minijinja::Error,
    source: &str,
    root: &Value,
    secrets: &[String],
) -> TemplateError {
    let span = e
        .range()
        .filter(|r| r.end <= source.len() && r.start <= r.end);
    let at = match (&span, e.line()) {
        (Some(r), _) => {
            let (line, column) = position(source, r.start);
            format!(" at line {line}, column {column}")
        }
        (None, Some(line)) => format!(" at line {line}"),
        (None, None) => String::new(),
    };
    let limit = |what, flag| TemplateError::Limit {
        at: at.clone(),
        what,
        flag,
    };
    let detail = || {
        let d = e.detail().unwrap_or_else(|| kind_text(e.kind()));
        cap(&scrub(d, secrets), 300)
    };
    match e.kind() {
        ErrorKind::SyntaxError => TemplateError::Syntax {
            at,
            detail: detail(),
        },
        // Names of filters and functions are only looked up when the template runs.
        ErrorKind::UnknownFilter
        | ErrorKind::UnknownTest
        | ErrorKind::UnknownFunction
        | ErrorKind::UnknownMethod => TemplateError::Unknown {
            at,
            detail: detail(),
        },
        ErrorKind::OutOfFuel => limit(
            "used up its fuel (too many steps or too much data)",
            "-template-fuel",
        ),
        ErrorKind::InvalidOperation if detail().contains("recursion") => {
            limit("nests calls too deeply", "-template-recursion-limit")
        }
        ErrorKind::UndefinedError => {
            let expr = span
                .and_then(|r| source.get(whole_path(source, r.start)..r.end))
                .map(str::trim)
                .unwrap_or("");
            let (name, present) = missing_name(expr, root);
            TemplateError::Undefined { at, name, present }
        }
        _ => TemplateError::Render {
            at,
            detail: detail(),
        },
    }
}

fn kind_text(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NonPrimitive => "not a primitive value",
        ErrorKind::NonKey => "not a key type",
        ErrorKind::InvalidOperation => "invalid operation",
        ErrorKind::TooManyArguments => "too many arguments",
        ErrorKind::MissingArgument => "missing argument",
        ErrorKind::BadEscape => "bad string escape",
        ErrorKind::CannotUnpack => "cannot unpack",
        ErrorKind::BadSerialization => "cannot serialize value",
        _ => "render failed",
    }
}

/// Where the name path that ends in an error span starts: the engine points at the last
/// steps (`.foo.bar` of `secret.password.foo.bar`), the message names the whole path.
fn whole_path(source: &str, start: usize) -> usize {
    let bytes = source.as_bytes();
    let mut i = start.min(bytes.len());
    while i > 0 {
        let c = bytes[i - 1];
        if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'[' | b']' | b'"' | b'\'') {
            i -= 1;
        } else {
            break;
        }
    }
    i
}

/// One step of a name path in a template expression: `.name`, `["name"]` or `[0]`.
#[derive(Debug, PartialEq)]
enum Step {
    Name(String),
    Index(i64),
}

/// Reads `a.b["c"][0]` into steps; `None` for anything more complex.
fn path_steps(expr: &str) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    let mut rest = expr;
    fn ident(s: &str) -> Option<(String, &str)> {
        let n = s
            .char_indices()
            .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
            .map(|(i, _)| i)
            .unwrap_or(s.len());
        (n > 0).then(|| (s[..n].to_string(), &s[n..]))
    }
    let (first, after) = ident(rest)?;
    steps.push(Step::Name(first));
    rest = after;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let (name, after) = ident(r)?;
            steps.push(Step::Name(name));
            rest = after;
        } else if let Some(r) = rest.strip_prefix('[') {
            let close = r.find(']')?;
            let inner = r[..close].trim();
            let step = if let Some(q) = inner
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .or_else(|| inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
            {
                Step::Name(q.to_string())
            } else {
                Step::Index(inner.parse().ok()?)
            };
            steps.push(step);
            rest = &r[close + 1..];
        } else {
            return None;
        }
    }
    Some(steps)
}

/// Keys of a map value, quoted, at most 20.
fn names_of(v: &Value) -> String {
    let Ok(keys) = v.try_iter() else {
        return "none".into();
    };
    crate::text::name_list(keys.map(|k| {
        k.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| k.to_string())
    }))
}

/// The first step of `expr` that is undefined, and the names where it stopped.
fn missing_name(expr: &str, root: &Value) -> (String, String) {
    let top = || format!("the names that exist are {}", names_of(root));
    let Some(steps) = path_steps(expr) else {
        return (quote(expr), top());
    };
    let mut current = root.clone();
    let mut walked = String::new();
    for step in steps {
        let (next, shown) = match &step {
            Step::Name(n) => (
                if current.kind() == ValueKind::Map {
                    current.get_attr(n).unwrap_or(Value::UNDEFINED)
                } else {
                    Value::UNDEFINED
                },
                n.clone(),
            ),
            Step::Index(i) => (
                current
                    .get_item(&Value::from(*i))
                    .unwrap_or(Value::UNDEFINED),
                i.to_string(),
            ),
        };
        if next.is_undefined() {
            let present = if walked.is_empty() {
                top()
            } else {
                match current.kind() {
                    ValueKind::Map => format!("{walked} has {}", names_of(&current)),
                    ValueKind::Seq => {
                        format!("{walked} is a list of {} items", current.len().unwrap_or(0))
                    }
                    _ => format!("{walked} is a {}, with no members", current.kind()),
                }
            };
            return (quote(&shown), present);
        }
        if !walked.is_empty() {
            walked.push(if matches!(step, Step::Index(_)) {
                '['
            } else {
                '.'
            });
        }
        walked.push_str(&shown);
        if matches!(step, Step::Index(_)) {
            walked.push(']');
        }
        current = next;
    }
    (quote(expr), top())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_steps_read_simple_expressions() {
        assert_eq!(
            path_steps("a.b[\"c d\"][0]['e']").unwrap(),
            vec![
                Step::Name("a".into()),
                Step::Name("b".into()),
                Step::Name("c d".into()),
                Step::Index(0),
                Step::Name("e".into())
            ]
        );
        assert!(path_steps("a + b").is_none());
        assert!(path_steps("").is_none());
    }
}
