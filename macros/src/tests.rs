//! Expansion snapshots (`src/snapshots/`), formatted with prettyplease as in diesel_derives.
//! Review changes with `cargo insta review`, or regenerate with `INSTA_UPDATE=always`.

use proc_macro2::TokenStream;
use quote::quote;

fn expand(args: TokenStream, item: TokenStream) -> String {
    let tokens = crate::expand::db_txn(args, item);
    match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        Err(error) => panic!("the expansion does not parse: {error}\n{tokens}"),
    }
}

#[test]
fn free_fn() {
    insta::assert_snapshot!(expand(
        quote!(),
        quote! {
            /// Finds a user.
            #[must_use = "the user"]
            pub fn find_user(conn: &mut SqliteConnection, id: i32) -> QueryResult<User> {
                users::table.find(id).first(conn)
            }
        },
    ));
}

#[test]
fn method_with_pool() {
    insta::assert_snapshot!(expand(
        quote!(pool = self.pool),
        quote! {
            pub(crate) fn count(&self, conn: &mut PgConnection) -> Result<i64, AppError> {
                let n = users::table.count().get_result(conn)?;
                Ok(n)
            }
        },
    ));
}

#[test]
fn generics_lifetimes_and_where_clause() {
    insta::assert_snapshot!(expand(
        quote!(),
        quote! {
            fn load<'a, C, T: Clone>(conn: &'a mut C, name: &'a str, t: T) -> Result<Vec<T>, AppError>
            where
                C: TxnConnection,
                T: Debug,
            {
                let _ = (conn, name);
                Ok(vec![t])
            }
        },
    ));
}

#[test]
fn impl_trait_in_ok() {
    insta::assert_snapshot!(expand(
        quote!(),
        quote! {
            fn ids(conn: &mut PgConnection) -> Result<(impl Iterator<Item = i32>, Box<[impl Debug]>), Error> {
                let ids: Vec<i32> = users::table.select(users::id).load(conn)?;
                Ok((ids.into_iter(), Box::new([1])))
            }
        },
    ));
}

#[test]
fn all_options() {
    insta::assert_snapshot!(expand(
        quote! {
            pool = POOL.get(), retry = 2, retry_conflicts = 3, isolation = serializable,
            read_only, requires_new, timeout = "5s", resolve_commit = false
        },
        quote! {
            fn report(mut conn: &mut MysqlConnection) -> anyhow::Result<Report> {
                build_report(&mut conn)
            }
        },
    ));
}

#[test]
fn resolve_commit() {
    insta::assert_snapshot!(expand(
        quote!(pool = self.pool, resolve_commit),
        quote! {
            fn pay(&self, conn: &mut MysqlConnection, order: OrderId) -> Result<Receipt, AppError> {
                payments::record(conn, order)
            }
        },
    ));
}

#[test]
fn retry_zero_runs_once() {
    insta::assert_snapshot!(expand(
        quote!(retry = 0),
        quote! {
            fn insert(conn: &mut PgConnection, user: NewUser) -> QueryResult<usize> {
                diesel::insert_into(users::table).values(user).execute(conn)
            }
        },
    ));
}

#[test]
fn renamed_crate() {
    insta::assert_snapshot!(expand(
        quote!(crate = "my_db", isolation = read_committed),
        quote! {
            fn touch(_conn: &mut PgConnection) -> Result<(), my_db::Error> {
                Ok(())
            }
        },
    ));
}

#[test]
fn inner_attributes_stay_on_the_fn() {
    insta::assert_snapshot!(expand(
        quote!(),
        quote! {
            unsafe extern "C" fn raw(#[allow(unused)] conn: &mut PgConnection) -> QueryResult<()> {
                #![allow(unused_unsafe)]
                Ok(())
            }
        },
    ));
}

#[test]
fn bad_options_expand_with_the_good_ones() {
    // The function loses its connection parameter anyway, so its callers get no arity error; a
    // bad `retry` expands to `run_once`, so a body that moves an argument gets no second error.
    insta::assert_snapshot!(expand(
        quote!(retry = "2", isolation = snapshot, bogus, read_only),
        quote! {
            pub fn find_user(conn: &mut SqliteConnection, id: i32) -> QueryResult<User> {
                users::table.find(id).first(conn)
            }
        },
    ));
}

#[test]
fn bad_signature_still_emits_the_fn() {
    insta::assert_snapshot!(expand(
        quote!(timeout = "0s"),
        quote! {
            async fn find_user(conn: &SqliteConnection, id: i32) -> User {
                todo!()
            }
        },
    ));
}

#[test]
fn async_fn() {
    insta::assert_snapshot!(expand(
        quote!(retry = 2, read_only),
        quote! {
            /// Finds a user.
            pub async fn find_user(conn: &mut AsyncPgConnection, id: i32) -> QueryResult<User> {
                users::table.find(id).first(conn).await
            }
        },
    ));
}

#[test]
fn async_method_with_pool_runs_once() {
    insta::assert_snapshot!(expand(
        quote!(pool = self.pool, retry = 0),
        quote! {
            pub async fn take(&self, conn: &mut AsyncMysqlConnection, name: String) -> Result<String, AppError> {
                diesel::sql_query("SELECT 1").execute(conn).await?;
                Ok(name)
            }
        },
    ));
}

#[test]
fn not_a_fn_returns_the_item() {
    insta::assert_snapshot!(expand(
        quote!(),
        quote!(
            struct Pool {
                inner: u32,
            }
        )
    ));
}

#[test]
fn body_with_a_syntax_error_is_still_expanded() {
    // The body is pasted as tokens, so rustc reports the syntax error once, in the closure.
    let item = quote!(fn f(conn: &mut PgConnection) -> QueryResult<()> { let x = ; Ok(()) });
    let expanded = crate::expand::db_txn(quote!(), item).to_string();
    assert!(!expanded.contains("compile_error"), "{expanded}");
    assert!(expanded
        .contains("| conn : & mut PgConnection | -> QueryResult < () > { let x = ; Ok (()) }"));
}
