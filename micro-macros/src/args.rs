//! Parsing of attribute arguments: `key = "value"` pairs, each key at most
//! once, unknown keys rejected with the list of known ones.

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{LitStr, Path, Token};

/// One parsed `key = "value"`, with the span of its value for errors.
#[derive(Clone)]
pub(crate) struct Value {
    pub(crate) value: String,
    pub(crate) span: Span,
}

/// `#[service(...)]` arguments.
#[derive(Default)]
pub(crate) struct ServiceArgs {
    pub(crate) name: Option<Value>,
    pub(crate) krate: Option<(Path, Span)>,
    pub(crate) access: Access,
}

/// `#[handler(...)]` arguments.
#[derive(Default)]
pub(crate) struct HandlerArgs {
    pub(crate) name: Option<Value>,
    pub(crate) access: Access,
}

/// Who may call an endpoint, as declared with `public` or `scopes`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Access {
    /// Nothing declared: the rules in config decide.
    #[default]
    Undeclared,
    /// `public`: anyone, even without a token.
    Public,
    /// `scopes = [..]`: accounts with any of these scopes.
    Scopes(Vec<String>),
}

/// Parses the arguments of `#[attr]`: `key = "value"` pairs for
/// `string_keys`, and `public` and `scopes = ["..", ..]` for who may call.
fn parse_with_access(
    attr: &str,
    string_keys: &[&str],
    tokens: TokenStream,
    mut on_string: impl FnMut(&str, LitStr) -> syn::Result<()>,
) -> syn::Result<Access> {
    let mut known: Vec<&str> = string_keys.to_vec();
    known.extend(["public", "scopes"]);
    let mut access = Access::Undeclared;
    let mut declared: Option<(&'static str, Span)> = None;
    let mut seen: Vec<String> = Vec::new();
    let parser = syn::meta::parser(|meta: ParseNestedMeta<'_>| {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        if !known.contains(&key.as_str()) {
            let expected = known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let shown = if key.is_empty() { "this" } else { key.as_str() };
            return Err(meta.error(format!(
                "unknown `#[{attr}]` argument `{shown}`, expected one of: {expected}"
            )));
        }
        if seen.contains(&key) {
            return Err(meta.error(format!("duplicate `#[{attr}]` argument `{key}`")));
        }
        seen.push(key.clone());
        let span = meta.path.span();
        match key.as_str() {
            "public" => {
                if meta.input.peek(Token![=]) || meta.input.peek(syn::token::Paren) {
                    return Err(meta.error(format!(
                        "`public` takes no value: write `#[{attr}(public)]`"
                    )));
                }
                if let Some((other, _)) = declared {
                    return Err(meta.error(format!(
                        "`public` and `{other}` exclude each other: a public endpoint needs no scope"
                    )));
                }
                declared = Some(("public", span));
                access = Access::Public;
            }
            "scopes" => {
                if let Some((other, _)) = declared {
                    return Err(meta.error(format!(
                        "`scopes` and `{other}` exclude each other: a public endpoint needs no scope"
                    )));
                }
                let value = meta.value().map_err(|_| {
                    meta.error(format!(
                        "expected a list of scopes: `#[{attr}(scopes = [\"orders:write\"])]`"
                    ))
                })?;
                let list: syn::ExprArray = value.parse().map_err(|e| {
                    syn::Error::new(
                        e.span(),
                        format!(
                            "expected a list of scopes: `#[{attr}(scopes = [\"orders:write\"])]`"
                        ),
                    )
                })?;
                let mut scopes = Vec::new();
                for elem in &list.elems {
                    let syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(s),
                        ..
                    }) = elem
                    else {
                        return Err(syn::Error::new_spanned(
                            elem,
                            "a scope is a string literal, such as \"orders:write\"",
                        ));
                    };
                    let scope = s.value();
                    if scope.is_empty()
                        || scope == "*"
                        || scope.chars().any(|c| c.is_whitespace() || c == ',')
                    {
                        return Err(syn::Error::new(
                            s.span(),
                            "a scope is a non-empty name without spaces or commas, and not `*`",
                        ));
                    }
                    scopes.push(scope);
                }
                if scopes.is_empty() {
                    return Err(syn::Error::new_spanned(
                        &list,
                        "an empty list of scopes lets nobody in: name at least one, or write `public`",
                    ));
                }
                declared = Some(("scopes", span));
                access = Access::Scopes(scopes);
            }
            _ => on_string(&key, meta.value()?.parse()?)?,
        }
        Ok(())
    });
    parser.parse2(tokens)?;
    Ok(access)
}

/// `#[subscribe("topic", ...)]` arguments.
pub(crate) struct SubscribeArgs {
    pub(crate) topic: String,
    pub(crate) queue: Option<String>,
    pub(crate) krate: Option<(Path, Span)>,
}

/// Parses `key = "value", ...` with `on_key` deciding each key; reports an
/// unknown or repeated key at the key's own token.
fn parse_pairs(
    attr: &str,
    known: &[&str],
    tokens: TokenStream,
    mut on_key: impl FnMut(&str, LitStr) -> syn::Result<()>,
) -> syn::Result<()> {
    parse_keys(attr, known, tokens, |key, value| {
        on_key(key, value.parse()?)
    })
}

/// As [`parse_pairs`], with `on_key` parsing each value itself (a number,
/// say).
pub(crate) fn parse_keys(
    attr: &str,
    known: &[&str],
    tokens: TokenStream,
    mut on_key: impl FnMut(&str, ParseStream<'_>) -> syn::Result<()>,
) -> syn::Result<()> {
    let mut seen: Vec<String> = Vec::new();
    let parser = syn::meta::parser(|meta: ParseNestedMeta<'_>| {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_else(|| {
                let path = &meta.path;
                quote::quote!(#path).to_string().replace(' ', "")
            });
        let key = key.trim_start_matches("r#").to_owned();
        if !known.contains(&key.as_str()) {
            let expected = known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(meta.error(format!(
                "unknown `#[{attr}]` argument `{key}`, expected one of: {expected}"
            )));
        }
        if seen.contains(&key) {
            return Err(meta.error(format!("duplicate `#[{attr}]` argument `{key}`")));
        }
        seen.push(key.clone());
        on_key(&key, meta.value()?)
    });
    parser.parse2(tokens)
}

impl ServiceArgs {
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let mut name = None;
        let mut krate = None;
        let access = parse_with_access("service", &["name", "crate"], tokens, |key, lit| {
            match key {
                "name" => {
                    name = Some(Value {
                        value: lit.value(),
                        span: lit.span(),
                    });
                }
                _ => krate = Some((lit.parse::<Path>()?, lit.span())),
            }
            Ok(())
        })?;
        Ok(ServiceArgs {
            name,
            krate,
            access,
        })
    }
}

impl HandlerArgs {
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let mut name = None;
        let access = parse_with_access("handler", &["name"], tokens, |_, lit| {
            name = Some(Value {
                value: lit.value(),
                span: lit.span(),
            });
            Ok(())
        })?;
        Ok(HandlerArgs { name, access })
    }
}

/// `"topic", rest...`: the topic and the tokens after its comma, or an
/// error naming `#[attr]` with an `example` topic; `span` is where to
/// report a missing topic.
pub(crate) fn split_topic(
    tokens: TokenStream,
    span: Span,
    attr: &str,
    example: &str,
) -> syn::Result<(LitStr, TokenStream)> {
    if tokens.is_empty() {
        return Err(syn::Error::new(
            span,
            format!("`#[{attr}]` needs a topic: `#[{attr}(\"{example}\")]`"),
        ));
    }
    let split = |input: ParseStream<'_>| {
        let topic: LitStr = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                format!(
                    "`#[{attr}]` takes the topic first, as a string: `#[{attr}(\"{example}\")]`"
                ),
            )
        })?;
        if !input.is_empty() {
            input.parse::<Token![,]>()?;
        }
        Ok((topic, input.parse::<TokenStream>()?))
    };
    split.parse2(tokens)
}

impl SubscribeArgs {
    /// `"topic"`, then `queue = "..."` and `crate = "..."`; `span` is where
    /// to report a missing topic.
    pub(crate) fn parse(tokens: TokenStream, span: Span) -> syn::Result<Self> {
        let (topic, rest) = split_topic(tokens, span, "subscribe", "user.created")?;
        if topic.value().is_empty() || topic.value().chars().any(char::is_whitespace) {
            return Err(syn::Error::new(
                topic.span(),
                "the topic must not be empty or contain whitespace",
            ));
        }
        let mut args = SubscribeArgs {
            topic: topic.value(),
            queue: None,
            krate: None,
        };
        parse_pairs("subscribe", &["queue", "crate"], rest, |key, lit| {
            match key {
                "queue" => {
                    if lit.value().is_empty() {
                        return Err(syn::Error::new(
                            lit.span(),
                            "the queue group must not be empty",
                        ));
                    }
                    args.queue = Some(lit.value());
                }
                _ => args.krate = Some((lit.parse::<Path>()?, lit.span())),
            }
            Ok(())
        })?;
        Ok(args)
    }
}
