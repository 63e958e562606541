//! The rewritten function: the connection parameter removed and the body, as a closure taking the
//! connection, handed to `__private::run`.

use proc_macro2::{Delimiter, Group, Ident, Literal, Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{GenericArgument, Path, PathArguments, Type, TypeInfer, TypeParamBound};

use crate::item::{self, ItemFn};
use crate::options::{self, Options};
use crate::signature::{self, Checked};

/// `#[db_txn(args)] item`, on `proc_macro2` streams so that tests can call it.
pub(crate) fn db_txn(args: TokenStream, item: TokenStream) -> TokenStream {
    let func = match item::parse(item.clone()) {
        Ok(func) => func,
        Err(error) => {
            let error = error.to_compile_error();
            return quote!(#error #item);
        }
    };
    let (options, option_errors) = options::parse(args);
    match signature::check(&func.sig) {
        // Bad options alone still give the rewritten function (the defaults standing in for the
        // bad options): emitted as written, its callers would get an arity error each.
        Ok(checked) => {
            let errors = option_errors.map(|e| e.to_compile_error());
            let func = expand(&func, &options, &checked);
            quote!(#errors #func)
        }
        // A signature it cannot rewrite is emitted as written, so the IDE keeps working on the
        // body.
        Err(signature_errors) => {
            let errors = option_errors.into_iter().chain([signature_errors]);
            let errors = errors.reduce(crate::combine).map(|e| e.to_compile_error());
            quote!(#errors #func)
        }
    }
}

fn expand(func: &ItemFn, options: &Options, checked: &Checked) -> TokenStream {
    let ItemFn {
        outer_attrs,
        vis,
        sig,
        inner_attrs,
        ..
    } = func;
    let mut outer_sig = sig.clone();
    outer_sig.inputs = (sig.inputs.iter().enumerate())
        .filter(|(i, _)| *i != checked.conn_index)
        .map(|(_, arg)| arg.clone())
        .collect();
    let call = call(func, options, checked);
    quote! {
        #(#outer_attrs)*
        #vis #outer_sig {
            #(#inner_attrs)*
            #call
        }
    }
}

/// `#krate::__private::run::<C, _, _, _>(target, options, closure)`; on an `async fn`,
/// `#krate::__private::run_async::<C, _, _, _>(target, options, async closure).await`.
fn call(func: &ItemFn, options: &Options, checked: &Checked) -> TokenStream {
    let krate = match &options.krate {
        Some(path) => path.to_token_stream(),
        None => quote!(::db_txn),
    };
    let private = quote!(#krate::__private);
    let target_ty = if checked.is_async {
        quote!(AsyncTarget)
    } else {
        quote!(Target)
    };
    let target = match &options.pool {
        Some(pool) => pool_target(&private, pool, checked),
        // Spanned at `C`, where an unmet bound of `Target<C>` belongs.
        None => respan(
            quote!(#private::#target_ty::Default),
            checked.conn_ty.span(),
        ),
    };
    let options_expr = options_expr(&private, &func.sig.ident, options);
    let closure = closure(func, checked);
    let run = match (checked.is_async, options.runs_once()) {
        (false, false) => "run",
        (false, true) => "run_once",
        (true, false) => "run_async",
        (true, true) => "run_async_once",
    };
    let run = Ident::new(run, Span::call_site());

    let conn_ty = checked.conn_ty;

    // The whole call is spanned at the return type: an unmet `E: From<db_txn::Error>` (E is
    // inferred, so rustc reports it on the call) then points at the user's error type.
    let span = error_type_span(checked.output);
    let krate = respan(krate, span);
    // With the call's span: an unmet bound of the future is reported once there.
    let awaited = checked.is_async.then(|| quote_spanned!(span=> .await));
    let mut args = Group::new(
        Delimiter::Parenthesis,
        quote!(#target, #options_expr, #closure),
    );
    args.set_span(span);
    quote_spanned!(span=> #krate::__private::#run::<#conn_ty, _, _, _> #args #awaited)
}

/// `Target::Explicit(as_pool::<C>(&(pool)))` (`AsyncTarget` and `as_async_pool` on an `async fn`),
/// spanned over the pool expression so that a value of the wrong type is reported there.
fn pool_target(private: &TokenStream, pool: &syn::Expr, checked: &Checked) -> TokenStream {
    let conn_ty = checked.conn_ty;
    let (target, as_pool) = if checked.is_async {
        (quote!(AsyncTarget), quote!(as_async_pool))
    } else {
        (quote!(Target), quote!(as_pool))
    };
    let tokens = pool.to_token_stream();
    let first = pool.span();
    let last = tokens
        .clone()
        .into_iter()
        .last()
        .map_or(first, |t| t.span());
    // rustc spans `&(pool)` from the `&` to the `)`: the first and last tokens of the expression.
    // (Invisible delimiters would keep the span but not the precedence: rust-lang/rust#67062.)
    let mut pool = Group::new(Delimiter::Parenthesis, tokens);
    pool.set_span(last);
    let private = respan(private.clone(), first);
    quote_spanned!(first=> #private::#target::Explicit(#private::#as_pool::<#conn_ty>(&#pool)))
}

/// `|conn: &mut C| -> R { body }`, or `async |conn: &mut C| -> R { body }` on an `async fn`. Not
/// `move`: the body may run again on a retry (an async closure is cloned for each attempt).
fn closure(func: &ItemFn, checked: &Checked) -> TokenStream {
    let attrs = &checked.conn.attrs;
    let pat = &checked.conn.pat;
    let conn_ty = checked.conn_ty;
    let mut output = checked.output.clone();
    erase_impl_trait(&mut output);
    let body = func.body();
    let asyncness = &func.sig.asyncness;
    quote!(#asyncness |#(#attrs)* #pat: &mut #conn_ty| -> #output #body)
}

/// `Options::new("path::to::fn").retry(2)...`, with a call for each option given.
fn options_expr(private: &TokenStream, ident: &Ident, options: &Options) -> TokenStream {
    let name = ident.unraw().to_string();
    let mut expr = quote! {
        #private::Options::new(::core::concat!(::core::module_path!(), "::", #name))
    };
    if let Some(n) = options.retry {
        let n = Literal::u32_unsuffixed(n);
        expr.extend(quote!(.retry(#n)));
    }
    if let Some(n) = options.retry_conflicts {
        let n = Literal::u32_unsuffixed(n);
        expr.extend(quote!(.retry_conflicts(#n)));
    }
    if let Some(level) = options.isolation {
        let level = Ident::new(level.variant(), Span::call_site());
        expr.extend(quote!(.isolation(#private::Isolation::#level)));
    }
    if options.read_only {
        expr.extend(quote!(.read_only()));
    }
    if options.requires_new {
        expr.extend(quote!(.requires_new()));
    }
    if let Some(ms) = options.timeout_ms {
        let ms = Literal::u64_unsuffixed(ms);
        expr.extend(quote!(.timeout_ms(#ms)));
    }
    if let Some(on) = options.resolve_commit {
        let on = syn::LitBool::new(on, Span::call_site());
        expr.extend(quote!(.resolve_commit(#on)));
    }
    expr
}

/// `E` in `Result<T, E>`, else the alias's name (`QueryResult` in `diesel::QueryResult<T>`).
fn error_type_span(output: &Type) -> Span {
    let Type::Path(path) = output else {
        return output.span();
    };
    let Some(last) = path.path.segments.last() else {
        return output.span();
    };
    match &last.arguments {
        PathArguments::AngleBracketed(args) => {
            let mut types = args.args.iter().filter_map(|arg| match arg {
                GenericArgument::Type(ty) => Some(ty),
                _ => None,
            });
            types
                .nth(1)
                .map_or_else(|| last.ident.span(), Spanned::span)
        }
        _ => last.ident.span(),
    }
}

/// Every token at `span`, so that rustc reports an expression made of them there.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            token.set_span(span);
            token
        })
        .collect()
}

/// `Result<impl Iterator<Item = u32>, E>` becomes `Result<_, E>`: a closure cannot name an opaque
/// type, and the function's own signature still pins it.
fn erase_impl_trait(ty: &mut Type) {
    match ty {
        Type::ImplTrait(impl_trait) => {
            let underscore_token = syn::Token![_](impl_trait.impl_token.span);
            *ty = Type::Infer(TypeInfer { underscore_token });
        }
        Type::Array(ty) => erase_impl_trait(&mut ty.elem),
        Type::Group(ty) => erase_impl_trait(&mut ty.elem),
        Type::Paren(ty) => erase_impl_trait(&mut ty.elem),
        Type::Ptr(ty) => erase_impl_trait(&mut ty.elem),
        Type::Reference(ty) => erase_impl_trait(&mut ty.elem),
        Type::Slice(ty) => erase_impl_trait(&mut ty.elem),
        Type::Tuple(ty) => ty.elems.iter_mut().for_each(erase_impl_trait),
        Type::Path(ty) => {
            if let Some(qself) = &mut ty.qself {
                erase_impl_trait(&mut qself.ty);
            }
            erase_in_path(&mut ty.path);
        }
        Type::TraitObject(ty) => {
            for bound in &mut ty.bounds {
                if let TypeParamBound::Trait(bound) = bound {
                    erase_in_path(&mut bound.path);
                }
            }
        }
        _ => {}
    }
}

fn erase_in_path(path: &mut Path) {
    for segment in &mut path.segments {
        if let PathArguments::AngleBracketed(args) = &mut segment.arguments {
            for arg in &mut args.args {
                match arg {
                    GenericArgument::Type(ty) => erase_impl_trait(ty),
                    GenericArgument::AssocType(assoc) => erase_impl_trait(&mut assoc.ty),
                    _ => {}
                }
            }
        }
    }
}
