//! `#[subscribe("topic", queue = "group")]`: the model of a
//! subscriber, on a free function or a method of a `#[service]` impl.

use syn::{FnArg, Signature, Type};

use crate::syntax::is_context;

/// A checked subscriber.
pub(crate) struct SubscriberDef {
    pub(crate) ident: syn::Ident,
    pub(crate) topic: String,
    pub(crate) queue: Option<String>,
    /// For each argument after any receiver: is it the `Context`?
    pub(crate) args: Vec<bool>,
    pub(crate) payload: Option<Type>,
}

/// Checks a subscriber's signature; `method` says whether `&self` comes
/// first.
pub(crate) fn check(
    sig: &Signature,
    method: bool,
    topic: String,
    queue: Option<String>,
) -> Result<SubscriberDef, syn::Error> {
    let mut errors = crate::syntax::check_event_fn(sig, method, "subscribe");
    let inputs = sig.inputs.iter().skip(usize::from(matches!(
        sig.inputs.first(),
        Some(FnArg::Receiver(_))
    )));
    let mut args = Vec::new();
    let mut payload = None;
    for input in inputs {
        let FnArg::Typed(pat) = input else { continue };
        if is_context(&pat.ty) {
            args.push(true);
            continue;
        }
        if payload.is_some() {
            errors.push(syn::Error::new_spanned(
                pat,
                "`#[subscribe]` functions take one payload argument (and an optional `Context`)",
            ));
            continue;
        }
        payload = Some((*pat.ty).clone());
        args.push(false);
    }
    errors.extend(crate::syntax::check_returns_result(sig, "subscribe"));
    let mut combined = errors.into_iter();
    if let Some(mut first) = combined.next() {
        for e in combined {
            first.combine(e);
        }
        return Err(first);
    }
    Ok(SubscriberDef {
        ident: sig.ident.clone(),
        topic,
        queue,
        args,
        payload,
    })
}
