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
    /// `protobuf`: the message types are protobuf messages too.
    pub(crate) protobuf: Option<Span>,
    /// `package = "..."`: the protobuf package of the service.
    pub(crate) package: Option<Value>,
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
/// `string_keys`, bare words for `flags` (given to `on_value` with `None`
/// and the word's span), and `public` and `scopes = ["..", ..]` for who
/// may call.
fn parse_with_access(
    attr: &str,
    string_keys: &[&str],
    flags: &[&str],
    tokens: TokenStream,
    mut on_value: impl FnMut(&str, Option<LitStr>, Span) -> syn::Result<()>,
) -> syn::Result<Access> {
    let mut known: Vec<&str> = string_keys.to_vec();
    known.extend(flags);
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
            flag if flags.contains(&flag) => {
                if meta.input.peek(Token![=]) || meta.input.peek(syn::token::Paren) {
                    return Err(meta.error(format!(
                        "`{flag}` takes no value: write `#[{attr}({flag})]`"
                    )));
                }
                on_value(flag, None, span)?;
            }
            _ => on_value(&key, Some(meta.value()?.parse()?), span)?,
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

/// A protobuf package name: identifiers joined by dots.
fn is_proto_package(package: &str) -> bool {
    package.split('.').all(|part| {
        let mut chars = part.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

impl ServiceArgs {
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let mut name = None;
        let mut krate = None;
        let mut protobuf = None;
        let mut package = None;
        let access = parse_with_access(
            "service",
            &["name", "crate", "package"],
            &["protobuf"],
            tokens,
            |key, lit, span| {
                let value = |lit: &LitStr| Value {
                    value: lit.value(),
                    span: lit.span(),
                };
                match (key, lit) {
                    ("protobuf", _) => protobuf = Some(span),
                    ("name", Some(lit)) => name = Some(value(&lit)),
                    ("package", Some(lit)) => package = Some(value(&lit)),
                    (_, Some(lit)) => krate = Some((lit.parse::<Path>()?, lit.span())),
                    (_, None) => unreachable!("only `protobuf` is a flag"),
                }
                Ok(())
            },
        )?;
        if let (Some(package), None) = (&package, protobuf) {
            return Err(syn::Error::new(
                package.span,
                "`package` names the protobuf package: add `protobuf`, as in `#[service(protobuf, package = \"greeter\")]`",
            ));
        }
        if let Some(package) = &package
            && !is_proto_package(&package.value)
        {
            return Err(syn::Error::new(
                package.span,
                format!(
                    "invalid protobuf package \"{}\": expected identifiers (letters, digits, `_`, not starting with a digit) joined by dots, such as \"acme.greeter.v1\"",
                    package.value
                ),
            ));
        }
        Ok(ServiceArgs {
            name,
            krate,
            access,
            protobuf,
            package,
        })
    }
}

impl HandlerArgs {
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let mut name = None;
        let access = parse_with_access("handler", &["name"], &[], tokens, |_, lit, _| {
            let Some(lit) = lit else {
                unreachable!("`#[handler]` has no flags")
            };
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
