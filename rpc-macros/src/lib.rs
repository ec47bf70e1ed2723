//! The `#[rpc_service]` attribute of `rpc-runtime`.
//!
//! Use it through `rpc_runtime::rpc_service`: the code it generates refers to
//! `::rpc_runtime`. The macro works in three passes, each in its own module:
//! [`ast`] reads the attribute and the trait into a model, [`valid`] checks the
//! model against the rules of an RPC service, and [`expand`] generates the
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
