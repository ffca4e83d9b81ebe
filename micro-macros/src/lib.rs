//! Attribute macros for [micro](https://docs.rs/micro): `#[service]` and
//! `#[handler]`. Use them through `micro`, which re-exports them.
//!
//! `#[service]` goes on an inherent impl block. It reads every `#[handler]`
//! method and emits, next to the untouched impl, an implementation of
//! `micro::server::Handler` (one endpoint per handler, `Type.Method`) and a
//! typed client, `<Type>Client`. See the `micro` crate for examples.
//!
//! The expansion runs in passes, each its own module, with the glue here:
//! `args` parses attribute arguments, `model` (with `subscribe` for
//! subscribers) reads the item into definitions and checks them, gathering
//! every error, and `codegen` writes the output; `syntax` answers the
//! questions about types that all of them ask.

mod args;
mod codegen;
mod consume;
mod model;
mod subscribe;
mod syntax;

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::spanned::Spanned;

/// Turns the `#[handler]` methods of an inherent impl block into endpoints
/// and generates a typed client.
///
/// Arguments: `name = "..."` (the handler name, default the type's name) and
/// `crate = "..."` (the path of the `micro` crate, default `::micro`).
#[proc_macro_attribute]
pub fn service(
    args: proc_macro::TokenStream,
    input: proc_macro::TokenStream,
) -> proc_macro::TokenStream {
    expand_service(args.into(), input.into()).into()
}

/// Marks a method of a `#[service]` impl block as an endpoint.
///
/// Argument: `name = "..."`, the method part of the endpoint name (default:
/// the method's name in UpperCamelCase). Used anywhere else, it is an error.
#[proc_macro_attribute]
pub fn handler(
    args: proc_macro::TokenStream,
    input: proc_macro::TokenStream,
) -> proc_macro::TokenStream {
    expand_stray_handler(args.into(), input.into()).into()
}

/// Subscribes a function to a topic: `#[subscribe("topic")]` or
/// `#[subscribe("topic", queue = "group")]`.
///
/// On a free async function, the subscription is collected with
/// `inventory`, and every `micro::Service` in the binary subscribes it when
/// it starts. Inside a `#[service]` impl block, the method is subscribed
/// when its handler is added. The payload argument is decoded by the
/// message's content type; an optional `Context` gives the message's id and
/// metadata. Returning `Err` reports the failure.
#[proc_macro_attribute]
pub fn subscribe(
    args: proc_macro::TokenStream,
    input: proc_macro::TokenStream,
) -> proc_macro::TokenStream {
    expand_free(args.into(), input.into()).into()
}

/// Consumes a topic of durable events: `#[consume("orders.placed")]`, with
/// `group = "..."` (default: the service's name), `start = "new" |
/// "beginning"`, `ack_wait = "30s"`, `max_attempts = 5`, `backoff = "1s"`
/// (doubling, at most 60 s) and `dead_letter = "topic"`.
///
/// On a free async function, the consumer is collected with `inventory`
/// and every `micro::Service` in the binary runs it. Inside a `#[service]`
/// impl block, the method runs while the service that handles it runs.
/// The function takes the event, decoded by its content type, and
/// optionally a `micro::events::Delivered` (the attempt, the sequence, a
/// way to extend the ack wait); `Ok` acks, an error nacks (again after the
/// backoff, dead-lettered on the last attempt), a 4xx error or an event
/// that does not decode dead-letters at once.
#[proc_macro_attribute]
pub fn consume(
    args: proc_macro::TokenStream,
    input: proc_macro::TokenStream,
) -> proc_macro::TokenStream {
    expand_free_consumer(args.into(), input.into()).into()
}

/// `#[consume]` on a free function.
fn expand_free_consumer(args: TokenStream, input: TokenStream) -> TokenStream {
    if args.to_string() == syntax::CHECKED {
        return input;
    }
    let item = match free_fn(input, "consume") {
        Ok(item) => item,
        Err(err) => return err,
    };
    let def = consume::ConsumeArgs::parse(args, Span::call_site()).and_then(|(topic, args)| {
        let krate = args.krate.clone().map(|(path, _)| path);
        consume::check(&item.sig, false, topic, args).map(|def| (def, krate))
    });
    let (def, krate) = match def {
        Ok(def) => def,
        Err(err) => {
            let err = err.to_compile_error();
            return quote!(#item #err);
        }
    };
    let krate = krate.unwrap_or_else(|| syn::parse_quote!(::micro));
    consume::free_consumer(&krate, &item, &def)
}

/// `#[service]`: parse, check, generate. On error, the user's item is
/// emitted unchanged (its `#[handler]` attributes marked read) with every error,
/// so one mistake does not cascade.
fn expand_service(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut item: syn::ItemImpl = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(_) => {
            let err = syn::Error::new(
                Span::call_site(),
                "`#[service]` goes on an inherent impl block: `#[service] impl MyService { ... }`",
            );
            let err = err.to_compile_error();
            return quote!(#err #input);
        }
    };
    match model::build(args, &mut item) {
        Ok(def) => codegen::expand(&def),
        Err(err) => {
            let err = err.to_compile_error();
            quote!(#item #err)
        }
    }
}

/// `#[handler]` on its own: an error, since only `#[service]` can register
/// it; on a method `#[service]` has read, nothing.
fn expand_stray_handler(args: TokenStream, input: TokenStream) -> TokenStream {
    if args.to_string() == syntax::CHECKED {
        return input;
    }
    let span = syn::parse2::<syn::Signature>(input.clone())
        .map(|s| s.span())
        .unwrap_or_else(|_| {
            input
                .clone()
                .into_iter()
                .find(|t| matches!(t, proc_macro2::TokenTree::Ident(i) if i == "fn"))
                .map_or_else(Span::call_site, |t| t.span())
        });
    let err = syn::Error::new(
        span,
        "`#[handler]` can only be used on a method inside a `#[service]` impl block",
    )
    .to_compile_error();
    quote!(#err #input)
}

/// The free function `#[attr]` is on, or the error (with the input) if it
/// is on something else.
fn free_fn(input: TokenStream, attr: &str) -> Result<syn::ItemFn, TokenStream> {
    syn::parse2(input.clone()).map_err(|_| {
        let err = syn::Error::new(
            Span::call_site(),
            format!(
                "`#[{attr}]` goes on an async function, or on a method inside a `#[service]` impl block"
            ),
        )
        .to_compile_error();
        quote!(#err #input)
    })
}

/// `#[subscribe]` on a free function.
fn expand_free(args: TokenStream, input: TokenStream) -> TokenStream {
    if args.to_string() == syntax::CHECKED {
        return input;
    }
    let item = match free_fn(input, "subscribe") {
        Ok(item) => item,
        Err(err) => return err,
    };
    let def = args::SubscribeArgs::parse(args, Span::call_site()).and_then(|args| {
        let krate = args.krate.map(|(path, _)| path);
        subscribe::check(&item.sig, false, args.topic, args.queue).map(|def| (def, krate))
    });
    let (def, krate) = match def {
        Ok(def) => def,
        Err(err) => {
            let err = err.to_compile_error();
            return quote!(#item #err);
        }
    };
    let krate = krate.unwrap_or_else(|| syn::parse_quote!(::micro));
    codegen::free_subscriber(&krate, &item, &def)
}
