use quote::quote;

/// The error `check` gives for the signature of `item`.
fn error(item: proc_macro2::TokenStream) -> String {
    let func: syn::ItemFn = syn::parse2(item).expect("a function");
    match super::check(&func.sig) {
        Ok(_) => panic!("expected an error"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn a_connection_after_other_parameters_must_move_first() {
    assert_eq!(
        error(quote!(
            fn f(id: i32, conn: &mut SqliteConnection) -> QueryResult<()> {}
        )),
        "the connection must be the first parameter: move it before `id`",
    );
    assert_eq!(
        error(quote!(
            fn f(&self, (a, b): (i32, i32), c: &mut C) -> QueryResult<()> {}
        )),
        "the connection must be the first parameter after `self`: move it before the other \
         parameters",
    );
}

#[test]
fn a_first_parameter_named_like_a_connection_only_lacks_its_mut() {
    let msg = "the connection parameter must be a mutable reference, `&mut C`, where `C` is a \
               diesel connection type";
    for item in [
        quote!(
            fn f(conn: &C, buf: &mut Vec<u8>) -> QueryResult<()> {}
        ),
        quote!(
            fn f(db: &PgConnection, buf: &mut Vec<u8>) -> QueryResult<()> {}
        ),
        quote!(
            fn f(db: DbConn, buf: &mut Vec<u8>) -> QueryResult<()> {}
        ),
        // Nothing later could be the connection either.
        quote!(
            fn f(id: i32, name: &str) -> QueryResult<()> {}
        ),
    ] {
        assert_eq!(error(item), msg);
    }
}

#[test]
fn a_first_mut_parameter_is_the_connection() {
    // Even with a later parameter that looks more like one: two connections are legal.
    let item = quote!(
        fn f(buf: &mut Vec<u8>, conn: &mut PgConnection) -> QueryResult<()> {}
    );
    let func: syn::ItemFn = syn::parse2(item).unwrap();
    let checked = super::check(&func.sig).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(checked.conn_index, 0);
}
