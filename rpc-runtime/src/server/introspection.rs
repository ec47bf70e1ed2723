//! Introspection: how a server builds the answer to `rpc.describe`
//! ([`DESCRIBE_METHOD`](crate::protocol::describe::DESCRIBE_METHOD)) from
//! what `#[rpc_service]` generates, once, when it starts serving.
//!
//! The generated `Service::description` names each method's arguments,
//! return and error types (as written, with their docs) through a
//! [`Describer`]; each type's shape is traced from its serde `Deserialize`
//! implementation (`shape_trace.rs`; every type of a service is
//! `DeserializeOwned`: the generated client decodes what the server
//! encodes). A type that cannot be traced (it decodes by looking at the
//! value, or panics on the value made up to trace it) is
//! [`Shape::Unknown`]; the rest of the description stands.

use super::shape_trace::Tracer;
use crate::protocol::describe::{
    ArgDescription, Field, MethodDescription, ServiceDescription, Shape, TypeDefinition, TypeRef,
    Variant, VariantFields,
};
use serde::de::DeserializeOwned;
use std::{
    collections::{BTreeMap, BTreeSet},
    marker::PhantomData,
};

/// Builds a [`ServiceDescription`]; used by the code `#[rpc_service]`
/// generates.
#[doc(hidden)]
pub struct Describer {
    tracer: Tracer,
    service: String,
    docs: String,
    methods: Vec<MethodDescription>,
}

impl std::fmt::Debug for Describer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Describer")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Describer {
    /// Starts the description of `service`, whose doc comment is `docs`.
    pub fn new(service: &str, docs: &str) -> Self {
        Self {
            tracer: Tracer::default(),
            service: service.to_owned(),
            docs: docs.to_owned(),
            methods: Vec::new(),
        }
    }

    /// Adds method `name`, with its doc comment.
    pub fn method(&mut self, name: &str, docs: &str) -> &mut Self {
        self.methods.push(MethodDescription {
            name: name.to_owned(),
            docs: docs.to_owned(),
            args: Vec::new(),
            returns: TypeRef {
                written: "()".to_owned(),
                shape: Shape::Unit,
            },
            error: None,
            signature_hash: String::new(),
        });
        self
    }

    /// Adds an argument, written `written`, whose shape `trace` finds, to
    /// the last method.
    pub fn arg(
        &mut self,
        name: &str,
        written: &str,
        trace: impl FnOnce(&mut Tracer) -> Shape,
    ) -> &mut Self {
        let ty = self.type_ref(written, trace);
        if let Some(method) = self.methods.last_mut() {
            method.args.push(ArgDescription {
                name: name.to_owned(),
                ty,
            });
        }
        self
    }

    /// Sets the last method's return type.
    pub fn returns(
        &mut self,
        written: &str,
        trace: impl FnOnce(&mut Tracer) -> Shape,
    ) -> &mut Self {
        let ty = self.type_ref(written, trace);
        if let Some(method) = self.methods.last_mut() {
            method.returns = ty;
        }
        self
    }

    /// Sets the last method's error type (it returns `Result<T, E>`).
    pub fn error(&mut self, written: &str, trace: impl FnOnce(&mut Tracer) -> Shape) -> &mut Self {
        let ty = self.type_ref(written, trace);
        if let Some(method) = self.methods.last_mut() {
            method.error = Some(ty);
        }
        self
    }

    fn type_ref(&mut self, written: &str, trace: impl FnOnce(&mut Tracer) -> Shape) -> TypeRef {
        TypeRef {
            written: written.to_owned(),
            shape: trace(&mut self.tracer),
        }
    }

    /// The description, with its types' definitions and hashes.
    pub fn finish(self) -> ServiceDescription {
        let types = self.tracer.finish();
        let mut methods = self.methods;
        for method in &mut methods {
            method.signature_hash = hex(signature_hash(method, &types));
        }
        let mut all = Fnv::default();
        for method in &methods {
            all.write(method.signature_hash.as_bytes());
        }
        ServiceDescription {
            service: self.service,
            docs: self.docs,
            methods,
            types,
            schema_hash: hex(all.0),
        }
    }
}

/// A type to trace, for the generated code: `(&&TypeTrace::<T>::new())
/// .trace_rpc_shape(tracer)` traces `T` if it is `DeserializeOwned`
/// ([`TraceDeserialize`]) and says [`Shape::Unknown`] otherwise
/// ([`TraceNothing`]), so that a type without `Deserialize` is reported once,
/// where the dispatcher decodes it, not again by its description.
#[doc(hidden)]
pub struct TypeTrace<T>(PhantomData<fn() -> T>);

impl<T> TypeTrace<T> {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> std::fmt::Debug for TypeTrace<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::any::type_name::<T>())
    }
}

/// Traces a `DeserializeOwned` type; see [`TypeTrace`].
#[doc(hidden)]
pub trait TraceDeserialize {
    // Named so that no trait of the user's scope has a method like it: the
    // generated code calls it with method syntax, which specialization by
    // autoref needs.
    fn trace_rpc_shape(&self, tracer: &mut Tracer) -> Shape;
}

impl<T: DeserializeOwned> TraceDeserialize for &TypeTrace<T> {
    fn trace_rpc_shape(&self, tracer: &mut Tracer) -> Shape {
        tracer.trace::<T>()
    }
}

/// The fallback of [`TraceDeserialize`]; see [`TypeTrace`].
#[doc(hidden)]
pub trait TraceNothing {
    fn trace_rpc_shape(&self, tracer: &mut Tracer) -> Shape;
}

impl<T> TraceNothing for TypeTrace<T> {
    fn trace_rpc_shape(&self, _: &mut Tracer) -> Shape {
        Shape::Unknown
    }
}

/// The hash of what `method` puts on the wire: its name, its arguments'
/// names and shapes, its return and error shapes, and the definitions of
/// every type they name (not how the trait writes the types, nor the docs).
fn signature_hash(method: &MethodDescription, types: &BTreeMap<String, TypeDefinition>) -> u64 {
    let shapes: Vec<&Shape> = method
        .args
        .iter()
        .map(|arg| &arg.ty.shape)
        .chain([&method.returns.shape])
        .chain(method.error.iter().map(|error| &error.shape))
        .collect();
    let mut named = BTreeSet::new();
    for shape in &shapes {
        names_in(shape, types, &mut named);
    }
    // Under their serde names, not their labels (`Page#2`): a label tells
    // in what order the service met types of one name, which another
    // method can change. Types of one name are in the order of their
    // definitions' encoding.
    let mut definitions: Vec<(&str, Option<TypeDefinition>, Vec<u8>)> = named
        .iter()
        .map(|label| {
            let definition = types.get(*label).map(unlabelled_definition);
            let encoded = rmp_serde::to_vec(&definition).unwrap_or_default();
            (serde_name(label), definition, encoded)
        })
        .collect();
    definitions.sort_by(|a, b| (a.0, &a.2).cmp(&(b.0, &b.2)));
    let definitions: Vec<(&str, Option<TypeDefinition>)> = definitions
        .into_iter()
        .map(|(name, definition, _)| (name, definition))
        .collect();
    let args: Vec<(&str, Shape)> = method
        .args
        .iter()
        .map(|arg| (arg.name.as_str(), unlabelled(&arg.ty.shape)))
        .collect();
    let signature = (
        &method.name,
        args,
        unlabelled(&method.returns.shape),
        method.error.as_ref().map(|error| unlabelled(&error.shape)),
        definitions,
    );
    let mut hash = Fnv::default();
    // Encoding plain data into a Vec cannot fail.
    hash.write(&rmp_serde::to_vec(&signature).unwrap_or_default());
    hash.0
}

/// The serde name a type's label (`Page`, `Page#2`) stands for.
fn serde_name(label: &str) -> &str {
    match label.rsplit_once('#') {
        Some((name, number)) if number.parse::<u32>().is_ok() => name,
        _ => label,
    }
}

/// `shape` with its types under their serde names.
fn unlabelled(shape: &Shape) -> Shape {
    match shape {
        Shape::Named(label) => Shape::Named(serde_name(label).to_owned()),
        Shape::Option(inner) => Shape::Option(Box::new(unlabelled(inner))),
        Shape::Seq(inner) => Shape::Seq(Box::new(unlabelled(inner))),
        Shape::Array { item, len } => Shape::Array {
            item: Box::new(unlabelled(item)),
            len: *len,
        },
        Shape::Map { key, value } => Shape::Map {
            key: Box::new(unlabelled(key)),
            value: Box::new(unlabelled(value)),
        },
        Shape::Tuple(items) => Shape::Tuple(items.iter().map(unlabelled).collect()),
        other => other.clone(),
    }
}

/// `definition` with the types it names under their serde names.
fn unlabelled_definition(definition: &TypeDefinition) -> TypeDefinition {
    let fields = |fields: &[Field]| -> Vec<Field> {
        fields
            .iter()
            .map(|field| Field {
                name: field.name.clone(),
                shape: unlabelled(&field.shape),
            })
            .collect()
    };
    let shapes = |items: &[Shape]| items.iter().map(unlabelled).collect();
    match definition {
        TypeDefinition::UnitStruct => TypeDefinition::UnitStruct,
        TypeDefinition::Newtype(inner) => TypeDefinition::Newtype(unlabelled(inner)),
        TypeDefinition::Tuple(items) => TypeDefinition::Tuple(shapes(items)),
        TypeDefinition::Struct(f) => TypeDefinition::Struct(fields(f)),
        TypeDefinition::Enum(variants) => TypeDefinition::Enum(
            variants
                .iter()
                .map(|variant| Variant {
                    name: variant.name.clone(),
                    fields: match &variant.fields {
                        VariantFields::Unit => VariantFields::Unit,
                        VariantFields::Newtype(inner) => VariantFields::Newtype(unlabelled(inner)),
                        VariantFields::Tuple(items) => VariantFields::Tuple(shapes(items)),
                        VariantFields::Struct(f) => VariantFields::Struct(fields(f)),
                    },
                })
                .collect(),
        ),
    }
}

/// Collects the names of the types `shape` uses, through their definitions.
fn names_in<'a>(
    shape: &'a Shape,
    types: &'a BTreeMap<String, TypeDefinition>,
    named: &mut BTreeSet<&'a String>,
) {
    match shape {
        Shape::Named(name) => {
            if !named.insert(name) {
                return;
            }
            let Some(definition) = types.get(name) else {
                return;
            };
            let mut visit = |shape: &'a Shape| names_in(shape, types, named);
            match definition {
                TypeDefinition::UnitStruct => {}
                TypeDefinition::Newtype(inner) => visit(inner),
                TypeDefinition::Tuple(items) => items.iter().for_each(visit),
                TypeDefinition::Struct(fields) => fields.iter().for_each(|f| visit(&f.shape)),
                TypeDefinition::Enum(variants) => {
                    for variant in variants {
                        match &variant.fields {
                            VariantFields::Unit => {}
                            VariantFields::Newtype(inner) => visit(inner),
                            VariantFields::Tuple(items) => items.iter().for_each(&mut visit),
                            VariantFields::Struct(fields) => {
                                fields.iter().for_each(|f| visit(&f.shape))
                            }
                        }
                    }
                }
            }
        }
        Shape::Option(inner) | Shape::Seq(inner) => names_in(inner, types, named),
        Shape::Array { item, .. } => names_in(item, types, named),
        Shape::Map { key, value } => {
            names_in(key, types, named);
            names_in(value, types, named);
        }
        Shape::Tuple(items) => {
            for item in items {
                names_in(item, types, named);
            }
        }
        _ => {}
    }
}

/// FNV-1a, 64 bits: stable across versions and platforms, which the
/// standard library's hashers do not promise.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn hex(value: u64) -> String {
    format!("{value:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use super::{TraceDeserialize as _, TraceNothing as _};
    use crate::protocol::describe::Field;
    use serde::Deserialize;
    use std::collections::HashMap;

    #[allow(dead_code)]
    #[derive(Deserialize)]
    struct Point {
        x: i32,
        y: i32,
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    enum Shape2 {
        Circle { radius: f64 },
        Square(f64),
        Dot,
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    enum Mood {
        Happy,
        Grumpy { level: u32 },
        Tired(u8, u8),
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    struct Card {
        shape: Shape2,
    }

    #[test]
    fn enums_in_an_option_or_a_field_have_every_variant() {
        let mut describer = Describer::new("Moods", "");
        describer
            .method("set", "")
            .arg("mood", "Option<Mood>", |t| {
                (&&TypeTrace::<Option<Mood>>::new()).trace_rpc_shape(t)
            })
            .arg("card", "Card", |t| {
                (&&TypeTrace::<Card>::new()).trace_rpc_shape(t)
            });
        let description = describer.finish();
        let variants = |name: &str| match &description.types[name] {
            TypeDefinition::Enum(variants) => {
                variants.iter().map(|v| v.name.clone()).collect::<Vec<_>>()
            }
            other => panic!("{name} is not an enum: {other:?}"),
        };
        assert_eq!(variants("Mood"), ["Happy", "Grumpy", "Tired"]);
        assert_eq!(variants("Shape2"), ["Circle", "Square", "Dot"]);
    }

    fn describe(returns_point: bool) -> ServiceDescription {
        let mut describer = Describer::new("Geometry", "Shapes.");
        describer
            .method("area", "The area.")
            .arg("shape", "Shape2", |t| {
                (&&TypeTrace::<Shape2>::new()).trace_rpc_shape(t)
            })
            .arg("extra", "Option<HashMap<String, Vec<Point>>>", |t| {
                (&&TypeTrace::<Option<HashMap<String, Vec<Point>>>>::new()).trace_rpc_shape(t)
            });
        if returns_point {
            describer.returns("Point", |t| {
                (&&TypeTrace::<Point>::new()).trace_rpc_shape(t)
            });
        } else {
            describer.returns("f64", |t| (&&TypeTrace::<f64>::new()).trace_rpc_shape(t));
        }
        describer.method("nothing", "");
        describer.finish()
    }

    #[test]
    fn types_are_traced_with_their_fields_and_variants() {
        let description = describe(false);
        let area = description.method("area").expect("area");
        assert_eq!(area.args[0].ty.shape, Shape::Named("Shape2".into()));
        assert_eq!(
            area.args[1].ty.shape,
            Shape::Option(Box::new(Shape::Map {
                key: Box::new(Shape::Str),
                value: Box::new(Shape::Seq(Box::new(Shape::Named("Point".into())))),
            }))
        );
        assert_eq!(area.returns.shape, Shape::F64);
        assert_eq!(
            description.types["Point"],
            TypeDefinition::Struct(vec![
                Field {
                    name: "x".into(),
                    shape: Shape::I32
                },
                Field {
                    name: "y".into(),
                    shape: Shape::I32
                },
            ])
        );
        let TypeDefinition::Enum(variants) = &description.types["Shape2"] else {
            panic!("an enum: {:?}", description.types["Shape2"]);
        };
        let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["Circle", "Square", "Dot"]);
        assert_eq!(variants[1].fields, VariantFields::Newtype(Shape::F64));
        let nothing = description.method("nothing").expect("nothing");
        assert_eq!(nothing.returns.shape, Shape::Unit);
        assert!(nothing.args.is_empty());
    }

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Page<T> {
        items: Vec<T>,
    }

    /// A service whose `list` returns `Page<String>`, after a method
    /// returning `Page<u64>` if `ids_first`.
    fn pages(ids_first: bool) -> ServiceDescription {
        let mut describer = Describer::new("Pages", "");
        if ids_first {
            describer.method("ids", "").returns("Page<u64>", |t| {
                (&&TypeTrace::<Page<u64>>::new()).trace_rpc_shape(t)
            });
        }
        describer.method("list", "").returns("Page<String>", |t| {
            (&&TypeTrace::<Page<String>>::new()).trace_rpc_shape(t)
        });
        describer.finish()
    }

    /// A method met after another of a type of the same serde name has
    /// another label (`Page#2`), and the same hash.
    #[test]
    fn hashes_do_not_change_with_the_labels_of_types() {
        let (alone, after) = (pages(false), pages(true));
        let list = |d: &ServiceDescription| d.method("list").expect("list").clone();
        assert_eq!(list(&alone).returns.shape, Shape::Named("Page".into()));
        assert_eq!(list(&after).returns.shape, Shape::Named("Page#2".into()));
        assert_eq!(list(&alone).signature_hash, list(&after).signature_hash);
        let ids = after.method("ids").expect("ids");
        assert_ne!(ids.signature_hash, list(&after).signature_hash);
    }

    #[test]
    fn hashes_change_with_the_signature_only() {
        let (first, again, changed) = (describe(false), describe(false), describe(true));
        assert_eq!(first.schema_hash, again.schema_hash);
        assert_eq!(first.schema_hash.len(), 16);
        assert_ne!(first.schema_hash, changed.schema_hash);
        let hash = |d: &ServiceDescription, m: &str| d.method(m).expect(m).signature_hash.clone();
        assert_ne!(hash(&first, "area"), hash(&changed, "area"));
        assert_eq!(hash(&first, "nothing"), hash(&changed, "nothing"));
    }

    #[test]
    // The double reference is the point: it picks the tracing impl when there
    // is one (here there is none).
    #[allow(clippy::needless_borrow)]
    fn a_type_without_deserialize_is_unknown() {
        struct Opaque;
        let mut describer = Describer::new("S", "");
        describer.method("m", "").arg("opaque", "Opaque", |t| {
            (&&TypeTrace::<Opaque>::new()).trace_rpc_shape(t)
        });
        assert_eq!(
            describer.finish().methods[0].args[0].ty.shape,
            Shape::Unknown
        );
    }

    #[test]
    fn a_type_that_decodes_by_looking_is_unknown() {
        #[allow(dead_code)]
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Number(u32),
            Text(String),
        }
        let mut describer = Describer::new("S", "");
        describer.method("m", "").arg("either", "Either", |t| {
            (&&TypeTrace::<Either>::new()).trace_rpc_shape(t)
        });
        let description = describer.finish();
        assert_eq!(description.methods[0].args[0].ty.shape, Shape::Unknown);
    }
}
