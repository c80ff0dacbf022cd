//! The YAML of a file as a tree of nodes with byte ranges into the text, so an edit can splice exactly the
//! bytes of one scalar.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A node and where it is in the text.
#[derive(Debug)]
pub(crate) struct Node {
    /// Byte offset of the node. Quoted scalars start at the quote; anchors and tags are not included;
    /// collections start at their first key, item or `{`/`[`.
    pub start: usize,
    /// Byte offset just past a scalar (past its closing quote). Collections have no extent here.
    pub end: usize,
    /// Reached through an alias or a merge key: its bytes are somewhere else and shared.
    pub alias: bool,
    /// What the node is.
    pub kind: Kind,
}

/// The shape of a node.
#[derive(Debug)]
pub(crate) enum Kind {
    Map(Vec<(Node, Node)>),
    Seq(Vec<Node>),
    Str(String),
    Null,
    /// Numbers and booleans: never what an edit replaces, only what it may overwrite.
    Other,
}

impl Node {
    /// The entry whose key is the string `key`.
    pub fn entry(&self, key: &str) -> Option<&(Node, Node)> {
        match &self.kind {
            Kind::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(&k.kind, Kind::Str(s) if s == key)),
            _ => None,
        }
    }

    /// The value under the string `key`.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The entries, when this is a mapping.
    pub fn entries(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            Kind::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The string value of a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Whether this is a scalar (with a real extent in the text).
    pub fn is_scalar(&self) -> bool {
        matches!(self.kind, Kind::Str(_) | Kind::Null | Kind::Other)
    }
}

/// Parses every document of `text`. Empty documents are skipped, exactly as when parsing into
/// `serde_json::Value`, so indexes agree between the two.
pub(crate) fn parse(text: &str) -> Result<Vec<Node>, String> {
    let docs: Vec<Spanned<Raw>> =
        tether_render::yaml::from_str_multiple(text).map_err(|e| e.to_string())?;
    docs.into_iter().map(convert).collect()
}

fn convert(spanned: Spanned<Raw>) -> Result<Node, String> {
    let referenced = spanned.referenced.span();
    let defined = spanned.defined.span();
    let (Some(start), Some(len)) = (referenced.byte_offset(), referenced.byte_len()) else {
        return Err(format!(
            "the YAML parser gave no byte position for the node at line {}",
            spanned.referenced.line()
        ));
    };
    let start = usize::try_from(start).map_err(|e| e.to_string())?;
    let len = usize::try_from(len).map_err(|e| e.to_string())?;
    let alias = referenced.byte_offset() != defined.byte_offset();
    let kind = match spanned.value {
        Raw::Map(entries) => Kind::Map(
            entries
                .into_iter()
                .map(|(k, v)| Ok((convert(k)?, convert(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        Raw::Seq(items) => Kind::Seq(items.into_iter().map(convert).collect::<Result<_, _>>()?),
        Raw::Str(s) => Kind::Str(s),
        Raw::Null => Kind::Null,
        Raw::Other => Kind::Other,
    };
    Ok(Node {
        start,
        end: start + len,
        alias,
        kind,
    })
}

/// What serde-saphyr hands over, each child wrapped in `Spanned` for its location.
enum Raw {
    Map(Vec<(Spanned<Raw>, Spanned<Raw>)>),
    Seq(Vec<Spanned<Raw>>),
    Str(String),
    Null,
    Other,
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Raw, E> {
        Ok(Raw::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Raw, E> {
        Ok(Raw::Other)
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Raw, E> {
        Ok(Raw::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Raw, E> {
        Ok(Raw::Other)
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Raw, E> {
        Ok(Raw::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Raw, E> {
        Ok(Raw::Other)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Raw, E> {
        Ok(Raw::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Raw, D::Error> {
        Raw::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Raw::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key()? {
            let value = map.next_value()?;
            entries.push((key, value));
        }
        Ok(Raw::Map(entries))
    }
}
