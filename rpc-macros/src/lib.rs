//! The `#[rpc_service]` attribute of `rpc-runtime`.
//!
//! Use it through `rpc_runtime::rpc_service`: the code it generates refers to
//! `::rpc_runtime`, or to the path given as `crate = ".."`. The macro works in three passes, each in its own module:
//! `ast` reads the attribute and the trait into a model, `valid` checks the
//! model against the rules of an RPC service, and `expand` generates the
//! trait, the client and the server from it. Every problem found is reported,
//! spanned on the tokens at fault, in one compile.

mod ast;
mod expand;
mod valid;

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::ToTokens;

/// Turns a trait into an RPC service; see `rpc_runtime::rpc_service`.
#[proc_macro_attribute]
pub fn rpc_service(args: TokenStream, input: TokenStream) -> TokenStream {
    rpc_service_impl(args.into(), input.into()).into()
}

fn rpc_service_impl(args: TokenStream2, input: TokenStream2) -> TokenStream2 {
    let item: syn::Item = match syn::parse2(input) {
        Ok(item) => item,
        Err(error) => return error.into_compile_error(),
    };
    match service(args, &item) {
        Ok(expanded) => expanded,
        // Keep the item as written, so that the only errors are ours rather
        // than a cascade of "cannot find trait" at every use of it.
        Err(error) => {
            let mut tokens = error.into_compile_error();
            item.to_tokens(&mut tokens);
            tokens
        }
    }
}

fn service(args: TokenStream2, item: &syn::Item) -> syn::Result<TokenStream2> {
    let errors = ast::Errors::default();
    let args = ast::Args::parse(args, &errors);
    let Some(item) = ast::trait_item(item, &errors) else {
        return Err(errors.finish().err().unwrap_or_else(|| {
            syn::Error::new(proc_macro2::Span::call_site(), "expected a trait")
        }));
    };
    let service = ast::Service::from_syn(item, args, &errors);
    valid::check(&service, &errors);
    errors.finish()?;
    Ok(expand::ServiceGenerator::new(&service).into_token_stream())
}

#[cfg(test)]
mod tests {
    use proc_macro2::{TokenStream, TokenTree};
    use std::str::FromStr;

    /// The source text at the span of each literal in `tokens`, by value.
    fn literals(tokens: TokenStream, found: &mut Vec<(String, Option<String>)>) {
        for token in tokens {
            match token {
                TokenTree::Group(group) => literals(group.stream(), found),
                TokenTree::Literal(literal) => {
                    found.push((literal.to_string(), literal.span().source_text()));
                }
                _ => {}
            }
        }
    }

    fn expand(args: &str, input: &str) -> Vec<(String, Option<String>)> {
        let args = TokenStream::from_str(args).expect("arguments");
        let input = TokenStream::from_str(input).expect("trait");
        let mut found = Vec::new();
        literals(super::rpc_service_impl(args, input), &mut found);
        found
    }

    /// Every identifier in `tokens`.
    fn idents(tokens: TokenStream, found: &mut Vec<String>) {
        for token in tokens {
            match token {
                TokenTree::Group(group) => idents(group.stream(), found),
                TokenTree::Ident(ident) => found.push(ident.to_string()),
                _ => {}
            }
        }
    }

    /// With `crate = ".."`, generated code names `rpc-runtime` by that path
    /// only: a crate that depends on it under another name has no
    /// `rpc_runtime` to resolve.
    #[test]
    fn renamed_crate_is_the_only_path_to_the_runtime() {
        let input = "pub trait Inventory { \
                     async fn stock(&self, sku: String) -> Result<u32, String>; \
                     async fn clear(&self); }";
        for args in [r#"crate = "rpc""#, "crate = ::rpc"] {
            let args = TokenStream::from_str(args).expect("arguments");
            let input = TokenStream::from_str(input).expect("trait");
            let mut found = Vec::new();
            idents(super::rpc_service_impl(args, input), &mut found);
            assert!(found.iter().any(|ident| ident == "rpc"));
            assert!(!found.iter().any(|ident| ident == "rpc_runtime"));
        }
    }

    /// rustdoc shows a constant's value as the source text at the span of
    /// its literal, if that span is in the user's code: the queue and the
    /// service name must not be spanned on the trait's name (which showed as
    /// `DEFAULT_QUEUE = Inventory`), but either on nothing of the user's or on
    /// the user's own literal.
    #[test]
    fn generated_constants_show_as_strings() {
        let found = expand("", "pub trait Inventory { async fn stock(&self) -> u32; }");
        for value in ["\"inventory\"", "\"Inventory\""] {
            let spans: Vec<_> = found
                .iter()
                .filter(|(literal, _)| literal == value)
                .collect();
            assert!(!spans.is_empty(), "{value} is generated");
            for (_, source) in spans {
                assert_eq!(source.as_deref(), None, "the source text of {value}");
            }
        }

        let found = expand(
            r#"queue = "stock_room""#,
            "pub trait Inventory { async fn stock(&self) -> u32; }",
        );
        let spans: Vec<_> = found
            .iter()
            .filter(|(literal, _)| literal == "\"stock_room\"")
            .collect();
        assert!(!spans.is_empty(), "the queue is generated");
        for (_, source) in spans {
            assert_eq!(source.as_deref(), Some("\"stock_room\""));
        }
    }
}
