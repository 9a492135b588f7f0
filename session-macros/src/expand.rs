//! Validation of the handler and generation of its wrapper.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::{
    spanned::Spanned, visit_mut::VisitMut, AttrStyle, FnArg, Item, ItemFn, Pat, PathArguments,
    PathSegment, ReturnType, Type, TypePath,
};

use crate::attr::{Args, Mode};

/// The whole attribute: always expands to something, so that on error the item still exists
/// for the rest of the crate (and the IDE) and only the one error shows.
pub(crate) fn with_session(args: TokenStream, item: TokenStream) -> TokenStream {
    match expand(args, item.clone()) {
        Ok(tokens) => tokens,
        Err(err) => {
            let err = err.into_compile_error();
            quote! { #item #err }
        }
    }
}

fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    // The item first: on a struct, "wrong item" is the error that matters, whatever the options.
    let item = parse_item(item)?;
    let args: Args = syn::parse2(args)?;
    let handler = Handler::analyse(&args, &item)?;
    Ok(handler.generate())
}

fn parse_item(item: TokenStream) -> syn::Result<ItemFn> {
    const MESSAGE: &str = "`#[with_session]` goes on an `async fn` event handler";
    let item: Item = syn::parse2(item).map_err(|err| syn::Error::new(err.span(), MESSAGE))?;
    let (span, what) = match item {
        Item::Fn(item) => return Ok(item),
        Item::Struct(item) => (item.struct_token.span, "a struct"),
        Item::Enum(item) => (item.enum_token.span, "an enum"),
        Item::Union(item) => (item.union_token.span, "a union"),
        Item::Impl(item) => (item.impl_token.span, "an impl block"),
        Item::Trait(item) => (item.trait_token.span, "a trait"),
        Item::Mod(item) => (item.mod_token.span, "a module"),
        Item::Const(item) => (item.const_token.span, "a constant"),
        Item::Static(item) => (item.static_token.span, "a static"),
        Item::Type(item) => (item.type_token.span, "a type alias"),
        Item::Use(item) => (item.use_token.span, "a `use`"),
        other => (other.span(), "this item"),
    };
    Err(syn::Error::new(span, format!("{MESSAGE}, not on {what}")))
}

/// What the wrapper hands the body in place of the user's session parameter.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SessionKind {
    Session,
    ReadOnly,
    Data,
}

impl SessionKind {
    fn of(segment: &PathSegment) -> Option<Self> {
        match segment.ident.to_string().as_str() {
            "Session" => Some(Self::Session),
            "ReadOnlySession" => Some(Self::ReadOnly),
            "SessionData" => Some(Self::Data),
            _ => None,
        }
    }
}

/// One parameter of the user's function, as the wrapper treats it.
enum Param<'a> {
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
    Session {
        pat: &'a Pat,
        ty: &'a Type,
        kind: SessionKind,
    },
}

enum Return<'a> {
    Unit,
    Value(&'a Type),
    Result,
}

struct Handler<'a> {
    args: &'a Args,
    item: &'a ItemFn,
    params: Vec<Param<'a>>,
    ret: Return<'a>,
}

/// The last segment of a plain type path: how parameters are recognised, since the user may
/// name `Session` through any path or alias.
fn last_segment(ty: &Type) -> Option<&PathSegment> {
    match ty {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last(),
        Type::Group(group) => last_segment(&group.elem),
        Type::Paren(paren) => last_segment(&paren.elem),
        _ => None,
    }
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
    fn analyse(args: &'a Args, item: &'a ItemFn) -> syn::Result<Self> {
        let sig = &item.sig;
        if sig.asyncness.is_none() {
            return Err(error(
                sig.fn_token.span,
                "a `#[with_session]` handler must be `async`: write `async fn`",
            ));
        }
        let mode = args.mode;
        let connect = args.connect.is_some();
        if let (Some(span), Mode::Autosave) = (args.connect, mode) {
            // Before the parameters: their checks would explain `autosave`, not `connect`.
            return Err(error(
                span,
                "`connect` works with `readonly` only: a connect middleware cannot save the \
                 session",
            ));
        }

        let mut params = Vec::with_capacity(sig.inputs.len());
        let mut session: Option<(&Pat, &Type, SessionKind)> = None;
        let mut ack_sender: Option<&Type> = None;
        for input in &sig.inputs {
            let typed = match input {
                FnArg::Receiver(receiver) => {
                    return Err(syn::Error::new_spanned(
                        receiver,
                        "a `#[with_session]` handler cannot take `self`: socketioxide calls it \
                         as a plain function",
                    ));
                }
                FnArg::Typed(typed) => typed,
            };
            let (pat, ty) = (&*typed.pat, &*typed.ty);
            let segment = last_segment(ty);
            if let Some(kind) = segment.and_then(SessionKind::of) {
                if let Some((first, ..)) = session {
                    return Err(syn::Error::new_spanned(
                        ty,
                        format!(
                            "a `#[with_session]` handler takes only one session parameter, and \
                             `{}` already receives the session",
                            first.to_token_stream()
                        ),
                    ));
                }
                session = Some((pat, ty, kind));
                params.push(Param::Session { pat, ty, kind });
                continue;
            }
            if let Type::Reference(reference) = ty {
                if let Some(name) = last_segment(&reference.elem)
                    .filter(|s| SessionKind::of(s).is_some())
                    .map(|s| &s.ident)
                {
                    return Err(syn::Error::new_spanned(
                        ty,
                        format!("take the session by value, `{name}` rather than `&{name}`: the macro hands it over"),
                    ));
                }
            }
            match segment {
                Some(segment) if segment.ident == "AckSender" => ack_sender = Some(ty),
                Some(segment) if segment.ident == "Data" && !connect => {
                    if let PathArguments::AngleBracketed(generics) = &segment.arguments {
                        let mut data_path =
                            type_path(ty).expect("a path has a last segment").clone();
                        let last = data_path.path.segments.last_mut().expect("non-empty path");
                        last.arguments = PathArguments::None;
                        params.push(Param::Payload {
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
            params.push(Param::Extractor(input));
        }

        let Some((_, session_ty, kind)) = session else {
            let expected = match mode {
                Mode::Autosave => {
                    "`session: Session` (or `data: SessionData<T>` with `key = \"...\"`)"
                }
                Mode::Readonly => "`session: ReadOnlySession`",
            };
            return Err(error(
                sig.paren_token.span.join(),
                format!(
                    "a `#[with_session({})]` handler takes the session as a parameter: add {expected}",
                    mode.name()
                ),
            ));
        };

        match (mode, kind) {
            (Mode::Autosave, SessionKind::ReadOnly) => {
                return Err(syn::Error::new_spanned(
                    session_ty,
                    "an `autosave` handler takes `Session` (or `SessionData<T>` with \
                     `key = \"...\"`): use `#[with_session(readonly)]` to take `ReadOnlySession`",
                ));
            }
            (Mode::Readonly, SessionKind::Session | SessionKind::Data) => {
                return Err(syn::Error::new_spanned(
                    session_ty,
                    "a `readonly` handler takes `ReadOnlySession`: use \
                     `#[with_session(autosave)]` to write the session",
                ));
            }
            _ => {}
        }
        match (&args.key, kind) {
            (None, SessionKind::Data) => {
                return Err(syn::Error::new_spanned(
                    session_ty,
                    "`SessionData<T>` needs the session key it binds: add `key = \"...\"` to \
                     `#[with_session(...)]`",
                ));
            }
            (Some(key), SessionKind::Session | SessionKind::ReadOnly) => {
                return Err(error(
                    key.span(),
                    "`key = \"...\"` binds a `SessionData<T>` parameter: take \
                     `SessionData<T>` instead of the whole session, or remove `key`",
                ));
            }
            _ => {}
        }

        let ret = match &sig.output {
            ReturnType::Default => Return::Unit,
            ReturnType::Type(_, ty) => match &**ty {
                Type::Tuple(tuple) if tuple.elems.is_empty() => Return::Unit,
                ty if last_segment(ty).is_some_and(|s| s.ident == "Result") => Return::Result,
                ty => Return::Value(ty),
            },
        };

        if args.connect.is_some() {
            if let Return::Value(ty) = ret {
                return Err(syn::Error::new_spanned(
                    ty,
                    "a `connect` handler returns `Result<(), E>` (`Err` refuses the \
                     connection) or `()`",
                ));
            }
        } else if let (Some(ack), Return::Value(_) | Return::Result) = (ack_sender, &ret) {
            return Err(syn::Error::new_spanned(
                ack,
                "the macro acknowledges with the returned value: remove the `AckSender` \
                 parameter or return `()`",
            ));
        }

        Ok(Self {
            args,
            item,
            params,
            ret,
        })
    }

    fn generate(&self) -> TokenStream {
        let ItemFn {
            attrs,
            vis,
            sig,
            block,
        } = self.item;
        let outer_attrs = attrs.iter().filter(|a| matches!(a.style, AttrStyle::Outer));
        let inner_attrs = attrs
            .iter()
            .filter(|a| !matches!(a.style, AttrStyle::Outer));
        let syn::Signature {
            constness,
            asyncness,
            unsafety,
            abi,
            fn_token,
            ident,
            generics,
            paren_token,
            ..
        } = sig;
        let where_clause = &generics.where_clause;
        let connect = self.args.connect.is_some();

        let ctx_type = if connect {
            quote!(::session_runtime::__private::ConnectContext)
        } else {
            quote!(::session_runtime::__private::EventContext)
        };
        let (session_type, method) = match self.args.mode {
            Mode::Autosave => (quote!(::session_runtime::Session), quote!(autosave)),
            Mode::Readonly => (quote!(::session_runtime::ReadOnlySession), quote!(readonly)),
        };

        let mut outer_params = vec![quote!(__with_session_ctx: #ctx_type)];
        let mut unwraps = Vec::new();
        let mut bindings = Vec::new();
        for (index, param) in self.params.iter().enumerate() {
            match param {
                Param::Extractor(input) => outer_params.push(input.to_token_stream()),
                Param::Payload {
                    pat,
                    ty,
                    data_path,
                    args,
                } => {
                    let arg = format_ident!("__with_session_arg{}", index);
                    outer_params.push(quote_spanned! {ty.span()=>
                        #arg: ::session_runtime::__private::TryData<#args>
                    });
                    unwraps.push(quote! {
                        let #arg = match #arg {
                            ::session_runtime::__private::TryData(::core::result::Result::Ok(value)) => value,
                            ::session_runtime::__private::TryData(::core::result::Result::Err(err)) => {
                                __with_session_ctx.reject(err);
                                return;
                            }
                        };
                    });
                    bindings.push(quote! { let #pat: #ty = #data_path(#arg); });
                }
                Param::Session { pat, ty, kind } => {
                    bindings.push(match kind {
                        SessionKind::Data => {
                            let key = self.args.key.as_ref().expect("validated: `key` is set");
                            quote_spanned! {ty.span()=>
                                let #pat: #ty = match ::session_runtime::__private::bind(&__with_session_session, #key) {
                                    ::core::result::Result::Ok(data) => data,
                                    ::core::result::Result::Err(outcome) => return outcome,
                                };
                            }
                        }
                        _ => quote! { let #pat: #ty = __with_session_session; },
                    });
                }
            }
        }

        let (ret_type, ret_span) = match &sig.output {
            ReturnType::Type(_, ty) => (erase_impl_trait(ty), ty.span()),
            ReturnType::Default => (syn::parse_quote!(()), ident.span()),
        };
        // Fixes the inner block's type before its body is checked, so that a mismatch or a `?`
        // is reported in the user's code against the declared return type.
        let fake_return_edge = quote_spanned! {ret_span=>
            #[allow(
                unknown_lints,
                unreachable_code,
                clippy::diverging_sub_expression,
                clippy::empty_loop,
                clippy::let_unit_value,
                clippy::let_with_type_underscore,
                clippy::needless_return,
                clippy::unreachable
            )]
            if false {
                let __with_session_fake_return: #ret_type = loop {};
                return __with_session_fake_return;
            }
        };
        let outcome = match (connect, &self.ret) {
            (true, _) => call_spanned_on(&sig.output, "connect_result"),
            (false, Return::Unit) => quote! {
                ::session_runtime::__private::unit(__with_session_ret)
            },
            (false, Return::Value(_)) => call_spanned_on(&sig.output, "value"),
            (false, Return::Result) => call_spanned_on(&sig.output, "result"),
        };
        let require = match &self.args.require {
            Some(key) => quote!(::core::option::Option::Some(#key)),
            None => quote!(::core::option::Option::None),
        };
        let output = if connect {
            quote!(-> ::core::result::Result<(), ::session_runtime::__private::ConnectRefusal>)
        } else {
            TokenStream::new()
        };

        let mut tokens = quote! {
            #(#outer_attrs)*
            #vis #constness #asyncness #unsafety #abi #fn_token #ident #generics
        };
        paren_token.surround(&mut tokens, |tokens| {
            tokens.extend(quote!(#(#outer_params),*));
        });
        tokens.extend(quote! {
            #output #where_clause {
                #(#inner_attrs)*
                #(#unwraps)*
                __with_session_ctx.#method(
                    #require,
                    async move |__with_session_session: #session_type| {
                        #(#bindings)*
                        #[allow(clippy::let_unit_value)]
                        let __with_session_ret: #ret_type = async move {
                            #fake_return_edge
                            #block
                        }
                        .await;
                        #outcome
                    },
                )
                .await
            }
        });
        tokens
    }
}

/// `::session_runtime::__private::<function>(__with_session_ret)`, spanned on the return type
/// so that a failed bound of `function` is reported there, in the user's signature.
fn call_spanned_on(output: &ReturnType, function: &str) -> TokenStream {
    let span = match output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => Span::call_site(),
    };
    let function = Ident::new(function, span);
    quote_spanned!(span=> ::session_runtime::__private::#function(__with_session_ret))
}

/// `impl Trait` cannot be written in a `let`: let inference fill it in.
fn erase_impl_trait(ty: &Type) -> Type {
    struct Eraser;
    impl VisitMut for Eraser {
        fn visit_type_mut(&mut self, ty: &mut Type) {
            if let Type::ImplTrait(impl_trait) = ty {
                *ty = Type::Infer(syn::TypeInfer {
                    underscore_token: syn::Token![_](impl_trait.impl_token.span),
                });
            } else {
                syn::visit_mut::visit_type_mut(self, ty);
            }
        }
    }
    let mut ty = ty.clone();
    Eraser.visit_type_mut(&mut ty);
    ty
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(args: &str, item: &str) -> String {
        with_session(args.parse().unwrap(), item.parse().unwrap()).to_string()
    }

    fn compile_errors(tokens: &str) -> usize {
        tokens.matches("compile_error").count()
    }

    #[test]
    fn an_error_keeps_the_item_and_adds_one_compile_error() {
        let out = expand_str("autosave, readonly", "async fn incr(session: Session) {}");
        assert_eq!(compile_errors(&out), 1);
        assert!(
            out.starts_with("async fn incr (session : Session) { }"),
            "{out}"
        );
    }

    #[test]
    fn the_session_parameter_leaves_the_signature() {
        let out = expand_str(
            "autosave",
            "pub async fn incr<A: Adapter>(socket: SocketRef<A>, session: Session) where A: Clone {}",
        );
        assert_eq!(compile_errors(&out), 0, "{out}");
        assert!(out.contains(
            "pub async fn incr < A : Adapter > (__with_session_ctx : :: session_runtime :: __private :: EventContext , socket : SocketRef < A >) where A : Clone"
        ), "{out}");
        assert!(
            out.contains("let session : Session = __with_session_session ;"),
            "{out}"
        );
        assert!(out.contains(":: session_runtime :: __private :: unit (__with_session_ret)"));
    }

    #[test]
    fn data_is_taken_as_try_data_and_rebuilt_with_the_users_path() {
        let out = expand_str(
            "readonly",
            "async fn f(session: ReadOnlySession, Data(p): extract::Data<Vec<u8>>) {}",
        );
        assert!(
            out.contains(
                "__with_session_arg1 : :: session_runtime :: __private :: TryData < Vec < u8 > >"
            ),
            "{out}"
        );
        assert!(out.contains(
            "let Data (p) : extract :: Data < Vec < u8 > > = extract :: Data (__with_session_arg1) ;"
        ), "{out}");
        assert!(out.contains("__with_session_ctx . reject (err) ;"), "{out}");
    }

    #[test]
    fn results_are_recognised_by_name_and_impl_trait_is_inferred() {
        let out = expand_str(
            "autosave",
            "async fn f(session: Session) -> io::Result<impl Serialize> { todo!() }",
        );
        assert!(
            out.contains("let __with_session_ret : io :: Result < _ > ="),
            "{out}"
        );
        assert!(out.contains(":: session_runtime :: __private :: result (__with_session_ret)"));

        let out = expand_str("autosave", "async fn f(session: Session) -> u8 { 1 }");
        assert!(out.contains(":: session_runtime :: __private :: value (__with_session_ret)"));
    }

    #[test]
    fn require_and_key_reach_the_runtime() {
        let out = expand_str(
            r#"autosave, require = "user", key = "cart""#,
            "async fn f(mut cart: SessionData<Cart>) -> usize { 0 }",
        );
        assert!(
            out.contains(r#"autosave (:: core :: option :: Option :: Some ("user") ,"#),
            "{out}"
        );
        assert!(out.contains(
            r#"let mut cart : SessionData < Cart > = match :: session_runtime :: __private :: bind (& __with_session_session , "cart")"#
        ), "{out}");
    }

    #[test]
    fn connect_returns_what_socketioxide_middleware_returns() {
        let out = expand_str(
            "readonly, connect",
            "async fn guard(session: ReadOnlySession) -> Result<(), String> { Ok(()) }",
        );
        assert!(
            out.contains("__with_session_ctx : :: session_runtime :: __private :: ConnectContext"),
            "{out}"
        );
        assert!(out.contains(
            "-> :: core :: result :: Result < () , :: session_runtime :: __private :: ConnectRefusal >"
        ), "{out}");
        assert!(
            out.contains(":: session_runtime :: __private :: connect_result (__with_session_ret)")
        );
    }
}
