//! The `objects` parameter: a YAML list of objects becomes the distinct reads of a Mount and
//! one [`ObjectSpec`] per object. Pure. Every check that can be made without Vault is made
//! here: names, paths, methods, encodings, modes, selectors, and template syntax.

use super::paths::{normalise_secret_path, validate_file_name};
use super::{
    Encoding, MAX_OBJECTS, Method, ObjectKind, ObjectSpec, PlanError, Pointer, ReadSpec,
    VersionInput,
};
use crate::stages::flavour::Flavour;
use crate::stages::version::go::{self, Leaf, Node, RawObject, file_mode};
use crate::text::quote;
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// Largest `objects` text accepted, before it is parsed.
pub const MAX_OBJECTS_TEXT: usize = 256 * 1024;

/// Deepest nesting of the objects YAML accepted (a class needs a handful of levels).
pub const MAX_NESTING: usize = 100;

/// An upper estimate of how deeply YAML text nests, in one linear pass before it is parsed
/// (a parser fed thousands of levels spends time that grows with their square): flow
/// brackets outside quoted strings, and each line's indentation and leading `- `/`? `
/// indicators.
pub fn nesting(text: &str) -> usize {
    let mut deepest = 0;
    let mut flow = 0usize;
    let mut quote: Option<char> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let mut rest = &line[indent..];
        let mut indicators = 0;
        while let Some(r) = rest.strip_prefix("- ").or_else(|| rest.strip_prefix("? ")) {
            indicators += 1;
            rest = r.trim_start_matches(' ');
        }
        deepest = deepest.max(indent / 2 + indicators);
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match (quote, c) {
                (Some('"'), '\\') => {
                    chars.next();
                }
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '[' | '{') => {
                    flow += 1;
                    deepest = deepest.max(flow + indent / 2);
                }
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                (None, '#') => break,
                _ => {}
            }
        }
        // A single-quoted scalar does not span lines in the classes we read; a double-quoted
        // one may, and keeps its state.
        if quote == Some('\'') {
            quote = None;
        }
    }
    deepest
}

/// One entry of `objects`, its fields typed as the plan reads them.
struct Entry {
    object_name: String,
    secret_path: String,
    secret_key: String,
    secret_args: Option<serde_json::Map<String, Value>>,
    method: String,
    encoding: String,
    file_permission: Option<u32>,
    /// Jinja template: the file is the rendered template.
    template: Option<String>,
    /// The object is a directory with one file per key.
    all_keys: bool,
    /// RFC 6901 JSON Pointer into the secret's data.
    selector: Option<String>,
}

impl Entry {
    /// The fields of one object of the parse, as the plan reads them: strings as written,
    /// `filePermission` as the Go provider reads it (`0600` and `0o600` octal, `420`
    /// decimal), `secretArgs` a mapping.
    fn of(raw: &RawObject) -> Result<Entry, String> {
        let text = |name: &str| raw.text(name).unwrap_or_default().to_string();
        let file_permission = match raw.text("filePermission") {
            None => None,
            Some(t) => file_mode(t).map_err(|_| {
                format!(
                    "filePermission {} is not a file mode such as 0644 or 420",
                    quote(t)
                )
            })?,
        };
        let secret_args = match raw.secret_args.as_ref().map(json) {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => Some(map),
            Some(_) => {
                return Err(
                    "secretArgs is not a mapping: write the request's arguments as key: value"
                        .into(),
                );
            }
        };
        let all_keys = match raw.all_keys.as_ref().map(json) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => b,
            Some(_) => return Err("allKeys is not true or false".into()),
        };
        Ok(Entry {
            object_name: text("objectName"),
            secret_path: text("secretPath"),
            secret_key: text("secretKey"),
            secret_args,
            method: text("method"),
            encoding: text("encoding"),
            file_permission,
            template: optional_text("template", raw.template.as_ref())?,
            all_keys,
            selector: optional_text("selector", raw.selector.as_ref())?,
        })
    }
}

/// A text field of this provider's own (`template`, `selector`): absent or null is `None`.
fn optional_text(field: &str, node: Option<&Node>) -> Result<Option<String>, String> {
    match node.map(json) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(format!("{field} is not text")),
    }
}

/// A node of the parse as JSON, as serde_yaml_ng resolves its scalars (the body of a
/// request is this JSON).
fn json(node: &Node) -> Value {
    match node {
        Node::Leaf(_, leaf) => match leaf {
            Leaf::Null => Value::Null,
            Leaf::Bool(b) => Value::Bool(*b),
            Leaf::I64(i) => Value::from(*i),
            Leaf::U64(u) => Value::from(*u),
            Leaf::F64(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Leaf::Str(s) => Value::String(s.clone()),
        },
        Node::Seq(items) => Value::Array(items.iter().map(json).collect()),
        Node::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.text.clone(), json(v)))
                .collect(),
        ),
        Node::Tagged(inner) => json(inner),
    }
}

/// The reads and objects of a class's `objects` text.
pub fn parse_objects(
    text: &str,
    default_mode: u32,
    flavour: Flavour,
) -> Result<(Vec<ReadSpec>, Vec<ObjectSpec>), PlanError> {
    if text.len() > MAX_OBJECTS_TEXT {
        return Err(PlanError::ObjectsSyntax(format!(
            "it is {} bytes, more than the {MAX_OBJECTS_TEXT} a class may have",
            text.len()
        )));
    }
    let depth = nesting(text);
    if depth > MAX_NESTING {
        return Err(PlanError::ObjectsSyntax(format!(
            "it nests about {depth} levels deep, more than the {MAX_NESTING} allowed"
        )));
    }
    // The one parse of the text: the plan's objects and the Go provider's come from it.
    let raw = go::objects(text).map_err(|e| PlanError::ObjectsSyntax(go::yaml_message(&e)))?;
    if raw.is_empty() {
        return Err(PlanError::NoObjects);
    }
    if raw.len() > MAX_OBJECTS {
        return Err(PlanError::TooManyObjects(raw.len()));
    }

    let mut reads: Vec<ReadSpec> = Vec::new();
    let mut read_index: HashMap<ReadSpec, usize> = HashMap::new();
    let mut objects = Vec::with_capacity(raw.len());
    let mut names = HashSet::new();

    for (i, r) in raw.iter().enumerate() {
        let index = i + 1;
        let o = Entry::of(r).map_err(|reason| PlanError::BadObject { index, reason })?;
        if o.object_name.is_empty() {
            return Err(PlanError::BadObject {
                index,
                reason: "objectName is missing: give the file name to write".into(),
            });
        }
        let name = o.object_name.clone();
        let named = |reason: String| PlanError::BadNamedObject {
            name: name.clone(),
            reason,
        };
        validate_file_name(&name)
            .map_err(|r| named(format!("objectName is not a safe file name: {r}")))?;
        if !names.insert(name.clone()) {
            return Err(PlanError::DuplicateName(name));
        }
        let kind = object_kind(&o).map_err(&named)?;
        let read = if o.secret_path.is_empty() {
            if !matches!(kind, ObjectKind::Template(_)) {
                return Err(named(
                    "secretPath is missing: give the Vault path to read, e.g. secret/data/app"
                        .into(),
                ));
            }
            None
        } else {
            let spec = read_spec(&o).map_err(&named)?;
            Some(*read_index.entry(spec.clone()).or_insert_with(|| {
                reads.push(spec);
                reads.len() - 1
            }))
        };
        let encoding = match o.encoding.to_ascii_lowercase().as_str() {
            "" | "utf-8" | "utf8" => Encoding::Utf8,
            "base64" => Encoding::Base64,
            "hex" => Encoding::Hex,
            other => {
                return Err(named(format!(
                    "encoding {} is not known: use utf-8, base64 or hex",
                    quote(other)
                )));
            }
        };
        if encoding != Encoding::Utf8 && matches!(kind, ObjectKind::Template(_)) {
            return Err(named(
                "encoding does not apply to a template: decode inside it with the b64decode filter"
                    .into(),
            ));
        }
        let mode = match o.file_permission {
            None => default_mode,
            Some(m) if m <= 0o777 => m,
            Some(m) => {
                return Err(named(format!(
                    "filePermission {m} (octal {m:o}) is not a file mode: use 0000 to 0777, e.g. 0644"
                )));
            }
        };
        let method = read.map(|r| reads[r].method).unwrap_or(Method::Get);
        let mut config = serde_json::json!({
            "objectName": o.object_name,
            "secretPath": o.secret_path,
            "secretKey": o.secret_key,
            "secretArgs": o.secret_args,
            "method": method.as_str(),
            "encoding": o.encoding.to_ascii_lowercase(),
            "filePermission": mode,
        });
        // Fields only this provider has are added only when used, so that the versions
        // of classes written for the Go provider do not change.
        if let Some(t) = &o.template {
            config["template"] = Value::String(t.clone());
        }
        if o.all_keys {
            config["allKeys"] = Value::Bool(true);
        }
        if let Some(s) = &o.selector {
            config["selector"] = Value::String(s.clone());
        }
        let config = config.to_string();
        objects.push(ObjectSpec {
            name: o.object_name,
            read,
            kind,
            encoding,
            mode,
            version: VersionInput::Own(config.clone()),
            config,
        });
    }
    check_tree(&objects)?;
    // Objects the Go provider also has get its exact version input, so that a cluster
    // switching providers sees no version change.
    let go = go::from_objects(&raw, text)
        .ok()
        .filter(|g| g.len() == objects.len());
    if let Some(go) = go {
        for (o, g) in objects.iter_mut().zip(go) {
            if matches!(o.kind, ObjectKind::Whole | ObjectKind::Key(_))
                && let Ok(json) = g.config_json(flavour)
            {
                o.version = VersionInput::Go(json);
            }
        }
    }
    Ok((reads, objects))
}

/// What the object writes, from its `secretKey`, `selector`, `allKeys` and `template`.
fn object_kind(o: &Entry) -> Result<ObjectKind, String> {
    let has_key = !o.secret_key.is_empty();
    let selector = o.selector.as_deref().filter(|s| !s.is_empty());
    if let Some(source) = &o.template {
        for (set, field) in [
            (has_key, "secretKey"),
            (selector.is_some(), "selector"),
            (o.all_keys, "allKeys"),
        ] {
            if set {
                return Err(format!(
                    "template and {field} cannot be used together: a template selects its values itself"
                ));
            }
        }
        crate::stages::template::check(source).map_err(|e| e.to_string())?;
        return Ok(ObjectKind::Template(source.clone()));
    }
    if has_key && selector.is_some() {
        return Err(
            "secretKey and selector cannot be used together: use secretKey for a top-level key, selector for a nested value"
                .into(),
        );
    }
    if has_key && o.all_keys {
        return Err(
            "secretKey and allKeys cannot be used together: allKeys writes every key".into(),
        );
    }
    let pointer = selector.map(Pointer::parse).transpose()?;
    Ok(match (o.all_keys, pointer) {
        (true, pointer) => ObjectKind::AllKeys(pointer),
        (false, Some(p)) => ObjectKind::Pointer(p),
        (false, None) if has_key => ObjectKind::Key(o.secret_key.clone()),
        (false, None) => ObjectKind::Whole,
    })
}

/// The request an object makes.
fn read_spec(o: &Entry) -> Result<ReadSpec, String> {
    let (path, query) = normalise_secret_path(&o.secret_path)?;
    let method = match o.method.to_ascii_uppercase().as_str() {
        "" | "GET" => Method::Get,
        "PUT" => Method::Put,
        "POST" => Method::Post,
        other => {
            return Err(format!(
                "method {} is not supported: use GET, PUT or POST",
                quote(other)
            ));
        }
    };
    let body = o
        .secret_args
        .as_ref()
        .map(|args| Value::Object(args.clone()).to_string());
    Ok(ReadSpec {
        method,
        path,
        query,
        body,
    })
}

/// A file cannot also be a directory of another object's file, at any depth; an allKeys
/// object is a directory that no other object may write into.
fn check_tree(objects: &[ObjectSpec]) -> Result<(), PlanError> {
    let files: HashMap<&str, &ObjectSpec> = objects.iter().map(|o| (o.name.as_str(), o)).collect();
    for o in objects {
        let mut prefix = o.name.as_str();
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            if let Some(owner) = files.get(parent) {
                return Err(match owner.kind {
                    ObjectKind::AllKeys(_) => PlanError::BadNamedObject {
                        name: o.name.clone(),
                        reason: format!(
                            "it would be written inside {}, the directory of an allKeys object: rename one of them",
                            quote(&owner.name)
                        ),
                    },
                    _ => PlanError::FileDirConflict {
                        file: parent.to_string(),
                        nested: o.name.clone(),
                    },
                });
            }
            prefix = parent;
        }
    }
    Ok(())
}
