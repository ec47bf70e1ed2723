//! JSON to MessagePack and back, by the shapes a service describes
//! (PROTOCOL.md §3 and §10).
//!
//! A person writes arguments as JSON; the service reads MessagePack as
//! `rmp-serde` writes it. Most values map one to one; where they do not, the
//! described shape decides:
//!
//! | shape | JSON accepted | MessagePack written |
//! |---|---|---|
//! | integers | a number without fraction, in the type's range (`u128`/`i128` also as a string of digits) | integer (`u128`/`i128` beyond 64 bits: bin of 16 bytes) |
//! | `f32`, `f64` | a number | float 32, float 64 |
//! | `char` | a string of one character | string |
//! | bytes | an array of numbers 0 to 255; a UUID (`67e55044-10b1-...`); or another string | bin; the UUID's 16 bytes (a `Uuid` goes as bytes); the string as a MessagePack string, which byte buffers read as its UTF-8 bytes |
//! | `Option<T>` | `null`, or a `T` | nil, or the `T` |
//! | map | an object (keys converted to the key shape: `"7"` for a `u32` key), or an array of `[key, value]` pairs | map |
//! | unit struct, `()` | `null` or `[]` | empty array, nil |
//! | struct | an object of its fields (a missing `Option` field is `null`; an unknown field is an error) | map keyed by field name |
//! | enum | `"Variant"` for a unit variant, `{"Variant": value}` for the others | the same |
//! | unknown | anything | the JSON value as it is |
//!
//! A mismatch names where it is (`.items[2].price`), what was expected and
//! what was found.
//!
//! Replies go the other way without shapes: every MessagePack value has a
//! JSON form (bin as an array of numbers, a map with keys that are not
//! strings with the keys written as JSON text, a float that JSON cannot
//! hold as a string, an extension as `{"ext": type, "data": [bytes]}`).

use rmpv::{Integer, Value};
use rpc_runtime::{Shape, TypeDefinition, VariantFields};
use serde_json::{Map, Number, Value as Json};
use std::{collections::BTreeMap, fmt};

/// A JSON value that does not fit the shape it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mismatch {
    /// Where in the value: empty for the value itself, else `.field`,
    /// `[index]`, `.Variant`, ...
    pub(crate) path: String,
    /// What the shape wants, in words.
    pub(crate) expected: String,
    /// What was there.
    pub(crate) found: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "at `{}`: ", self.path)?;
        }
        write!(f, "expected {}, found {}", self.expected, self.found)
    }
}

/// Converts JSON to MessagePack values by shape, with the service's named
/// types at hand.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Converter<'a> {
    types: &'a BTreeMap<String, TypeDefinition>,
}

/// Named types nest at most this deep while converting: a recursive type
/// with a value nested deeper is refused rather than overflowing the stack
/// (the server refuses more than 128 levels anyway).
const MAX_DEPTH: usize = 128;

impl<'a> Converter<'a> {
    pub(crate) fn new(types: &'a BTreeMap<String, TypeDefinition>) -> Self {
        Self { types }
    }

    /// `json` as a value of `shape`.
    pub(crate) fn convert(&self, json: &Json, shape: &Shape) -> Result<Value, Mismatch> {
        let mut path = String::new();
        self.value(json, shape, &mut path, 0)
    }

    fn value(
        &self,
        json: &Json,
        shape: &Shape,
        path: &mut String,
        depth: usize,
    ) -> Result<Value, Mismatch> {
        let mismatch = |path: &String| Mismatch {
            path: path.clone(),
            expected: self.describe(shape),
            found: found(json),
        };
        if depth > MAX_DEPTH {
            return Err(Mismatch {
                path: path.clone(),
                expected: format!("at most {MAX_DEPTH} levels of nesting"),
                found: "more".to_owned(),
            });
        }
        Ok(match (shape, json) {
            (Shape::Unit, Json::Null) => Value::Nil,
            (Shape::Bool, Json::Bool(b)) => Value::Boolean(*b),
            (Shape::I8, _) => {
                signed(json, i8::MIN.into(), i8::MAX.into()).ok_or_else(|| mismatch(path))?
            }
            (Shape::I16, _) => {
                signed(json, i16::MIN.into(), i16::MAX.into()).ok_or_else(|| mismatch(path))?
            }
            (Shape::I32, _) => {
                signed(json, i32::MIN.into(), i32::MAX.into()).ok_or_else(|| mismatch(path))?
            }
            (Shape::I64, _) => signed(json, i64::MIN, i64::MAX).ok_or_else(|| mismatch(path))?,
            (Shape::U8, _) => unsigned(json, u8::MAX.into()).ok_or_else(|| mismatch(path))?,
            (Shape::U16, _) => unsigned(json, u16::MAX.into()).ok_or_else(|| mismatch(path))?,
            (Shape::U32, _) => unsigned(json, u32::MAX.into()).ok_or_else(|| mismatch(path))?,
            (Shape::U64, _) => unsigned(json, u64::MAX).ok_or_else(|| mismatch(path))?,
            (Shape::I128, _) => wide(json, true).ok_or_else(|| mismatch(path))?,
            (Shape::U128, _) => wide(json, false).ok_or_else(|| mismatch(path))?,
            (Shape::F32, Json::Number(n)) => {
                Value::F32(n.as_f64().ok_or_else(|| mismatch(path))? as f32)
            }
            (Shape::F64, Json::Number(n)) => Value::F64(n.as_f64().ok_or_else(|| mismatch(path))?),
            (Shape::Char, Json::String(s)) if s.chars().count() == 1 => Value::from(s.as_str()),
            (Shape::Str, Json::String(s)) => Value::from(s.as_str()),
            // A `Uuid` goes as its 16 bytes; byte buffers take a string's.
            (Shape::Bytes, Json::String(s)) => match uuid_bytes(s) {
                Some(bytes) => Value::Binary(bytes.to_vec()),
                None => Value::from(s.as_str()),
            },
            (Shape::Bytes, Json::Array(items)) => Value::Binary(
                items
                    .iter()
                    .map(|item| item.as_u64().and_then(|b| u8::try_from(b).ok()))
                    .collect::<Option<Vec<u8>>>()
                    .ok_or_else(|| mismatch(path))?,
            ),
            (Shape::Option(_), Json::Null) => Value::Nil,
            (Shape::Option(inner), _) => self.value(json, inner, path, depth + 1)?,
            (Shape::Seq(item), Json::Array(items)) => {
                Value::Array(self.items(items, |_| item, path, depth)?)
            }
            (Shape::Array { item, len }, Json::Array(items)) if items.len() == *len => {
                Value::Array(self.items(items, |_| item, path, depth)?)
            }
            (Shape::Tuple(shapes), Json::Array(items)) if items.len() == shapes.len() => {
                Value::Array(self.items(items, |i| &shapes[i], path, depth)?)
            }
            (Shape::Map { key, value }, Json::Object(entries)) => {
                let mut map = Vec::with_capacity(entries.len());
                for (name, item) in entries {
                    let at = path.len();
                    path.push_str(&format!("[{name:?}]"));
                    let k = self.key(name, key, path, depth)?;
                    let v = self.value(item, value, path, depth + 1)?;
                    path.truncate(at);
                    map.push((k, v));
                }
                Value::Map(map)
            }
            (Shape::Map { key, value }, Json::Array(pairs)) => {
                let mut map = Vec::with_capacity(pairs.len());
                for (i, pair) in pairs.iter().enumerate() {
                    let at = path.len();
                    path.push_str(&format!("[{i}]"));
                    let Some([k, v]) = pair
                        .as_array()
                        .map(Vec::as_slice)
                        .and_then(|p| <&[Json; 2]>::try_from(p).ok())
                    else {
                        return Err(Mismatch {
                            path: path.clone(),
                            expected: "a `[key, value]` pair".to_owned(),
                            found: found(pair),
                        });
                    };
                    let k = self.value(k, key, path, depth + 1)?;
                    let v = self.value(v, value, path, depth + 1)?;
                    path.truncate(at);
                    map.push((k, v));
                }
                Value::Map(map)
            }
            (Shape::Named(name), _) => self.named(json, name, path, depth + 1)?,
            (Shape::Unknown, _) => plain(json),
            _ => return Err(mismatch(path)),
        })
    }

    /// A map key: object keys are strings, so a key of another shape is
    /// read from the string's JSON (`"7"` for a `u32`), or as the string
    /// itself for a string-like shape.
    fn key(
        &self,
        name: &str,
        shape: &Shape,
        path: &mut String,
        depth: usize,
    ) -> Result<Value, Mismatch> {
        let as_string = Json::String(name.to_owned());
        match self.value(&as_string, shape, path, depth + 1) {
            Ok(key) => Ok(key),
            Err(mismatch) => match serde_json::from_str::<Json>(name) {
                Ok(parsed) => self.value(&parsed, shape, path, depth + 1),
                Err(_) => Err(mismatch),
            },
        }
    }

    fn items<'s>(
        &self,
        items: &[Json],
        shape_of: impl Fn(usize) -> &'s Shape,
        path: &mut String,
        depth: usize,
    ) -> Result<Vec<Value>, Mismatch> {
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let at = path.len();
            path.push_str(&format!("[{i}]"));
            out.push(self.value(item, shape_of(i), path, depth + 1)?);
            path.truncate(at);
        }
        Ok(out)
    }

    fn named(
        &self,
        json: &Json,
        name: &str,
        path: &mut String,
        depth: usize,
    ) -> Result<Value, Mismatch> {
        let mismatch = |path: &String, expected: String| Mismatch {
            path: path.clone(),
            expected,
            found: found(json),
        };
        let Some(definition) = self.types.get(name) else {
            // A description always defines the types it names; an older or
            // foreign one may not: send the value as it is.
            return Ok(plain(json));
        };
        match definition {
            TypeDefinition::UnitStruct => match json {
                Json::Null => Ok(Value::Array(Vec::new())),
                Json::Array(items) if items.is_empty() => Ok(Value::Array(Vec::new())),
                _ => Err(mismatch(path, format!("`{name}`: null"))),
            },
            TypeDefinition::Newtype(inner) => self.value(json, inner, path, depth),
            TypeDefinition::Tuple(shapes) => {
                match json {
                    Json::Array(items) if items.len() == shapes.len() => Ok(Value::Array(
                        self.items(items, |i| &shapes[i], path, depth)?,
                    )),
                    _ => Err(mismatch(path, format!("`{name}`: {}", self.tuple(shapes)))),
                }
            }
            TypeDefinition::Struct(fields) => match json {
                Json::Object(object) => self.fields(object, fields, name, path, depth),
                _ => Err(mismatch(path, format!("`{name}`: {}", self.object(fields)))),
            },
            TypeDefinition::Enum(variants) => {
                let expected = || {
                    let names: Vec<String> = variants
                        .iter()
                        .map(|variant| self.variant(variant))
                        .collect();
                    format!("`{name}`: one of {}", names.join(", "))
                };
                let (variant_name, content) = match json {
                    Json::String(variant) => (variant.as_str(), None),
                    Json::Object(object) if object.len() == 1 => {
                        let Some((variant, content)) = object.iter().next() else {
                            return Err(mismatch(path, expected()));
                        };
                        (variant.as_str(), Some(content))
                    }
                    _ => return Err(mismatch(path, expected())),
                };
                let Some(variant) = variants.iter().find(|v| v.name == variant_name) else {
                    return Err(Mismatch {
                        path: path.clone(),
                        expected: expected(),
                        found: format!("`{variant_name}`"),
                    });
                };
                let at = path.len();
                path.push('.');
                path.push_str(variant_name);
                let tagged = |value: Value| Value::Map(vec![(Value::from(variant_name), value)]);
                let converted = match (&variant.fields, content) {
                    (VariantFields::Unit, None | Some(Json::Null)) => Value::from(variant_name),
                    (VariantFields::Newtype(shape), Some(content)) => {
                        tagged(self.value(content, shape, path, depth)?)
                    }
                    (VariantFields::Tuple(shapes), Some(Json::Array(items)))
                        if items.len() == shapes.len() =>
                    {
                        tagged(Value::Array(self.items(
                            items,
                            |i| &shapes[i],
                            path,
                            depth,
                        )?))
                    }
                    (VariantFields::Struct(fields), Some(Json::Object(object))) => {
                        tagged(self.fields(object, fields, variant_name, path, depth)?)
                    }
                    (_, content) => {
                        return Err(Mismatch {
                            path: path.clone(),
                            expected: self.variant(variant),
                            found: content.map_or_else(|| "no value".to_owned(), found),
                        });
                    }
                };
                path.truncate(at);
                Ok(converted)
            }
            // A kind of type this tool does not know: the value as it is.
            _ => Ok(plain(json)),
        }
    }

    fn fields(
        &self,
        object: &Map<String, Json>,
        fields: &[rpc_runtime::Field],
        owner: &str,
        path: &mut String,
        depth: usize,
    ) -> Result<Value, Mismatch> {
        if let Some(unknown) = object
            .keys()
            .find(|key| !fields.iter().any(|f| &f.name == *key))
        {
            let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
            return Err(Mismatch {
                path: path.clone(),
                expected: format!("the fields of `{owner}` ({})", names.join(", ")),
                found: format!("a field `{unknown}`"),
            });
        }
        let mut map = Vec::with_capacity(fields.len());
        for field in fields {
            let at = path.len();
            path.push('.');
            path.push_str(&field.name);
            let value = match (object.get(&field.name), &field.shape) {
                (Some(json), shape) => self.value(json, shape, path, depth)?,
                (None, Shape::Option(_)) => Value::Nil,
                (None, shape) => {
                    return Err(Mismatch {
                        path: path.clone(),
                        expected: self.describe(shape),
                        found: "nothing (the field is missing)".to_owned(),
                    });
                }
            };
            path.truncate(at);
            map.push((Value::from(field.name.as_str()), value));
        }
        Ok(Value::Map(map))
    }

    /// A shape in words, as an error message names it.
    pub(crate) fn describe(&self, shape: &Shape) -> String {
        match shape {
            Shape::Unit => "null".to_owned(),
            Shape::Bool => "true or false".to_owned(),
            Shape::I8 => "an integer (i8)".to_owned(),
            Shape::I16 => "an integer (i16)".to_owned(),
            Shape::I32 => "an integer (i32)".to_owned(),
            Shape::I64 => "an integer (i64)".to_owned(),
            Shape::I128 => "an integer (i128)".to_owned(),
            Shape::U8 => "an integer from 0 to 255 (u8)".to_owned(),
            Shape::U16 => "an integer from 0 to 65535 (u16)".to_owned(),
            Shape::U32 => "an integer from 0 to 4294967295 (u32)".to_owned(),
            Shape::U64 => "a non-negative integer (u64)".to_owned(),
            Shape::U128 => "a non-negative integer (u128)".to_owned(),
            Shape::F32 | Shape::F64 => "a number".to_owned(),
            Shape::Char => "a string of one character".to_owned(),
            Shape::Str => "a string".to_owned(),
            Shape::Bytes => "bytes (a string, or an array of numbers 0 to 255)".to_owned(),
            Shape::Option(inner) => format!("null or {}", self.describe(inner)),
            Shape::Seq(item) => format!("an array of {}", plural(&self.describe(item))),
            Shape::Map { key, value } => format!(
                "an object of {} keys to {}",
                self.describe(key),
                plural(&self.describe(value))
            ),
            Shape::Tuple(shapes) => self.tuple(shapes),
            Shape::Array { item, len } => {
                format!("an array of {len} {}", plural(&self.describe(item)))
            }
            Shape::Named(name) => match self.types.get(name) {
                Some(TypeDefinition::Struct(fields)) => {
                    format!("`{name}`: {}", self.object(fields))
                }
                Some(TypeDefinition::Enum(variants)) => {
                    let names: Vec<String> = variants
                        .iter()
                        .map(|variant| self.variant(variant))
                        .collect();
                    format!("`{name}`: one of {}", names.join(", "))
                }
                _ => format!("`{name}`"),
            },
            Shape::Unknown => "any value".to_owned(),
            _ => "a value of a shape this tool does not know".to_owned(),
        }
    }

    fn tuple(&self, shapes: &[Shape]) -> String {
        format!("an array of {} ({})", shapes.len(), self.list(shapes))
    }

    fn list(&self, shapes: &[Shape]) -> String {
        let words: Vec<String> = shapes.iter().map(brief).collect();
        words.join(", ")
    }

    fn object(&self, fields: &[rpc_runtime::Field]) -> String {
        let fields: Vec<String> = fields
            .iter()
            .map(|field| format!("\"{}\": {}", field.name, brief(&field.shape)))
            .collect();
        format!("an object {{{}}}", fields.join(", "))
    }

    fn variant(&self, variant: &rpc_runtime::Variant) -> String {
        match &variant.fields {
            VariantFields::Unit => format!("\"{}\"", variant.name),
            VariantFields::Newtype(shape) => format!("{{\"{}\": {}}}", variant.name, brief(shape)),
            VariantFields::Tuple(shapes) => {
                format!("{{\"{}\": [{}]}}", variant.name, self.list(shapes))
            }
            VariantFields::Struct(fields) => {
                format!(
                    "{{\"{}\": {}}}",
                    variant.name,
                    self.object(fields).trim_start_matches("an object ")
                )
            }
            _ => format!("\"{}\"", variant.name),
        }
    }
}

/// A shape in a word or two, as Rust writes it, for inside a longer
/// description.
pub(crate) fn brief(shape: &Shape) -> String {
    match shape {
        Shape::Unit => "()".to_owned(),
        Shape::Bool => "bool".to_owned(),
        Shape::I8 => "i8".to_owned(),
        Shape::I16 => "i16".to_owned(),
        Shape::I32 => "i32".to_owned(),
        Shape::I64 => "i64".to_owned(),
        Shape::I128 => "i128".to_owned(),
        Shape::U8 => "u8".to_owned(),
        Shape::U16 => "u16".to_owned(),
        Shape::U32 => "u32".to_owned(),
        Shape::U64 => "u64".to_owned(),
        Shape::U128 => "u128".to_owned(),
        Shape::F32 => "f32".to_owned(),
        Shape::F64 => "f64".to_owned(),
        Shape::Char => "char".to_owned(),
        Shape::Str => "string".to_owned(),
        Shape::Bytes => "bytes".to_owned(),
        Shape::Option(inner) => format!("Option<{}>", brief(inner)),
        Shape::Seq(item) => format!("[{}]", brief(item)),
        Shape::Map { key, value } => format!("{{{}: {}}}", brief(key), brief(value)),
        Shape::Tuple(shapes) => {
            let items: Vec<String> = shapes.iter().map(brief).collect();
            format!("({})", items.join(", "))
        }
        Shape::Array { item, len } => format!("[{}; {len}]", brief(item)),
        Shape::Named(name) => name.clone(),
        _ => "any".to_owned(),
    }
}

/// "an integer (u32)" as a plural, after "an array of".
fn plural(words: &str) -> String {
    words
        .strip_prefix("an ")
        .or_else(|| words.strip_prefix("a "))
        .map_or_else(|| words.to_owned(), |rest| format!("{rest}s"))
}

/// What a JSON value is, in an error message: its kind and, when short,
/// itself.
fn found(json: &Json) -> String {
    let text = json.to_string();
    let kind = match json {
        Json::Null => return "null".to_owned(),
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(items) => return format!("an array of {} item(s)", items.len()),
        Json::Object(_) => "an object",
    };
    if text.len() <= 40 {
        format!("{kind} ({text})")
    } else {
        kind.to_owned()
    }
}

fn signed(json: &Json, min: i64, max: i64) -> Option<Value> {
    let n = json.as_i64()?;
    (min..=max)
        .contains(&n)
        .then(|| Value::Integer(Integer::from(n)))
}

fn unsigned(json: &Json, max: u64) -> Option<Value> {
    let n = json.as_u64()?;
    (n <= max).then(|| Value::Integer(Integer::from(n)))
}

/// An `i128` or `u128`: an integer if it fits 64 bits, else 16 bytes
/// big-endian, as `rmp-serde` writes it. JSON numbers stop at 64 bits, so
/// wider values come as strings of digits.
fn wide(json: &Json, is_signed: bool) -> Option<Value> {
    let text = match json {
        Json::Number(n) => n.to_string(),
        Json::String(s) => s.trim().to_owned(),
        _ => return None,
    };
    if is_signed {
        let n: i128 = text.parse().ok()?;
        Some(match i64::try_from(n) {
            Ok(small) => Value::Integer(Integer::from(small)),
            Err(_) => Value::Binary(n.to_be_bytes().to_vec()),
        })
    } else {
        let n: u128 = text.parse().ok()?;
        Some(match u64::try_from(n) {
            Ok(small) => Value::Integer(Integer::from(small)),
            Err(_) => Value::Binary(n.to_be_bytes().to_vec()),
        })
    }
}

/// The 16 bytes of a UUID in its usual form (`8-4-4-4-12` hexadecimal
/// digits), which is how `uuid::Uuid` reads from MessagePack.
fn uuid_bytes(text: &str) -> Option<[u8; 16]> {
    let groups: Vec<&str> = text.split('-').collect();
    if groups.iter().map(|group| group.len()).ne([8, 4, 4, 4, 12]) {
        return None;
    }
    let digits: String = groups.concat();
    let mut bytes = [0u8; 16];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(digits.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(bytes)
}

/// JSON as MessagePack, with no shape to follow: for services that do not
/// describe themselves, and types described as unknown.
pub(crate) fn plain(json: &Json) -> Value {
    match json {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Value::Integer(Integer::from(u)),
            (None, Some(i)) => Value::Integer(Integer::from(i)),
            (None, None) => Value::F64(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::Array(items.iter().map(plain).collect()),
        Json::Object(entries) => Value::Map(
            entries
                .iter()
                .map(|(k, v)| (Value::from(k.as_str()), plain(v)))
                .collect(),
        ),
    }
}

/// A MessagePack value as JSON.
pub(crate) fn to_json(value: &Value) -> Json {
    match value {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Json::from(u),
            (None, Some(i)) => Json::from(i),
            (None, None) => Json::Null,
        },
        Value::F32(f) => float(f64::from(*f)),
        Value::F64(f) => float(*f),
        Value::String(s) => match s.as_str() {
            Some(text) => Json::from(text),
            // Not UTF-8: its bytes, as bin.
            None => Json::from(s.as_bytes().to_vec()),
        },
        Value::Binary(bytes) => Json::from(bytes.clone()),
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::String(s) if s.as_str().is_some() => {
                            s.as_str().unwrap_or_default().to_owned()
                        }
                        other => to_json(other).to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Value::Ext(kind, data) => serde_json::json!({ "ext": kind, "data": data }),
    }
}

/// A float as JSON, which has no NaN nor infinities: those as strings.
fn float(f: f64) -> Json {
    Number::from_f64(f).map_or_else(|| Json::from(f.to_string()), Json::Number)
}

/// A MessagePack value as bytes.
pub(crate) fn encode(value: &Value) -> Vec<u8> {
    let mut bytes = Vec::new();
    // Writing to a Vec does not fail.
    let _ = rmpv::encode::write_value(&mut bytes, value);
    bytes
}

/// Reads the one MessagePack value in `bytes`.
pub(crate) fn decode(bytes: &[u8]) -> Result<Value, String> {
    let mut rest = bytes;
    rmpv::decode::read_value_with_max_depth(&mut rest, MAX_DEPTH)
        .map_err(|error| format!("the reply is not valid MessagePack: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn types() -> BTreeMap<String, TypeDefinition> {
        let description: rpc_runtime::ServiceDescription = serde_json::from_value(json!({
            "service": "T", "docs": "", "methods": [], "schema_hash": "0",
            "types": {
                "Point": {"struct": [{"name": "x", "shape": "i32"}, {"name": "note", "shape": {"option": "str"}}]},
                "Shape": {"enum": [
                    {"name": "Circle", "fields": {"struct": [{"name": "radius", "shape": "f64"}]}},
                    {"name": "Square", "fields": {"newtype": "f64"}},
                    {"name": "Dot", "fields": "unit"}
                ]},
                "Marker": "unit_struct",
                "Meters": {"newtype": "f64"}
            }
        }))
        .expect("a description");
        description.types
    }

    fn convert(json: Json, shape: Shape) -> Result<Value, Mismatch> {
        let types = types();
        Converter::new(&types).convert(&json, &shape)
    }

    #[test]
    fn values_take_the_encoding_rmp_serde_writes() {
        assert_eq!(convert(json!(30), Shape::U32), Ok(Value::from(30u32)));
        assert_eq!(convert(json!(-1), Shape::I8), Ok(Value::from(-1i8)));
        assert_eq!(convert(json!("x"), Shape::Char), Ok(Value::from("x")));
        assert_eq!(
            convert(json!(null), Shape::Option(Box::new(Shape::U8))),
            Ok(Value::Nil)
        );
        assert_eq!(
            convert(json!(null), Shape::Named("Marker".into())),
            Ok(Value::Array(vec![]))
        );
        assert_eq!(
            convert(json!(2.5), Shape::Named("Meters".into())),
            Ok(Value::F64(2.5))
        );
        assert_eq!(
            convert(json!("Dot"), Shape::Named("Shape".into())),
            Ok(Value::from("Dot"))
        );
        assert_eq!(
            convert(json!({"Square": 2}), Shape::Named("Shape".into())),
            Ok(Value::Map(vec![(Value::from("Square"), Value::F64(2.0))]))
        );
        assert_eq!(
            convert(json!({"x": 1}), Shape::Named("Point".into())),
            Ok(Value::Map(vec![
                (Value::from("x"), Value::from(1)),
                (Value::from("note"), Value::Nil)
            ]))
        );
        let key_u32 = Shape::Map {
            key: Box::new(Shape::U32),
            value: Box::new(Shape::Str),
        };
        assert_eq!(
            convert(json!({"7": "seven"}), key_u32.clone()),
            Ok(Value::Map(vec![(Value::from(7), Value::from("seven"))]))
        );
        assert_eq!(
            convert(json!([[7, "seven"]]), key_u32),
            Ok(Value::Map(vec![(Value::from(7), Value::from("seven"))]))
        );
        let huge = u128::MAX.to_string();
        assert_eq!(
            convert(json!(huge), Shape::U128),
            Ok(Value::Binary(u128::MAX.to_be_bytes().to_vec()))
        );
        assert_eq!(convert(json!("hi"), Shape::Bytes), Ok(Value::from("hi")));
        let mut uuid = [0u8; 16];
        uuid[15] = 0xab;
        assert_eq!(
            convert(json!("00000000-0000-0000-0000-0000000000ab"), Shape::Bytes),
            Ok(Value::Binary(uuid.to_vec()))
        );
        assert_eq!(
            convert(json!([104, 105]), Shape::Bytes),
            Ok(Value::Binary(b"hi".to_vec()))
        );
    }

    #[test]
    fn a_mismatch_says_where_what_was_expected_and_what_was_found() {
        let error = convert(json!(300), Shape::U8).expect_err("out of range");
        assert_eq!(
            error.to_string(),
            "expected an integer from 0 to 255 (u8), found a number (300)"
        );
        let points = Shape::Seq(Box::new(Shape::Named("Point".into())));
        let error = convert(json!([{"x": 1}, {"x": "one"}]), points).expect_err("a string");
        assert_eq!(error.path, "[1].x");
        assert_eq!(error.found, "a string (\"one\")");
        let error = convert(json!({"x": 1, "z": 2}), Shape::Named("Point".into())).expect_err("z");
        assert_eq!(error.found, "a field `z`");
        assert!(error.expected.contains("x, note"), "{}", error.expected);
        let error = convert(json!({}), Shape::Named("Point".into())).expect_err("x missing");
        assert_eq!(error.path, ".x");
        let error = convert(json!("Hexagon"), Shape::Named("Shape".into())).expect_err("no such");
        assert!(
            error
                .expected
                .contains(r#"{"Circle": {"radius": f64}}, {"Square": f64}, "Dot""#),
            "{}",
            error.expected
        );
        let error = convert(
            json!({"Circle": {"radius": "big"}}),
            Shape::Named("Shape".into()),
        )
        .expect_err("str");
        assert_eq!(error.path, ".Circle.radius");
        assert_eq!(
            convert(json!(1.5), Shape::U32).expect_err("fraction").found,
            "a number (1.5)"
        );
    }

    #[test]
    fn replies_read_back_as_json() {
        let value = Value::Map(vec![
            (Value::from("a"), Value::Binary(vec![1, 2])),
            (Value::from(7), Value::F64(f64::NAN)),
        ]);
        assert_eq!(to_json(&value), json!({"a": [1, 2], "7": "NaN"}));
        assert_eq!(
            decode(&encode(&value)).map(|v| to_json(&v)),
            Ok(to_json(&value))
        );
    }
}
