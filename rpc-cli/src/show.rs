//! A service description as a person reads it (`rpc describe`): Rust-like
//! signatures with their doc comments, then the types they name.

use crate::convert::brief;
use rpc_runtime::{Field, ServiceDescription, TypeDefinition, VariantFields};
use std::fmt::Write;

/// The description of the service on `queue`, as text.
pub(crate) fn description(queue: &str, description: &ServiceDescription) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "service {} on queue `{queue}` (schema {})",
        description.service, description.schema_hash
    );
    docs(&mut out, &description.docs, "  ");
    for method in &description.methods {
        let args: Vec<String> = method
            .args
            .iter()
            .map(|arg| format!("{}: {}", arg.name, arg.ty.written))
            .collect();
        let returns = match &method.error {
            Some(error) => format!(" -> Result<{}, {}>", method.returns.written, error.written),
            None if method.returns.written == "()" => String::new(),
            None => format!(" -> {}", method.returns.written),
        };
        let _ = writeln!(out, "\n  {}({}){returns}", method.name, args.join(", "));
        docs(&mut out, &method.docs, "      ");
        let _ = writeln!(out, "      signature {}", method.signature_hash);
    }
    if !description.types.is_empty() {
        let _ = writeln!(out, "\ntypes (as their values are written in JSON):");
        for (name, definition) in &description.types {
            let _ = writeln!(out, "  {}", definition_text(name, definition));
        }
    }
    out
}

fn docs(out: &mut String, docs: &str, indent: &str) {
    for line in docs.lines() {
        let _ = writeln!(out, "{indent}{}", line.trim_end());
    }
}

fn fields(fields: &[Field]) -> String {
    let fields: Vec<String> = fields
        .iter()
        .map(|field| format!("{}: {}", field.name, brief(&field.shape)))
        .collect();
    format!("{{ {} }}", fields.join(", "))
}

fn definition_text(name: &str, definition: &TypeDefinition) -> String {
    let list =
        |shapes: &[rpc_runtime::Shape]| shapes.iter().map(brief).collect::<Vec<_>>().join(", ");
    match definition {
        TypeDefinition::UnitStruct => format!("struct {name};"),
        TypeDefinition::Newtype(shape) => format!("struct {name}({});", brief(shape)),
        TypeDefinition::Tuple(shapes) => format!("struct {name}({});", list(shapes)),
        TypeDefinition::Struct(f) => format!("struct {name} {}", fields(f)),
        TypeDefinition::Enum(variants) => {
            let variants: Vec<String> = variants
                .iter()
                .map(|variant| match &variant.fields {
                    VariantFields::Unit => variant.name.clone(),
                    VariantFields::Newtype(shape) => format!("{}({})", variant.name, brief(shape)),
                    VariantFields::Tuple(shapes) => format!("{}({})", variant.name, list(shapes)),
                    VariantFields::Struct(f) => format!("{} {}", variant.name, fields(f)),
                    _ => variant.name.clone(),
                })
                .collect();
            format!("enum {name} {{ {} }}", variants.join(", "))
        }
        _ => format!("{name}: a type this tool does not know"),
    }
}
