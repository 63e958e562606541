use super::*;
use quote::ToTokens;

fn parse(tokens: proc_macro2::TokenStream) -> Result<Options> {
    match super::parse(tokens) {
        (options, None) => Ok(options),
        (_, Some(error)) => Err(error),
    }
}

fn error(tokens: proc_macro2::TokenStream) -> String {
    match parse(tokens) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e
            .into_iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

#[test]
fn empty() {
    let options = parse(quote!()).unwrap();
    assert!(options.pool.is_none() && options.retry.is_none() && options.krate.is_none());
    assert!(!options.read_only && !options.requires_new && !options.runs_once());
}

#[test]
fn all_options() {
    let options = parse(quote!(
        pool = self.pool,
        retry = 3,
        retry_conflicts = 2u32,
        isolation = repeatable_read,
        read_only,
        requires_new,
        timeout = "2m",
        resolve_commit = false,
        crate = "::my::db",
    ))
    .unwrap();
    let pool = options.pool.unwrap().to_token_stream().to_string();
    assert_eq!(pool, "self . pool");
    assert_eq!(options.retry, Some(3));
    assert_eq!(options.retry_conflicts, Some(2));
    assert_eq!(options.isolation, Some(Isolation::RepeatableRead));
    assert!(options.read_only && options.requires_new);
    assert_eq!(options.timeout_ms, Some(120_000));
    assert_eq!(options.resolve_commit, Some(false));
    let krate = options.krate.unwrap().to_token_stream().to_string();
    assert_eq!(krate, ":: my :: db");
}

#[test]
fn runs_once() {
    assert!(parse(quote!(retry = 0)).unwrap().runs_once());
    assert!(parse(quote!(retry = 0, retry_conflicts = 0))
        .unwrap()
        .runs_once());
    assert!(!parse(quote!(retry = 0, retry_conflicts = 1))
        .unwrap()
        .runs_once());
    assert!(!parse(quote!(retry = 1)).unwrap().runs_once());
    assert!(!parse(quote!(retry_conflicts = 0)).unwrap().runs_once());
}

#[test]
fn crate_keyword_paths() {
    let krate = parse(quote!(crate = "crate::db")).unwrap().krate.unwrap();
    assert_eq!(krate.to_token_stream().to_string(), "crate :: db");
}

#[test]
fn unknown_key_lists_the_valid_ones() {
    assert_eq!(
        error(quote!(readonly)),
        "unknown option `readonly`; expected one of `pool`, `retry`, `retry_conflicts`, \
         `isolation`, `read_only`, `requires_new`, `timeout`, `resolve_commit`, `crate`",
    );
    assert!(error(quote!(a::retry = 1)).starts_with("unknown option `a::retry`;"));
}

#[test]
fn repeated_key() {
    assert_eq!(
        error(quote!(retry = 1, retry = 2)),
        "`retry` is given more than once"
    );
    assert_eq!(
        error(quote!(read_only, read_only)),
        "`read_only` is given more than once"
    );
}

#[test]
fn all_errors_are_reported() {
    let errors = error(quote!(retry = "x", isolation = fast, bogus));
    assert_eq!(errors.lines().count(), 3, "{errors}");
}

#[test]
fn the_good_options_survive_the_bad_ones() {
    let (options, error) = super::parse(quote!(
        pool = self.pool,
        isolation = snapshot,
        read_only,
        crate = "my_db",
        bogus,
        timeout = "5h",
    ));
    let errors = error.expect("errors").into_iter().count();
    assert_eq!(errors, 3);
    assert!(!options.runs_once() && options.read_only);
    let pool = options.pool.unwrap().to_token_stream().to_string();
    assert_eq!(pool, "self . pool");
    assert_eq!(
        options.krate.unwrap().to_token_stream().to_string(),
        "my_db"
    );
    assert_eq!((options.isolation, options.timeout_ms), (None, None));
}

#[test]
fn a_bad_retry_runs_the_body_once() {
    // Whatever the user meant, the expansion next to the error accepts a body that moves.
    for args in [
        quote!(retry = "0"),
        quote!(retry),
        quote!(retry = 2, retry_conflicts = x),
    ] {
        let (options, error) = super::parse(args);
        assert!(error.is_some() && options.runs_once());
    }
    // A repeated `retry` keeps the first value, which is well formed.
    let (options, error) = super::parse(quote!(retry = 2, retry = 0));
    assert!(error.is_some() && !options.runs_once());
    assert_eq!(options.retry, Some(2));
}

#[test]
fn a_syntax_error_gives_the_defaults() {
    let (options, error) = super::parse(quote!(retry = 2 read_only));
    assert_eq!(error.unwrap().to_string(), "expected `,`");
    assert!(options.retry.is_none() && !options.read_only);
}

#[test]
fn flags_take_no_value() {
    assert_eq!(
        error(quote!(read_only = true)),
        "`read_only` takes no value; write `read_only` alone"
    );
    assert_eq!(
        error(quote!(requires_new())),
        "`requires_new` takes no arguments; write `requires_new` alone"
    );
}

#[test]
fn values_are_required() {
    assert_eq!(
        error(quote!(retry)),
        "`retry` needs a value, e.g. `retry = 2`"
    );
    assert_eq!(
        error(quote!(pool)),
        "`pool` needs a value, e.g. `pool = self.pool`"
    );
    assert_eq!(error(quote!(timeout("5s"))), "expected `timeout = \"5s\"`");
}

#[test]
fn retry_must_be_a_u32_literal() {
    let msg = "`retry` must be an integer literal that fits in a u32, e.g. `retry = 2`";
    assert_eq!(error(quote!(retry = "2")), msg);
    assert_eq!(error(quote!(retry = -1)), msg);
    assert_eq!(error(quote!(retry = N)), msg);
    assert_eq!(error(quote!(retry = 4294967296)), msg);
    assert_eq!(error(quote!(retry = 2u8)), msg);
    assert_eq!(
        parse(quote!(retry = 4294967295)).unwrap().retry,
        Some(u32::MAX)
    );
    assert!(error(quote!(retry_conflicts = 1.5)).starts_with("`retry_conflicts` must be"));
}

#[test]
fn isolation_levels() {
    let level = |t| parse(t).unwrap().isolation.unwrap();
    assert_eq!(
        level(quote!(isolation = read_committed)),
        Isolation::ReadCommitted
    );
    assert_eq!(
        level(quote!(isolation = serializable)),
        Isolation::Serializable
    );
    assert_eq!(
        error(quote!(isolation = snapshot)),
        "unknown isolation level `snapshot`; expected one of `read_committed`, \
         `repeatable_read`, `serializable`",
    );
    assert!(error(quote!(isolation = "serializable"))
        .starts_with("`isolation` takes an isolation level:"));
}

#[test]
fn timeout_must_be_a_string() {
    assert_eq!(
        error(quote!(timeout = 5)),
        "`timeout` must be a string literal such as \"500ms\", \"5s\" or \"2m\"",
    );
    assert!(error(quote!(timeout = "5h")).starts_with("unknown unit `h` in timeout \"5h\""));
}

#[test]
fn crate_must_be_a_path() {
    let usage = "`crate` takes the path of the db_txn crate as a string, e.g. `crate = \"my_db\"`";
    assert_eq!(
        error(quote!(crate = "not a path")),
        format!("\"not a path\" is not a path: {usage}")
    );
    assert!(error(quote!(crate = "")).starts_with("\"\" is not a path"));
    assert!(error(quote!(crate = "Vec<u8>")).starts_with("\"Vec<u8>\" is not a path"));
    assert_eq!(error(quote!(crate = my_db)), usage);
}

#[test]
fn resolve_commit_alone_or_with_a_bool() {
    let on = |t| parse(t).unwrap().resolve_commit;
    assert_eq!(on(quote!()), None);
    assert_eq!(on(quote!(resolve_commit)), Some(true));
    assert_eq!(on(quote!(resolve_commit = true)), Some(true));
    assert_eq!(on(quote!(resolve_commit = false)), Some(false));
    let usage = "`resolve_commit` takes `true` or `false`, or no value for `true`, e.g. \
                 `resolve_commit = false`";
    assert_eq!(error(quote!(resolve_commit = 1)), usage);
    assert_eq!(error(quote!(resolve_commit = "yes")), usage);
    assert_eq!(error(quote!(resolve_commit(true))), usage);
    assert_eq!(
        error(quote!(resolve_commit, resolve_commit = false)),
        "`resolve_commit` is given more than once"
    );
}

#[test]
fn resolve_commit_with_read_only_is_reported_at_resolve_commit() {
    let msg = "`resolve_commit` does nothing with `read_only`: a read-only transaction keeps its \
               result when its COMMIT is lost; remove `resolve_commit`";
    assert_eq!(error(quote!(read_only, resolve_commit)), msg);
    assert_eq!(error(quote!(resolve_commit = true, read_only)), msg);
    // Turning it off is harmless.
    assert_eq!(
        parse(quote!(read_only, resolve_commit = false))
            .unwrap()
            .resolve_commit,
        Some(false)
    );
    // The expansion next to the error keeps `read_only` and drops the other.
    let (options, error) = super::parse(quote!(read_only, resolve_commit, retry = x));
    assert_eq!(error.expect("errors").into_iter().count(), 2);
    assert!(options.read_only);
    assert_eq!(options.resolve_commit, None);
}
