//! The rules of an RPC service, each reported on the tokens that break it.

use crate::ast::{self, Errors, Method, Output, Service};
use std::collections::HashSet;
use syn::{
    FnArg, GenericArgument, GenericParam, Generics, PathArguments, ReceiverKind, Safety, Type,
    ext::IdentExt,
};

/// Names the generated client defines itself, which methods cannot take;
/// `clone` would shadow the client's `Clone::clone`.
const CLIENT_ITEMS: &[&str] = &["new", "with_queue", "DEFAULT_QUEUE", "clone"];

/// The prefix of the names generated code uses for its own locals.
const RESERVED_PREFIX: &str = "__rpc";

/// The longest queue or method name AMQP allows (a short string).
const MAX_NAME: usize = 255;

pub(crate) fn check(service: &Service<'_>, errors: &Errors) {
    check_trait(service, errors);
    check_queue(service, errors);
    let mut names = HashSet::new();
    for method in &service.methods {
        check_signature(method, errors);
        check_names(method, &mut names, errors);
        check_types(method, errors);
    }
}

fn check_trait(service: &Service<'_>, errors: &Errors) {
    let item = service.item;
    if let Some(unsafety) = &item.unsafety {
        errors.spanned(unsafety, "an RPC service trait cannot be `unsafe`");
    }
    if let Some(auto) = &item.modifiers.auto_token {
        errors.spanned(auto, "an RPC service trait cannot be an auto trait");
    }
    check_generics(
        &item.generics,
        "an RPC service trait cannot have lifetime parameters: the server decodes every \
         argument into an owned value, which borrows from nothing; take owned types \
         (`String` rather than `&'a str`, `Vec<T>` rather than `&'a [T]`)",
        "an RPC service trait cannot be generic: both ends must agree on concrete types",
        errors,
    );
    if let Some(where_clause) = &item.generics.where_clause {
        errors.spanned(
            where_clause,
            "an RPC service trait cannot have a `where` clause",
        );
    }
    if !item.supertraits.is_empty() {
        errors.spanned(
            &item.supertraits,
            "an RPC service trait cannot have supertraits: the generated server requires \
             `Send + Sync + 'static` of implementations by itself",
        );
    }
}

fn check_queue(service: &Service<'_>, errors: &Errors) {
    let Some(literal) = &service.queue.literal else {
        return;
    };
    let name = &service.queue.name;
    if name.is_empty() {
        errors.spanned(literal, "the queue name cannot be empty");
    } else if name.len() > MAX_NAME {
        errors.spanned(literal, "AMQP queue names are at most 255 bytes long");
    } else if name.starts_with("amq.") {
        errors.spanned(
            literal,
            "queue names starting with `amq.` are reserved by the broker",
        );
    }
}

fn check_signature(method: &Method<'_>, errors: &Errors) {
    let sig = &method.item.sig;
    if sig.asyncness.is_none() {
        errors.spanned(
            sig.fn_token,
            format!(
                "RPC methods must be `async fn`: write `async fn {}(&self, ...)`",
                sig.ident
            ),
        );
    }
    if let Some(constness) = &sig.constness {
        errors.spanned(constness, "RPC methods cannot be `const`");
    }
    match &sig.safety {
        Safety::Unsafe(unsafety) => errors.spanned(unsafety, "RPC methods cannot be `unsafe`"),
        Safety::Safe(safe) => errors.spanned(safe, "RPC methods cannot be marked `safe`"),
        _ => {}
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(abi, "RPC methods cannot have an ABI");
    }
    if let Some(variadic) = &sig.variadic {
        errors.spanned(variadic, "RPC methods cannot be variadic");
    }
    check_generics(
        &sig.generics,
        "RPC methods cannot have lifetime parameters: the server decodes every argument into \
         an owned value, which borrows from nothing; take owned types (`String` rather than \
         `&'a str`, `Vec<T>` rather than `&'a [T]`)",
        "RPC methods cannot be generic: the server must know the concrete argument types to \
         decode a request",
        errors,
    );
    if let Some(where_clause) = &sig.generics.where_clause {
        errors.spanned(where_clause, "RPC methods cannot have a `where` clause");
    }
    if let Some(default) = &method.item.default {
        errors.spanned(
            default,
            "RPC methods cannot have a default body: implement them in the `impl` block",
        );
    }
    match sig.inputs.first() {
        Some(FnArg::Receiver(receiver)) => {
            let by_shared_reference = match &receiver.kind {
                ReceiverKind::Reference(_, None, None) => true,
                // `self: &Self`, which is `&self` spelled out.
                ReceiverKind::Typed(_, ty) => is_ref_self(ty),
                _ => false,
            };
            if !by_shared_reference || receiver.mutability.is_some() {
                errors.spanned(
                    receiver,
                    "RPC methods take `&self`: the server runs many requests at once on one \
                     service value",
                );
            }
        }
        _ => errors.spanned(
            &sig.ident,
            format!(
                "RPC methods take `&self` as their first argument: `async fn {}(&self, ...)`",
                sig.ident
            ),
        ),
    }
}

/// `&Self`, without a lifetime or `mut`.
fn is_ref_self(ty: &Type) -> bool {
    match ty {
        Type::Reference(reference) => {
            reference.lifetime.is_none()
                && reference.mutability.is_none()
                && matches!(&*reference.elem, Type::Path(path)
                    if path.qself.is_none() && path.path.is_ident("Self"))
        }
        Type::Paren(inner) => is_ref_self(&inner.elem),
        Type::Group(inner) => is_ref_self(&inner.elem),
        _ => false,
    }
}

/// Lifetime parameters, then type and const parameters, each kind reported
/// once, on its own parameters.
fn check_generics(generics: &Generics, lifetimes: &str, types: &str, errors: &Errors) {
    let (borrowed, generic): (Vec<&GenericParam>, Vec<&GenericParam>) = generics
        .params
        .iter()
        .partition(|param| matches!(param, GenericParam::Lifetime(_)));
    if !borrowed.is_empty() {
        errors.spanned(quote::quote!(#(#borrowed)*), lifetimes);
    }
    if !generic.is_empty() {
        errors.spanned(quote::quote!(#(#generic)*), types);
    }
}

fn check_names(method: &Method<'_>, seen: &mut HashSet<String>, errors: &Errors) {
    let ident = method.ident();
    let name = ident.unraw().to_string();
    if CLIENT_ITEMS.contains(&name.as_str()) {
        errors.spanned(
            ident,
            format!(
                "`{name}` is reserved: the generated client has an item of that name; rename \
                 the method"
            ),
        );
    }
    if name.starts_with(RESERVED_PREFIX) {
        errors.spanned(
            ident,
            format!("names starting with `{RESERVED_PREFIX}` are reserved for generated code"),
        );
    }
    if name.len() > MAX_NAME {
        errors.spanned(
            ident,
            "AMQP carries the method name in a short string: 255 bytes at most",
        );
    }
    if !seen.insert(name.clone()) {
        errors.spanned(ident, format!("a method named `{name}` is already defined"));
    }
    for arg in &method.args {
        if arg.ident.unraw().to_string().starts_with(RESERVED_PREFIX) {
            errors.spanned(
                arg.ident,
                format!("names starting with `{RESERVED_PREFIX}` are reserved for generated code"),
            );
        }
    }
}

fn check_types(method: &Method<'_>, errors: &Errors) {
    for arg in &method.args {
        check_owned(
            arg.ty,
            "RPC method arguments must be owned types that the server can decode \
             (`String` rather than `&str`, `Vec<T>` rather than `&[T]`)",
            errors,
        );
    }
    // A method that is not `async fn` is refused as such (`check_signature`),
    // and its return type is then the future's, not the value's: nothing to
    // say of it.
    if method.item.sig.asyncness.is_none() {
        return;
    }
    match &method.output {
        Output::Unit => {}
        Output::Plain(ty) => {
            check_owned(
                ty,
                "RPC methods must return owned, serializable types",
                errors,
            );
            check_not_result(ty, errors);
        }
        Output::Result { ok, err } => {
            check_owned(
                ok,
                "RPC methods must return owned, serializable types",
                errors,
            );
            check_owned(
                err,
                "RPC methods must return owned, serializable error types",
                errors,
            );
        }
    }
}

/// A return type named `Result` that is not `Result<T, E>` with both
/// arguments: the macro tells fallible methods by those two arguments, and
/// would otherwise send the whole `Result` as an `ok` value, its errors never
/// reaching callers as `CallError::App`.
fn check_not_result(ty: &Type, errors: &Errors) {
    let Some(segment) = ast::result_segment(ty) else {
        return;
    };
    let message = match &segment.arguments {
        PathArguments::AngleBracketed(generics) if generics.args.len() == 1 => {
            "this `Result` has one type argument, but a fallible RPC method spells out both: \
             `std::result::Result<T, MyError>` (or `Result<T, MyError>` where `Result` is the \
             standard one); through a one-argument alias (`io::Result<T>`, `anyhow::Result<T>`, \
             `type Result<T> = ..`) its errors would not reach callers as `CallError::App`"
        }
        PathArguments::None => {
            "this `Result` has no type arguments, but a fallible RPC method spells out both: \
             `std::result::Result<T, MyError>`; through an alias its errors would not reach \
             callers as `CallError::App` (a type of your own named `Result` must go by another \
             name here: `type Outcome = path::Result;`)"
        }
        _ => {
            "a fallible RPC method returns `Result<T, E>` with two type arguments: write \
             `std::result::Result<T, MyError>`"
        }
    };
    errors.spanned(ty, message);
}

/// References and `impl Trait` anywhere in a type, each reported on itself:
/// `Option<&str>` borrows as `&str` does. Inside type arguments, tuples,
/// arrays and slices; not inside `Fn(..)` sugar, trait objects or pointers,
/// whose references are no value sent, and which serde refuses anyway.
fn check_owned(ty: &Type, message: &str, errors: &Errors) {
    match ty {
        Type::Reference(_) => errors.spanned(ty, message),
        Type::ImplTrait(_) => errors.spanned(
            ty,
            "`impl Trait` cannot cross the wire: use a concrete serde type",
        ),
        Type::Paren(inner) => check_owned(&inner.elem, message, errors),
        Type::Group(inner) => check_owned(&inner.elem, message, errors),
        Type::Array(array) => check_owned(&array.elem, message, errors),
        Type::Slice(slice) => check_owned(&slice.elem, message, errors),
        Type::Tuple(tuple) => {
            for elem in &tuple.elems {
                check_owned(elem, message, errors);
            }
        }
        Type::Path(path) => {
            if let Some(qself) = &path.qself {
                check_owned(&qself.ty, message, errors);
            }
            for segment in &path.path.segments {
                let PathArguments::AngleBracketed(generics) = &segment.arguments else {
                    continue;
                };
                for arg in &generics.args {
                    match arg {
                        GenericArgument::Type(ty) => check_owned(ty, message, errors),
                        GenericArgument::AssocType(assoc) => {
                            check_owned(&assoc.ty, message, errors);
                        }
                        _ => {}
                    }
                }
            }
        }
        _ => {}
    }
}
