//! The attribute arguments: `#[db_txn(pool = EXPR, retry = N, isolation = serializable, ...)]`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ext::IdentExt;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Error, Expr, ExprLit, Lit, Meta, Path, Result, Token};

/// Every option, in the order the "unknown option" error lists them.
const KEYS: [(&str, Key); 9] = [
    ("pool", Key::Pool),
    ("retry", Key::Retry),
    ("retry_conflicts", Key::RetryConflicts),
    ("isolation", Key::Isolation),
    ("read_only", Key::ReadOnly),
    ("requires_new", Key::RequiresNew),
    ("timeout", Key::Timeout),
    ("resolve_commit", Key::ResolveCommit),
    ("crate", Key::Crate),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Pool,
    Retry,
    RetryConflicts,
    Isolation,
    ReadOnly,
    RequiresNew,
    Timeout,
    ResolveCommit,
    Crate,
}

#[derive(Default)]
pub(crate) struct Options {
    pub pool: Option<Expr>,
    pub retry: Option<u32>,
    pub retry_conflicts: Option<u32>,
    pub isolation: Option<Isolation>,
    pub read_only: bool,
    pub requires_new: bool,
    pub timeout_ms: Option<u64>,
    /// `resolve_commit [= true|false]`; `None`: the pool's default.
    pub resolve_commit: Option<bool>,
    pub krate: Option<Path>,
    /// `retry` or `retry_conflicts` was given a bad value: the intent is unknown, so the
    /// expansion next to the error takes the body as run once, which accepts any body, rather
    /// than adding a second error about a body that moves its arguments.
    pub retry_unknown: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isolation {
    ReadCommitted,
    RepeatableRead,
    Serializable,
}

impl Isolation {
    const ALL: [(&'static str, Isolation); 3] = [
        ("read_committed", Isolation::ReadCommitted),
        ("repeatable_read", Isolation::RepeatableRead),
        ("serializable", Isolation::Serializable),
    ];

    /// The variant name of `db_txn::Isolation`.
    pub fn variant(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "ReadCommitted",
            Isolation::RepeatableRead => "RepeatableRead",
            Isolation::Serializable => "Serializable",
        }
    }
}

/// The options that are well formed, and the errors of all the others (combined). The
/// expansion next to the errors uses these options, the defaults standing in for the bad ones, so
/// that callers of the function see it without its connection parameter (tokio-macros does the
/// same).
pub(crate) fn parse(args: TokenStream) -> (Options, Option<Error>) {
    let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args) {
        Ok(metas) => metas,
        Err(error) => return (Options::default(), Some(error)),
    };
    let mut options = Options::default();
    let mut seen = Vec::new();
    let errors = metas
        .iter()
        .filter_map(|meta| options.set(meta, &mut seen).err())
        .collect::<Vec<_>>();
    let conflict = options.conflict(&metas);
    let errors = errors.into_iter().chain(conflict).reduce(crate::combine);
    (options, errors)
}

impl Options {
    /// No option allows a second run, so the body may be an `FnOnce` that moves its captures.
    pub fn runs_once(&self) -> bool {
        self.retry_unknown || (self.retry == Some(0) && self.retry_conflicts.unwrap_or(0) == 0)
    }

    /// `resolve_commit` with `read_only`: reported at `resolve_commit`, which is then dropped.
    fn conflict(&mut self, metas: &Punctuated<Meta, Token![,]>) -> Option<Error> {
        if !(self.read_only && self.resolve_commit == Some(true)) {
            return None;
        }
        self.resolve_commit = None;
        let meta = metas
            .iter()
            .find(|m| matches!(key(m.path()), Ok((_, Key::ResolveCommit))))?;
        let msg = "`resolve_commit` does nothing with `read_only`: a read-only transaction keeps \
                   its result when its COMMIT is lost; remove `resolve_commit`";
        Some(Error::new_spanned(meta, msg))
    }

    fn set(&mut self, meta: &Meta, seen: &mut Vec<Key>) -> Result<()> {
        let (name, key) = key(meta.path())?;
        if seen.contains(&key) {
            let msg = format!("`{name}` is given more than once");
            return Err(Error::new_spanned(meta.path(), msg));
        }
        seen.push(key);
        match key {
            Key::Pool => self.pool = Some(value(meta, name)?.clone()),
            Key::Retry | Key::RetryConflicts => {
                let n = value(meta, name).and_then(|value| u32_literal(value, name));
                let n = n.inspect_err(|_| self.retry_unknown = true)?;
                match key {
                    Key::Retry => self.retry = Some(n),
                    _ => self.retry_conflicts = Some(n),
                }
            }
            Key::Isolation => self.isolation = Some(isolation(value(meta, name)?)?),
            Key::ReadOnly => self.read_only = flag(meta, name)?,
            Key::RequiresNew => self.requires_new = flag(meta, name)?,
            Key::Timeout => self.timeout_ms = Some(timeout(value(meta, name)?)?),
            Key::ResolveCommit => self.resolve_commit = Some(switch(meta, name)?),
            Key::Crate => self.krate = Some(crate_path(value(meta, name)?)?),
        }
        Ok(())
    }
}

/// The option named by `path`, with its name.
fn key(path: &Path) -> Result<(&'static str, Key)> {
    let name = path.get_ident().map(|ident| ident.unraw().to_string());
    match KEYS.iter().find(|(key, _)| Some(*key) == name.as_deref()) {
        Some(&found) => Ok(found),
        None => {
            let valid = KEYS
                .iter()
                .map(|(k, _)| format!("`{k}`"))
                .collect::<Vec<_>>();
            let msg = format!(
                "unknown option `{}`; expected one of {}",
                quote!(#path).to_string().replace(' ', ""),
                valid.join(", "),
            );
            Err(Error::new_spanned(path, msg))
        }
    }
}

/// How the option is written, for the error messages.
fn example(key: &str) -> &'static str {
    match key {
        "pool" => "pool = self.pool",
        "retry" => "retry = 2",
        "retry_conflicts" => "retry_conflicts = 3",
        "isolation" => "isolation = serializable",
        "timeout" => "timeout = \"5s\"",
        "crate" => "crate = \"my_db\"",
        _ => "",
    }
}

/// The value of `key = value`.
fn value<'a>(meta: &'a Meta, key: &str) -> Result<&'a Expr> {
    match meta {
        Meta::NameValue(nv) => Ok(peel(&nv.value)),
        Meta::Path(path) => {
            let msg = format!("`{key}` needs a value, e.g. `{}`", example(key));
            Err(Error::new_spanned(path, msg))
        }
        Meta::List(list) => {
            let msg = format!("expected `{}`", example(key));
            Err(Error::new_spanned(list, msg))
        }
    }
}

/// A bare key such as `read_only`.
fn flag(meta: &Meta, key: &str) -> Result<bool> {
    match meta {
        Meta::Path(_) => Ok(true),
        Meta::NameValue(nv) => {
            let (eq, value) = (&nv.eq_token, &nv.value);
            let msg = format!("`{key}` takes no value; write `{key}` alone");
            Err(Error::new_spanned(quote!(#eq #value), msg))
        }
        Meta::List(list) => {
            let msg = format!("`{key}` takes no arguments; write `{key}` alone");
            Err(Error::new(list.delimiter.span().join(), msg))
        }
    }
}

/// A key alone (`true`) or with `= true` / `= false`.
fn switch(meta: &Meta, key: &str) -> Result<bool> {
    let usage =
        || format!("`{key}` takes `true` or `false`, or no value for `true`, e.g. `{key} = false`");
    match meta {
        Meta::Path(_) => Ok(true),
        Meta::NameValue(nv) => match peel(&nv.value) {
            Expr::Lit(ExprLit {
                lit: Lit::Bool(b), ..
            }) => Ok(b.value),
            other => Err(Error::new_spanned(other, usage())),
        },
        Meta::List(list) => Err(Error::new(list.delimiter.span().join(), usage())),
    }
}

/// Values forwarded through `macro_rules!` come wrapped in invisible groups.
fn peel(expr: &Expr) -> &Expr {
    match expr {
        Expr::Group(group) => peel(&group.expr),
        _ => expr,
    }
}

fn u32_literal(expr: &Expr, key: &str) -> Result<u32> {
    let msg = || {
        format!(
            "`{key}` must be an integer literal that fits in a u32, e.g. `{}`",
            example(key)
        )
    };
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) if matches!(int.suffix(), "" | "u32") => int
            .base10_parse::<u32>()
            .map_err(|_| Error::new(int.span(), msg())),
        _ => Err(Error::new_spanned(expr, msg())),
    }
}

fn isolation(expr: &Expr) -> Result<Isolation> {
    let valid = "expected one of `read_committed`, `repeatable_read`, `serializable`";
    let Expr::Path(path) = expr else {
        let msg = format!("`isolation` takes an isolation level: {valid}");
        return Err(Error::new_spanned(expr, msg));
    };
    let name = path.path.get_ident().map(|ident| ident.to_string());
    match Isolation::ALL
        .iter()
        .find(|(n, _)| Some(*n) == name.as_deref())
    {
        Some((_, level)) => Ok(*level),
        None => {
            let written = quote!(#path).to_string().replace(' ', "");
            let msg = format!("unknown isolation level `{written}`; {valid}");
            Err(Error::new_spanned(path, msg))
        }
    }
}

fn timeout(expr: &Expr) -> Result<u64> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => crate::duration::parse_ms(&s.value()).map_err(|msg| Error::new(s.span(), msg)),
        _ => {
            let msg = "`timeout` must be a string literal such as \"500ms\", \"5s\" or \"2m\"";
            Err(Error::new_spanned(expr, msg))
        }
    }
}

/// `crate = "my_db"`: where generated code finds the runtime when the dependency is renamed.
fn crate_path(expr: &Expr) -> Result<Path> {
    let usage = "`crate` takes the path of the db_txn crate as a string, e.g. `crate = \"my_db\"`";
    let Expr::Lit(ExprLit {
        lit: Lit::Str(s), ..
    }) = expr
    else {
        return Err(Error::new_spanned(expr, usage));
    };
    s.parse_with(Path::parse_mod_style).map_err(|_| {
        let msg = format!("\"{}\" is not a path: {usage}", s.value());
        Error::new(s.span(), msg)
    })
}

#[cfg(test)]
mod tests;
