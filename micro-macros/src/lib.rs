//! Attribute macros for [micro](https://docs.rs/micro): `#[service]` and
//! `#[handler]`. Use them through `micro`, which re-exports them.
//!
//! `#[service]` goes on an inherent impl block. It reads every `#[handler]`
//! method and emits, next to the untouched impl, an implementation of
//! `micro::server::Handler` (one endpoint per handler, `Type.Method`) and a
//! typed client, `<Type>Client`. See the `micro` crate for examples.

mod args;
mod codegen;
mod model;
mod subscribe;

use proc_macro::TokenStream;

/// Turns the `#[handler]` methods of an inherent impl block into endpoints
/// and generates a typed client.
///
/// Arguments: `name = "..."` (the handler name, default the type's name) and
/// `crate = "..."` (the path of the `micro` crate, default `::micro`).
#[proc_macro_attribute]
pub fn service(args: TokenStream, input: TokenStream) -> TokenStream {
    model::expand_service(args.into(), input.into()).into()
}

/// Marks a method of a `#[service]` impl block as an endpoint.
///
/// Argument: `name = "..."`, the method part of the endpoint name (default:
/// the method's name in UpperCamelCase). Used anywhere else, it is an error.
#[proc_macro_attribute]
pub fn handler(args: TokenStream, input: TokenStream) -> TokenStream {
    model::expand_stray_handler(args.into(), input.into()).into()
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
pub fn subscribe(args: TokenStream, input: TokenStream) -> TokenStream {
    subscribe::expand_free(args.into(), input.into()).into()
}
