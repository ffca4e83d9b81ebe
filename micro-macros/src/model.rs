//! The model of a `#[service]` impl block, built and checked in one pass that
//! gathers every error before reporting them.

use heck::ToUpperCamelCase;
use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, GenericArgument, ImplItem, ImplItemFn, ItemImpl, Path, PathArguments,
    ReceiverKind, ReturnType, Type,
};

use crate::args::{HandlerArgs, ServiceArgs};
use crate::syntax::{CHECKED, is_attr, is_context, is_unit, result_ok_type};

/// A `#[service]` impl block.
pub(crate) struct ServiceDef {
    /// The impl block, its `#[handler]` attributes marked as read.
    pub(crate) item: ItemImpl,
    /// The type's own name, for the client's name.
    pub(crate) type_ident: syn::Ident,
    /// The handler name: the part of endpoint names before the dot.
    pub(crate) name: String,
    /// The path of the micro crate.
    pub(crate) krate: Path,
    /// With `protobuf`: the protobuf service's full name, `package.Name`
    /// (or `Name` without a package).
    pub(crate) protobuf: Option<String>,
    pub(crate) handlers: Vec<HandlerDef>,
    pub(crate) subscribers: Vec<crate::subscribe::SubscriberDef>,
    pub(crate) consumers: Vec<crate::consume::ConsumerDef>,
}

/// One `#[handler]` method.
pub(crate) struct HandlerDef {
    /// The method's name.
    pub(crate) ident: syn::Ident,
    /// `Type.Method`.
    pub(crate) endpoint: String,
    /// The arguments after `&self`, in order.
    pub(crate) args: Vec<Arg>,
    /// The request type, if the method takes one.
    pub(crate) request: Option<Type>,
    /// `T` of the method's `Result<T>`: the response, or the message type
    /// of a stream.
    pub(crate) response: Type,
    /// Request/response, or which kind of stream.
    pub(crate) shape: Shape,
    /// The method's doc attributes, copied onto the client.
    pub(crate) docs: Vec<Attribute>,
    /// Who may call it: its own `public` or `scopes`, else its service's.
    pub(crate) access: crate::args::Access,
}

/// A handler argument.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arg {
    Context,
    Request,
    /// A `Stream<Req, Rsp>` or a `Streaming<Req>`.
    Stream,
}

/// How a handler exchanges messages. For the streaming shapes, `request`
/// holds the message type the client sends and `response` the one the
/// server sends.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One request (or none), one response.
    Unary,
    /// Takes a `Stream<Req, Rsp>`, returns `Result<()>`.
    Bidirectional,
    /// Takes a `Streaming<Req>`, returns `Result<Streaming<Rsp>>`.
    BidirectionalStreaming,
    /// Takes a `Streaming<Req>`, returns `Result<Rsp>`.
    ClientStreaming,
    /// Takes one request (or none), returns `Result<Streaming<Rsp>>`.
    ServerStreaming,
}

impl Shape {
    /// The runtime's `StreamKind` variant, for streams.
    pub(crate) fn kind(self) -> Option<&'static str> {
        match self {
            Shape::Unary => None,
            Shape::Bidirectional | Shape::BidirectionalStreaming => Some("Bidirectional"),
            Shape::ClientStreaming => Some("Client"),
            Shape::ServerStreaming => Some("Server"),
        }
    }
}

/// The stream in a handler's argument or return type.
#[allow(clippy::large_enum_variant)] // short-lived, one per argument
enum StreamType {
    /// `Stream<Req, Rsp>`.
    Both(Type, Type),
    /// `Streaming<T>`.
    One(Type),
}

/// Recognises `Stream<Req, Rsp>` and `Streaming<T>` by their last path
/// segment, so `micro::Stream` and an imported `Stream` both work.
fn stream_type(ty: &Type) -> Option<StreamType> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let types: Vec<&Type> = args
        .args
        .iter()
        .filter_map(|a| match a {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        })
        .collect();
    match (last.ident.to_string().as_str(), types.as_slice()) {
        ("Stream", [req, rsp]) => Some(StreamType::Both((*req).clone(), (*rsp).clone())),
        ("Streaming", [t]) => Some(StreamType::One((*t).clone())),
        _ => None,
    }
}

/// Collects errors so that one pass reports all of them.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, err: syn::Error) {
        match &mut self.0 {
            Some(e) => e.combine(err),
            None => self.0 = Some(err),
        }
    }

    fn at(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }
}

fn mark_checked(attr: &mut Attribute) {
    let path = attr.path().clone();
    let marker = syn::Ident::new(CHECKED, Span::call_site());
    attr.meta = syn::parse_quote!(#path(#marker));
}

pub(crate) fn build(args: TokenStream, item: &mut ItemImpl) -> Result<ServiceDef, syn::Error> {
    let mut errors = Errors::default();
    let args = ServiceArgs::parse(args).unwrap_or_else(|e| {
        errors.push(e);
        ServiceArgs::default()
    });

    if let Some((path, _)) = &item.trait_ {
        errors.at(
            path,
            "`#[service]` goes on an inherent impl block, not on a trait impl",
        );
    }
    if !item.generics.params.is_empty() {
        errors.at(
            &item.generics,
            "`#[service]` does not support generic impl blocks: serve a concrete type",
        );
    }
    let type_ident = match &*item.self_ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| s.ident.clone()),
        _ => None,
    };
    let type_ident = type_ident.unwrap_or_else(|| {
        errors.at(
            &item.self_ty,
            "`#[service]` needs a named type: `impl MyService { ... }`",
        );
        syn::Ident::new("Unknown", Span::call_site())
    });

    let name = match &args.name {
        Some(v) => {
            check_name_part(&mut errors, &v.value, v.span, "service");
            v.value.clone()
        }
        None => type_ident.to_string(),
    };
    let krate = args
        .krate
        .map(|(p, _)| p)
        .unwrap_or_else(|| syn::parse_quote!(::micro));
    let protobuf = args.protobuf.map(|_| match &args.package {
        Some(package) => format!("{}.{name}", package.value),
        None => name.clone(),
    });

    let mut handlers: Vec<HandlerDef> = Vec::new();
    let mut subscribers = Vec::new();
    let mut consumers = Vec::new();
    for impl_item in &mut item.items {
        let ImplItem::Fn(method) = impl_item else {
            continue;
        };
        let mut handler_attrs = Vec::new();
        for attr in &mut method.attrs {
            if is_attr(attr, "handler") {
                handler_attrs.push(attr.clone());
                mark_checked(attr);
            }
        }
        let mut subscribe_attrs = Vec::new();
        for attr in &mut method.attrs {
            if is_attr(attr, "subscribe") {
                subscribe_attrs.push(attr.clone());
                mark_checked(attr);
            }
        }
        let mut consume_attrs = Vec::new();
        for attr in &mut method.attrs {
            if is_attr(attr, "consume") {
                consume_attrs.push(attr.clone());
                mark_checked(attr);
            }
        }
        if let Some(attr) = consume_attrs.first() {
            if let Some(other) = handler_attrs.first().or(subscribe_attrs.first()) {
                errors.at(
                    other,
                    "a method is one of `#[handler]`, `#[subscribe]` or `#[consume]`, not two",
                );
            }
            if let Some(second) = consume_attrs.get(1) {
                errors.at(
                    second,
                    "duplicate `#[consume]` attribute: consume with another method",
                );
            }
            let tokens = match &attr.meta {
                syn::Meta::List(list) => list.tokens.clone(),
                _ => TokenStream::new(),
            };
            let parsed = crate::consume::ConsumeArgs::parse(tokens, attr.span()).and_then(
                |(topic, args)| {
                    if let Some((_, span)) = args.krate {
                        return Err(syn::Error::new(
                            span,
                            "`crate` of a consumer method comes from its `#[service]`: set it there",
                        ));
                    }
                    crate::consume::check(&method.sig, true, topic, args)
                },
            );
            match parsed {
                Ok(def) => consumers.push(def),
                Err(e) => errors.push(e),
            }
            continue;
        }
        if let Some(attr) = subscribe_attrs.first() {
            if let Some(h) = handler_attrs.first() {
                errors.at(
                    h,
                    "a method is either a `#[handler]` or a `#[subscribe]` subscriber, not both",
                );
            }
            if let Some(second) = subscribe_attrs.get(1) {
                errors.at(
                    second,
                    "duplicate `#[subscribe]` attribute: subscribe another method",
                );
            }
            let tokens = match &attr.meta {
                syn::Meta::List(list) => list.tokens.clone(),
                _ => TokenStream::new(),
            };
            let parsed = crate::args::SubscribeArgs::parse(tokens, attr.span()).and_then(|args| {
                if let Some((_, span)) = args.krate {
                    return Err(syn::Error::new(
                        span,
                        "`crate` of a subscriber method comes from its `#[service]`: set it there",
                    ));
                }
                crate::subscribe::check(&method.sig, true, args.topic, args.queue)
            });
            match parsed {
                Ok(def) => subscribers.push(def),
                Err(e) => errors.push(e),
            }
            continue;
        }
        let Some(first) = handler_attrs.first() else {
            continue;
        };
        if let Some(second) = handler_attrs.get(1) {
            errors.at(second, "duplicate `#[handler]` attribute");
        }
        let hargs = match &first.meta {
            syn::Meta::Path(_) => HandlerArgs::default(),
            syn::Meta::List(list) => HandlerArgs::parse(list.tokens.clone()).unwrap_or_else(|e| {
                errors.push(e);
                HandlerArgs::default()
            }),
            syn::Meta::NameValue(nv) => {
                errors.at(nv, "expected `#[handler]` or `#[handler(name = \"...\")]`");
                HandlerArgs::default()
            }
        };
        if let Some(mut def) = handler(&mut errors, &name, method, &hargs) {
            if def.access == crate::args::Access::Undeclared {
                def.access = args.access.clone();
            }
            if let Some(prev) = handlers.iter().find(|h| h.endpoint == def.endpoint) {
                errors.at(
                    &method.sig.ident,
                    format!(
                        "duplicate endpoint `{}`: `{}` already defines it",
                        def.endpoint, prev.ident
                    ),
                );
            }
            check_client_name(&mut errors, &type_ident, &def, &handlers);
            handlers.push(def);
        }
    }

    match errors.0 {
        Some(err) => Err(err),
        None => Ok(ServiceDef {
            item: item.clone(),
            type_ident,
            name,
            krate,
            protobuf,
            handlers,
            subscribers,
            consumers,
        }),
    }
}

/// The generated client has `new`, `service` and `client`, and an
/// `x_with` twin for each handler `x`: a handler must not take those names.
fn check_client_name(
    errors: &mut Errors,
    ty: &syn::Ident,
    def: &HandlerDef,
    before: &[HandlerDef],
) {
    let name = def.ident.to_string();
    let client = format!("{ty}Client");
    if ["new", "service", "client"].contains(&name.as_str()) {
        errors.at(
            &def.ident,
            format!(
                "a handler named `{name}` collides with `{client}::{name}`: rename the method (`#[handler(name = \"...\")]` keeps any endpoint name)"
            ),
        );
    }
    for other in before {
        let other_name = other.ident.to_string();
        let (a, b) = (format!("{other_name}_with"), format!("{name}_with"));
        if name == a || other_name == b {
            errors.at(
                &def.ident,
                format!(
                    "handlers `{other_name}` and `{name}` collide in `{client}`, which has an `x_with` method for each handler `x`: rename one"
                ),
            );
        }
    }
}

/// A handler or service name must be a non-empty part without a dot.
fn check_name_part(errors: &mut Errors, value: &str, span: Span, what: &str) {
    if value.is_empty() {
        errors.push(syn::Error::new(
            span,
            format!("the {what} name must not be empty"),
        ));
    } else if value.contains('.') || value.chars().any(char::is_whitespace) {
        errors.push(syn::Error::new(
            span,
            format!("the {what} name `{value}` must not contain dots or spaces: endpoints are `Type.Method`"),
        ));
    }
}

/// Checks one `#[handler]` method; `None` if it cannot be modelled.
fn handler(
    errors: &mut Errors,
    service: &str,
    method: &ImplItemFn,
    args: &HandlerArgs,
) -> Option<HandlerDef> {
    let sig = &method.sig;
    let mut ok = true;
    if sig.asyncness.is_none() {
        errors.at(sig.fn_token, "`#[handler]` methods must be `async`");
        ok = false;
    }
    if !sig.generics.params.is_empty() {
        errors.at(&sig.generics, "`#[handler]` methods cannot be generic");
        ok = false;
    }
    if let Some(v) = &sig.variadic {
        errors.at(v, "`#[handler]` methods cannot be variadic");
        ok = false;
    }

    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r)) => match &r.kind {
            ReceiverKind::Reference(_, _, None) => {}
            ReceiverKind::Reference(_, _, Some(_)) => {
                errors.at(
                    r,
                    "`#[handler]` methods must take `&self`, not `&mut self`: requests are served concurrently, so use interior mutability for state",
                );
                ok = false;
            }
            ReceiverKind::Value => {
                errors.at(
                    r,
                    "`#[handler]` methods must take `&self`, not `self` by value: one value serves every request",
                );
                ok = false;
            }
            _ => {
                errors.at(r, "`#[handler]` methods must take `&self`");
                ok = false;
            }
        },
        _ => {
            errors.at(
                &sig.ident,
                "`#[handler]` methods must take `&self` as their first argument",
            );
            ok = false;
        }
    }
    if !matches!(sig.inputs.first(), Some(FnArg::Receiver(_))) {
        // Re-scan from the start: the first argument was not a receiver.
        inputs = sig.inputs.iter();
    }

    let mut arg_kinds = Vec::new();
    let mut request = None;
    let mut stream_arg: Option<(StreamType, &syn::PatType)> = None;
    let mut has_context = false;
    for input in inputs {
        let FnArg::Typed(pat) = input else { continue };
        if is_context(&pat.ty) {
            if has_context {
                errors.at(
                    pat,
                    "`#[handler]` methods take at most one `Context` argument",
                );
                ok = false;
            }
            has_context = true;
            arg_kinds.push(Arg::Context);
            continue;
        }
        if let Some(stream) = stream_type(&pat.ty) {
            if stream_arg.is_some() {
                errors.at(
                    pat,
                    "`#[handler]` methods take at most one stream argument: one `Stream<Req, Rsp>` carries both directions",
                );
                ok = false;
                continue;
            }
            if request.is_some() {
                errors.at(
                    pat,
                    "a `#[handler]` takes either a request or a stream, not both: send the first request on the stream",
                );
                ok = false;
                continue;
            }
            stream_arg = Some((stream, pat));
            arg_kinds.push(Arg::Stream);
            continue;
        }
        if request.is_some() || stream_arg.is_some() {
            let message = if stream_arg.is_some() {
                "a `#[handler]` takes either a request or a stream, not both: send the first request on the stream"
            } else {
                "`#[handler]` methods take one request argument (and an optional `Context`): put the values in one struct"
            };
            errors.at(pat, message);
            ok = false;
            continue;
        }
        if let Type::Reference(r) = &*pat.ty {
            errors.at(
                r,
                "the request argument of a `#[handler]` must be an owned type, not a reference",
            );
            ok = false;
        }
        request = Some((*pat.ty).clone());
        arg_kinds.push(Arg::Request);
    }

    let method_name = match &args.name {
        Some(v) => {
            check_name_part(errors, &v.value, v.span, "endpoint");
            v.value.clone()
        }
        None => sig
            .ident
            .to_string()
            .trim_start_matches("r#")
            .to_upper_camel_case(),
    };

    let response = match result_ok_type(&sig.output) {
        Some(ty) => Some(ty),
        None => {
            let message = "`#[handler]` methods must return `Result<T>` (`micro::Result<T>`, or `Result<T, E>` with `E: Into<micro::Error>`)";
            match &sig.output {
                ReturnType::Type(_, ty) => errors.at(ty, message),
                ReturnType::Default => errors.at(&sig.ident, message),
            }
            None
        }
    };
    let response = response?;
    let returned_stream = match stream_type(&response) {
        Some(StreamType::One(t)) => Some(t),
        Some(StreamType::Both(..)) => {
            errors.at(
                &response,
                "a `#[handler]` returns `Result<Streaming<Rsp>>` for a stream of replies, or takes a `Stream<Req, Rsp>` argument",
            );
            return None;
        }
        None => None,
    };
    let (shape, request, response) = match (stream_arg, returned_stream) {
        (None, None) => (Shape::Unary, request, response),
        (None, Some(rsp)) => (Shape::ServerStreaming, request, rsp),
        (Some((StreamType::One(req), _)), None) => (Shape::ClientStreaming, Some(req), response),
        (Some((StreamType::One(req), _)), Some(rsp)) => {
            (Shape::BidirectionalStreaming, Some(req), rsp)
        }
        (Some((StreamType::Both(req, rsp), _)), None) => {
            if !is_unit(&response) {
                errors.at(
                    &response,
                    "a `#[handler]` that takes a `Stream<Req, Rsp>` returns `Result<()>`: send its replies on the stream",
                );
                ok = false;
            }
            (Shape::Bidirectional, Some(req), rsp)
        }
        (Some((StreamType::Both(..), _)), Some(_)) => {
            errors.at(
                &response,
                "a `#[handler]` that takes a `Stream<Req, Rsp>` returns `Result<()>`: send its replies on the stream",
            );
            return None;
        }
    };

    ok.then(|| HandlerDef {
        ident: sig.ident.clone(),
        endpoint: format!("{service}.{method_name}"),
        args: arg_kinds,
        request,
        response,
        shape,
        docs: method
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("doc"))
            .cloned()
            .collect(),
        access: args.access.clone(),
    })
}
