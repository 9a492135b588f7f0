//! Parsing the item the attribute sits on.

use proc_macro2::TokenStream;
use syn::{
    parse::{Parse, ParseStream},
    spanned::Spanned,
    Attribute, Item, ItemFn, Signature, Visibility,
};

/// Why the item is not a function the attribute can wrap, and what can stand in for it.
pub(crate) struct ItemError {
    pub(crate) error: syn::Error,
    /// The function's name and visibility, when the item is a function whose body does not
    /// parse: a stand-in of that name keeps its registration from adding a second error.
    pub(crate) stand_in: Option<(Visibility, syn::Ident)>,
}

/// The item as a function. A function whose body does not parse gets syn's own error, which
/// points at the bad token; any other item is named in the error.
pub(crate) fn parse_item(item: TokenStream) -> Result<ItemFn, ItemError> {
    let fn_error = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(item) => return Ok(item),
        Err(err) => err,
    };
    if let Ok(head) = syn::parse2::<FnHead>(item.clone()) {
        return Err(ItemError {
            error: fn_error,
            stand_in: Some((head.vis, head.sig.ident)),
        });
    }
    let error = match syn::parse2::<Item>(item) {
        Ok(other) => not_a_function(&other),
        // Neither a function nor any other item: syn knows best what is wrong.
        Err(_) => fn_error,
    };
    Err(ItemError {
        error,
        stand_in: None,
    })
}

/// A function's attributes, visibility and signature, followed by a body of any tokens.
struct FnHead {
    vis: Visibility,
    sig: Signature,
}

impl Parse for FnHead {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        let sig = input.parse()?;
        let _body: proc_macro2::Group = input.parse()?;
        Ok(Self { vis, sig })
    }
}

fn not_a_function(item: &Item) -> syn::Error {
    let (span, what) = match item {
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
    syn::Error::new(
        span,
        format!("`#[with_session]` goes on an `async fn` event handler, not on {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(item: &str) -> ItemError {
        match parse_item(item.parse().unwrap()) {
            Ok(_) => panic!("`{item}` parsed"),
            Err(err) => err,
        }
    }

    #[test]
    fn a_broken_body_keeps_syns_own_error_and_a_stand_in() {
        let err = error_of("pub async fn incr(session: SocketSession) { let x = ; }");
        assert_eq!(err.error.to_string(), "expected an expression");
        let (vis, ident) = err.stand_in.expect("a stand-in for a function");
        assert!(matches!(vis, Visibility::Public(_)));
        assert_eq!(ident, "incr");
    }

    #[test]
    fn other_items_are_named() {
        let err = error_of("struct Counter;");
        assert_eq!(
            err.error.to_string(),
            "`#[with_session]` goes on an `async fn` event handler, not on a struct"
        );
        assert!(err.stand_in.is_none());
        assert!(error_of("impl Counter {}")
            .error
            .to_string()
            .ends_with("an impl block"));
    }
}
