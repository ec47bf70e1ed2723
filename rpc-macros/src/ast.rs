//! Reads the attribute's arguments and the annotated trait into a model of
//! the service.
//!
//! Only what the model cannot represent is reported here (an item that is not
//! a trait, trait items that are not methods, argument patterns that are not
//! plain names); the rules of a valid service are checked in `valid`.

use proc_macro2::TokenStream;
use std::cell::RefCell;
use syn::{
    AttrStyle, Attribute, FnArg, GenericArgument, Ident, Item, ItemTrait, LitStr, Meta, MetaList,
    Pat, Path, PathArguments, PathSegment, ReturnType, Token, TraitItem, TraitItemFn, Type,
    ext::IdentExt, parse::Parser, punctuated::Punctuated,
};

/// Errors collected across all passes, reported together.
#[derive(Default)]
pub(crate) struct Errors(RefCell<Option<syn::Error>>);

impl Errors {
    pub(crate) fn push(&self, error: syn::Error) {
        let mut errors = self.0.borrow_mut();
        match errors.as_mut() {
            Some(all) => all.combine(error),
            None => *errors = Some(error),
        }
    }

    pub(crate) fn spanned<T: quote::ToTokens>(&self, tokens: T, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        match self.0.into_inner() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// `#[rpc_service(queue = "...", crate = "...")]`.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) queue: Option<LitStr>,
    /// The path generated code names `rpc-runtime` by, for a crate that
    /// depends on it under another name.
    pub(crate) krate: Option<Path>,
}

impl Args {
    pub(crate) fn parse(tokens: TokenStream, errors: &Errors) -> Args {
        let mut args = Args::default();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("queue") {
                let queue: LitStr = meta.value()?.parse()?;
                if args.queue.is_some() {
                    return Err(syn::Error::new_spanned(
                        &meta.path,
                        "`queue` is given twice",
                    ));
                }
                args.queue = Some(queue);
                Ok(())
            } else if meta.path.is_ident("crate") {
                let path = crate_path(meta.value()?)?;
                if args.krate.is_some() {
                    return Err(syn::Error::new_spanned(
                        &meta.path,
                        "`crate` is given twice",
                    ));
                }
                args.krate = Some(path);
                Ok(())
            } else {
                Err(meta.error(
                    "unknown argument: `#[rpc_service]` takes `queue = \"name\"` and \
                     `crate = \"path\"`",
                ))
            }
        });
        if let Err(error) = parser.parse2(tokens) {
            errors.push(error);
        }
        args
    }
}

/// `crate = "path"`, as serde writes it, or `crate = path`: a path of plain
/// names, such as `rpc` or `::rpc` (for `rpc = { package = "rpc-runtime" }`).
fn crate_path(input: syn::parse::ParseStream<'_>) -> syn::Result<Path> {
    const MESSAGE: &str = "`crate` takes the path `rpc-runtime` goes by in this crate: \
                           `crate = \"rpc\"` or `crate = \"::rpc\"`";
    if input.peek(LitStr) {
        let literal: LitStr = input.parse()?;
        // Spanned on the literal: the tokens of the path are its own.
        literal
            .parse_with(Path::parse_mod_style)
            .map_err(|_| syn::Error::new_spanned(&literal, MESSAGE))
    } else {
        input
            .call(Path::parse_mod_style)
            .map_err(|error| syn::Error::new(error.span(), MESSAGE))
    }
}

/// The trait the attribute is on, or an error spanned on what it is on.
pub(crate) fn trait_item<'a>(item: &'a Item, errors: &Errors) -> Option<&'a ItemTrait> {
    const MESSAGE: &str = "`#[rpc_service]` applies to a trait: `pub trait Name { async fn method(&self, ...) -> T; }`";
    match item {
        Item::Trait(item) => return Some(item),
        Item::Struct(item) => errors.spanned(item.struct_token, MESSAGE),
        Item::Enum(item) => errors.spanned(item.enum_token, MESSAGE),
        Item::Fn(item) => errors.spanned(item.sig.fn_token, MESSAGE),
        Item::Impl(item) => errors.spanned(item.impl_token, MESSAGE),
        Item::Mod(item) => errors.spanned(item.mod_token, MESSAGE),
        other => errors.spanned(other, MESSAGE),
    }
    None
}

/// A service: the trait and its methods.
pub(crate) struct Service<'a> {
    pub(crate) item: &'a ItemTrait,
    pub(crate) queue: Queue,
    /// `::rpc_runtime`, or the path given as `crate = ".."`.
    pub(crate) krate: Path,
    pub(crate) methods: Vec<Method<'a>>,
}

/// The service's default request queue.
pub(crate) struct Queue {
    pub(crate) name: String,
    /// The literal it was given as, if it was given.
    pub(crate) literal: Option<LitStr>,
}

/// One method of the service.
pub(crate) struct Method<'a> {
    pub(crate) item: &'a TraitItemFn,
    pub(crate) args: Vec<Arg<'a>>,
    pub(crate) output: Output<'a>,
}

/// One argument of a method (the receiver excluded).
pub(crate) struct Arg<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) ty: &'a Type,
}

/// What a method returns, which decides how its reply is encoded.
pub(crate) enum Output<'a> {
    /// Nothing: `()`.
    Unit,
    /// A plain value.
    Plain(&'a Type),
    /// `Result<T, E>`: `T` in `ok` replies, `E` in `err` replies.
    Result { ok: &'a Type, err: &'a Type },
}

impl<'a> Service<'a> {
    pub(crate) fn from_syn(item: &'a ItemTrait, args: Args, errors: &Errors) -> Self {
        let methods = item
            .items
            .iter()
            .filter_map(|trait_item| match trait_item {
                TraitItem::Fn(method) => Some(Method::from_syn(method, errors)),
                TraitItem::Const(constant) => {
                    errors.spanned(
                        constant,
                        "an RPC service has methods only: move this constant out of the trait",
                    );
                    None
                }
                TraitItem::Type(ty) => {
                    errors.spanned(
                        ty,
                        "an RPC service has methods only: associated types are not supported",
                    );
                    None
                }
                other => {
                    errors.spanned(other, "an RPC service has methods only");
                    None
                }
            })
            .collect();
        let queue = match args.queue {
            Some(literal) => Queue {
                name: literal.value(),
                literal: Some(literal),
            },
            None => Queue {
                // `unraw`: a trait named `r#Inventory` is `Inventory`.
                name: snake_case(&item.ident.unraw().to_string()),
                literal: None,
            },
        };
        Service {
            item,
            queue,
            krate: args
                .krate
                .unwrap_or_else(|| syn::parse_quote!(::rpc_runtime)),
            methods,
        }
    }

    pub(crate) fn ident(&self) -> &'a Ident {
        &self.item.ident
    }

    /// The trait's lint attributes, to copy onto everything generated for
    /// it (see `lints`).
    pub(crate) fn lints(&self) -> Vec<Attribute> {
        lints(&self.item.attrs)
    }

    /// The trait's `#[deprecated]`, to copy onto its client and server: the
    /// users of a deprecated service are told so by whichever they name.
    pub(crate) fn deprecated(&self) -> Option<&'a Attribute> {
        self.item
            .attrs
            .iter()
            .find(|attr| attr.path().is_ident("deprecated"))
    }
}

impl<'a> Method<'a> {
    fn from_syn(item: &'a TraitItemFn, errors: &Errors) -> Self {
        let args = item
            .sig
            .inputs
            .iter()
            .filter_map(|input| match input {
                FnArg::Receiver(_) => None,
                FnArg::Typed(arg) if !arg.attrs.is_empty() => {
                    // The generated code repeats each argument without its
                    // attributes: a `#[cfg]` there would leave the trait and
                    // the generated items with different arguments.
                    errors.spanned(
                        &arg.attrs[0],
                        "RPC method arguments take no attributes; put a `#[cfg]` on the \
                         method instead",
                    );
                    None
                }
                FnArg::Typed(arg) => match &*arg.pat {
                    Pat::Ident(pat)
                        if pat.by_ref.is_none()
                            && pat.mutability.is_none()
                            && pat.subpat.is_none() =>
                    {
                        Some(Arg {
                            ident: &pat.ident,
                            ty: &arg.ty,
                        })
                    }
                    pat => {
                        errors.spanned(
                            pat,
                            "RPC method arguments must be plain names (`name: Type`), not patterns",
                        );
                        None
                    }
                },
            })
            .collect();
        Method {
            item,
            args,
            output: Output::from_syn(&item.sig.output),
        }
    }

    pub(crate) fn ident(&self) -> &'a Ident {
        &self.item.sig.ident
    }

    /// `#[doc]` and `#[deprecated]` attributes, to copy onto the client
    /// method: its callers are told as the trait's are.
    pub(crate) fn docs(&self) -> impl Iterator<Item = &'a Attribute> {
        self.item
            .attrs
            .iter()
            .filter(|attr| attr.path().is_ident("doc") || attr.path().is_ident("deprecated"))
    }

    /// The doc comment's text, for the service's description.
    pub(crate) fn doc_text(&self) -> String {
        doc_text(&self.item.attrs)
    }

    /// The method's lint attributes, to copy onto everything generated for
    /// it (see `lints`).
    pub(crate) fn lints(&self) -> Vec<Attribute> {
        lints(&self.item.attrs)
    }

    /// `#[cfg]` attributes, to copy onto everything generated for the method.
    pub(crate) fn cfgs(&self) -> impl Iterator<Item = &'a Attribute> {
        self.item
            .attrs
            .iter()
            .filter(|attr| attr.path().is_ident("cfg"))
    }
}

impl<'a> Output<'a> {
    fn from_syn(output: &'a ReturnType) -> Self {
        let ty = match output {
            ReturnType::Default => return Output::Unit,
            ReturnType::Type(_, ty) => &**ty,
        };
        if let Type::Tuple(tuple) = ty
            && tuple.elems.is_empty()
        {
            return Output::Unit;
        }
        // `Result<T, E>`, written with any path ending in `Result` and exactly
        // two type arguments. Any other `Result` (a one-argument alias such as
        // `io::Result<T>`, an alias without arguments) stays a plain value
        // here, and `valid` refuses it.
        if let Some(segment) = result_segment(ty)
            && let PathArguments::AngleBracketed(generics) = &segment.arguments
            && generics.args.len() == 2
            && let (Some(GenericArgument::Type(ok)), Some(GenericArgument::Type(err))) =
                (generics.args.first(), generics.args.last())
        {
            return Output::Result { ok, err };
        }
        Output::Plain(ty)
    }
}

/// The lint attributes among `attrs` (`allow`, `expect`, `warn`, `deny`,
/// `forbid`, and `cfg_attr`s of them), as generated items repeat them: a
/// method's `#[allow(non_snake_case)]` must cover its client method too, as
/// the trait's covers the client and server. An `expect` becomes an `allow`:
/// a copy on an item that does not trip the lint would itself warn
/// (`unfulfilled_lint_expectations`), and the original keeps the expectation.
/// A `forbid` becomes a `deny`: generated items allow what they must (a
/// deprecated type they name, a handler's name), which a `forbid` on them
/// would make an error (E0453); the original keeps the `forbid`.
pub(crate) fn lints(attrs: &[Attribute]) -> Vec<Attribute> {
    attrs
        .iter()
        .filter_map(|attr| {
            Some(Attribute {
                // A trait's inner `#![allow(..)]` is an outer one on the
                // items beside it.
                style: AttrStyle::Outer,
                meta: lint_meta(&attr.meta)?,
                ..attr.clone()
            })
        })
        .collect()
}

fn lint_meta(meta: &Meta) -> Option<Meta> {
    const LEVELS: &[&str] = &["allow", "warn", "deny"];
    let path = meta.path();
    // Copied as the level they become (see `lints`).
    let renamed = |level: &str| {
        let Meta::List(list) = meta else {
            return None;
        };
        let level = Ident::new(level, path.segments[0].ident.span());
        Some(Meta::List(MetaList {
            path: level.into(),
            ..list.clone()
        }))
    };
    if LEVELS.iter().any(|level| path.is_ident(level)) {
        Some(meta.clone())
    } else if path.is_ident("expect") {
        renamed("allow")
    } else if path.is_ident("forbid") {
        renamed("deny")
    } else if path.is_ident("cfg_attr") {
        // `cfg_attr(predicate, attr, ..)`, kept with its lint attributes
        // only; one rustc cannot read is left for rustc to report on the
        // trait.
        let Meta::List(list) = meta else {
            return None;
        };
        let nested = list
            .parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
            .ok()?;
        let mut nested = nested.into_iter();
        let predicate = nested.next()?;
        let lints: Vec<Meta> = nested.filter_map(|meta| lint_meta(&meta)).collect();
        if lints.is_empty() {
            return None;
        }
        Some(Meta::List(MetaList {
            tokens: quote::quote!(#predicate, #(#lints),*),
            ..list.clone()
        }))
    } else {
        None
    }
}

/// The last segment of a type written as a path ending in `Result`
/// (`Result<T, E>`, `std::result::Result<T, E>`, `io::Result<T>`, `Result`),
/// but not of a projection such as `<S as Trait>::Result`, which the macro
/// cannot see through.
pub(crate) fn result_segment(ty: &Type) -> Option<&PathSegment> {
    match ty {
        Type::Path(path) if path.qself.is_none() => path
            .path
            .segments
            .last()
            .filter(|last| last.ident == "Result"),
        Type::Paren(inner) => result_segment(&inner.elem),
        Type::Group(inner) => result_segment(&inner.elem),
        _ => None,
    }
}

/// `FibonacciService` → `fibonacci_service`, `HTTPGateway` → `http_gateway`.
pub(crate) fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut snake = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let previous = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1);
            let starts_word = match previous {
                None | Some('_') => false,
                Some(p) if p.is_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_uppercase() => next.is_some_and(|n| n.is_lowercase()),
                Some(_) => false,
            };
            if starts_word {
                snake.push('_');
            }
            snake.extend(c.to_lowercase());
        } else {
            snake.push(c);
        }
    }
    snake
}

/// The text of the `#[doc = ".."]` attributes among `attrs` (doc comments),
/// one line each, without the space a `///` comment starts with.
pub(crate) fn doc_text(attrs: &[Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|attr| attr.path().is_ident("doc"))
        .filter_map(|attr| match &attr.meta {
            syn::Meta::NameValue(syn::MetaNameValue {
                value:
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(text),
                        ..
                    }),
                ..
            }) => Some(text.value()),
            _ => None,
        })
        .map(|line| line.strip_prefix(' ').unwrap_or(&line).to_owned())
        .collect();
    lines.join("\n").trim().to_owned()
}

/// A type as the trait writes it, spaced as people write it (`Vec<u8>`,
/// `(u32, String)`), for the service's description.
pub(crate) fn written(ty: &Type) -> String {
    let tokens = quote::quote!(#ty).to_string();
    let mut text = String::with_capacity(tokens.len());
    for word in tokens.split_whitespace() {
        // A space only between two words (`dyn Trait`, `mut T`), never
        // around punctuation, then one after each separator.
        let glued = |c: char| c.is_alphanumeric() || c == '_' || c == '\'';
        if text.ends_with(glued) && word.starts_with(glued) {
            text.push(' ');
        }
        text.push_str(word);
    }
    text.replace(',', ", ")
        .replace(';', "; ")
        .replace("->", " -> ")
        .replace('+', " + ")
}

#[cfg(test)]
mod tests {
    use super::{doc_text, snake_case, written};

    #[test]
    fn trait_names_become_snake_case_queue_names() {
        assert_eq!(snake_case("Fibonacci"), "fibonacci");
        assert_eq!(snake_case("FibonacciService"), "fibonacci_service");
        assert_eq!(snake_case("HTTPGateway"), "http_gateway");
        assert_eq!(snake_case("Echo2Way"), "echo2_way");
        assert_eq!(snake_case("already_snake"), "already_snake");
    }

    #[test]
    fn types_are_written_as_people_write_them() {
        for text in [
            "String",
            "Vec<Option<String>>",
            "(u32, String)",
            "[u8; 4]",
            "std::collections::HashMap<String, Vec<Point>>",
            "Box<dyn Fn(u32) -> u32>",
            "Box<dyn Error + Send>",
            "Cow<'static, str>",
        ] {
            let ty: syn::Type = syn::parse_str(text).expect(text);
            assert_eq!(written(&ty), text);
        }
    }

    #[test]
    fn doc_comments_lose_the_leading_space_only() {
        let item: syn::ItemTrait = syn::parse_quote! {
            /// First line.
            ///   Indented.
            trait T {}
        };
        assert_eq!(doc_text(&item.attrs), "First line.\n  Indented.");
    }
}
