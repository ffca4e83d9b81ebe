//! `#[subscribe("topic", queue = "group")]`: the model of a
//! subscriber, on a free function or a method of a `#[service]` impl.

use syn::{FnArg, ReturnType, Signature, Type};

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
    let mut errors: Vec<syn::Error> = Vec::new();
    if sig.asyncness.is_none() {
        errors.push(syn::Error::new_spanned(
            sig.fn_token,
            "`#[subscribe]` functions must be `async`",
        ));
    }
    if !sig.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            "`#[subscribe]` functions cannot be generic",
        ));
    }
    let mut inputs = sig.inputs.iter().peekable();
    match inputs.peek() {
        Some(FnArg::Receiver(r)) if method => {
            let by_ref = matches!(r.kind, syn::ReceiverKind::Reference(_, _, None));
            if !by_ref {
                errors.push(syn::Error::new_spanned(
                    r,
                    "`#[subscribe]` methods must take `&self`",
                ));
            }
            inputs.next();
        }
        Some(FnArg::Receiver(r)) => errors.push(syn::Error::new_spanned(
            r,
            "`#[subscribe]` on a method only works inside a `#[service]` impl block",
        )),
        _ if method => errors.push(syn::Error::new_spanned(
            &sig.ident,
            "`#[subscribe]` methods must take `&self` as their first argument",
        )),
        _ => {}
    }
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
    let returns_result = match &sig.output {
        ReturnType::Type(_, ty) => match &**ty {
            Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Result"),
            _ => false,
        },
        ReturnType::Default => false,
    };
    if !returns_result {
        let message = "`#[subscribe]` functions must return `Result<()>`";
        match &sig.output {
            ReturnType::Type(_, ty) => errors.push(syn::Error::new_spanned(ty, message)),
            ReturnType::Default => errors.push(syn::Error::new_spanned(&sig.ident, message)),
        }
    }
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
