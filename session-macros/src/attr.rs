//! The options of `#[with_session(...)]`.

use proc_macro2::Span;
use syn::{
    ext::IdentExt as _,
    parse::{Parse, ParseStream},
    Ident, LitStr, Token,
};

mod kw {
    syn::custom_keyword!(autosave);
    syn::custom_keyword!(readonly);
    syn::custom_keyword!(require);
    syn::custom_keyword!(key);
    syn::custom_keyword!(connect);
}

/// Every option, as an error message lists them.
pub(crate) const VALID_OPTIONS: &str =
    "`autosave`, `readonly`, `require = \"key\"`, `key = \"key\"` or `connect`";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Autosave,
    Readonly,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Autosave => "autosave",
            Mode::Readonly => "readonly",
        }
    }
}

/// The parsed options. The mode is always set: parsing fails without one.
pub(crate) struct Args {
    pub(crate) mode: Mode,
    pub(crate) require: Option<LitStr>,
    pub(crate) key: Option<LitStr>,
    pub(crate) connect: Option<Span>,
}

impl Args {
    /// Only a mode: what a handler is wrapped with when its options do not parse.
    pub(crate) fn fallback(mode: Mode) -> Self {
        Self {
            mode,
            require: None,
            key: None,
            connect: None,
        }
    }
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut mode: Option<(Mode, Span)> = None;
        let mut require = None;
        let mut key = None;
        let mut connect = None;

        while !input.is_empty() {
            let lookahead = input.lookahead1();
            if lookahead.peek(kw::autosave) || lookahead.peek(kw::readonly) {
                let (this, span) = if input.peek(kw::autosave) {
                    (Mode::Autosave, input.parse::<kw::autosave>()?.span)
                } else {
                    (Mode::Readonly, input.parse::<kw::readonly>()?.span)
                };
                match mode {
                    Some((seen, _)) if seen == this => {
                        return Err(duplicate(span, this.name()));
                    }
                    Some(_) => {
                        return Err(syn::Error::new(
                            span,
                            "`autosave` and `readonly` exclude each other: choose one",
                        ));
                    }
                    None => mode = Some((this, span)),
                }
            } else if lookahead.peek(kw::require) {
                let span = input.parse::<kw::require>()?.span;
                if require.is_some() {
                    return Err(duplicate(span, "require"));
                }
                require = Some(string_value(input, span, "require")?);
            } else if lookahead.peek(kw::key) {
                let span = input.parse::<kw::key>()?.span;
                if key.is_some() {
                    return Err(duplicate(span, "key"));
                }
                key = Some(string_value(input, span, "key")?);
            } else if lookahead.peek(kw::connect) {
                let span = input.parse::<kw::connect>()?.span;
                if connect.is_some() {
                    return Err(duplicate(span, "connect"));
                }
                connect = Some(span);
            } else {
                return Err(unknown(input));
            }

            if input.is_empty() {
                break;
            }
            if !input.peek(Token![,]) {
                return Err(input.error(format!(
                    "expected `,` between options; valid options are {VALID_OPTIONS}"
                )));
            }
            input.parse::<Token![,]>()?;
        }

        let Some((mode, _)) = mode else {
            // The call site of attribute arguments is the attribute itself.
            return Err(syn::Error::new(
                Span::call_site(),
                "missing mode: add `autosave` (lock, reload, save if modified) or `readonly` \
                 (reload, never write)",
            ));
        };
        Ok(Self {
            mode,
            require,
            key,
            connect,
        })
    }
}

fn duplicate(span: Span, name: &str) -> syn::Error {
    syn::Error::new(span, format!("duplicate option `{name}`"))
}

/// Names the offending token, so the message says what was written and what is accepted.
fn unknown(input: ParseStream<'_>) -> syn::Error {
    match input.fork().call(Ident::parse_any) {
        Ok(ident) => syn::Error::new(
            ident.span(),
            format!("unknown option `{ident}`: valid options are {VALID_OPTIONS}"),
        ),
        Err(_) => input.error(format!("expected an option: {VALID_OPTIONS}")),
    }
}

/// `= "literal"` after `name`.
fn string_value(input: ParseStream<'_>, name_span: Span, name: &str) -> syn::Result<LitStr> {
    let expected =
        || format!("`{name}` takes a string literal naming a session key: `{name} = \"user\"`");
    if !input.peek(Token![=]) {
        return Err(syn::Error::new(name_span, expected()));
    }
    input.parse::<Token![=]>()?;
    if !input.peek(LitStr) {
        // Span the whole offending value, not just its first token.
        let value = input.step(|cursor| {
            let mut rest = *cursor;
            let mut tokens = proc_macro2::TokenStream::new();
            while let Some((tt, next)) = rest.token_tree() {
                if matches!(&tt, proc_macro2::TokenTree::Punct(p) if p.as_char() == ',') {
                    break;
                }
                tokens.extend([tt]);
                rest = next;
            }
            Ok((tokens, rest))
        })?;
        if value.is_empty() {
            return Err(syn::Error::new(name_span, expected()));
        }
        return Err(syn::Error::new_spanned(value, expected()));
    }
    let lit: LitStr = input.parse()?;
    if lit.value().is_empty() {
        return Err(syn::Error::new(
            lit.span(),
            format!("`{name}` needs a non-empty session key"),
        ));
    }
    Ok(lit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(tokens: &str) -> Args {
        match syn::parse_str(tokens) {
            Ok(args) => args,
            Err(err) => panic!("`{tokens}` did not parse: {err}"),
        }
    }

    fn error(tokens: &str) -> String {
        match syn::parse_str::<Args>(tokens) {
            Ok(_) => panic!("`{tokens}` parsed"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn modes() {
        assert_eq!(parse("autosave").mode, Mode::Autosave);
        assert_eq!(parse("readonly").mode, Mode::Readonly);
        assert_eq!(parse("readonly,").mode, Mode::Readonly);
    }

    #[test]
    fn every_option_in_any_order() {
        let args = parse(r#"require = "user", key = "cart", autosave"#);
        assert_eq!(args.mode, Mode::Autosave);
        assert_eq!(args.require.unwrap().value(), "user");
        assert_eq!(args.key.unwrap().value(), "cart");
        assert!(args.connect.is_none());

        let args = parse(r#"readonly, connect, require = "user""#);
        assert!(args.connect.is_some());
    }

    #[test]
    fn missing_mode() {
        assert!(error("").starts_with("missing mode"));
        assert!(error(r#"require = "user""#).starts_with("missing mode"));
    }

    #[test]
    fn both_modes() {
        assert_eq!(
            error("autosave, readonly"),
            "`autosave` and `readonly` exclude each other: choose one"
        );
    }

    #[test]
    fn duplicates() {
        assert_eq!(error("autosave, autosave"), "duplicate option `autosave`");
        assert_eq!(
            error(r#"readonly, require = "a", require = "b""#),
            "duplicate option `require`"
        );
        assert_eq!(
            error(r#"autosave, key = "a", key = "b""#),
            "duplicate option `key`"
        );
        assert_eq!(
            error("readonly, connect, connect"),
            "duplicate option `connect`"
        );
    }

    #[test]
    fn unknown_option_lists_the_valid_ones() {
        assert_eq!(
            error("autosav"),
            format!("unknown option `autosav`: valid options are {VALID_OPTIONS}")
        );
        // Keywords are options too, as far as the user is concerned.
        assert!(error("autosave, async").starts_with("unknown option `async`"));
        assert!(error("42").starts_with("expected an option"));
    }

    #[test]
    fn values_must_be_string_literals() {
        let expected =
            "`require` takes a string literal naming a session key: `require = \"user\"`";
        assert_eq!(error("readonly, require = user"), expected);
        assert_eq!(error("readonly, require"), expected);
        assert_eq!(error("readonly, require = 1, autosave"), expected);
        assert!(error("autosave, key = cart").starts_with("`key` takes a string literal"));
        assert_eq!(
            error(r#"autosave, key = """#),
            "`key` needs a non-empty session key"
        );
    }

    #[test]
    fn options_are_comma_separated() {
        assert!(error("autosave readonly").starts_with("expected `,` between options"));
    }
}
