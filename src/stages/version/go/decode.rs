//! The one parse of a class's `objects` text (libyaml, through serde_yaml_ng, as yaml.v3
//! is libyaml too) into a tree that keeps every scalar's text and its number in parse
//! order. The plan's objects and the Go provider's reading of them (`version::go`) both come
//! from this tree. Where yaml.v3's type of a scalar depends on how it was written (quoted or
//! plain), [`probe`] parses again, stopped at that scalar, and reads how it starts in the
//! text: the only re-parse, for the few texts that need it. Pure.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::cell::Cell;
use std::fmt;

/// The objects of `text`, in order (an empty list for an empty or null text); the error
/// is the YAML parser's.
pub fn objects(text: &str) -> Result<Vec<RawObject>, serde_yaml_ng::Error> {
    walk(text, None)
}

/// A YAML error's text, short: where and why, not the input.
pub fn message(e: &serde_yaml_ng::Error) -> String {
    crate::text::cap(&e.to_string(), 300)
}

/// How a scalar was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Plain, no tag: yaml.v3 resolves it.
    Plain,
    /// Quoted or block, or tagged `!!str`: a string.
    Str,
    /// Under another tag.
    Tagged,
}

/// Marker of the error that stops a re-parse at the scalar asked about.
const PROBE: &str = "decode: stopped at the scalar asked about";

/// Parses `text` again, stops at scalar number `ord`, and reads how it starts in the text.
/// The error names the YAML problem (capped), never a value.
pub fn probe(text: &str, ord: usize) -> Result<Style, String> {
    match walk(text, Some(ord)) {
        Err(e) if e.to_string().contains(PROBE) => Ok(e
            .location()
            .map_or(Style::Str, |l| style_at(text, l.index()))),
        Err(e) => Err(message(&e)),
        Ok(_) => Err("a scalar was not found again".into()),
    }
}

/// The style of the node starting at byte `i` (libyaml's start mark: the first of its
/// anchor and tag, or the scalar itself).
fn style_at(text: &str, mut i: usize) -> Style {
    let b = text.as_bytes();
    let mut tag: Option<&str> = None;
    loop {
        match b.get(i) {
            Some(b'&' | b'!') => {
                let end = b[i..]
                    .iter()
                    .position(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
                    .map_or(b.len(), |n| i + n);
                if b[i] == b'!' {
                    tag = text.get(i..end);
                }
                i = end;
            }
            Some(b' ' | b'\t' | b'\r' | b'\n') => i += 1,
            Some(b'#') => {
                while b.get(i).is_some_and(|c| *c != b'\n') {
                    i += 1;
                }
            }
            _ => break,
        }
    }
    match tag {
        Some("!!str" | "!<tag:yaml.org,2002:str>") => Style::Str,
        Some(_) => Style::Tagged,
        None if matches!(b.get(i), Some(b'"' | b'\'' | b'|' | b'>')) => Style::Str,
        None => Style::Plain,
    }
}

/// One object of the text as written: the fields both readers need, each scalar with its
/// position in parse order.
#[derive(Default)]
pub struct RawObject {
    /// [`FIELDS`], in that order, as text.
    pub fields: [Option<RawScalar>; 6],
    pub secret_args: Option<Node>,
    /// This provider's own fields (the Go provider has none of them).
    pub template: Option<Node>,
    pub selector: Option<Node>,
    pub all_keys: Option<Node>,
}

impl RawObject {
    /// The text of field `name` (one of [`FIELDS`]), if given.
    pub fn text(&self, name: &str) -> Option<&str> {
        let i = FIELDS.iter().position(|f| *f == name)?;
        self.fields[i].as_ref().map(|s| s.text.as_str())
    }
}

/// The fields of an object read as text, in the order of [`RawObject::fields`].
pub const FIELDS: [&str; 6] = [
    "objectName",
    "secretPath",
    "secretKey",
    "method",
    "encoding",
    "filePermission",
];

/// A scalar's text (quoted ones unescaped) and its number in parse order.
pub struct RawScalar {
    pub ord: usize,
    pub text: String,
}

pub enum Node {
    Leaf(usize, Leaf),
    Seq(Vec<Node>),
    Map(Vec<(RawScalar, Node)>),
    /// Under a tag serde_yaml_ng does not resolve itself (`!foo`).
    Tagged(Box<Node>),
}

/// A scalar in a value position, as serde_yaml_ng resolved it.
pub enum Leaf {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(String),
}

/// Counts scalars in parse order; errors out at scalar `probe`.
struct Walk {
    next: Cell<usize>,
    probe: Option<usize>,
}

impl Walk {
    fn tick<E: de::Error>(&self) -> Result<usize, E> {
        let n = self.next.get();
        self.next.set(n + 1);
        if self.probe == Some(n) {
            Err(E::custom(PROBE))
        } else {
            Ok(n)
        }
    }
}

fn walk(text: &str, probe: Option<usize>) -> Result<Vec<RawObject>, serde_yaml_ng::Error> {
    let w = Walk {
        next: Cell::new(0),
        probe,
    };
    Seed(&w, Doc).deserialize(serde_yaml_ng::Deserializer::from_str(text))
}

/// A seed and visitor for one kind of position.
struct Seed<'w, K>(&'w Walk, K);
#[derive(Clone, Copy)]
struct Doc;
#[derive(Clone, Copy)]
struct Object;
/// A position read as text (`string` fields and map keys).
#[derive(Clone, Copy)]
struct Text;
/// A position decoded into `interface{}`.
#[derive(Clone, Copy)]
struct Any;

impl<'de> DeserializeSeed<'de> for Seed<'_, Doc> {
    type Value = Vec<RawObject>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_, Doc> {
    type Value = Vec<RawObject>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of objects")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(o) = seq.next_element_seed(Seed(self.0, Object))? {
            out.push(o);
        }
        Ok(out)
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_, Object> {
    type Value = RawObject;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_, Object> {
    type Value = RawObject;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object (a mapping)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut o = RawObject::default();
        while let Some(key) = map.next_key_seed(Seed(self.0, Text))? {
            if let Some(i) = FIELDS.iter().position(|f| *f == key.text) {
                if o.fields[i].is_some() {
                    return Err(de::Error::custom(format_args!(
                        "{} is given twice",
                        FIELDS[i]
                    )));
                }
                o.fields[i] = Some(map.next_value_seed(Seed(self.0, Text))?);
                continue;
            }
            let slot = match key.text.as_str() {
                "secretArgs" => &mut o.secret_args,
                "template" => &mut o.template,
                "selector" => &mut o.selector,
                "allKeys" => &mut o.all_keys,
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                    continue;
                }
            };
            if slot.is_some() {
                return Err(de::Error::custom(format_args!(
                    "{} is given twice",
                    key.text
                )));
            }
            *slot = Some(map.next_value_seed(Seed(self.0, Any))?);
        }
        Ok(o)
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_, Text> {
    type Value = RawScalar;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_, Text> {
    type Value = RawScalar;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a scalar")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(RawScalar {
            ord: self.0.tick()?,
            text: v.to_string(),
        })
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_, Any> {
    type Value = Node;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_, Any> {
    type Value = Node;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Leaf(self.0.tick()?, Leaf::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Leaf(self.0.tick()?, Leaf::Null))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Leaf(self.0.tick()?, Leaf::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Leaf(self.0.tick()?, Leaf::I64(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Leaf(self.0.tick()?, Leaf::U64(v)))
    }
    // Beyond 64 bits yaml.v3 parses a decimal as a float64, as `as f64` rounds.
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Leaf(self.0.tick()?, Leaf::F64(v as f64)))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        Ok(Node::Leaf(self.0.tick()?, Leaf::F64(v as f64)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Leaf(self.0.tick()?, Leaf::F64(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Leaf(self.0.tick()?, Leaf::Str(v.to_string())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Seed(self.0, Any))? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key_seed(Seed(self.0, Text))? {
            let value = map.next_value_seed(Seed(self.0, Any))?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Node, A::Error> {
        use de::VariantAccess;
        let (_tag, variant): (de::IgnoredAny, _) = data.variant()?;
        Ok(Node::Tagged(Box::new(
            variant.newtype_variant_seed(Seed(self.0, Any))?,
        )))
    }
}
