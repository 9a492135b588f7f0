//! The procedural macro of `session-runtime`: `#[with_session]`. Depend on `session-runtime`,
//! which re-exports it, rather than on this crate.
//!
//! This crate only parses and generates; what the generated code calls lives in
//! `session_runtime::__private`.

mod attr;
mod expand;

use proc_macro::TokenStream;

/// Gives a socketioxide event handler a fresh, locked, transactional session.
///
/// (Documented with runnable examples in `session_runtime::with_session`.)
#[proc_macro_attribute]
pub fn with_session(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::with_session(args.into(), item.into()).into()
}
