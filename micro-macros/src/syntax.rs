//! Questions about the user's syntax that every part of the expansion
//! asks: which attribute this is, whether a type is `Context`, `()` or a
//! `Result`, and a type's name as the registry shows it.

use quote::ToTokens;
use syn::{Attribute, GenericArgument, PathArguments, ReturnType, Type};

/// The argument `#[service]` gives the `#[handler]` attributes it has read.
/// They stay on the methods, so the user's `use micro::handler` is used, and
/// expand to nothing.
pub(crate) const CHECKED: &str = "__micro_checked_by_service";

pub(crate) fn is_attr(attr: &Attribute, name: &str) -> bool {
    attr.path().segments.last().is_some_and(|s| s.ident == name)
}

/// Whether a type is micro's `Context` (by its last path segment).
pub(crate) fn is_context(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "Context" && s.arguments.is_none()),
        _ => false,
    }
}

/// Whether a type is `()`.
pub(crate) fn is_unit(ty: &Type) -> bool {
    matches!(ty, Type::Tuple(t) if t.elems.is_empty())
}

/// `T` of a `Result<T>` or `Result<T, E>` return type.
pub(crate) fn result_ok_type(output: &ReturnType) -> Option<Type> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    let Type::Path(p) = &**ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    }
}

/// A type's name as the registry shows it: its tokens without spaces.
pub(crate) fn type_name(ty: &Type) -> String {
    ty.to_token_stream()
        .to_string()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

/// The checks every `#[<attr>]` function shares before its arguments:
/// `async`, not generic, `&self` first exactly when it is a method.
pub(crate) fn check_event_fn(sig: &syn::Signature, method: bool, attr: &str) -> Vec<syn::Error> {
    use syn::FnArg;
    let mut errors = Vec::new();
    if sig.asyncness.is_none() {
        errors.push(syn::Error::new_spanned(
            sig.fn_token,
            format!("`#[{attr}]` functions must be `async`"),
        ));
    }
    if !sig.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            format!("`#[{attr}]` functions cannot be generic"),
        ));
    }
    match sig.inputs.first() {
        Some(FnArg::Receiver(r))
            if method && !matches!(r.kind, syn::ReceiverKind::Reference(_, _, None)) =>
        {
            errors.push(syn::Error::new_spanned(
                r,
                format!("`#[{attr}]` methods must take `&self`"),
            ));
        }
        Some(FnArg::Receiver(_)) if method => {}
        Some(FnArg::Receiver(r)) => errors.push(syn::Error::new_spanned(
            r,
            format!("`#[{attr}]` on a method only works inside a `#[service]` impl block"),
        )),
        _ if method => errors.push(syn::Error::new_spanned(
            &sig.ident,
            format!("`#[{attr}]` methods must take `&self` as their first argument"),
        )),
        _ => {}
    }
    errors
}

/// The check every `#[<attr>]` function shares after its arguments: it
/// returns a `Result`.
pub(crate) fn check_returns_result(sig: &syn::Signature, attr: &str) -> Option<syn::Error> {
    let returns_result = match &sig.output {
        ReturnType::Type(_, ty) => match &**ty {
            Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Result"),
            _ => false,
        },
        ReturnType::Default => false,
    };
    if returns_result {
        return None;
    }
    let message = format!("`#[{attr}]` functions must return `Result<()>`");
    Some(match &sig.output {
        ReturnType::Type(_, ty) => syn::Error::new_spanned(ty, message),
        ReturnType::Default => syn::Error::new_spanned(&sig.ident, message),
    })
}
