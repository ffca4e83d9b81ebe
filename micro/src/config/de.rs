//! Reading the tree into the user's types.
//!
//! Values keep the type their source gave them: a file's `"t"` is a string
//! and stays one. Text without a type of its own (from the environment,
//! flags or `${VAR}`) becomes what the reader asks for when it parses as
//! that: `"5"` for a number, exactly `true` or `false` for a boolean,
//! `a,b` or a JSON array for a sequence. Errors carry the path of the
//! value that failed.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, Unexpected, Visitor};

use super::value::{Node, Value, join};

/// Why a value could not be read, and where.
#[derive(Debug)]
pub(crate) struct DeError {
    /// The dotted path of the value that failed, once known.
    pub(crate) path: Option<String>,
    pub(crate) message: String,
}

impl DeError {
    /// This error, said to be at `path` unless a deeper path is known.
    fn at(mut self, path: &str) -> Self {
        if self.path.is_none() {
            self.path = Some(path.to_owned());
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self {
            path: None,
            message: msg.to_string(),
        }
    }
}

/// Reads `node`, found at `path`.
pub(crate) fn read<T: de::DeserializeOwned>(node: &Node, path: &str) -> Result<T, DeError> {
    T::deserialize(De { node, path }).map_err(|e| e.at(path))
}

#[derive(Clone, Copy)]
struct De<'a> {
    node: &'a Node,
    path: &'a str,
}

impl<'a> De<'a> {
    fn text(&self) -> Option<&'a str> {
        match &self.node.value {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// Integers and floats from text, or the value as it is.
macro_rules! number {
    ($($method:ident => $parse:ty, $visit:ident;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            match self.text() {
                Some(s) => match s.trim().parse::<$parse>() {
                    Ok(n) => visitor.$visit(n),
                    Err(_) => Err(de::Error::invalid_value(Unexpected::Str(s), &visitor)),
                },
                None => self.deserialize_any(visitor),
            }
        }
    )*};
}

impl<'de> Deserializer<'de> for De<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) | Value::Text(s) => visitor.visit_str(s),
            Value::Array(items) => visitor.visit_seq(Seq {
                items: items.iter(),
                path: self.path,
                index: 0,
            }),
            Value::Table(t) => visitor.visit_map(Map {
                entries: t.iter(),
                path: self.path,
                next: None,
            }),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.text() {
            Some("true") => visitor.visit_bool(true),
            Some("false") => visitor.visit_bool(false),
            Some(s) => Err(de::Error::invalid_value(Unexpected::Str(s), &visitor)),
            None => self.deserialize_any(visitor),
        }
    }

    number! {
        deserialize_i8 => i64, visit_i64;
        deserialize_i16 => i64, visit_i64;
        deserialize_i32 => i64, visit_i64;
        deserialize_i64 => i64, visit_i64;
        deserialize_u8 => u64, visit_u64;
        deserialize_u16 => u64, visit_u64;
        deserialize_u32 => u64, visit_u64;
        deserialize_u64 => u64, visit_u64;
        deserialize_f32 => f64, visit_f64;
        deserialize_f64 => f64, visit_f64;
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let Some(s) = self.text() else {
            return self.deserialize_any(visitor);
        };
        // Text as a list: a JSON array, or items separated by commas.
        let origin = self.node.origin.clone();
        let items: Vec<Node> = if s.trim_start().starts_with('[') {
            let parsed: serde_json::Value = serde_json::from_str(s)
                .map_err(|e| de::Error::custom(format!("not a JSON array: {e}")))?;
            match super::value::from_json(parsed, &origin).value {
                Value::Array(items) => items,
                _ => return Err(de::Error::invalid_value(Unexpected::Str(s), &visitor)),
            }
        } else if s.trim().is_empty() {
            Vec::new()
        } else {
            s.split(',')
                .map(|item| Node::new(Value::Text(item.trim().to_owned()), origin.clone()))
                .collect()
        };
        visitor.visit_seq(Seq {
            items: items.iter(),
            path: self.path,
            index: 0,
        })
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Str(s) | Value::Text(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            Value::Table(t) if t.len() == 1 => {
                let (variant, node) = t.iter().next().expect("one entry");
                visitor.visit_enum(Enum {
                    variant,
                    node,
                    path: self.path,
                })
            }
            other => Err(de::Error::invalid_type(unexpected(other), &visitor)),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf unit unit_struct tuple
        tuple_struct map struct identifier
    }
}

fn unexpected(value: &Value) -> Unexpected<'_> {
    match value {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Int(i) => Unexpected::Signed(*i),
        Value::Float(f) => Unexpected::Float(*f),
        Value::Str(s) | Value::Text(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Table(_) => Unexpected::Map,
    }
}

struct Seq<'a, I> {
    items: I,
    path: &'a str,
    index: usize,
}

impl<'de, 'a, I: Iterator<Item = &'a Node>> de::SeqAccess<'de> for Seq<'a, I> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.next() else {
            return Ok(None);
        };
        let mut path = self.path.to_owned();
        join(&mut path, &self.index.to_string());
        self.index += 1;
        seed.deserialize(De { node, path: &path })
            .map(Some)
            .map_err(|e| e.at(&path))
    }
}

struct Map<'a, I> {
    entries: I,
    path: &'a str,
    next: Option<(&'a String, &'a Node)>,
}

impl<'de, 'a, I: Iterator<Item = (&'a String, &'a Node)>> de::MapAccess<'de> for Map<'a, I> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, node)) = self.entries.next() else {
            return Ok(None);
        };
        self.next = Some((key, node));
        seed.deserialize(key.as_str().into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (key, node) = self
            .next
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("a value asked for before its key"))?;
        let mut path = self.path.to_owned();
        join(&mut path, key);
        seed.deserialize(De { node, path: &path })
            .map_err(|e| e.at(&path))
    }
}

struct Enum<'a> {
    variant: &'a str,
    node: &'a Node,
    path: &'a str,
}

impl<'de, 'a> de::EnumAccess<'de> for Enum<'a> {
    type Error = DeError;
    type Variant = De<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, De<'a>), DeError> {
        let variant = seed.deserialize(self.variant.into_deserializer())?;
        Ok((
            variant,
            De {
                node: self.node,
                path: self.path,
            },
        ))
    }
}

impl<'de> de::VariantAccess<'de> for De<'_> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde::Deserialize;

    use super::*;
    use crate::config::value::{Origin, from_json};

    fn text(s: &str) -> Node {
        Node::new(Value::Text(s.into()), Arc::new(Origin::Default))
    }

    #[test]
    fn text_becomes_the_type_asked_for() {
        assert_eq!(read::<u16>(&text("8080"), "p").unwrap(), 8080);
        assert!(read::<bool>(&text("true"), "b").unwrap());
        assert_eq!(read::<String>(&text("t"), "s").unwrap(), "t");
        assert_eq!(read::<f64>(&text("1.5"), "f").unwrap(), 1.5);
        assert_eq!(read::<Vec<u8>>(&text("1, 2,3"), "l").unwrap(), [1, 2, 3]);
        assert_eq!(
            read::<Vec<String>>(&text("[\"a,b\"]"), "l").unwrap(),
            ["a,b"]
        );
        assert_eq!(read::<Option<u8>>(&text("7"), "o").unwrap(), Some(7));
        let err = read::<bool>(&text("t"), "b").unwrap_err();
        assert_eq!(
            err.message,
            "invalid value: string \"t\", expected a boolean"
        );
        let err = read::<u8>(&text("300"), "n").unwrap_err();
        assert!(err.message.contains("u8"), "{}", err.message);
    }

    #[test]
    fn a_typed_string_stays_a_string() {
        let node = from_json(serde_json::json!("t"), &Arc::new(Origin::Default));
        assert!(read::<bool>(&node, "b").is_err());
        assert_eq!(read::<String>(&node, "b").unwrap(), "t");
    }

    #[test]
    fn errors_name_the_deepest_path() {
        #[derive(Debug, Deserialize)]
        struct Db {
            #[allow(dead_code)]
            max_conns: u32,
        }
        #[derive(Debug, Deserialize)]
        struct App {
            #[allow(dead_code)]
            database: Db,
        }
        let node = from_json(
            serde_json::json!({"database": {"max_conns": "many"}}),
            &Arc::new(Origin::Default),
        );
        let err = read::<App>(&node, "").unwrap_err();
        assert_eq!(err.path.as_deref(), Some("database.max_conns"));
        assert!(err.message.contains("expected u32"), "{}", err.message);
        let node = from_json(
            serde_json::json!({"database": {}}),
            &Arc::new(Origin::Default),
        );
        let err = read::<App>(&node, "").unwrap_err();
        assert_eq!(err.path.as_deref(), Some("database"));
        assert!(err.message.contains("missing field `max_conns`"));
    }

    #[test]
    fn enums_read_from_strings_and_tables() {
        #[derive(Debug, Deserialize, PartialEq)]
        #[serde(rename_all = "lowercase")]
        enum Level {
            Debug,
            Info,
        }
        #[derive(Debug, Deserialize, PartialEq)]
        enum Shape {
            Circle { r: u8 },
        }
        assert_eq!(read::<Level>(&text("info"), "l").unwrap(), Level::Info);
        let node = from_json(
            serde_json::json!({"Circle": {"r": 2}}),
            &Arc::new(Origin::Default),
        );
        assert_eq!(read::<Shape>(&node, "s").unwrap(), Shape::Circle { r: 2 });
        assert!(read::<Level>(&text("loud"), "l").is_err());
        let _ = Level::Debug;
    }
}
