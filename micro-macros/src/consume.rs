//! `#[consume("topic", group = "...", ...)]`: the model of a durable
//! events consumer, on a free function or a method of a `#[service]` impl.

use proc_macro2::{Span, TokenStream};
use syn::{FnArg, LitInt, LitStr, Path, Signature, Type};

/// The checked arguments.
#[derive(Default)]
pub(crate) struct ConsumeArgs {
    pub(crate) group: Option<String>,
    /// `new` or `beginning`.
    pub(crate) start: Option<String>,
    pub(crate) ack_wait_ms: Option<u64>,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) backoff_ms: Option<u64>,
    pub(crate) dead_letter: Option<String>,
    pub(crate) krate: Option<(Path, Span)>,
}

/// A checked consumer.
pub(crate) struct ConsumerDef {
    pub(crate) ident: syn::Ident,
    pub(crate) topic: String,
    pub(crate) args: ConsumeArgs,
    /// For each argument after any receiver: is it the `Delivered`?
    pub(crate) params: Vec<bool>,
    pub(crate) payload: Type,
}

const KNOWN: &[&str] = &[
    "group",
    "start",
    "ack_wait",
    "max_attempts",
    "backoff",
    "dead_letter",
    "crate",
];

/// A topic or group as every backend takes it: dot-separated words of
/// letters, digits, `-` and `_`.
fn words(text: &str) -> bool {
    text.split('.').all(|w| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

/// `250ms`, `30s`, `5m`: milliseconds.
fn duration(lit: &LitStr) -> syn::Result<u64> {
    let text = lit.value();
    let (digits, unit): (String, String) = text.chars().partition(char::is_ascii_digit);
    let factor = match unit.as_str() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        _ => 0,
    };
    let digits_first = text.starts_with(|c: char| c.is_ascii_digit()) && text.ends_with(&*unit);
    match digits.parse::<u64>() {
        Ok(n) if factor > 0 && n > 0 && digits_first => Ok(n * factor),
        _ => Err(syn::Error::new(
            lit.span(),
            "a duration is a whole number above zero with `ms`, `s` or `m`: \"250ms\", \"30s\", \"5m\"",
        )),
    }
}

impl ConsumeArgs {
    /// `"topic"` first, then the options; `span` is where to report a
    /// missing topic.
    pub(crate) fn parse(tokens: TokenStream, span: Span) -> syn::Result<(String, Self)> {
        let (topic, rest) = crate::args::split_topic(tokens, span, "consume", "orders.placed")?;
        if !words(&topic.value()) || topic.value().len() > 200 {
            return Err(syn::Error::new(
                topic.span(),
                "a topic is dot-separated words of letters, digits, `-` and `_`: \"orders.placed\"",
            ));
        }
        let mut args = ConsumeArgs::default();
        crate::args::parse_keys("consume", KNOWN, rest, |key, value| {
            if key == "max_attempts" {
                let lit: LitInt = value.parse().map_err(|e| {
                    syn::Error::new(e.span(), "`max_attempts` is a number: `max_attempts = 5`")
                })?;
                let n: u32 = lit.base10_parse()?;
                if n == 0 {
                    return Err(syn::Error::new(
                        lit.span(),
                        "`max_attempts` must be at least 1",
                    ));
                }
                args.max_attempts = Some(n);
                return Ok(());
            }
            let lit: LitStr = value.parse()?;
            match key {
                "group" => {
                    if !words(&lit.value()) || lit.value().len() > 128 {
                        return Err(syn::Error::new(
                            lit.span(),
                            "a group is letters, digits, `.`, `-` and `_`: \"billing\"",
                        ));
                    }
                    args.group = Some(lit.value());
                }
                "start" => {
                    if !matches!(lit.value().as_str(), "new" | "beginning") {
                        return Err(syn::Error::new(
                            lit.span(),
                            "`start` is \"new\" or \"beginning\" (a sequence or a time: `Service::consume`)",
                        ));
                    }
                    args.start = Some(lit.value());
                }
                "ack_wait" => args.ack_wait_ms = Some(duration(&lit)?),
                "backoff" => args.backoff_ms = Some(duration(&lit)?),
                "dead_letter" => {
                    if !words(&lit.value()) {
                        return Err(syn::Error::new(
                            lit.span(),
                            "a dead-letter topic is dot-separated words of letters, digits, `-` and `_`",
                        ));
                    }
                    args.dead_letter = Some(lit.value());
                }
                _ => args.krate = Some((lit.parse::<Path>()?, lit.span())),
            }
            Ok(())
        })?;
        Ok((topic.value(), args))
    }
}

fn is_delivered(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "Delivered" && s.arguments.is_none()),
        _ => false,
    }
}

/// Checks a consumer's signature; `method` says whether `&self` comes
/// first.
pub(crate) fn check(
    sig: &Signature,
    method: bool,
    topic: String,
    args: ConsumeArgs,
) -> Result<ConsumerDef, syn::Error> {
    let mut errors = crate::syntax::check_event_fn(sig, method, "consume");
    let inputs = sig.inputs.iter().skip(usize::from(matches!(
        sig.inputs.first(),
        Some(FnArg::Receiver(_))
    )));
    let mut params = Vec::new();
    let mut payload = None;
    for input in inputs {
        let FnArg::Typed(pat) = input else { continue };
        if is_delivered(&pat.ty) {
            params.push(true);
            continue;
        }
        if payload.is_some() {
            errors.push(syn::Error::new_spanned(
                pat,
                "`#[consume]` functions take one event argument (and an optional `Delivered`)",
            ));
            continue;
        }
        payload = Some((*pat.ty).clone());
        params.push(false);
    }
    if payload.is_none() {
        errors.push(syn::Error::new_spanned(
            &sig.ident,
            "`#[consume]` functions take the event as an argument: `async fn f(order: Order) -> Result<()>`",
        ));
    }
    errors.extend(crate::syntax::check_returns_result(sig, "consume"));
    let mut combined = errors.into_iter();
    if let Some(mut first) = combined.next() {
        for e in combined {
            first.combine(e);
        }
        return Err(first);
    }
    Ok(ConsumerDef {
        ident: sig.ident.clone(),
        topic,
        args,
        params,
        payload: payload.expect("checked above"),
    })
}

/// The `ConsumeOptions` the arguments describe; an empty group is the
/// service's.
fn options(krate: &Path, args: &ConsumeArgs) -> TokenStream {
    let p = quote::quote!(#krate::__private);
    let group = args.group.clone().unwrap_or_default();
    let mut out = quote::quote!(#p::ConsumeOptions::group(#group));
    if args.start.as_deref() == Some("beginning") {
        out = quote::quote!(#out.start(#p::Start::Beginning));
    }
    if let Some(ms) = args.ack_wait_ms {
        out = quote::quote!(#out.ack_wait(#p::Duration::from_millis(#ms)));
    }
    if let Some(n) = args.max_attempts {
        out = quote::quote!(#out.max_attempts(#n));
    }
    if let Some(ms) = args.backoff_ms {
        out = quote::quote!(#out.backoff(#p::Backoff::exponential(#p::Duration::from_millis(#ms))));
    }
    if let Some(topic) = &args.dead_letter {
        out = quote::quote!(#out.dead_letter(#topic));
    }
    out
}

/// The future that decodes the event and calls the consumer: `call` is
/// the path to call, `receiver` any first argument (with its comma).
fn future(
    krate: &Path,
    def: &ConsumerDef,
    call: TokenStream,
    receiver: TokenStream,
) -> TokenStream {
    use quote::quote_spanned;
    use syn::spanned::Spanned;
    let ty = &def.payload;
    let decode = quote_spanned! {ty.span()=> __delivered.event().decode::<#ty>() };
    let args = def.params.iter().map(|is_delivered| {
        if *is_delivered {
            quote::quote!(::core::clone::Clone::clone(&__delivered))
        } else {
            quote::quote!(__payload)
        }
    });
    let ident = &def.ident;
    let body = quote_spanned! {ident.span()=> async move {
        let __payload = #decode?;
        #krate::__private::acknowledge(#call(#receiver #(#args),*).await)
    }};
    quote::quote!(#krate::__private::Box::pin(#krate::__private::assert_send(#body)))
}

/// A free `#[consume]` function, and its registration with `inventory`.
pub(crate) fn free_consumer(krate: &Path, item: &syn::ItemFn, def: &ConsumerDef) -> TokenStream {
    let ident = &def.ident;
    let topic = &def.topic;
    let shim = quote::format_ident!("__micro_consumer_{}", ident);
    let opts = quote::format_ident!("__micro_consumer_options_{}", ident);
    let options = options(krate, &def.args);
    let future = future(krate, def, quote::quote!(#ident), TokenStream::new());
    let name = ident.to_string();
    quote::quote! {
        #item

        #[doc(hidden)]
        const _: () = {
            fn #shim(
                __delivered: #krate::__private::Delivered,
            ) -> #krate::__private::BoxFuture<'static, #krate::__private::Result<()>> {
                #future
            }

            fn #opts() -> #krate::__private::ConsumeOptions {
                #options
            }

            #krate::__private::inventory::submit! {
                #krate::__private::StaticConsumer {
                    topic: #topic,
                    name: ::core::concat!(::core::module_path!(), "::", #name),
                    options: #opts,
                    handler: #shim,
                }
            }
        };
    }
}

/// `Handler::consumers` for the `#[consume]` methods of a service.
pub(crate) fn consumers_fn(krate: &Path, defs: &[ConsumerDef]) -> TokenStream {
    if defs.is_empty() {
        return TokenStream::new();
    }
    let consumers = defs.iter().map(|def| {
        let topic = &def.topic;
        let method = &def.ident;
        let options = options(krate, &def.args);
        let future = future(krate, def, quote::quote!(Self::#method), quote::quote!(&*__this,));
        quote::quote! {
            {
                let __handler = ::core::clone::Clone::clone(&self);
                #krate::__private::Consumer::from_parts(
                    #topic,
                    #options,
                    #krate::__private::Arc::new(move |__delivered: #krate::__private::Delivered| {
                        let __this = ::core::clone::Clone::clone(&__handler);
                        #future as #krate::__private::BoxFuture<'static, #krate::__private::Result<()>>
                    }),
                )
            }
        }
    });
    quote::quote! {
        fn consumers(
            self: #krate::__private::Arc<Self>,
        ) -> #krate::__private::Vec<#krate::__private::Consumer> {
            ::core::convert::From::from([#(#consumers),*])
        }
    }
}
