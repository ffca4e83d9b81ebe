//! Code generation for a checked [`ServiceDef`]: one function per item.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::model::{Arg, HandlerDef, ServiceDef, Shape};
use crate::subscribe::SubscriberDef;
use crate::syntax::type_name;

pub(crate) fn expand(def: &ServiceDef) -> TokenStream {
    let item = &def.item;
    let handler_impl = handler_impl(def);
    let client = client(def);
    quote! {
        #item
        #handler_impl
        #client
    }
}

fn handler_impl(def: &ServiceDef) -> TokenStream {
    let krate = &def.krate;
    let self_ty = &def.item.self_ty;
    let name = &def.name;
    let endpoints = def.handlers.iter().map(|h| {
        let endpoint = &h.endpoint;
        let request = h
            .request
            .as_ref()
            .map_or_else(|| "()".to_owned(), type_name);
        let response = type_name(&h.response);
        let schema_of = |ty: TokenStream| {
            quote! {{
                use #krate::__private::schema::{ViaJsonSchema as _, ViaNothing as _};
                (&&#krate::__private::schema::Probe::<#ty>::new()).micro_schema()
            }}
        };
        let request_schema = schema_of(
            h.request
                .as_ref()
                .map_or_else(|| quote! { () }, |t| quote! { #t }),
        );
        let response_ty = &h.response;
        let response_schema = schema_of(quote! { #response_ty });
        let endpoint = match h.shape.kind() {
            None => quote! { #krate::__private::Endpoint::new(#endpoint, #request, #response) },
            Some(kind) => {
                let kind = format_ident!("{}", kind);
                quote! {
                    #krate::__private::stream_endpoint(
                        #endpoint, #request, #response, #krate::__private::StreamKind::#kind,
                    )
                }
            }
        };
        let endpoint = quote! { #endpoint.with_schemas(#request_schema, #response_schema) };
        // What it does, from its doc comment: describe, the gateway's
        // dashboard and its MCP tools show it.
        let endpoint = match doc_text(&h.docs) {
            Some(text) => quote! { #endpoint.with_metadata("description", #text) },
            None => endpoint,
        };
        // That it speaks protobuf, and as which protobuf service.
        let endpoint = match &def.protobuf {
            Some(full) => quote! { #endpoint.with_metadata("protobuf", #full) },
            None => endpoint,
        };
        // Who may call it, in the endpoint's metadata, where the server's
        // auth and the registry's readers find it.
        match &h.access {
            crate::args::Access::Undeclared => endpoint,
            crate::args::Access::Public => quote! { #endpoint.with_metadata("auth", "public") },
            crate::args::Access::Scopes(scopes) => {
                let scopes = scopes.join(",");
                quote! { #endpoint.with_metadata("scopes", #scopes) }
            }
        }
    });
    let subscribers = subscribers_fn(def);
    let consumers = crate::consume::consumers_fn(krate, &def.consumers);
    let arms = def
        .handlers
        .iter()
        .enumerate()
        .filter(|(_, h)| h.shape == Shape::Unary)
        .map(|(index, h)| dispatch_arm(krate, index, h, def.protobuf.is_some()));
    let stream_fn = stream_fn(def);
    let enabled = def
        .protobuf
        .as_ref()
        .map(|_| quote! { const _: () = { #krate::__protobuf_enabled!(); }; });
    quote! {
        #enabled

        #[automatically_derived]
        impl #krate::__private::Handler for #self_ty {
            fn name(&self) -> &str {
                #name
            }

            fn endpoints(&self) -> #krate::__private::Vec<#krate::__private::Endpoint> {
                ::core::convert::From::from([#(#endpoints),*])
            }

            #subscribers
            #consumers

            fn call(
                self: #krate::__private::Arc<Self>,
                index: usize,
                call: #krate::__private::Call,
            ) -> #krate::__private::BoxFuture<'static, #krate::__private::Result<#krate::__private::Reply>> {
                match index {
                    #(#arms)*
                    _ => #krate::__private::Box::pin(::core::future::ready(
                        ::core::result::Result::Err(#krate::__private::unknown_endpoint(#name, index)),
                    )),
                }
            }

            #stream_fn
        }
    }
}

/// `Handler::stream` for the streaming endpoints.
fn stream_fn(def: &ServiceDef) -> TokenStream {
    let krate = &def.krate;
    let name = &def.name;
    let arms: Vec<TokenStream> = def
        .handlers
        .iter()
        .enumerate()
        .filter(|(_, h)| h.shape != Shape::Unary)
        .map(|(index, h)| stream_arm(krate, index, h, def.protobuf.is_some()))
        .collect();
    if arms.is_empty() {
        return TokenStream::new();
    }
    quote! {
        fn stream(
            self: #krate::__private::Arc<Self>,
            index: usize,
            call: #krate::__private::StreamCall,
        ) -> #krate::__private::BoxFuture<'static, #krate::__private::Result<()>> {
            match index {
                #(#arms)*
                _ => #krate::__private::Box::pin(::core::future::ready(
                    ::core::result::Result::Err(#krate::__private::unknown_endpoint(#name, index)),
                )),
            }
        }
    }
}

/// The match arm that serves streaming endpoint `index`: split the call as
/// the handler's shape needs, run it, and send what it returns.
fn stream_arm(krate: &syn::Path, index: usize, h: &HandlerDef, protobuf: bool) -> TokenStream {
    let method = &h.ident;
    let unit: syn::Type = syn::parse_quote!(());
    let request = h.request.as_ref().unwrap_or(&unit);
    let response = &h.response;
    // Spanned on the user's types: a message type that does not encode or
    // decode is reported there. A protobuf service's types are checked by
    // the codecs below.
    let assert_request = h.request.as_ref().filter(|_| !protobuf).map(|ty| {
        quote_spanned! {ty.span()=> #krate::__private::assert_message::<#ty>(); }
    });
    let assert_response = (!protobuf).then(|| {
        quote_spanned! {response.span()=> #krate::__private::assert_message::<#response>(); }
    });
    let into_parts = if protobuf {
        let (decode, encode) = stream_codecs(krate, request, response);
        let encode_into = proto_encode_into(krate, response);
        quote!(into_parts_protobuf::<#request, #response>(#decode, #encode, #encode_into))
    } else {
        let (decode, encode) = serde_codecs(krate, request, response);
        quote!(into_parts_encoded::<#request, #response>(#decode, #encode))
    };
    let uses_context = h.args.contains(&Arg::Context);
    let args: Vec<TokenStream> = h
        .args
        .iter()
        .map(|a| match a {
            Arg::Context => quote!(__context),
            Arg::Request => quote!(__request),
            Arg::Stream => quote!(__stream),
        })
        .collect();
    let context = if uses_context {
        quote!(__context)
    } else {
        quote!(_)
    };
    let call = quote!(Self::#method(&*self, #(#args),*).await);
    // Spanned on the response type, as the assertions are.
    let forward = respan(quote!(#krate::__private::forward), response.span());
    let forward = quote_spanned! {response.span()=>
        #forward::<#response, _>(__sender, __result).await
    };
    let reply_once = respan(quote!(#krate::__private::reply_once), response.span());
    let reply_once = quote_spanned! {response.span()=>
        #reply_once::<#response, _>(__sender, __result).await
    };
    let body = match h.shape {
        // The `Stream` keeps the context; a handler that also takes one
        // gets a clone.
        Shape::Bidirectional if uses_context => quote! {
            let (__context, __requests, __sender) = call.#into_parts;
            let __stream = #krate::__private::Stream::from_parts(
                ::core::clone::Clone::clone(&__context), __requests, __sender,
            );
            #krate::__private::acknowledge(#call)
        },
        Shape::Bidirectional => quote! {
            let (__context, __requests, __sender) = call.#into_parts;
            let __stream = #krate::__private::Stream::from_parts(__context, __requests, __sender);
            #krate::__private::acknowledge(#call)
        },
        Shape::BidirectionalStreaming => quote! {
            let (#context, __stream, __sender) = call.#into_parts;
            let __result = #call;
            #forward
        },
        Shape::ClientStreaming => quote! {
            let (#context, __stream, __sender) = call.#into_parts;
            let __result = #call;
            #reply_once
        },
        Shape::ServerStreaming => {
            let read = h.request.as_ref().map(|_| {
                quote! {
                    let __request = match #krate::__private::first_request(&mut __requests).await {
                        ::core::result::Result::Ok(value) => value,
                        ::core::result::Result::Err(err) => return ::core::result::Result::Err(err),
                    };
                }
            });
            quote! {
                let (#context, mut __requests, __sender) = call.#into_parts;
                #read
                // Nothing more is read: the reader keeps watching for the
                // client's close.
                ::core::mem::drop(__requests);
                let __result = #call;
                #forward
            }
        }
        Shape::Unary => unreachable!("unary handlers are dispatched by `call`"),
    };
    let body = quote! {
        #assert_request
        #assert_response
        #body
    };
    let future = quote_spanned! {method.span()=> async move { #body } };
    let assert_send = respan(quote!(#krate::__private::assert_send), method.span());
    let checked = quote_spanned! {method.span()=> #assert_send(#future) };
    quote! {
        #index => #krate::__private::Box::pin(#checked),
    }
}

/// The decoder of `decoded` and the encoder of `encoded`, protobuf
/// messages, as the function pointers a stream keeps.
fn stream_codecs(
    krate: &syn::Path,
    decoded: &syn::Type,
    encoded: &syn::Type,
) -> (TokenStream, TokenStream) {
    let decode = proto(
        krate,
        Direction::Decode,
        decoded,
        quote!(__type),
        quote!(__body),
    );
    let encode = proto(
        krate,
        Direction::Encode,
        encoded,
        quote!(__type),
        quote!(__value),
    );
    (
        quote!(|__type, __body| #decode),
        quote!(|__type, __value| #encode),
    )
}

/// `Handler::subscribers` for the `#[subscribe]` methods.
fn subscribers_fn(def: &ServiceDef) -> TokenStream {
    if def.subscribers.is_empty() {
        return TokenStream::new();
    }
    let krate = &def.krate;
    let subs = def.subscribers.iter().map(|s| {
        let topic = &s.topic;
        let options = match &s.queue {
            Some(q) => quote!(#krate::__private::SubscribeOptions::queue(#q)),
            None => {
                quote!(<#krate::__private::SubscribeOptions as ::core::default::Default>::default())
            }
        };
        let method = &s.ident;
        let body = subscriber_body(krate, s, quote!(Self::#method), quote!(&*__this,));
        let future = quote_spanned! {method.span()=> async move { #body } };
        let assert_send = respan(quote!(#krate::__private::assert_send), method.span());
        quote! {
            #krate::__private::Subscriber::new(
                #topic,
                #options,
                #krate::__private::method_handler(
                    ::core::clone::Clone::clone(&self),
                    |__this: #krate::__private::Arc<Self>, __message: #krate::__private::Message| {
                        #krate::__private::Box::pin(#assert_send(#future))
                            as #krate::__private::BoxFuture<'static, #krate::__private::Result<()>>
                    },
                ),
            )
        }
    });
    quote! {
        fn subscribers(
            self: #krate::__private::Arc<Self>,
        ) -> #krate::__private::Vec<#krate::__private::Subscriber> {
            ::core::convert::From::from([#(#subs),*])
        }
    }
}

/// The match arm that serves endpoint `index`: decode, call, encode.
fn dispatch_arm(krate: &syn::Path, index: usize, h: &HandlerDef, protobuf: bool) -> TokenStream {
    let method = &h.ident;
    // Generic arguments carry the user's spans, so that a request type that
    // does not decode, or a response that does not encode, is reported at
    // that type rather than inside generated code.
    let decode = h.request.as_ref().map(|ty| {
        let decode = if protobuf {
            let decode = proto(
                krate,
                Direction::Decode,
                ty,
                quote!(call.content_type()),
                quote!(call.body()),
            );
            quote! { #decode.map_err(#krate::__private::Error::from) }
        } else {
            quote_spanned! {ty.span()=> call.decode::<#ty>() }
        };
        quote! {
            let __request = match #decode {
                ::core::result::Result::Ok(value) => value,
                ::core::result::Result::Err(err) => return ::core::result::Result::Err(err),
            };
        }
    });
    let args = h.args.iter().map(|a| match a {
        Arg::Context => quote!(__context),
        Arg::Request | Arg::Stream => quote!(__request),
    });
    let context = if h.args.contains(&Arg::Context) {
        quote!(let __context = call.into_context();)
    } else {
        quote!(::core::mem::drop(call);)
    };
    let response = &h.response;
    let reply = if protobuf {
        let encode = proto(
            krate,
            Direction::Encode,
            response,
            quote!(__type),
            quote!(__value),
        );
        quote! {
            #krate::__private::proto::reply::<#response, _>(
                __reply_type, __result, |__type, __value| #encode,
            )
        }
    } else {
        quote_spanned! {response.span()=>
            #krate::__private::reply::<#response, _>(__reply_type, __result)
        }
    };
    let body = quote! {
        #decode
        let __reply_type = call.reply_content_type();
        #context
        let __result = Self::#method(&*self, #(#args),*).await;
        #reply
    };
    // Spanned on the method's name: a future that is not `Send` is
    // reported at the user's method, with rustc's note pointing at the
    // value held across an await.
    let future = quote_spanned! {method.span()=> async move { #body } };
    let assert_send = respan(quote!(#krate::__private::assert_send), method.span());
    let checked = quote_spanned! {method.span()=> #assert_send(#future) };
    quote! {
        #index => #krate::__private::Box::pin(#checked),
    }
}

/// Which way [`proto`] goes.
#[derive(Clone, Copy)]
enum Direction {
    /// A body (`&[u8]`) into a `ty`.
    Decode,
    /// A `&ty` into a body.
    Encode,
}

/// `operand` decoded as, or encoded from, `ty`, a protobuf message, with
/// `content_type`: with serde's codecs too if the type derives serde. The
/// check that it is a protobuf message is spanned on the type.
fn proto(
    krate: &syn::Path,
    direction: Direction,
    ty: &syn::Type,
    content_type: TokenStream,
    operand: TokenStream,
) -> TokenStream {
    let assert = quote_spanned! {ty.span()=> #krate::__private::proto::assert_proto::<#ty>(); };
    let (prost, serde, method) = match direction {
        Direction::Decode => (
            quote!(DecodeProst),
            quote!(DecodeSerde),
            quote!(micro_decode),
        ),
        Direction::Encode => (
            quote!(EncodeProst),
            quote!(EncodeSerde),
            quote!(micro_encode),
        ),
    };
    quote! {{
        #assert
        use #krate::__private::proto::{#prost as _, #serde as _, Neither as _};
        (&&#krate::__private::proto::Probe::<#ty>::new()).#method(#content_type, #operand)
    }}
}

/// `tokens` with every span set to `span`, so that rustc reports an
/// expression built from them at the user's token.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|tree| match tree {
            TokenTree::Group(group) => {
                let mut new = Group::new(group.delimiter(), respan(group.stream(), span));
                new.set_span(span);
                TokenTree::Group(new)
            }
            mut other => {
                other.set_span(span);
                other
            }
        })
        .collect()
}

fn client(def: &ServiceDef) -> TokenStream {
    let krate = &def.krate;
    let client = format_ident!("{}Client", def.type_ident);
    let doc = format!(
        "A typed client for the `{}` endpoints, generated by `#[service]`.",
        def.name
    );
    let methods = def
        .handlers
        .iter()
        .map(|h| client_method(krate, h, def.protobuf.is_some()));
    quote! {
        #[doc = #doc]
        #[derive(::core::clone::Clone, ::core::fmt::Debug)]
        pub struct #client {
            service: #krate::__private::ServiceName,
            client: #krate::__private::Client,
        }

        #[automatically_derived]
        #[allow(private_interfaces, clippy::future_not_send)]
        impl #client {
            /// A client for the service registered as `service`, calling
            /// through `client`.
            pub fn new(
                service: impl ::core::convert::Into<#krate::__private::String>,
                client: #krate::__private::Client,
            ) -> Self {
                Self {
                    service: #krate::__private::ServiceName::new(::core::convert::Into::into(service)),
                    client,
                }
            }

            /// The name of the service this client calls.
            pub fn service(&self) -> &str {
                self.service.as_str()
            }

            /// The underlying untyped client.
            pub fn client(&self) -> &#krate::__private::Client {
                &self.client
            }

            #(#methods)*
        }
    }
}

/// One client method's shape-specific parts; [`method_pair`] writes the
/// `x` and `x_with` pair from them.
struct Method {
    /// The request parameter, with its comma, or nothing.
    param: TokenStream,
    /// `x`'s forwarding of that parameter to `x_with`.
    forward: TokenStream,
    /// What both return, inside `Result`.
    output: TokenStream,
    /// The body of `x_with`, which has `options` in scope.
    body: TokenStream,
    /// How the docs say what it does: "Calls" or "Opens the stream".
    verb: &'static str,
}

fn client_method(krate: &syn::Path, h: &HandlerDef, protobuf: bool) -> TokenStream {
    let endpoint = &h.endpoint;
    let response = &h.response;
    let unit: syn::Type = syn::parse_quote!(());
    let request = h.request.as_ref().unwrap_or(&unit);
    let (param, forward) = match &h.request {
        Some(ty) => (quote!(request: #ty,), quote!(request,)),
        None => (quote!(), quote!()),
    };
    let method = match h.shape {
        Shape::Unary if protobuf => {
            let sent = if h.request.is_some() {
                quote!(&request)
            } else {
                quote!(&())
            };
            let encode = proto(krate, Direction::Encode, request, quote!(__type), sent);
            let decode = proto(
                krate,
                Direction::Decode,
                response,
                quote!(__type),
                quote!(__body),
            );
            Method {
                param,
                forward,
                output: quote!(#response),
                body: quote! {
                    #krate::__private::typed_call_encoded::<#response>(
                        &self.client, &self.service, #endpoint,
                        |__type| #encode,
                        |__type, __body| #decode,
                        &options,
                    )
                    .await
                },
                verb: "Calls",
            }
        }
        Shape::Unary => {
            let sent = if h.request.is_some() {
                quote!(&request)
            } else {
                quote!(&())
            };
            let call = quote_spanned! {response.span()=>
                #krate::__private::typed_call::<#request, #response>
            };
            Method {
                param,
                forward,
                output: quote!(#response),
                body: quote!(#call(&self.client, &self.service, #endpoint, #sent, &options).await),
                verb: "Calls",
            }
        }
        Shape::ServerStreaming => {
            let sent = if h.request.is_some() {
                quote!(::core::option::Option::Some(&request))
            } else {
                quote!(::core::option::Option::None)
            };
            let opening = open_stream(krate, endpoint, request, response, protobuf);
            Method {
                param,
                forward,
                output: quote!(#krate::__private::Streaming<#response>),
                body: quote! {
                    #krate::__private::server_streaming::<#request, #response>(#opening, #sent).await
                },
                verb: "Opens the stream",
            }
        }
        Shape::Bidirectional | Shape::BidirectionalStreaming | Shape::ClientStreaming => {
            let opening = open_stream(krate, endpoint, request, response, protobuf);
            Method {
                param: quote!(),
                forward: quote!(),
                output: quote!(#krate::__private::ClientStream<#request, #response>),
                body: quote!(#opening.await),
                verb: "Opens the stream",
            }
        }
    };
    method_pair(krate, h, method)
}

/// The future that opens a stream to `endpoint`, `options` in scope: with
/// serde's codecs, or a protobuf service's.
fn open_stream(
    krate: &syn::Path,
    endpoint: &str,
    request: &syn::Type,
    response: &syn::Type,
    protobuf: bool,
) -> TokenStream {
    let (decode, encode, preferred) = if protobuf {
        let (decode, encode) = stream_codecs(krate, response, request);
        let preferred = quote!(::core::option::Option::Some(
            #krate::__private::ContentType::Protobuf
        ));
        (decode, encode, preferred)
    } else {
        let (decode, encode) = serde_codecs(krate, response, request);
        (decode, encode, quote!(::core::option::Option::None))
    };
    quote! {
        self.client.stream_encoded::<#request, #response>(
            self.service.as_str(), #endpoint, options, #preferred, #encode, #decode,
        )
    }
}

/// The encoder of `ty`, a protobuf message, into a buffer: what a gRPC
/// stream's replies are written with.
fn proto_encode_into(krate: &syn::Path, ty: &syn::Type) -> TokenStream {
    quote! {
        |__type, __value, __buf| {
            use #krate::__private::proto::{EncodeProst as _, EncodeSerde as _, Neither as _};
            (&&#krate::__private::proto::Probe::<#ty>::new()).micro_encode_into(__type, __value, __buf)
        }
    }
}

/// The serde decoder of `decoded` and encoder of `encoded`, picked without
/// bounds: a type without serde is reported once, by `assert_message`.
fn serde_codecs(
    krate: &syn::Path,
    decoded: &syn::Type,
    encoded: &syn::Type,
) -> (TokenStream, TokenStream) {
    let probe = |ty: &syn::Type, method: TokenStream| {
        quote! {{
            use #krate::__private::stream_codecs::{ViaNothing as _, ViaSerde as _};
            (&&#krate::__private::stream_codecs::Probe::<#ty>::new()).#method()
        }}
    };
    (
        probe(decoded, quote!(micro_decoder)),
        probe(encoded, quote!(micro_encoder)),
    )
}

/// `x`, which calls `x_with` with the default options, and `x_with`.
fn method_pair(krate: &syn::Path, h: &HandlerDef, m: Method) -> TokenStream {
    let method = &h.ident;
    let with = format_ident!("{}_with", h.ident);
    let endpoint = &h.endpoint;
    let docs = &h.docs;
    let Method {
        param,
        forward,
        output,
        body,
        verb,
    } = m;
    let default_doc = if docs.is_empty() {
        let doc = format!("{verb} `{endpoint}`.");
        quote!(#[doc = #doc])
    } else {
        quote!(#(#docs)*)
    };
    let with_doc = format!("{verb} `{endpoint}` with per-call options.");
    // Plain functions that return the future, not `async fn`s: an
    // `async fn` keeps a second copy of its by-value arguments (the
    // options, the request) in its future, which every call then moves and
    // allocates room for; an `async move` block holds them once.
    quote! {
        #default_doc
        pub fn #method(
            &self,
            #param
        ) -> impl ::core::future::Future<Output = #krate::__private::Result<#output>> + '_ {
            self.#with(#forward ::core::default::Default::default())
        }

        #[doc = #with_doc]
        pub fn #with(
            &self,
            #param
            options: #krate::__private::CallOptions,
        ) -> impl ::core::future::Future<Output = #krate::__private::Result<#output>> + '_ {
            async move { #body }
        }
    }
}

/// The body that decodes a message and calls the subscriber: `call` is the
/// path to call, `receiver` any first argument (with its comma).
pub(crate) fn subscriber_body(
    krate: &syn::Path,
    def: &SubscriberDef,
    call: TokenStream,
    receiver: TokenStream,
) -> TokenStream {
    let decode = def.payload.as_ref().map(|ty| {
        let decode = quote_spanned! {ty.span()=> __message.decode::<#ty>() };
        quote! {
            let __payload = match #decode {
                ::core::result::Result::Ok(value) => value,
                ::core::result::Result::Err(err) => return ::core::result::Result::Err(err),
            };
        }
    });
    let args = def.args.iter().map(|is_ctx| {
        if *is_ctx {
            quote!(__message.context())
        } else {
            quote!(__payload)
        }
    });
    quote! {
        #decode
        #krate::__private::acknowledge(#call(#receiver #(#args),*).await)
    }
}

/// A free `#[subscribe]` function, and its registration with `inventory`.
pub(crate) fn free_subscriber(
    krate: &syn::Path,
    item: &syn::ItemFn,
    def: &SubscriberDef,
) -> TokenStream {
    let ident = &def.ident;
    let topic = &def.topic;
    let queue = match &def.queue {
        Some(q) => quote!(::core::option::Option::Some(#q)),
        None => quote!(::core::option::Option::None),
    };
    let shim = format_ident!("__micro_subscriber_{}", ident);
    let body = subscriber_body(krate, def, quote!(#ident), TokenStream::new());
    let name = ident.to_string();
    let future = quote_spanned! {ident.span()=> async move { #body } };
    quote! {
        #item

        #[doc(hidden)]
        const _: () = {
            fn #shim(
                __message: #krate::__private::Message,
            ) -> #krate::__private::BoxFuture<'static, #krate::__private::Result<()>> {
                #krate::__private::Box::pin(#krate::__private::assert_send(#future))
            }

            #krate::__private::inventory::submit! {
                #krate::__private::StaticSubscriber {
                    topic: #topic,
                    queue: #queue,
                    name: ::core::concat!(::core::module_path!(), "::", #name),
                    handler: #shim,
                }
            }
        };
    }
}

/// The text of doc attributes (`/// ...` lines), joined by newlines with
/// the one leading space rustdoc strips; `None` if there is none.
fn doc_text(docs: &[syn::Attribute]) -> Option<String> {
    let lines: Vec<String> = docs
        .iter()
        .filter_map(|attr| match &attr.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(text),
                    ..
                }) => Some(text.value()),
                _ => None,
            },
            _ => None,
        })
        .map(|line| {
            line.strip_prefix(' ')
                .unwrap_or(&line)
                .trim_end()
                .to_owned()
        })
        .collect();
    let text = lines.join("\n").trim().to_owned();
    (!text.is_empty()).then_some(text)
}
