//! Templates: an object whose file is a Jinja template (minijinja) rendered over its own
//! read (`secret`, `response`) and the other objects' files (`objects`). Pure.
//!
//! Templates come from tenants, so every render is bounded: fuel (instructions and bytes,
//! one budget shared by all templates of a Mount), a recursion limit, and a cap on the
//! output; undefined names are errors; and no message carries a value of the context.

use crate::stages::answer::SecretResponse;
use crate::text::{cap, quote};
use base64::Engine;
use minijinja::value::{Value, ValueKind};
use minijinja::{Environment, ErrorKind, State, UndefinedBehavior};
use std::collections::{BTreeMap, BTreeSet};
use tonic::Code;

/// Largest template source accepted.
pub const MAX_SOURCE: usize = 64 * 1024;

/// Bounds on rendering, from `-template-fuel`, `-template-recursion-limit` and
/// `-template-max-output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel for all the templates of one Mount: about one per instruction, one per 64 bytes
    /// made or written.
    pub fuel: u64,
    /// Deepest nesting of macro calls and includes.
    pub recursion: usize,
    /// Largest rendered file, in bytes.
    pub max_output: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 100_000,
            recursion: 100,
            max_output: 1024 * 1024,
        }
    }
}

/// Why a template could not be used. Never carries a value of the context.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template is {0} bytes, more than the {MAX_SOURCE} allowed")]
    TooLong(usize),
    #[error("template syntax error{at}: {detail}")]
    Syntax { at: String, detail: String },
    #[error("template{at} uses {name}, which is undefined; {present}")]
    Undefined {
        at: String,
        name: String,
        present: String,
    },
    #[error("template{at} {what}: simplify it, or raise {flag} if it really needs more")]
    Limit {
        at: String,
        what: &'static str,
        flag: &'static str,
    },
    #[error("template{at}: {detail}: the README lists the filters and functions templates have")]
    Unknown { at: String, detail: String },
    #[error("template error{at}: {detail}")]
    Render { at: String, detail: String },
}

impl TemplateError {
    /// The gRPC code of the failure.
    pub fn code(&self) -> Code {
        match self {
            TemplateError::TooLong(_)
            | TemplateError::Syntax { .. }
            | TemplateError::Unknown { .. } => Code::InvalidArgument,
            TemplateError::Undefined { .. } => Code::NotFound,
            TemplateError::Limit { .. } => Code::ResourceExhausted,
            TemplateError::Render { .. } => Code::FailedPrecondition,
        }
    }
}

/// The text of another object's file as a template sees it.
#[derive(Debug, Clone)]
pub enum ObjectText {
    /// A one-file object.
    File(Vec<u8>),
    /// An `allKeys` object: its files by key.
    Dir(BTreeMap<String, Vec<u8>>),
}

/// What a template sees.
pub struct Context<'a> {
    /// The object's own read, when it has a `secretPath`.
    pub answer: Option<&'a SecretResponse>,
    /// Every non-template object's files, by `objectName`.
    pub objects: &'a BTreeMap<String, ObjectText>,
}

/// Checks a template's syntax, before anything is read from Vault.
pub fn check(source: &str) -> Result<(), TemplateError> {
    if source.len() > MAX_SOURCE {
        return Err(TemplateError::TooLong(source.len()));
    }
    let env = environment(&Limits::default());
    env.template_from_str(source)
        .map(|_| ())
        .map_err(|e| describe(&e, source, &Value::UNDEFINED, &[]))
}

/// Fuel left for the next template of a Mount.
pub struct Fuel(pub u64);

/// Renders `source` over `ctx`, spending from `fuel`.
pub fn render(
    source: &str,
    ctx: &Context<'_>,
    limits: &Limits,
    fuel: &mut Fuel,
) -> Result<Vec<u8>, TemplateError> {
    if source.len() > MAX_SOURCE {
        return Err(TemplateError::TooLong(source.len()));
    }
    let root = context_value(ctx);
    let secrets = secret_strings(&root);
    let mut env = environment(limits);
    env.set_fuel(Some(fuel.0.max(1)));
    let template = env
        .template_from_str(source)
        .map_err(|e| describe(&e, source, &root, &secrets))?;
    let mut out = Capped {
        buf: Vec::new(),
        max: limits.max_output,
        exceeded: false,
    };
    let outcome = template
        .render_captured_to(root.clone(), &mut out)
        .map(|captured| captured.state().fuel_levels().map(|(_, left)| left));
    match outcome {
        Ok(left) => {
            fuel.0 = left.unwrap_or(0);
            Ok(out.buf)
        }
        Err(_) if out.exceeded => Err(TemplateError::Limit {
            at: String::new(),
            what: "writes more than -template-max-output bytes",
            flag: "-template-max-output",
        }),
        Err(e) => Err(describe(&e, source, &root, &secrets)),
    }
}

/// The engine with our settings and filters. Undefined names fail; no auto-escaping (the
/// output is a file, not HTML); a trailing newline is kept, as a file should have it.
fn environment(limits: &Limits) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_recursion_limit(limits.recursion);
    env.set_debug(false);
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.set_fuel(Some(limits.fuel.max(1)));
    env.add_filter("b64encode", b64encode);
    env.add_filter("b64decode", b64decode);
    env.add_filter("toyaml", toyaml);
    env.add_filter("fromjson", fromjson);
    env
}

/// Charges fuel for work a filter of ours does on `bytes` bytes.
fn charge(state: &State, bytes: usize) -> Result<(), minijinja::Error> {
    state.consume_fuel((bytes / 64) as u64 + 1)
}

fn text_or_bytes(value: &Value) -> Result<Vec<u8>, minijinja::Error> {
    if let Some(b) = value.as_bytes() {
        return Ok(b.to_vec());
    }
    if let Some(s) = value.as_str() {
        return Ok(s.as_bytes().to_vec());
    }
    Err(minijinja::Error::new(
        ErrorKind::InvalidOperation,
        "expects a string",
    ))
}

fn b64encode(state: &State, value: Value) -> Result<String, minijinja::Error> {
    let bytes = text_or_bytes(&value)?;
    charge(state, bytes.len() * 2)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn b64decode(state: &State, value: Value) -> Result<Value, minijinja::Error> {
    let bytes = text_or_bytes(&value)?;
    charge(state, bytes.len() * 2)?;
    let compact: Vec<u8> = bytes
        .into_iter()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&compact))
        .map_err(|_| {
            minijinja::Error::new(
                ErrorKind::InvalidOperation,
                "b64decode: the value is not base64",
            )
        })?;
    Ok(match String::from_utf8(decoded) {
        Ok(s) => Value::from(s),
        Err(e) => Value::from_bytes(e.into_bytes()),
    })
}

fn toyaml(state: &State, value: Value) -> Result<String, minijinja::Error> {
    let text = serde_yaml_ng::to_string(&value).map_err(|_| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            "toyaml: the value cannot be written as YAML",
        )
    })?;
    charge(state, text.len() * 16)?;
    Ok(text)
}

fn fromjson(state: &State, value: Value) -> Result<Value, minijinja::Error> {
    let bytes = text_or_bytes(&value)?;
    charge(state, bytes.len() * 16)?;
    let parsed: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            "fromjson: the value is not JSON",
        )
    })?;
    Ok(json_value(&parsed))
}

/// Output that fails once it would pass `max` bytes.
struct Capped {
    buf: Vec<u8>,
    max: usize,
    exceeded: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.max {
            self.exceeded = true;
            return Err(std::io::Error::other("template output too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A JSON value as a template value: integers stay integers, other numbers are floats.
pub fn json_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => {
            Value::from(items.iter().map(json_value).collect::<Vec<_>>())
        }
        serde_json::Value::Object(map) => Value::from(
            map.iter()
                .map(|(k, v)| (k.clone(), json_value(v)))
                .collect::<BTreeMap<String, Value>>(),
        ),
    }
}

fn file_value(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => Value::from(s),
        Err(_) => Value::from_bytes(bytes.to_vec()),
    }
}

/// The root of what a template sees: `secret` and `response` (with a read), `objects`.
pub fn context_value(ctx: &Context<'_>) -> Value {
    let mut root: BTreeMap<&str, Value> = BTreeMap::new();
    if let Some(answer) = ctx.answer {
        let data = answer
            .selectable()
            .map(|m| json_value(&serde_json::Value::Object(m.clone())))
            .unwrap_or_else(|| Value::from(BTreeMap::<String, Value>::new()));
        root.insert("secret", data);
        let whole = serde_json::to_value(answer).unwrap_or_default();
        root.insert("response", json_value(&whole));
    }
    let objects = ctx.objects.iter().map(|(name, text)| {
        let v = match text {
            ObjectText::File(b) => file_value(b),
            ObjectText::Dir(files) => Value::from(
                files
                    .iter()
                    .map(|(k, b)| (k.clone(), file_value(b)))
                    .collect::<BTreeMap<String, Value>>(),
            ),
        };
        (name.clone(), v)
    });
    root.insert(
        "objects",
        Value::from(objects.collect::<BTreeMap<String, Value>>()),
    );
    Value::from(root)
}

/// Every string of the context at least 4 bytes long: what a message must never show.
fn secret_strings(root: &Value) -> Vec<String> {
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
fn describe(e: &minijinja::Error, source: &str, root: &Value, secrets: &[String]) -> TemplateError {
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
mod tests;
