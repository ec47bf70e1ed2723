//! What a type's values look like, traced from its serde `Deserialize`
//! implementation: a [`Shape`] per type, and the definitions of the structs
//! and enums it names (PROTOCOL.md §10).
//!
//! The tracer is a `serde::Deserializer` that makes up a value: asked for a
//! `u32` it records `u32` and gives 1, asked for a struct it records the
//! struct's fields and gives each a value, asked for an enum it records the
//! variant it gives. A value holds one variant of each enum, so a type is
//! deserialized again (a *pass*) until every variant of every enum it
//! reaches has been given once. Every pass goes into options (`Some`),
//! sequences and maps (one item), unless the type is already being traced
//! further up (a recursive type such as `struct Tree { children:
//! Vec<Tree> }`): then options are `None`, sequences and maps empty, and an
//! enum gives a variant already traced, one that does not hold the enum
//! itself if it can.
//!
//! | the type's serde implementation asks for | the tracer records |
//! |---|---|
//! | a primitive, a string, bytes, unit | that shape |
//! | an option, a sequence, a map, a tuple | that shape, with the items' shapes |
//! | a tuple of two or more items of one shape (`[T; N]`) | an array of that length |
//! | a struct, a newtype, a tuple struct, a unit struct | its name, and its definition |
//! | an enum | its name, and each variant's fields |
//! | a struct or an enum of a name another type has (`Page<A>`, `Page<B>`) | its name with `#2`, `#3`, … (`Tracer::label`), and its definition |
//! | any value (`deserialize_any`: untagged and internally tagged enums, `serde_json::Value`) | nothing: the whole type is [`Shape::Unknown`] |
//! | an enum of the name of the struct it is a field of (adjacently tagged enums, `#[serde(tag, content)]`) | nothing: the whole type is [`Shape::Unknown`] |
//! | a value on which it panics (an `assert!` on the made-up number) | nothing: the whole type is [`Shape::Unknown`], with a warning |
//! | a string or bytes that it then refuses (a date, a UUID) | nothing; the next pass gives the next sample there ([`STRINGS`], [`BYTES`]); out of samples, the whole type is [`Shape::Unknown`] |
//!
//! (Written here rather than taken from `serde-reflection`, which explores
//! the variants of the traced type itself only: an enum inside an `Option`,
//! a `Vec` or another type's field kept its first variant.)

use crate::protocol::describe::{Field, Shape, TypeDefinition, Variant, VariantFields};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use std::{
    collections::BTreeMap,
    fmt,
    panic::{self, AssertUnwindSafe},
};
use tracing::warn;

/// The strings given, in turn, to a type that refuses the one before: a
/// plain word, then the forms the usual parsed types take (a timestamp, a
/// UUID, an IP address, a URL, a number).
const STRINGS: [&str; 6] = [
    "x",
    "1970-01-01T00:00:00Z",
    "00000000-0000-0000-0000-000000000001",
    "127.0.0.1",
    "http://localhost/",
    "1",
];

/// The bytes given, in turn, to a type that refuses the ones before: one
/// byte, then 16 (a binary UUID), 4 and 8.
const BYTES: [&[u8]; 4] = [b"x", &[1; 16], &[1; 4], &[1; 8]];

/// Where a string or bytes are asked for: the named types being traced (by
/// label), and how many strings or bytes the innermost one asked for
/// before.
type SampleKey = (Vec<String>, usize);

/// Passes over one type at most: far more than the variants of any real
/// type need.
const MAX_PASSES: usize = 1024;

/// Named types nested deeper than this end the trace (the type is then
/// [`Shape::Unknown`]): only a recursive enum with no way out gets there.
const MAX_DEPTH: usize = 64;

/// Traces types, and keeps the definitions of the structs and enums they
/// name.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Tracer {
    /// By label (see `Tracer::label`).
    structs: BTreeMap<String, TypeDefinition>,
    enums: BTreeMap<String, EnumTrace>,
    /// The Rust types met under each serde name, told apart by the type of
    /// their serde visitor, in the order they were met.
    types: BTreeMap<&'static str, Vec<&'static str>>,
    /// Which of [`STRINGS`] or [`BYTES`] to give where the first was refused.
    samples: BTreeMap<SampleKey, usize>,
}

/// An enum's variants, each with its fields once it has been given.
#[derive(Debug, Clone)]
struct EnumTrace {
    variants: &'static [&'static str],
    traced: Vec<Option<VariantFields>>,
}

impl Tracer {
    /// The shape of `T`'s values, [`Shape::Unknown`] if its serde
    /// implementation decodes by looking at the value (or panics).
    pub(crate) fn trace<T: DeserializeOwned>(&mut self) -> Shape {
        let before = (self.structs.clone(), self.enums.clone(), self.types.clone());
        let shape = self.passes::<T>();
        if shape == Shape::Unknown {
            // What its passes defined describes nothing a method uses, and
            // would move the labels of the types met next.
            (self.structs, self.enums, self.types) = before;
        }
        shape
    }

    /// [`Tracer::trace`]'s passes over `T`.
    fn passes<T: DeserializeOwned>(&mut self) -> Shape {
        let mut shape = Shape::Unknown;
        for _ in 0..MAX_PASSES {
            let mut pass = Pass {
                tracer: self,
                stack: Vec::new(),
                names: Vec::new(),
                structs: Vec::new(),
                active: Vec::new(),
                sampled: vec![0],
                last_sample: None,
                more: false,
            };
            let mut traced = Shape::Unknown;
            // A `Deserialize` may panic on a value no caller sends (an
            // `assert!` on the number the tracer makes up): the server
            // must start all the same, with the type undescribed.
            let decoded = panic::catch_unwind(AssertUnwindSafe(|| {
                T::deserialize(Tracing::new(&mut pass, &mut traced, false)).is_ok()
            }));
            let Ok(decoded) = decoded else {
                warn!(
                    r#type = std::any::type_name::<T>(),
                    "its `Deserialize` panicked on a value made up to describe it \
                     (the panic above): `rpc.describe` shows it as `unknown`"
                );
                return Shape::Unknown;
            };
            if !decoded {
                // Most likely the last string or bytes given were refused
                // (a date, a UUID): the next pass gives the next sample
                // there. Out of samples, or nothing to change: unknown.
                let Some((key, limit)) = pass.last_sample.take() else {
                    return Shape::Unknown;
                };
                let next = self.samples.entry(key).or_default();
                *next += 1;
                if *next >= limit {
                    return Shape::Unknown;
                }
                continue;
            }
            refine(&mut shape, traced);
            if !pass.more {
                break;
            }
        }
        normalize(&mut shape);
        shape
    }

    /// The definitions of every struct and enum traced, by name; variants
    /// in declaration order.
    pub(crate) fn finish(self) -> BTreeMap<String, TypeDefinition> {
        let mut types = self.structs;
        for (name, trace) in self.enums {
            let variants = trace
                .variants
                .iter()
                .zip(trace.traced)
                // A variant only reached inside a recursion is left out
                // rather than described wrongly.
                .filter_map(|(name, fields)| {
                    Some(Variant {
                        name: (*name).to_owned(),
                        fields: fields?,
                    })
                })
                .collect();
            types.insert(name, TypeDefinition::Enum(variants));
        }
        for definition in types.values_mut() {
            normalize_definition(definition);
        }
        types
    }

    /// The name under which the Rust type whose serde visitor is `visitor`
    /// is described: its serde `name`, unless another type met before has
    /// that name (a generic struct at another type parameter, a struct of
    /// the same name in another module); then `name#2`, `name#3`, in the
    /// order met.
    ///
    /// serde gives a deserializer nothing but the name, which both types
    /// share; the type of the visitor their `Deserialize` hands over is
    /// their own (serde's derive declares it inside the impl, generic over
    /// the type's parameters).
    fn label(&mut self, name: &'static str, visitor: &'static str) -> String {
        let met = self.types.entry(name).or_default();
        let index = met
            .iter()
            .position(|known| *known == visitor)
            .unwrap_or_else(|| {
                met.push(visitor);
                met.len() - 1
            });
        if index == 0 {
            name.to_owned()
        } else {
            format!("{name}#{}", index + 1)
        }
    }
}

/// One pass over a type.
struct Pass<'t> {
    tracer: &'t mut Tracer,
    /// The named types being traced, by label, outermost first.
    stack: Vec<String>,
    /// Their serde names.
    names: Vec<&'static str>,
    /// The serde names of the structs among them, outermost first.
    structs: Vec<&'static str>,
    /// The enum variants being traced (by label), outermost first.
    active: Vec<(String, usize)>,
    /// How many strings or bytes each level of `stack` asked for (and the
    /// top level, first).
    sampled: Vec<usize>,
    /// Where the last string or bytes were given, and how many samples
    /// there are of that kind.
    last_sample: Option<(SampleKey, usize)>,
    /// Whether an enum still has variants to give: another pass is needed.
    more: bool,
}

/// Why a trace stopped.
#[derive(Debug)]
struct Stop(String);

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Stop(message.to_string())
    }
}

/// The deserializer of one value: records its shape in `shape`.
struct Tracing<'p, 't> {
    pass: &'p mut Pass<'t>,
    shape: &'p mut Shape,
    /// Inside a type that is already being traced further up.
    cut: bool,
}

impl<'p, 't> Tracing<'p, 't> {
    fn new(pass: &'p mut Pass<'t>, shape: &'p mut Shape, cut: bool) -> Self {
        Self { pass, shape, cut }
    }

    /// Enters the named type of serde name `name` whose visitor is a `V`:
    /// its label, and whether it is already being traced (a recursion); an
    /// error past [`MAX_DEPTH`].
    fn enter<V>(&mut self, name: &'static str) -> Result<(String, bool), Stop> {
        if self.pass.stack.len() >= MAX_DEPTH {
            return Err(Stop(format!(
                "`{name}` nests deeper than {MAX_DEPTH} types"
            )));
        }
        let label = self.pass.tracer.label(name, std::any::type_name::<V>());
        let recursion = self.cut || self.pass.stack.contains(&label);
        self.pass.stack.push(label.clone());
        self.pass.names.push(name);
        self.pass.sampled.push(0);
        *self.shape = Shape::Named(label.clone());
        Ok((label, recursion))
    }

    fn leave(&mut self) {
        self.pass.stack.pop();
        self.pass.names.pop();
        self.pass.sampled.pop();
    }

    /// Which sample to give of `limit` (the number of samples of its
    /// kind) for the string or bytes asked for now.
    fn sample(&mut self, limit: usize) -> usize {
        let count = self.pass.sampled.last_mut().map_or(0, |count| {
            *count += 1;
            *count - 1
        });
        let key = (self.pass.stack.clone(), count);
        let index = self.pass.tracer.samples.get(&key).copied().unwrap_or(0);
        self.pass.last_sample = Some((key, limit));
        index.min(limit - 1)
    }

    /// Records `definition` for the struct labelled `label`, refining an
    /// earlier one.
    fn define(&mut self, label: String, definition: TypeDefinition) {
        match self.pass.tracer.structs.get_mut(&label) {
            Some(known) => refine_definition(known, definition),
            None => {
                self.pass.tracer.structs.insert(label, definition);
            }
        }
    }
}

/// Records `$shape` and visits `$visit($value)`.
macro_rules! primitive {
    ($($method:ident => $shape:expr, $visit:ident($($value:expr)?);)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
            *self.shape = $shape;
            visitor.$visit($($value)?)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Tracing<'_, '_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop("decodes by looking at the value".to_owned()))
    }

    // Non-zero values: `NonZeroU32` and the like accept them.
    primitive! {
        deserialize_bool => Shape::Bool, visit_bool(false);
        deserialize_i8 => Shape::I8, visit_i8(1);
        deserialize_i16 => Shape::I16, visit_i16(1);
        deserialize_i32 => Shape::I32, visit_i32(1);
        deserialize_i64 => Shape::I64, visit_i64(1);
        deserialize_i128 => Shape::I128, visit_i128(1);
        deserialize_u8 => Shape::U8, visit_u8(1);
        deserialize_u16 => Shape::U16, visit_u16(1);
        deserialize_u32 => Shape::U32, visit_u32(1);
        deserialize_u64 => Shape::U64, visit_u64(1);
        deserialize_u128 => Shape::U128, visit_u128(1);
        deserialize_f32 => Shape::F32, visit_f32(1.0);
        deserialize_f64 => Shape::F64, visit_f64(1.0);
        deserialize_char => Shape::Char, visit_char('x');
        deserialize_unit => Shape::Unit, visit_unit();
        deserialize_identifier => Shape::Str, visit_str("x");
        deserialize_ignored_any => Shape::Unit, visit_unit();
    }

    fn deserialize_str<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Stop> {
        *self.shape = Shape::Str;
        let sample = STRINGS[self.sample(STRINGS.len())];
        visitor.visit_str(sample)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Stop> {
        *self.shape = Shape::Bytes;
        let sample = BYTES[self.sample(BYTES.len())];
        visitor.visit_bytes(sample)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        self.deserialize_bytes(visitor)
    }

    /// As `rmp-serde`'s: types that differ by it (`Uuid`: bytes rather
    /// than a string) are described as they go on the wire.
    fn is_human_readable(&self) -> bool {
        false
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        let mut inner = Shape::Unknown;
        let value = if self.cut {
            visitor.visit_none()
        } else {
            visitor.visit_some(Tracing::new(self.pass, &mut inner, false))
        };
        *self.shape = Shape::Option(Box::new(inner));
        value
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        mut self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        let (label, _) = self.enter::<V>(name)?;
        self.define(label, TypeDefinition::UnitStruct);
        self.leave();
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        mut self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        let (label, cut) = self.enter::<V>(name)?;
        let mut inner = Shape::Unknown;
        let value = visitor.visit_newtype_struct(Tracing::new(self.pass, &mut inner, cut));
        self.define(label, TypeDefinition::Newtype(inner));
        self.leave();
        value
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        // One item, none inside a recursion.
        let (value, mut items) = trace_items(self.pass, usize::from(!self.cut), self.cut, visitor);
        *self.shape = Shape::Seq(Box::new(items.pop().unwrap_or(Shape::Unknown)));
        value
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Stop> {
        let (value, items) = trace_items(self.pass, len, self.cut, visitor);
        *self.shape = Shape::Tuple(items);
        value
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        mut self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        let (label, cut) = self.enter::<V>(name)?;
        let (value, items) = trace_items(self.pass, len, cut, visitor);
        self.define(label, TypeDefinition::Tuple(items));
        self.leave();
        value
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        let (mut key, mut value_shape) = (Shape::Unknown, Shape::Unknown);
        let value = visitor.visit_map(Entry {
            pass: self.pass,
            key: &mut key,
            value: &mut value_shape,
            left: !self.cut,
        });
        *self.shape = Shape::Map {
            key: Box::new(key),
            value: Box::new(value_shape),
        };
        value
    }

    fn deserialize_struct<V: Visitor<'de>>(
        mut self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        let (label, cut) = self.enter::<V>(name)?;
        self.pass.structs.push(name);
        let (value, fields) = trace_fields(self.pass, fields, cut, visitor);
        self.pass.structs.pop();
        // A struct that refused its sample is defined by the pass that
        // takes one; a type that never does leaves no definition.
        if value.is_ok() {
            self.define(label, TypeDefinition::Struct(fields));
        }
        self.leave();
        value
    }

    fn deserialize_enum<V: Visitor<'de>>(
        mut self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        // serde's adjacent tagging (`#[serde(tag = "t", content = "c")]`)
        // reads the enum as a struct of its own name, whose tag field is
        // read as that enum: neither shape is the one on the wire.
        // (By serde name: the struct's visitor and the enum's differ.)
        if self.pass.names.last() == Some(&name) && self.pass.structs.last() == Some(&name) {
            return Err(Stop(format!("`{name}` is an adjacently tagged enum")));
        }
        let (label, cut) = self.enter::<V>(name)?;
        let trace = self
            .pass
            .tracer
            .enums
            .entry(label.clone())
            .or_insert_with(|| EnumTrace {
                variants,
                traced: vec![None; variants.len()],
            });
        let index = if cut {
            // Recursing: a variant already traced, one that does not hold
            // this enum if there is one; else one not being traced further
            // up (`Num` inside `Add(Box<Expr>, Box<Expr>)`); else any.
            let own = Shape::Named(label.clone());
            let active = &self.pass.active;
            let traced = |i: &usize| trace.traced[*i].is_some();
            let holds_itself = |i: &usize| {
                trace.traced[*i]
                    .as_ref()
                    .is_some_and(|fields| fields_mention(fields, &own))
            };
            let being_traced = |i: &usize| {
                active
                    .iter()
                    .any(|(traced, variant)| *traced == label && variant == i)
            };
            (0..variants.len())
                .find(|i| traced(i) && !holds_itself(i) && !being_traced(i))
                .or_else(|| (0..variants.len()).find(|i| !traced(i) && !being_traced(i)))
                .or_else(|| (0..variants.len()).find(traced))
                .unwrap_or(0)
        } else {
            let untraced = trace.traced.iter().position(Option::is_none);
            untraced.unwrap_or(0)
        };
        self.pass.active.push((label.clone(), index));
        let mut fields = None;
        let value = visitor.visit_enum(OneVariant {
            pass: self.pass,
            name: variants.get(index).copied().unwrap_or_default(),
            fields: &mut fields,
            cut,
        });
        self.pass.active.pop();
        if let (Some(fields), Some(trace)) = (fields, self.pass.tracer.enums.get_mut(&label)) {
            match &mut trace.traced[index] {
                Some(known) => refine_variant(known, fields),
                slot @ None => *slot = Some(fields),
            }
            if !cut && trace.traced.iter().any(Option::is_none) {
                self.pass.more = true;
            }
        }
        self.leave();
        value
    }
}

/// Traces `len` items of a sequence, a tuple, a tuple struct or a tuple
/// variant through `visitor`: its value, and the items' shapes.
fn trace_items<'de, V: Visitor<'de>>(
    pass: &mut Pass<'_>,
    len: usize,
    cut: bool,
    visitor: V,
) -> (Result<V::Value, Stop>, Vec<Shape>) {
    let mut items = vec![Shape::Unknown; len];
    let value = visitor.visit_seq(Items::new(pass, &mut items, cut));
    (value, items)
}

/// Traces the fields `names` of a struct or a struct variant through
/// `visitor`: its value, and the fields with their shapes.
fn trace_fields<'de, V: Visitor<'de>>(
    pass: &mut Pass<'_>,
    names: &'static [&'static str],
    cut: bool,
    visitor: V,
) -> (Result<V::Value, Stop>, Vec<Field>) {
    let mut shapes = vec![Shape::Unknown; names.len()];
    let value = visitor.visit_map(Fields {
        pass,
        names,
        shapes: &mut shapes,
        next: 0,
        cut,
    });
    let fields = names
        .iter()
        .zip(shapes)
        .map(|(name, shape)| Field {
            name: (*name).to_owned(),
            shape,
        })
        .collect();
    (value, fields)
}

/// The items of a sequence or a tuple, each traced into its slot.
struct Items<'p, 't, 's> {
    pass: &'p mut Pass<'t>,
    slots: std::slice::IterMut<'s, Shape>,
    cut: bool,
}

impl<'p, 't, 's> Items<'p, 't, 's> {
    fn new(pass: &'p mut Pass<'t>, slots: &'s mut [Shape], cut: bool) -> Self {
        Self {
            pass,
            slots: slots.iter_mut(),
            cut,
        }
    }
}

impl<'de> SeqAccess<'de> for Items<'_, '_, '_> {
    type Error = Stop;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Stop> {
        match self.slots.next() {
            Some(slot) => seed
                .deserialize(Tracing::new(self.pass, slot, self.cut))
                .map(Some),
            None => Ok(None),
        }
    }
}

/// A map of one entry (or none, inside a recursion).
struct Entry<'p, 't, 's> {
    pass: &'p mut Pass<'t>,
    key: &'s mut Shape,
    value: &'s mut Shape,
    left: bool,
}

impl<'de> MapAccess<'de> for Entry<'_, '_, '_> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Stop> {
        if !self.left {
            return Ok(None);
        }
        self.left = false;
        seed.deserialize(Tracing::new(self.pass, self.key, false))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        seed.deserialize(Tracing::new(self.pass, self.value, false))
    }
}

/// The fields of a struct or a struct variant, by name, in order.
struct Fields<'p, 't, 's> {
    pass: &'p mut Pass<'t>,
    names: &'static [&'static str],
    shapes: &'s mut [Shape],
    next: usize,
    cut: bool,
}

impl<'de> MapAccess<'de> for Fields<'_, '_, '_> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Stop> {
        match self.names.get(self.next) {
            Some(name) => seed
                .deserialize(IntoDeserializer::<Stop>::into_deserializer(*name))
                .map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        let index = self.next;
        self.next += 1;
        match self.shapes.get_mut(index) {
            Some(slot) => seed.deserialize(Tracing::new(self.pass, slot, self.cut)),
            None => Err(Stop("a value without its field".to_owned())),
        }
    }
}

/// The variant an enum is given, by name.
struct OneVariant<'p, 't, 'f> {
    pass: &'p mut Pass<'t>,
    name: &'static str,
    fields: &'f mut Option<VariantFields>,
    cut: bool,
}

impl<'de, 'p, 't, 'f> EnumAccess<'de> for OneVariant<'p, 't, 'f> {
    type Error = Stop;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Stop> {
        let variant = seed.deserialize(IntoDeserializer::<Stop>::into_deserializer(self.name))?;
        Ok((variant, self))
    }
}

impl<'de> VariantAccess<'de> for OneVariant<'_, '_, '_> {
    type Error = Stop;

    fn unit_variant(self) -> Result<(), Stop> {
        *self.fields = Some(VariantFields::Unit);
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Stop> {
        let mut inner = Shape::Unknown;
        let value = seed.deserialize(Tracing::new(self.pass, &mut inner, self.cut));
        *self.fields = Some(VariantFields::Newtype(inner));
        value
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Stop> {
        let (value, items) = trace_items(self.pass, len, self.cut, visitor);
        *self.fields = Some(VariantFields::Tuple(items));
        value
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        let (value, fields) = trace_fields(self.pass, fields, self.cut, visitor);
        *self.fields = Some(VariantFields::Struct(fields));
        value
    }
}

/// Whether `fields` name `own` anywhere (not through other definitions).
fn fields_mention(fields: &VariantFields, own: &Shape) -> bool {
    fn mentions(shape: &Shape, own: &Shape) -> bool {
        shape == own
            || match shape {
                Shape::Option(inner) | Shape::Seq(inner) => mentions(inner, own),
                Shape::Array { item, .. } => mentions(item, own),
                Shape::Map { key, value } => mentions(key, own) || mentions(value, own),
                Shape::Tuple(items) => items.iter().any(|item| mentions(item, own)),
                _ => false,
            }
    }
    match fields {
        VariantFields::Unit => false,
        VariantFields::Newtype(inner) => mentions(inner, own),
        VariantFields::Tuple(items) => items.iter().any(|item| mentions(item, own)),
        VariantFields::Struct(fields) => fields.iter().any(|field| mentions(&field.shape, own)),
    }
}

/// Fills what `known` does not know (the insides of an option, a sequence
/// or a map cut short in a recursion) from `new`.
fn refine(known: &mut Shape, new: Shape) {
    match (known, new) {
        (known @ Shape::Unknown, new) => *known = new,
        (Shape::Option(a), Shape::Option(b)) | (Shape::Seq(a), Shape::Seq(b)) => refine(a, *b),
        (Shape::Map { key, value }, Shape::Map { key: k, value: v }) => {
            refine(key, *k);
            refine(value, *v);
        }
        (Shape::Tuple(a), Shape::Tuple(b)) => refine_each(a, b),
        _ => {}
    }
}

/// [`refine`] item by item.
fn refine_each(known: &mut [Shape], new: Vec<Shape>) {
    for (known, new) in known.iter_mut().zip(new) {
        refine(known, new);
    }
}

fn refine_fields(known: &mut [Field], new: Vec<Field>) {
    for (known, new) in known.iter_mut().zip(new) {
        refine(&mut known.shape, new.shape);
    }
}

fn refine_definition(known: &mut TypeDefinition, new: TypeDefinition) {
    match (known, new) {
        (TypeDefinition::Newtype(a), TypeDefinition::Newtype(b)) => refine(a, b),
        (TypeDefinition::Tuple(a), TypeDefinition::Tuple(b)) => refine_each(a, b),
        (TypeDefinition::Struct(a), TypeDefinition::Struct(b)) => refine_fields(a, b),
        _ => {}
    }
}

fn refine_variant(known: &mut VariantFields, new: VariantFields) {
    match (known, new) {
        (VariantFields::Newtype(a), VariantFields::Newtype(b)) => refine(a, b),
        (VariantFields::Tuple(a), VariantFields::Tuple(b)) => refine_each(a, b),
        (VariantFields::Struct(a), VariantFields::Struct(b)) => refine_fields(a, b),
        _ => {}
    }
}

/// Tuples of two or more items of one shape (how serde reads `[T; N]`)
/// become arrays, everywhere in `shape`.
fn normalize(shape: &mut Shape) {
    match shape {
        Shape::Option(inner) | Shape::Seq(inner) => normalize(inner),
        Shape::Array { item, .. } => normalize(item),
        Shape::Map { key, value } => {
            normalize(key);
            normalize(value);
        }
        Shape::Tuple(items) => {
            items.iter_mut().for_each(normalize);
            if items.len() >= 2 && items.iter().all(|item| item == &items[0]) {
                let len = items.len();
                let item = Box::new(items.swap_remove(0));
                *shape = Shape::Array { item, len };
            }
        }
        _ => {}
    }
}

fn normalize_definition(definition: &mut TypeDefinition) {
    let fields = |fields: &mut Vec<Field>| fields.iter_mut().for_each(|f| normalize(&mut f.shape));
    match definition {
        TypeDefinition::Newtype(inner) => normalize(inner),
        TypeDefinition::Tuple(items) => items.iter_mut().for_each(normalize),
        TypeDefinition::Struct(f) => fields(f),
        TypeDefinition::Enum(variants) => {
            for variant in variants {
                match &mut variant.fields {
                    VariantFields::Newtype(inner) => normalize(inner),
                    VariantFields::Tuple(items) => items.iter_mut().for_each(normalize),
                    VariantFields::Struct(f) => fields(f),
                    VariantFields::Unit => {}
                }
            }
        }
        TypeDefinition::UnitStruct => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::HashMap;

    #[allow(dead_code)]
    #[derive(Deserialize)]
    enum Mood {
        Happy,
        Grumpy { level: u32 },
        Tired(u8, i16),
        Named(String),
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    struct Card {
        moods: Vec<Mood>,
        by_name: HashMap<String, Option<Mood>>,
        pair: [u16; 2],
        id: std::num::NonZeroU32,
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    struct Tree {
        value: u32,
        children: Vec<Tree>,
        parent: Option<Box<Tree>>,
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    enum Expr {
        Add(Box<Expr>, Box<Expr>),
        Num(i64),
    }

    /// A string that must look like a timestamp, as `chrono`'s types do.
    #[allow(dead_code)]
    struct Stamp(String);

    impl<'de> Deserialize<'de> for Stamp {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let text = String::deserialize(deserializer)?;
            if text.ends_with('Z') {
                Ok(Stamp(text))
            } else {
                Err(serde::de::Error::custom("not a timestamp"))
            }
        }
    }

    /// Bytes that must be 16 long, as a binary `Uuid`.
    #[allow(dead_code)]
    struct Id([u8; 16]);

    impl<'de> Deserialize<'de> for Id {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Sixteen;
            impl Visitor<'_> for Sixteen {
                type Value = Id;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("16 bytes")
                }
                fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Id, E> {
                    <[u8; 16]>::try_from(bytes)
                        .map(Id)
                        .map_err(|_| E::custom("not 16 bytes"))
                }
            }
            deserializer.deserialize_bytes(Sixteen)
        }
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    struct Event {
        name: String,
        at: Stamp,
        id: Id,
        next: Option<Stamp>,
    }

    #[test]
    fn values_a_type_refuses_are_replaced_until_it_takes_one() {
        let mut tracer = Tracer::default();
        assert_eq!(tracer.trace::<Event>(), Shape::Named("Event".into()));
        let types = tracer.finish();
        let TypeDefinition::Struct(fields) = &types["Event"] else {
            panic!("Event is a struct");
        };
        let shapes: Vec<&Shape> = fields.iter().map(|f| &f.shape).collect();
        assert_eq!(
            shapes,
            [
                &Shape::Str,
                &Shape::Str,
                &Shape::Bytes,
                &Shape::Option(Box::new(Shape::Str))
            ]
        );
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Loose {
        A(u32),
        B(String),
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    #[serde(tag = "t", content = "c")]
    enum Adjacent {
        A(u32),
        B(String),
    }

    /// A struct that holds an adjacently tagged enum.
    #[allow(dead_code)]
    #[derive(Deserialize)]
    struct Holder {
        inner: Adjacent,
        count: u8,
    }

    fn variants(types: &BTreeMap<String, TypeDefinition>, name: &str) -> Vec<String> {
        match &types[name] {
            TypeDefinition::Enum(variants) => variants.iter().map(|v| v.name.clone()).collect(),
            other => panic!("{name} is not an enum: {other:?}"),
        }
    }

    #[test]
    fn every_variant_of_an_enum_anywhere_is_traced() {
        let mut tracer = Tracer::default();
        assert_eq!(
            tracer.trace::<Vec<Card>>(),
            Shape::Seq(Box::new(Shape::Named("Card".into())))
        );
        let types = tracer.finish();
        assert_eq!(
            variants(&types, "Mood"),
            ["Happy", "Grumpy", "Tired", "Named"]
        );
        let TypeDefinition::Struct(fields) = &types["Card"] else {
            panic!("Card is a struct");
        };
        let shapes: Vec<&Shape> = fields.iter().map(|f| &f.shape).collect();
        assert_eq!(
            shapes,
            [
                &Shape::Seq(Box::new(Shape::Named("Mood".into()))),
                &Shape::Map {
                    key: Box::new(Shape::Str),
                    value: Box::new(Shape::Option(Box::new(Shape::Named("Mood".into()))))
                },
                &Shape::Array {
                    item: Box::new(Shape::U16),
                    len: 2
                },
                // Read as the integer it holds.
                &Shape::U32,
            ]
        );
    }

    #[test]
    fn recursive_types_end() {
        let mut tracer = Tracer::default();
        assert_eq!(tracer.trace::<Tree>(), Shape::Named("Tree".into()));
        assert_eq!(tracer.trace::<Expr>(), Shape::Named("Expr".into()));
        let types = tracer.finish();
        let TypeDefinition::Struct(fields) = &types["Tree"] else {
            panic!("Tree is a struct");
        };
        assert_eq!(
            fields[1].shape,
            Shape::Seq(Box::new(Shape::Named("Tree".into())))
        );
        assert_eq!(
            fields[2].shape,
            Shape::Option(Box::new(Shape::Named("Tree".into())))
        );
        assert_eq!(variants(&types, "Expr"), ["Add", "Num"]);
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    struct Page<T> {
        items: Vec<T>,
        next: Option<u32>,
    }

    mod other {
        /// A struct named like the outer module's `Page`.
        #[allow(dead_code)]
        #[derive(serde::Deserialize)]
        pub(super) struct Page {
            pub(super) cursor: String,
        }
    }

    fn field_shapes(types: &BTreeMap<String, TypeDefinition>, name: &str) -> Vec<Shape> {
        match &types[name] {
            TypeDefinition::Struct(fields) => fields.iter().map(|f| f.shape.clone()).collect(),
            other => panic!("{name} is not a struct: {other:?}"),
        }
    }

    /// serde names `Page<Tree>`, `Page<u64>` and `other::Page` all `Page`:
    /// each is described as what it is, under a name of its own.
    #[test]
    fn types_of_one_serde_name_are_told_apart() {
        let mut tracer = Tracer::default();
        let named = |name: &str| Shape::Named(name.into());
        assert_eq!(tracer.trace::<Page<Tree>>(), named("Page"));
        assert_eq!(tracer.trace::<Page<u64>>(), named("Page#2"));
        assert_eq!(tracer.trace::<other::Page>(), named("Page#3"));
        // Met again, each keeps its name; nested in itself too.
        assert_eq!(tracer.trace::<Page<u64>>(), named("Page#2"));
        assert_eq!(tracer.trace::<Page<Page<u64>>>(), named("Page#4"));
        let types = tracer.finish();
        let next = Shape::Option(Box::new(Shape::U32));
        let seq = |item: Shape| Shape::Seq(Box::new(item));
        assert_eq!(
            field_shapes(&types, "Page"),
            [seq(named("Tree")), next.clone()]
        );
        assert_eq!(
            field_shapes(&types, "Page#2"),
            [seq(Shape::U64), next.clone()]
        );
        assert_eq!(field_shapes(&types, "Page#3"), [Shape::Str]);
        assert_eq!(field_shapes(&types, "Page#4"), [seq(named("Page#2")), next]);
    }

    /// Accepts only even numbers, by panicking on odd ones.
    #[allow(dead_code)]
    struct Even(u32);

    impl<'de> Deserialize<'de> for Even {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let value = u32::deserialize(deserializer)?;
            assert!(value % 2 == 0, "an odd number");
            Ok(Even(value))
        }
    }

    #[test]
    fn a_type_whose_decoder_panics_is_unknown_and_the_rest_stands() {
        let mut tracer = Tracer::default();
        assert_eq!(tracer.trace::<(Page<String>, Even)>(), Shape::Unknown);
        // Nothing of it is left: `Page<u64>` is the first `Page`.
        assert_eq!(tracer.trace::<Page<u64>>(), Shape::Named("Page".into()));
        let types = tracer.finish();
        assert_eq!(types.keys().collect::<Vec<_>>(), ["Page"]);
    }

    #[test]
    fn a_type_read_by_looking_is_unknown() {
        let mut tracer = Tracer::default();
        assert_eq!(tracer.trace::<Loose>(), Shape::Unknown);
        assert_eq!(
            tracer.trace::<(Option<u8>, char)>(),
            Shape::Tuple(vec![Shape::Option(Box::new(Shape::U8)), Shape::Char])
        );
    }

    /// An adjacently tagged enum is not described as a struct or an enum
    /// of one variant (neither is its shape on the wire), nor is what holds
    /// it: the tool then sends such an argument as the JSON it is given.
    #[test]
    fn an_adjacently_tagged_enum_is_unknown() {
        let mut tracer = Tracer::default();
        assert_eq!(tracer.trace::<Adjacent>(), Shape::Unknown);
        assert_eq!(tracer.trace::<Holder>(), Shape::Unknown);
        assert!(tracer.finish().is_empty(), "no definition is left behind");
    }
}
