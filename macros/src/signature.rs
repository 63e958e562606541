//! Checks on the function's signature, and the two parts of it the expansion needs: the
//! connection parameter and the return type.

use syn::ext::IdentExt;
use syn::{Error, FnArg, Pat, PatType, Result, ReturnType, Signature, Type};

/// A signature `#[db_txn]` can rewrite.
pub(crate) struct Checked<'a> {
    /// Position of the connection parameter in `sig.inputs`.
    pub conn_index: usize,
    /// The connection parameter, `pat: &mut C`.
    pub conn: &'a PatType,
    /// `C`.
    pub conn_ty: &'a Type,
    /// The declared return type: `Result<T, E>` or an alias.
    pub output: &'a Type,
    /// An `async fn`: its connection is a diesel-async one.
    pub is_async: bool,
}

pub(crate) fn check(sig: &Signature) -> Result<Checked<'_>> {
    let constness = sig.constness.as_ref().map(|constness| {
        let msg = "#[db_txn] functions cannot be `const`: they check out a connection at run time";
        Error::new_spanned(constness, msg)
    });
    let variadic = sig.variadic.as_ref().map(|variadic| {
        Error::new_spanned(variadic, "#[db_txn] does not support variadic functions")
    });
    let conn = connection(sig);
    let output = output(sig);
    let errors = [
        constness,
        variadic,
        conn.as_ref().err().cloned(),
        output.as_ref().err().cloned(),
    ];
    if let Some(error) = errors.into_iter().flatten().reduce(crate::combine) {
        return Err(error);
    }
    let (conn_index, conn, conn_ty) = conn?;
    Ok(Checked {
        conn_index,
        conn,
        conn_ty,
        output: output?,
        is_async: sig.asyncness.is_some(),
    })
}

/// The first parameter after any receiver, `pat: &mut C`, with its index and `C`.
fn connection(sig: &Signature) -> Result<(usize, &PatType, &Type)> {
    let mut params = sig
        .inputs
        .iter()
        .enumerate()
        .filter_map(|(i, arg)| match arg {
            FnArg::Typed(arg) => Some((i, arg)),
            FnArg::Receiver(_) => None,
        });
    let after_self = if sig.receiver().is_some() {
        " after `self`"
    } else {
        ""
    };
    let Some((index, arg)) = params.next() else {
        let msg = format!(
            "#[db_txn] functions take the connection as their first parameter{after_self}: \
             `conn: &mut C`, where `C` is a diesel connection type"
        );
        return Err(Error::new(sig.paren_token.span.join(), msg));
    };
    if let Some(conn) = misplaced_connection(arg, params) {
        let before = match &*arg.pat {
            Pat::Ident(pat) => format!("`{}`", pat.ident),
            _ => "the other parameters".to_owned(),
        };
        let msg = format!(
            "the connection must be the first parameter{after_self}: move it before {before}"
        );
        return Err(Error::new_spanned(conn, msg));
    }
    let ty = peel(&arg.ty);
    // `conn: impl Connection` gets the message about `impl Trait`, not the one about `&mut`.
    if let Some(error) = opaque_conn_type(ty) {
        return Err(error);
    }
    match mut_referent(ty) {
        Some(conn_ty) => match opaque_conn_type(conn_ty) {
            Some(error) => Err(error),
            None => Ok((index, arg, conn_ty)),
        },
        None => {
            let msg = "the connection parameter must be a mutable reference, `&mut C`, \
                       where `C` is a diesel connection type";
            Err(Error::new_spanned(&arg.ty, msg))
        }
    }
}

/// A later parameter that is the connection when the first one cannot be, as far as the syntax
/// tells: `fn f(id: i32, conn: &mut PgConnection)`. Only a first parameter that is no `&mut` (an
/// error anyway) is looked past, so that this guess never rejects a signature that compiles.
fn misplaced_connection<'a>(
    first: &PatType,
    rest: impl Iterator<Item = (usize, &'a PatType)>,
) -> Option<&'a PatType> {
    if mut_referent(peel(&first.ty)).is_some() || looks_like_connection(first) {
        return None;
    }
    rest.map(|(_, arg)| arg)
        .find(|arg| mut_referent(peel(&arg.ty)).is_some())
}

/// Named like a connection, which then only lacks its `&mut`: `conn`, `connection`, or a type
/// whose name ends in `Connection` or `Conn` (`&PgConnection`, `SqliteConnection`, `DbConn`).
fn looks_like_connection(arg: &PatType) -> bool {
    let named = match &*arg.pat {
        Pat::Ident(pat) => {
            let name = pat.ident.unraw().to_string();
            name.trim_start_matches('_').starts_with("conn")
        }
        _ => false,
    };
    let mut ty = peel(&arg.ty);
    while let Type::Reference(reference) = ty {
        ty = peel(&reference.elem);
    }
    let typed = match ty {
        Type::Path(path) => path.path.segments.last().is_some_and(|last| {
            let name = last.ident.to_string();
            name.ends_with("Connection") || name.ends_with("Conn")
        }),
        _ => false,
    };
    named || typed
}

/// `C` in `&mut C`.
fn mut_referent(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Reference(reference) if reference.mutability.is_some() => Some(&reference.elem),
        _ => None,
    }
}

/// `C` must be a type that can be named in a turbofish.
fn opaque_conn_type(ty: &Type) -> Option<Error> {
    let kind = match peel(ty) {
        Type::ImplTrait(_) => "impl Trait",
        Type::TraitObject(_) => "dyn Trait",
        _ => return None,
    };
    let msg = format!(
        "the connection type cannot be `{kind}`: name a concrete connection type \
         or a generic parameter of the function, e.g. `fn f<C: db_txn::TxnConnection>(conn: &mut C)`"
    );
    Some(Error::new_spanned(ty, msg))
}

/// The declared return type, which must look like a `Result`.
fn output(sig: &Signature) -> Result<&Type> {
    let msg = "#[db_txn] functions must return a `Result` (or an alias whose name ends in \
               `Result`): the transaction commits on `Ok` and rolls back on `Err`";
    match &sig.output {
        ReturnType::Type(_, ty) if is_result(ty) => Ok(ty),
        ReturnType::Type(_, ty) => Err(Error::new_spanned(ty, msg)),
        ReturnType::Default => Err(Error::new_spanned(&sig.ident, msg)),
    }
}

/// A path whose last segment ends in `Result`: `Result`, `QueryResult`, `anyhow::Result`, ...
fn is_result(ty: &Type) -> bool {
    match peel(ty) {
        Type::Path(path) => (path.path.segments.last())
            .is_some_and(|last| last.ident.to_string().ends_with("Result")),
        _ => false,
    }
}

/// Types forwarded through `macro_rules!` come wrapped in invisible groups.
fn peel(ty: &Type) -> &Type {
    match ty {
        Type::Group(group) => peel(&group.elem),
        Type::Paren(paren) => peel(&paren.elem),
        _ => ty,
    }
}

#[cfg(test)]
mod tests;
