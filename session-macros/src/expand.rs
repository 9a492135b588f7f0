//! Generation: the wrapper socketioxide calls, from a validated [`Handler`]; and, when the
//! attribute or the item is wrong, the one error plus something that keeps the rest of the
//! crate compiling.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::{spanned::Spanned, visit_mut::VisitMut, AttrStyle, ItemFn, ReturnType, Type, Visibility};

use crate::{
    ast::{self, ItemError},
    attr::{Args, Mode},
    valid::{Handler, Param, Return, SessionKind},
};

/// The whole attribute: parse, validate, generate. It always expands to something, so that on
/// error the rest of the crate (and the IDE) keeps working and only the one error shows.
pub(crate) fn with_session(args: TokenStream, item: TokenStream) -> TokenStream {
    let item_fn = match ast::parse_item(item.clone()) {
        Ok(item_fn) => item_fn,
        Err(ItemError {
            error,
            stand_in: Some((vis, ident)),
        }) => return with_error(stand_in(&vis, &ident, false), error),
        // Not a function: the item stays as written; registering it would be a second mistake.
        Err(ItemError { error, .. }) => return with_error(item, error),
    };
    let args = match syn::parse2::<Args>(args) {
        Ok(args) => args,
        Err(error) => {
            // The options are wrong, not the function: wrap it as its session type implies, so
            // that registering it compiles and its body is still checked.
            let fallback = Args::fallback(fallback_mode(&item_fn));
            let wrapper = match Handler::validate(&fallback, &item_fn) {
                Ok(handler) => handler.generate(),
                Err(_) => stand_in_for(&item_fn, false),
            };
            return with_error(wrapper, error);
        }
    };
    match Handler::validate(&args, &item_fn) {
        Ok(handler) => handler.generate(),
        Err(error) => with_error(stand_in_for(&item_fn, args.connect.is_some()), error),
    }
}

/// [`stand_in`] for a function that breaks a rule, plus the function itself under another
/// name: its body is still checked and what it uses stays used, so the one error is not
/// buried under warnings.
fn stand_in_for(item: &ItemFn, connect: bool) -> TokenStream {
    let cfgs = item
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("cfg") || attr.path().is_ident("cfg_attr"));
    let mut original = item.clone();
    original.attrs.retain(|attr| attr.path().is_ident("cfg"));
    original.sig.ident = format_ident!("__with_session_invalid_{}", item.sig.ident);
    original.vis = Visibility::Inherited;
    let stand_in = stand_in(&item.vis, &item.sig.ident, connect);
    quote! {
        #(#cfgs)*
        #stand_in
        #[allow(dead_code, non_snake_case, clippy::all)]
        #original
    }
}

fn with_error(tokens: TokenStream, error: syn::Error) -> TokenStream {
    let error = error.into_compile_error();
    quote! { #tokens #error }
}

/// `readonly` for a handler that takes `ReadOnlySocketSession`, `autosave` otherwise.
fn fallback_mode(item: &ItemFn) -> Mode {
    let takes_read_only = item.sig.inputs.iter().any(|input| match input {
        syn::FnArg::Typed(typed) => SessionKind::of_type(&typed.ty) == Some(SessionKind::ReadOnly),
        syn::FnArg::Receiver(_) => false,
    });
    if takes_read_only {
        Mode::Readonly
    } else {
        Mode::Autosave
    }
}

/// A handler of the function's name that socketioxide accepts and that never runs (the crate
/// does not compile): where the function itself is wrong, so that registering it adds no
/// second, unrelated error. Its generics are left out, since nothing would infer them.
fn stand_in(vis: &Visibility, ident: &Ident, connect: bool) -> TokenStream {
    if connect {
        quote! {
            #[allow(dead_code, unused_variables)]
            #vis async fn #ident(
                __with_session_ctx: ::session_runtime::__private::ConnectContext,
            ) -> ::core::result::Result<(), ::session_runtime::__private::ConnectRefusal> {
                ::core::unreachable!("`#[with_session]` failed to expand")
            }
        }
    } else {
        quote! {
            #[allow(dead_code, unused_variables)]
            #vis async fn #ident(__with_session_ctx: ::session_runtime::__private::EventContext) {
                ::core::unreachable!("`#[with_session]` failed to expand")
            }
        }
    }
}

impl Handler<'_> {
    /// The wrapper: the user's signature less the session parameter, plus the runtime's
    /// context, around the user's body.
    pub(crate) fn generate(&self) -> TokenStream {
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
            Mode::Autosave => (quote!(::session_runtime::SocketSession), quote!(autosave)),
            Mode::Readonly => (
                quote!(::session_runtime::ReadOnlySocketSession),
                quote!(readonly),
            ),
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
                Param::SocketSession { pat, ty, kind } => {
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
    fn bad_options_still_wrap_the_handler_as_its_session_type_implies() {
        let out = expand_str(
            "autosave, readonly",
            "async fn incr(session: ReadOnlySocketSession) {}",
        );
        assert_eq!(compile_errors(&out), 1, "{out}");
        assert!(
            out.starts_with(
                "async fn incr (__with_session_ctx : :: session_runtime :: __private :: EventContext)"
            ),
            "{out}"
        );
        assert!(out.contains("__with_session_ctx . readonly ("), "{out}");
    }

    #[test]
    fn a_rule_broken_by_the_function_leaves_a_stand_in_of_its_name() {
        let out = expand_str("autosave", "pub fn incr<A>(session: SocketSession) {}");
        assert_eq!(compile_errors(&out), 1, "{out}");
        assert!(
            out.contains("pub async fn incr (__with_session_ctx :"),
            "{out}"
        );
        // The function itself stays, renamed and private, so its body is still checked.
        let original = " fn __with_session_invalid_incr < A > (session : SocketSession)";
        assert!(out.contains(original), "{out}");
        assert!(!out.contains("pub fn __with_session_invalid_incr"), "{out}");
    }

    #[test]
    fn a_broken_body_gets_syns_error_and_a_stand_in() {
        let out = expand_str(
            "autosave",
            "async fn incr(session: SocketSession) { let x = ; }",
        );
        assert_eq!(compile_errors(&out), 1, "{out}");
        assert!(out.contains("expected an expression"), "{out}");
        assert!(out.contains("async fn incr (__with_session_ctx :"), "{out}");
    }

    #[test]
    fn another_item_stays_as_written() {
        let out = expand_str("autosave", "struct Counter ;");
        assert_eq!(compile_errors(&out), 1, "{out}");
        assert!(out.starts_with("struct Counter ;"), "{out}");
    }

    #[test]
    fn the_session_parameter_leaves_the_signature() {
        let out = expand_str(
            "autosave",
            "pub async fn incr<A: Adapter>(socket: SocketRef<A>, session: SocketSession) where A: Clone {}",
        );
        assert_eq!(compile_errors(&out), 0, "{out}");
        assert!(out.contains(
            "pub async fn incr < A : Adapter > (__with_session_ctx : :: session_runtime :: __private :: EventContext , socket : SocketRef < A >) where A : Clone"
        ), "{out}");
        assert!(
            out.contains("let session : SocketSession = __with_session_session ;"),
            "{out}"
        );
        assert!(out.contains(":: session_runtime :: __private :: unit (__with_session_ret)"));
    }

    #[test]
    fn data_is_taken_as_try_data_and_rebuilt_with_the_users_path() {
        let out = expand_str(
            "readonly",
            "async fn f(session: ReadOnlySocketSession, Data(p): extract::Data<Vec<u8>>) {}",
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
            "async fn f(session: SocketSession) -> io::Result<impl Serialize> { todo!() }",
        );
        assert!(
            out.contains("let __with_session_ret : io :: Result < _ > ="),
            "{out}"
        );
        assert!(out.contains(":: session_runtime :: __private :: result (__with_session_ret)"));

        let out = expand_str("autosave", "async fn f(session: SocketSession) -> u8 { 1 }");
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
            "async fn guard(session: ReadOnlySocketSession) -> Result<(), String> { Ok(()) }",
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
