//! Placeholder until the macro lands.
use proc_macro::TokenStream;

/// See `session_runtime::with_session`.
#[proc_macro_attribute]
pub fn with_session(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}
