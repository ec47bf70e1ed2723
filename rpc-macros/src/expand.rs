//! Generates the service's items from a valid model: the trait with `Send`
//! futures, the client stub and the server dispatcher.
//!
//! Generated code names everything by absolute path (`::core::..`,
//! `::rpc_runtime::..`, or the path given as `crate = ".."`) and its own
//! locals with a reserved `__rpc` prefix, so that it compiles whatever the
//! user's scope holds (even under `#![no_implicit_prelude]`).
//!
//! Lint attributes go with what they are on: a method's onto every item
//! generated for it, the trait's onto every item generated for the trait.

use crate::ast::{Method, Output, Service};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::{Attribute, Ident, LitStr, Path, ext::IdentExt, spanned::Spanned};

/// One generator per service; one method per generated item.
pub(crate) struct ServiceGenerator<'a> {
    service: &'a Service<'a>,
    trait_ident: &'a Ident,
    client_ident: Ident,
    server_ident: Ident,
    queue: LitStr,
    krate: &'a Path,
    /// The trait's lint attributes (see `ast::lints`).
    lints: Vec<Attribute>,
    /// `#[allow(deprecated)]` if the trait is deprecated, for the items
    /// that name it or its deprecated client and server: implementing or
    /// serving a deprecated trait is no use of it.
    allow_deprecated: TokenStream,
}

impl<'a> ServiceGenerator<'a> {
    pub(crate) fn new(service: &'a Service<'a>) -> Self {
        let trait_ident = service.ident();
        Self {
            service,
            trait_ident,
            client_ident: format_ident!("{}Client", trait_ident),
            server_ident: format_ident!("{}Server", trait_ident),
            // rustdoc shows a constant's value as the source text at its
            // span when that span is the user's own code: the user's literal
            // if there is one, else a span of the expansion (which rustdoc
            // pretty-prints), not the trait's name.
            queue: match &service.queue.literal {
                Some(literal) => literal.clone(),
                None => LitStr::new(&service.queue.name, Span::call_site()),
            },
            krate: &service.krate,
            lints: service.lints(),
            allow_deprecated: match service.deprecated() {
                Some(_) => quote!(#[allow(deprecated)]),
                None => quote!(),
            },
        }
    }

    pub(crate) fn into_token_stream(self) -> TokenStream {
        let service_trait = self.service_trait();
        let client_struct = self.client_struct();
        let client_impl = self.client_impl();
        let server_struct = self.server_struct();
        let service_impl = self.service_impl();
        let forwarding_impls = self.forwarding_impls();
        quote! {
            #service_trait
            #forwarding_impls
            #client_struct
            #client_impl
            #server_struct
            #service_impl
        }
    }

    /// The trait, each `async fn` turned into a method returning a `Send`
    /// future, so that servers can run it on a multi-threaded runtime while
    /// implementations still write plain `async fn`.
    fn service_trait(&self) -> TokenStream {
        let item = self.service.item;
        let attrs = &item.attrs;
        let vis = &item.vis;
        let ident = self.trait_ident;
        let methods = self.service.methods.iter().map(|method| {
            let attrs = &method.item.attrs;
            let name = method.ident();
            let args = method.args.iter().map(|arg| {
                let (ident, ty) = (arg.ident, arg.ty);
                quote!(#ident: #ty)
            });
            let output = trait_output(method);
            quote! {
                #(#attrs)*
                fn #name(&self, #(#args),*)
                    -> impl ::core::future::Future<Output = #output> + ::core::marker::Send;
            }
        });
        quote! {
            #(#attrs)*
            #vis trait #ident {
                #(#methods)*
            }
        }
    }

    /// The trait for `Arc<T>` and `Box<T>` of any `T` that implements it,
    /// forwarding each method, so that `FooServer::new(Arc::new(service))`
    /// serves `service`.
    fn forwarding_impls(&self) -> TokenStream {
        let trait_ident = self.trait_ident;
        let krate = self.krate;
        let lints = &self.lints;
        let methods: Vec<TokenStream> = self
            .service
            .methods
            .iter()
            .map(|method| {
                let name = method.ident();
                let cfgs = method.cfgs();
                let method_lints = method.lints();
                let params = method.args.iter().map(|arg| {
                    let (ident, ty) = (arg.ident, arg.ty);
                    quote!(#ident: #ty)
                });
                let idents = method.args.iter().map(|arg| arg.ident);
                let output = trait_output(method);
                quote! {
                    #(#cfgs)*
                    #(#method_lints)*
                    fn #name(&self, #(#params),*)
                        -> impl ::core::future::Future<Output = #output> + ::core::marker::Send
                    {
                        <__RpcInner as #trait_ident>::#name(&**self, #(#idents),*)
                    }
                }
            })
            .collect();
        let pointers = [
            quote!(#krate::__private::Arc),
            quote!(#krate::__private::Box),
        ];
        pointers
            .iter()
            .map(|pointer| {
                quote! {
                    // Not `T`: the trait itself may be named `T`. Forwarding
                    // is no use of a deprecated method.
                    #(#lints)*
                    #[allow(deprecated)]
                    impl<__RpcInner> #trait_ident for #pointer<__RpcInner>
                    where
                        __RpcInner: #trait_ident + ?::core::marker::Sized,
                    {
                        #(#methods)*
                    }
                }
            })
            .collect()
    }

    fn client_struct(&self) -> TokenStream {
        let vis = &self.service.item.vis;
        let krate = self.krate;
        let lints = &self.lints;
        let deprecated = self.service.deprecated();
        let client = &self.client_ident;
        let doc = format!(
            "Client of the [`{trait_ident}`] RPC service: one method per service method, each \
             returning an `rpc_runtime::Call` to await.\n\n\
             Build it with [`{client}::new`] from an `rpc_runtime::Client`; clone it freely. \
             `AsRef<rpc_runtime::Client>` gives that client back (for `pending_calls`, say).",
            trait_ident = self.trait_ident,
        );
        quote! {
            #[doc = #doc]
            #deprecated
            #(#lints)*
            #[derive(::core::clone::Clone, ::core::fmt::Debug)]
            #vis struct #client {
                client: #krate::Client,
                queue: #krate::__private::Arc<str>,
            }
        }
    }

    fn client_impl(&self) -> TokenStream {
        let vis = &self.service.item.vis;
        let krate = self.krate;
        let lints = &self.lints;
        let allow_deprecated = &self.allow_deprecated;
        let client = &self.client_ident;
        let queue = &self.queue;
        let methods = self
            .service
            .methods
            .iter()
            .map(|method| self.client_method(method));
        quote! {
            #(#lints)*
            #allow_deprecated
            impl #client {
                /// The queue requests go to unless `with_queue` says otherwise.
                #vis const DEFAULT_QUEUE: &'static str = #queue;

                /// A client sending requests through `client` to the service's
                /// default queue.
                #vis fn new(client: #krate::Client) -> Self {
                    Self {
                        client,
                        queue: #krate::__private::queue_name(#queue),
                    }
                }

                /// Sends requests to `queue` instead of the default queue.
                #vis fn with_queue(mut self, queue: &str) -> Self {
                    self.queue = #krate::__private::queue_name(queue);
                    self
                }

                #(#methods)*
            }

            // A trait, not an inherent method: no service method's name can
            // clash with it.
            #(#lints)*
            #allow_deprecated
            impl ::core::convert::AsRef<#krate::Client> for #client {
                fn as_ref(&self) -> &#krate::Client {
                    &self.client
                }
            }
        }
    }

    fn client_method(&self, method: &Method<'_>) -> TokenStream {
        let vis = &self.service.item.vis;
        let name = method.ident();
        let method_name = name_literal(name);
        let docs = method.docs();
        let cfgs = method.cfgs();
        let lints = method.lints();
        let krate = self.krate;
        let count = method.args.len();
        let params = method.args.iter().map(|arg| {
            let (ident, ty) = (arg.ident, arg.ty);
            quote!(#ident: #ty)
        });
        let pushes = method.args.iter().map(|arg| {
            let ident = arg.ident;
            let arg_name = name_literal(ident);
            // Located on the type, so that a type without `Serialize` is
            // reported there, but resolved at the call site like the local
            // it uses (the type may come from another macro's expansion).
            let span = Span::call_site().located_at(arg.ty.span());
            let krate = located(krate, span);
            quote_spanned!(span=> #krate::__private::ArgsEncoder::arg(&mut __rpc_args, #arg_name, &#ident);)
        });
        let returns = match &method.output {
            Output::Unit => quote!(#krate::Plain<()>),
            Output::Plain(ty) => quote!(#krate::Plain<#ty>),
            Output::Result { ok, err } => quote!(#krate::Fallible<#ok, #err>),
        };
        // The bounds a call puts on the types it decodes, checked here on
        // each type by itself, so that a type without `Deserialize` is
        // reported on the trait rather than at some `.await` of a call (or
        // nowhere, in a crate that only serves).
        let decodable = |ty: &syn::Type| {
            let span = Span::call_site().located_at(ty.span());
            let krate = located(krate, span);
            quote_spanned! {span=>
                let _ = <#krate::Plain<#ty> as #krate::Returns>::failed;
            }
        };
        let checks = match &method.output {
            Output::Unit => Vec::new(),
            Output::Plain(ty) => vec![decodable(ty)],
            Output::Result { ok, err } => vec![decodable(ok), decodable(err)],
        };
        let service_name = self.service_name();
        quote! {
            #(#docs)*
            #(#cfgs)*
            #(#lints)*
            #vis fn #name(&self, #(#params),*) -> #krate::Call<#returns> {
                #(#checks)*
                // The method's names and metrics, registered at its first call.
                static __RPC_SITE: #krate::__private::CallSite =
                    #krate::__private::CallSite::new(#service_name, #method_name);
                let mut __rpc_args = #krate::__private::ArgsEncoder::new(#count);
                #(#pushes)*
                #krate::Call::new(&self.client, &self.queue, &__RPC_SITE, #krate::__private::ArgsEncoder::finish(__rpc_args))
            }
        }
    }

    fn server_struct(&self) -> TokenStream {
        let vis = &self.service.item.vis;
        let lints = &self.lints;
        let deprecated = self.service.deprecated();
        let allow_deprecated = &self.allow_deprecated;
        let trait_ident = self.trait_ident;
        let server = &self.server_ident;
        let doc = format!(
            "Serves any implementation of [`{trait_ident}`]: hand it to `rpc_runtime::Server`."
        );
        quote! {
            #[doc = #doc]
            #deprecated
            #(#lints)*
            #[derive(::core::clone::Clone, ::core::fmt::Debug)]
            #vis struct #server<S> {
                service: S,
            }

            #(#lints)*
            #allow_deprecated
            impl<S> #server<S> {
                /// Wraps the implementation to serve.
                #vis fn new(service: S) -> Self {
                    Self { service }
                }

                /// The implementation served.
                #vis fn get_ref(&self) -> &S {
                    &self.service
                }

                /// Unwraps the implementation.
                #vis fn into_inner(self) -> S {
                    self.service
                }
            }
        }
    }

    /// The service's name, the trait's, as a literal spanned in the
    /// expansion, for rustdoc (see `queue`).
    fn service_name(&self) -> LitStr {
        LitStr::new(&self.trait_ident.unraw().to_string(), Span::call_site())
    }

    /// `rpc_runtime::Service` for the server, with one decoding function per
    /// method, in an anonymous const so that they add no names to the user's
    /// scope.
    fn service_impl(&self) -> TokenStream {
        let trait_ident = self.trait_ident;
        let krate = self.krate;
        let lints = &self.lints;
        let trait_name = self.service_name();
        let server = &self.server_ident;
        let queue = &self.queue;
        let handlers = self
            .service
            .methods
            .iter()
            .map(|method| self.method_handler(method));
        let arms = self.service.methods.iter().map(|method| {
            let name = method.ident();
            let method_name = name_literal(name);
            let handler = handler_ident(method);
            let cfgs = method.cfgs();
            quote! {
                #(#cfgs)*
                #method_name => #handler(&self.service, args).await,
            }
        });
        let method_names = self.service.methods.iter().map(|method| {
            let method_name = name_literal(method.ident());
            let cfgs = method.cfgs();
            quote!(#(#cfgs)* #method_name)
        });
        let description = self.description();
        quote! {
            #(#lints)*
            const _: () = {
                #(#handlers)*

                // Not `S`: the trait itself may be named `S`. Serving a
                // deprecated trait is no use of it.
                #[allow(deprecated)]
                impl<__RpcImpl> #krate::Service for #server<__RpcImpl>
                where
                    __RpcImpl: #trait_ident + ::core::marker::Send + ::core::marker::Sync + 'static,
                {
                    const NAME: &'static str = #trait_name;
                    const DEFAULT_QUEUE: &'static str = #queue;
                    const METHODS: &'static [&'static str] = &[#(#method_names),*];

                    fn description() -> ::core::option::Option<#krate::ServiceDescription> {
                        #description
                    }

                    fn dispatch<'a>(
                        &'a self,
                        method: &'a str,
                        args: &'a [u8],
                    ) -> impl ::core::future::Future<
                        Output = ::core::result::Result<
                            #krate::ReplyBody,
                            #krate::Fault,
                        >,
                    > + ::core::marker::Send + 'a {
                        async move {
                            match method {
                                #(#arms)*
                                _ => ::core::result::Result::Err(
                                    #krate::__private::unknown_method(
                                        <Self as #krate::Service>::NAME,
                                        method,
                                    ),
                                ),
                            }
                        }
                    }
                }
            };
        }
    }

    /// The body of `Service::description`: each method with its arguments,
    /// return and error types, as written, with their docs; their shapes are
    /// traced from the types at run time.
    fn description(&self) -> TokenStream {
        let service_name = self.service_name();
        let krate = self.krate;
        let docs = LitStr::new(
            &crate::ast::doc_text(&self.service.item.attrs),
            Span::call_site(),
        );
        let methods = self.service.methods.iter().map(|method| {
            let method_name = name_literal(method.ident());
            let method_docs = LitStr::new(&method.doc_text(), Span::call_site());
            let cfgs = method.cfgs();
            // The method's types are named here too.
            let lints = method.lints();
            let args = method.args.iter().map(|arg| {
                let (ty, arg_name) = (arg.ty, name_literal(arg.ident));
                let written = LitStr::new(&crate::ast::written(ty), Span::call_site());
                quote!(#krate::__private::Describer::arg(&mut __rpc_describer, #arg_name, #written, |__rpc_tracer| {
                    (&&#krate::__private::TypeTrace::<#ty>::new()).trace_rpc_shape(__rpc_tracer)
                });)
            });
            let output = match &method.output {
                Output::Unit => quote!(),
                Output::Plain(ty) => {
                    let written = LitStr::new(&crate::ast::written(ty), Span::call_site());
                    quote!(#krate::__private::Describer::returns(&mut __rpc_describer, #written, |__rpc_tracer| {
                        (&&#krate::__private::TypeTrace::<#ty>::new()).trace_rpc_shape(__rpc_tracer)
                    });)
                }
                Output::Result { ok, err } => {
                    let (ok_written, err_written) = (
                        LitStr::new(&crate::ast::written(ok), Span::call_site()),
                        LitStr::new(&crate::ast::written(err), Span::call_site()),
                    );
                    quote! {
                        #krate::__private::Describer::returns(&mut __rpc_describer, #ok_written, |__rpc_tracer| {
                            (&&#krate::__private::TypeTrace::<#ok>::new()).trace_rpc_shape(__rpc_tracer)
                        });
                        #krate::__private::Describer::error(&mut __rpc_describer, #err_written, |__rpc_tracer| {
                            (&&#krate::__private::TypeTrace::<#err>::new()).trace_rpc_shape(__rpc_tracer)
                        });
                    }
                }
            };
            // Each step called by its path: a trait of the user's scope with
            // a method of the same name would be found first by method
            // syntax.
            quote! {
                #(#cfgs)*
                #(#lints)*
                {
                    #krate::__private::Describer::method(&mut __rpc_describer, #method_name, #method_docs);
                    #(#args)*
                    #output
                }
            }
        });
        quote! {
            // A type that cannot be traced is described as unknown; its
            // missing `Deserialize` is reported where it is decoded.
            #[allow(unused_imports)]
            use #krate::__private::{TraceDeserialize as _, TraceNothing as _};
            let mut __rpc_describer =
                #krate::__private::Describer::new(#service_name, #docs);
            #(#methods)*
            ::core::option::Option::Some(#krate::__private::Describer::finish(__rpc_describer))
        }
    }

    /// Decodes one method's arguments, calls it, and encodes its result.
    fn method_handler(&self, method: &Method<'_>) -> TokenStream {
        let trait_ident = self.trait_ident;
        let name = method.ident();
        let handler = handler_ident(method);
        let cfgs = method.cfgs();
        let lints = method.lints();
        let krate = self.krate;
        let count = method.args.len();
        let idents: Vec<&Ident> = method.args.iter().map(|arg| arg.ident).collect();
        let decodes = method.args.iter().map(|arg| {
            let (ident, ty) = (arg.ident, arg.ty);
            let arg_name = name_literal(ident);
            // Located on the type, so that a type without `Deserialize` is
            // reported there (see `client_method`).
            let span = Span::call_site().located_at(ty.span());
            let krate = located(krate, span);
            quote_spanned!(span=> let #ident: #ty = #krate::__private::ArgsDecoder::arg(&mut __rpc_args, #arg_name)?;)
        });
        // Each value encoded by a call located on its type, so that a type
        // without `Serialize` is reported there (see `client_method`).
        let encode = match &method.output {
            Output::Unit => quote!(#krate::__private::encode_ok(&__rpc_value)),
            Output::Plain(ty) => {
                let span = Span::call_site().located_at(ty.span());
                let krate = located(krate, span);
                quote_spanned!(span=> #krate::__private::encode_ok(&__rpc_value))
            }
            Output::Result { ok, err } => {
                let ok_span = Span::call_site().located_at(ok.span());
                let err_span = Span::call_site().located_at(err.span());
                let (ok_krate, err_krate) = (located(krate, ok_span), located(krate, err_span));
                let encode_ok =
                    quote_spanned!(ok_span=> #ok_krate::__private::encode_ok(&__rpc_ok));
                let encode_err = quote_spanned!(err_span=>
                    #err_krate::__private::encode_result::<(), #err>(
                        &::core::result::Result::Err(__rpc_err),
                    )
                );
                quote! {
                    match __rpc_value {
                        ::core::result::Result::Ok(__rpc_ok) => #encode_ok,
                        ::core::result::Result::Err(__rpc_err) => #encode_err,
                    }
                }
            }
        };
        quote! {
            #(#cfgs)*
            #(#lints)*
            // Serving a deprecated method is no use of it. The handler's
            // name is the method's, which may be in any case (`GetUser`, to
            // match a peer in another language), and no one else's to see.
            #[allow(deprecated, non_snake_case)]
            async fn #handler<__RpcService>(
                __rpc_service: &__RpcService,
                __rpc_body: &[u8],
            ) -> ::core::result::Result<#krate::ReplyBody, #krate::Fault>
            where
                __RpcService: #trait_ident + ::core::marker::Sync,
            {
                let mut __rpc_args = #krate::__private::ArgsDecoder::new(__rpc_body, #count)?;
                #(#decodes)*
                #krate::__private::ArgsDecoder::finish(__rpc_args)?;
                let __rpc_value =
                    <__RpcService as #trait_ident>::#name(__rpc_service, #(#idents),*).await;
                #encode
            }
        }
    }
}

/// The type the trait method's future resolves to: the declared return type.
fn trait_output(method: &Method<'_>) -> TokenStream {
    match &method.item.sig.output {
        syn::ReturnType::Default => quote!(()),
        syn::ReturnType::Type(_, ty) => quote!(#ty),
    }
}

/// The path of `rpc-runtime` located at `span`, for a call that is to be
/// reported there: rustc spans an unmet bound of a call on the whole path,
/// from its first token.
fn located(krate: &Path, span: Span) -> TokenStream {
    quote!(#krate)
        .into_iter()
        .map(|mut token| {
            token.set_span(span);
            token
        })
        .collect()
}

fn handler_ident(method: &Method<'_>) -> Ident {
    format_ident!("__rpc_handle_{}", method.ident())
}

/// A name as a string literal, without the `r#` of a raw identifier: the
/// method `r#type` is called `type` on the wire.
fn name_literal(ident: &Ident) -> LitStr {
    LitStr::new(&ident.unraw().to_string(), ident.span())
}
