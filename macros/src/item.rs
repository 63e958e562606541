//! The item under the attribute, which must be a function with a body.

use proc_macro2::{Delimiter, Group, TokenStream};
use quote::{quote, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::{braced, token, Attribute, Error, Item, Result, Signature, Token, Visibility};

/// A function whose body is kept as tokens: it is pasted into a closure as written, so a syntax
/// error in it is reported once, by rustc, and does not stop the expansion (as in tokio-macros).
pub(crate) struct ItemFn {
    pub outer_attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub sig: Signature,
    pub inner_attrs: Vec<Attribute>,
    pub brace_token: token::Brace,
    /// The statements of the body, unparsed.
    pub stmts: TokenStream,
}

impl ItemFn {
    /// The body without its inner attributes, in braces that keep the original span.
    pub fn body(&self) -> Group {
        let mut body = Group::new(Delimiter::Brace, self.stmts.clone());
        body.set_span(self.brace_token.span.join());
        body
    }
}

/// Parses the item; anything but a function with a body is an error spanned at the item's head.
pub(crate) fn parse(item: TokenStream) -> Result<ItemFn> {
    syn::parse2::<ItemFn>(item.clone()).map_err(|error| {
        match syn::parse2::<Item>(item).ok().as_ref().and_then(head) {
            Some(head) => Error::new_spanned(head, "#[db_txn] can only be applied to functions"),
            None => error,
        }
    })
}

impl Parse for ItemFn {
    fn parse(input: ParseStream) -> Result<Self> {
        let outer_attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        let sig: Signature = input.parse()?;
        if input.peek(Token![;]) {
            let (fn_token, ident) = (&sig.fn_token, &sig.ident);
            let msg = "#[db_txn] needs a function body; it cannot be applied to a declaration";
            return Err(Error::new_spanned(quote!(#fn_token #ident), msg));
        }
        let content;
        let brace_token = braced!(content in input);
        let inner_attrs = content.call(Attribute::parse_inner)?;
        let stmts = content.parse()?;
        Ok(ItemFn {
            outer_attrs,
            vis,
            sig,
            inner_attrs,
            brace_token,
            stmts,
        })
    }
}

impl ToTokens for ItemFn {
    /// The function as it was written.
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let ItemFn {
            outer_attrs,
            vis,
            sig,
            inner_attrs,
            brace_token,
            stmts,
        } = self;
        tokens.extend(quote!(#(#outer_attrs)* #vis #sig));
        brace_token.surround(tokens, |tokens| {
            tokens.extend(quote!(#(#inner_attrs)* #stmts))
        });
    }
}

/// The keyword and name of a non-function item, where the error goes; `None` for a function
/// (or a declaration, `Item::Verbatim`), whose own parse error says more.
fn head(item: &Item) -> Option<TokenStream> {
    macro_rules! head {
        ($item:ident . $keyword:ident) => {{
            let (keyword, name) = (&$item.$keyword, &$item.ident);
            quote!(#keyword #name)
        }};
    }
    Some(match item {
        Item::Fn(_) | Item::Verbatim(_) => return None,
        Item::Struct(i) => head!(i.struct_token),
        Item::Enum(i) => head!(i.enum_token),
        Item::Union(i) => head!(i.union_token),
        Item::Trait(i) => head!(i.trait_token),
        Item::Mod(i) => head!(i.mod_token),
        Item::Type(i) => head!(i.type_token),
        Item::Const(i) => head!(i.const_token),
        Item::Static(i) => head!(i.static_token),
        Item::Impl(i) => {
            let (keyword, self_ty) = (&i.impl_token, &i.self_ty);
            quote!(#keyword #self_ty)
        }
        _ => item.to_token_stream(),
    })
}
