//! Validation: what a handler may look like, each rule a step with its own error on the token
//! at fault. What passes becomes a [`Handler`], the model `expand` generates from.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::{FnArg, ItemFn, Pat, PathArguments, PathSegment, ReturnType, Type, TypePath};

use crate::attr::{Args, Mode};

/// What the wrapper hands the body in place of the user's session parameter.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionKind {
    SocketSession,
    ReadOnly,
    Data,
}

impl SessionKind {
    fn of(segment: &PathSegment) -> Option<Self> {
        match segment.ident.to_string().as_str() {
            "SocketSession" => Some(Self::SocketSession),
            "ReadOnlySocketSession" => Some(Self::ReadOnly),
            "SessionData" => Some(Self::Data),
            _ => None,
        }
    }

    /// The mode a handler taking this kind of session can only mean: what the attribute is
    /// expanded with when its own options do not parse.
    pub(crate) fn of_type(ty: &Type) -> Option<Self> {
        last_segment(ty).and_then(Self::of)
    }
}

/// One parameter of the user's function, as the wrapper treats it.
pub(crate) enum Param<'a> {
    /// An extractor the wrapper takes unchanged.
    Extractor(&'a FnArg),
    /// `Data<T>`: taken as `TryData<T>`, so a bad payload is answered instead of dropped.
    Payload {
        pat: &'a Pat,
        ty: &'a Type,
        /// The user's own path to `Data`, without its generics.
        data_path: TypePath,
        args: TokenStream,
    },
    /// The session: not an extractor, the wrapper passes it to the body.
    SocketSession {
        pat: &'a Pat,
        ty: &'a Type,
        kind: SessionKind,
    },
}

/// How the handler answers.
pub(crate) enum Return<'a> {
    Unit,
    Value(&'a Type),
    Result,
}

/// A handler that passed every rule.
pub(crate) struct Handler<'a> {
    pub(crate) args: &'a Args,
    pub(crate) item: &'a ItemFn,
    pub(crate) params: Vec<Param<'a>>,
    pub(crate) ret: Return<'a>,
}

/// The parameters sorted out, before the rules that relate them.
struct Params<'a> {
    params: Vec<Param<'a>>,
    session: Option<(&'a Type, SessionKind)>,
    ack_sender: Option<&'a Type>,
}

/// The last segment of a plain type path: how parameters are recognised, since the user may
/// name `SocketSession` through any path or alias.
pub(crate) fn last_segment(ty: &Type) -> Option<&PathSegment> {
    type_path(ty).and_then(|path| path.path.segments.last())
}

fn type_path(ty: &Type) -> Option<&TypePath> {
    match ty {
        Type::Path(path) if path.qself.is_none() => Some(path),
        Type::Group(group) => type_path(&group.elem),
        Type::Paren(paren) => type_path(&paren.elem),
        _ => None,
    }
}

fn error(span: Span, message: impl std::fmt::Display) -> syn::Error {
    syn::Error::new(span, message)
}

impl<'a> Handler<'a> {
    /// Every rule, in the order that puts the most telling error first.
    pub(crate) fn validate(args: &'a Args, item: &'a ItemFn) -> syn::Result<Self> {
        check_async(item)?;
        check_connect_mode(args)?;
        let Params {
            params,
            session,
            ack_sender,
        } = sort_params(args, item)?;
        let (session_ty, kind) = session.ok_or_else(|| missing_session(args, item))?;
        check_session_kind(args.mode, session_ty, kind)?;
        check_key(args, session_ty, kind)?;
        let ret = classify_return(&item.sig.output);
        check_answer(args, ack_sender, &ret)?;
        Ok(Self {
            args,
            item,
            params,
            ret,
        })
    }
}

fn check_async(item: &ItemFn) -> syn::Result<()> {
    if item.sig.asyncness.is_none() {
        return Err(error(
            item.sig.fn_token.span,
            "a `#[with_session]` handler must be `async`: write `async fn`",
        ));
    }
    Ok(())
}

/// Before the parameters: their checks would explain `autosave`, not `connect`.
fn check_connect_mode(args: &Args) -> syn::Result<()> {
    if let (Some(span), Mode::Autosave) = (args.connect, args.mode) {
        return Err(error(
            span,
            "`connect` works with `readonly` only: a connect middleware cannot save the session",
        ));
    }
    Ok(())
}

fn sort_params<'a>(args: &Args, item: &'a ItemFn) -> syn::Result<Params<'a>> {
    let connect = args.connect.is_some();
    let mut sorted = Params {
        params: Vec::with_capacity(item.sig.inputs.len()),
        session: None,
        ack_sender: None,
    };
    for input in &item.sig.inputs {
        let typed = match input {
            FnArg::Receiver(receiver) => {
                return Err(syn::Error::new_spanned(
                    receiver,
                    "a `#[with_session]` handler cannot take `self`: socketioxide calls it as a \
                     plain function",
                ));
            }
            FnArg::Typed(typed) => typed,
        };
        let (pat, ty) = (&*typed.pat, &*typed.ty);
        check_not_tower_session(args, ty)?;
        if let Some(kind) = SessionKind::of_type(ty) {
            if sorted.session.is_some() {
                return Err(two_sessions(ty, &sorted.params));
            }
            sorted.session = Some((ty, kind));
            sorted.params.push(Param::SocketSession { pat, ty, kind });
            continue;
        }
        check_not_by_reference(ty)?;
        match last_segment(ty) {
            Some(segment) if segment.ident == "AckSender" => sorted.ack_sender = Some(ty),
            Some(segment) if segment.ident == "Data" && !connect => {
                if let PathArguments::AngleBracketed(generics) = &segment.arguments {
                    let mut data_path = type_path(ty).expect("a path has a last segment").clone();
                    let last = data_path.path.segments.last_mut().expect("non-empty path");
                    last.arguments = PathArguments::None;
                    sorted.params.push(Param::Payload {
                        pat,
                        ty,
                        data_path,
                        args: generics.args.to_token_stream(),
                    });
                    continue;
                }
            }
            _ => {}
        }
        sorted.params.push(Param::Extractor(input));
    }
    Ok(sorted)
}

fn two_sessions(second: &Type, params: &[Param<'_>]) -> syn::Error {
    let first = params
        .iter()
        .find_map(|param| match param {
            Param::SocketSession { pat, .. } => Some(pat.to_token_stream()),
            _ => None,
        })
        .expect("a first session parameter was seen");
    syn::Error::new_spanned(
        second,
        format!(
            "a `#[with_session]` handler takes only one session parameter, and `{first}` \
             already receives the session"
        ),
    )
}

/// tower-sessions' `Session` shares method names with ours but is async and caches its record:
/// taken here it would fail as an extractor deep in generated code, so name the right type.
fn check_not_tower_session(args: &Args, ty: &Type) -> syn::Result<()> {
    let named_session = |ty: &Type| last_segment(ty).is_some_and(|s| s.ident == "Session");
    let by_value = named_session(ty);
    let by_ref = matches!(ty, Type::Reference(r) if named_session(&r.elem));
    if !by_value && !by_ref {
        return Ok(());
    }
    let expected = match args.mode {
        Mode::Autosave => "session_runtime::SocketSession",
        Mode::Readonly => "session_runtime::ReadOnlySocketSession",
    };
    Err(syn::Error::new_spanned(
        ty,
        format!(
            "`Session` is tower-sessions' type, for HTTP routes: a `#[with_session({})]` handler \
             takes `{expected}`",
            args.mode.name()
        ),
    ))
}

fn check_not_by_reference(ty: &Type) -> syn::Result<()> {
    if let Type::Reference(reference) = ty {
        if let Some(segment) =
            last_segment(&reference.elem).filter(|s| SessionKind::of(s).is_some())
        {
            let name = &segment.ident;
            return Err(syn::Error::new_spanned(
                ty,
                format!("take the session by value, `{name}` rather than `&{name}`: the macro hands it over"),
            ));
        }
    }
    Ok(())
}

fn missing_session(args: &Args, item: &ItemFn) -> syn::Error {
    let expected = match args.mode {
        Mode::Autosave => {
            "`session: SocketSession` (or `data: SessionData<T>` with `key = \"...\"`)"
        }
        Mode::Readonly => "`session: ReadOnlySocketSession`",
    };
    error(
        item.sig.paren_token.span.join(),
        format!(
            "a `#[with_session({})]` handler takes the session as a parameter: add {expected}",
            args.mode.name()
        ),
    )
}

fn check_session_kind(mode: Mode, session_ty: &Type, kind: SessionKind) -> syn::Result<()> {
    match (mode, kind) {
        (Mode::Autosave, SessionKind::ReadOnly) => Err(syn::Error::new_spanned(
            session_ty,
            "an `autosave` handler takes `SocketSession` (or `SessionData<T>` with `key = \"...\"`): \
             use `#[with_session(readonly)]` to take `ReadOnlySocketSession`",
        )),
        (Mode::Readonly, SessionKind::SocketSession | SessionKind::Data) => Err(syn::Error::new_spanned(
            session_ty,
            "a `readonly` handler takes `ReadOnlySocketSession`: use `#[with_session(autosave)]` \
                 to write the session",
        )),
        _ => Ok(()),
    }
}

fn check_key(args: &Args, session_ty: &Type, kind: SessionKind) -> syn::Result<()> {
    match (&args.key, kind) {
        (None, SessionKind::Data) => Err(syn::Error::new_spanned(
            session_ty,
            "`SessionData<T>` needs the session key it binds: add `key = \"...\"` to \
             `#[with_session(...)]`",
        )),
        (Some(key), SessionKind::SocketSession | SessionKind::ReadOnly) => Err(error(
            key.span(),
            "`key = \"...\"` binds a `SessionData<T>` parameter: take `SessionData<T>` instead \
             of the whole session, or remove `key`",
        )),
        _ => Ok(()),
    }
}

fn classify_return(output: &ReturnType) -> Return<'_> {
    match output {
        ReturnType::Default => Return::Unit,
        ReturnType::Type(_, ty) => match &**ty {
            Type::Tuple(tuple) if tuple.elems.is_empty() => Return::Unit,
            ty if last_segment(ty).is_some_and(|s| s.ident == "Result") => Return::Result,
            ty => Return::Value(ty),
        },
    }
}

/// A connect guard answers with `Result<(), E>`; an event handler answers either with its
/// value or through its own `AckSender`, never both.
fn check_answer(args: &Args, ack_sender: Option<&Type>, ret: &Return<'_>) -> syn::Result<()> {
    if args.connect.is_some() {
        if let Return::Value(ty) = ret {
            return Err(syn::Error::new_spanned(
                ty,
                "a `connect` handler returns `Result<(), E>` (`Err` refuses the connection) or \
                 `()`",
            ));
        }
    } else if let (Some(ack), Return::Value(_) | Return::Result) = (ack_sender, ret) {
        return Err(syn::Error::new_spanned(
            ack,
            "the macro acknowledges with the returned value: remove the `AckSender` parameter \
             or return `()`",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(args: &str, item: &str) -> Result<(), String> {
        let args: Args = syn::parse_str(args).unwrap();
        let item: ItemFn = syn::parse_str(item).unwrap();
        Handler::validate(&args, &item)
            .map(drop)
            .map_err(|err| err.to_string())
    }

    #[test]
    fn a_plain_autosave_handler_passes() {
        validate(
            "autosave",
            "async fn f(s: SocketSession, Data(x): Data<u8>) -> u8 { x }",
        )
        .unwrap();
    }

    #[test]
    fn tower_sessions_session_is_refused_naming_the_right_type() {
        for (mode, ty, expected) in [
            ("autosave", "Session", "session_runtime::SocketSession"),
            (
                "readonly",
                "tower_sessions::Session",
                "session_runtime::ReadOnlySocketSession",
            ),
            ("autosave", "&Session", "session_runtime::SocketSession"),
        ] {
            let err = validate(mode, &format!("async fn f(s: {ty}) {{}}")).unwrap_err();
            assert!(
                err.starts_with("`Session` is tower-sessions' type") && err.contains(expected),
                "{mode} handler taking `{ty}`: {err}"
            );
        }
    }

    #[test]
    fn not_async_is_the_first_complaint() {
        let err = validate("autosave, connect", "fn f() {}").unwrap_err();
        assert!(
            err.starts_with("a `#[with_session]` handler must be `async`"),
            "{err}"
        );
    }

    #[test]
    fn connect_with_autosave_comes_before_the_parameters() {
        let err = validate("autosave, connect", "async fn f() {}").unwrap_err();
        assert!(
            err.starts_with("`connect` works with `readonly` only"),
            "{err}"
        );
    }

    #[test]
    fn the_second_session_parameter_names_the_first() {
        let err = validate(
            "autosave",
            "async fn f(a: SocketSession, b: SocketSession) {}",
        )
        .unwrap_err();
        assert!(err.ends_with("`a` already receives the session"), "{err}");
    }

    #[test]
    fn the_mode_must_fit_the_session_type() {
        let err = validate("readonly", "async fn f(s: SocketSession) {}").unwrap_err();
        assert!(
            err.starts_with("a `readonly` handler takes `ReadOnlySocketSession`"),
            "{err}"
        );
        let err = validate("autosave", "async fn f(s: ReadOnlySocketSession) {}").unwrap_err();
        assert!(
            err.starts_with("an `autosave` handler takes `SocketSession`"),
            "{err}"
        );
    }

    #[test]
    fn key_and_session_data_go_together() {
        let err = validate("autosave", "async fn f(d: SessionData<Cart>) {}").unwrap_err();
        assert!(
            err.starts_with("`SessionData<T>` needs the session key"),
            "{err}"
        );
        let err = validate(
            r#"autosave, key = "cart""#,
            "async fn f(s: SocketSession) {}",
        )
        .unwrap_err();
        assert!(
            err.starts_with("`key = \"...\"` binds a `SessionData<T>`"),
            "{err}"
        );
    }

    #[test]
    fn an_ack_sender_and_a_returned_value_exclude_each_other() {
        let err = validate(
            "autosave",
            "async fn f(s: SocketSession, a: AckSender) -> u8 { 1 }",
        )
        .unwrap_err();
        assert!(
            err.starts_with("the macro acknowledges with the returned value"),
            "{err}"
        );
        validate("autosave", "async fn f(s: SocketSession, a: AckSender) {}").unwrap();
    }
}
