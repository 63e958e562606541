//! The service of `examples/web_service`: routes, handlers, and the
//! `#[db_txn]` functions they call. `main.rs` serves it;
//! `tests/web_service.rs` drives it while the database server kills
//! its connections and restarts.
//!
//! | route | what |
//! | --- | --- |
//! | `PUT /accounts/{id}` | open an account (idempotent) |
//! | `GET /accounts/{id}` | its balance |
//! | `POST /accounts/{id}/deposit?amount=N` | add `N` |
//! | `POST /transfers?from=A&to=B&amount=N` | move `N` from `A` to `B`; 409 if `A` has less |
//! | `GET /stats` | the pool's counters |
//! | `GET /debug/connections` | the server's ids of the service's open connections, one a line (for the KILL one-liner `main.rs` prints) |
//!
//! Writes take an optional `Idempotency-Key` header: a request sent again
//! with the same key is applied once.
//!
//! The database functions are `async fn`s on diesel-async's
//! `AsyncMysqlConnection`: a handler awaits them on its own task, with no
//! thread hop. A client that hangs up mid-request makes hyper drop the
//! handler's future; the call's transaction is then rolled back (or its
//! statement cancelled and its connection closed), never committed half-way
//! and never left to the next request.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use axum::extract::{Path, Query};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use db_txn::{db_txn, AsyncPool, PoolStats};
use diesel::result::{DatabaseErrorKind, OptionalExtension};
use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncMysqlConnection, RunQueryDsl, SimpleAsyncConnection};

/// Everything a handler can answer with other than success.
#[derive(Debug)]
pub enum AppError {
    /// The pool or the transaction (`db_txn::Error`), or a query of a body.
    Db(db_txn::Error),
    NotFound(i64),
    Overdraft {
        account: i64,
        balance: i64,
        amount: i64,
    },
    BadRequest(String),
    /// The service is misconfigured.
    Internal(String),
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppError::Db(e) => write!(f, "database: {e}"),
            AppError::NotFound(id) => write!(f, "no account {id}"),
            AppError::Overdraft {
                account,
                balance,
                amount,
            } => write!(f, "account {account} has {balance}, cannot send {amount}"),
            AppError::BadRequest(why) | AppError::Internal(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for AppError {}

impl From<db_txn::Error> for AppError {
    fn from(e: db_txn::Error) -> Self {
        AppError::Db(e)
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> Self {
        AppError::Db(db_txn::Error::Query(e))
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = match &self {
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Overdraft { .. } => StatusCode::CONFLICT,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            // No connection within the checkout timeout: the database is down.
            AppError::Db(db_txn::Error::Checkout { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Db(_) | AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(%status, "{self}");
        }
        (status, format!("{self}\n")).into_response()
    }
}

#[derive(QueryableByName, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub balance: i64,
}

impl Account {
    fn json(&self) -> String {
        format!(r#"{{"id":{},"balance":{}}}"#, self.id, self.balance)
    }
}

/// Build the pool for `url`, create the tables, and install the pool as the
/// default of every `#[db_txn]` function on `AsyncMysqlConnection`.
pub async fn setup(url: &str) -> Result<AsyncPool<AsyncMysqlConnection>, AppError> {
    let pool = AsyncPool::<AsyncMysqlConnection>::builder(url)
        .max_size(10)
        .on_connect(|conn| Box::pin(record_connection(conn)))
        // Long enough to ride out a database restart: a request made while
        // the server is down waits for it instead of failing.
        .checkout_timeout(Duration::from_secs(10))
        .build()
        .await?;
    pool.get()
        .await?
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS bank_accounts (
             id BIGINT PRIMARY KEY,
             balance BIGINT NOT NULL
         ) ENGINE = InnoDB;
         CREATE TABLE IF NOT EXISTS bank_ops (
             op_id VARCHAR(64) PRIMARY KEY,
             kind VARCHAR(16) NOT NULL,
             account BIGINT NOT NULL,
             amount BIGINT NOT NULL
         ) ENGINE = InnoDB",
        )
        .await?;
    db_txn::install_async(pool.clone());
    Ok(pool)
}

// The database functions. None takes a connection from its caller and none
// closes, removes or rolls back anything by hand: the attribute checks a
// connection out, commits or rolls back, and gives it back.
//
// `retry = 3`: a restart or a KILL of several connections can take more than
// one of them from under the same request; nothing was committed when the
// body runs again. `retry_conflicts = 3`: InnoDB deadlocks (1213) are run
// again too.

#[db_txn(retry = 3, retry_conflicts = 3)]
async fn open_account(conn: &mut AsyncMysqlConnection, id: i64) -> Result<Account, AppError> {
    diesel::sql_query("INSERT IGNORE INTO bank_accounts (id, balance) VALUES (?, 0)")
        .bind::<BigInt, _>(id)
        .execute(conn)
        .await?;
    balance_of(conn, id).await
}

#[db_txn(retry = 3, retry_conflicts = 3)]
async fn deposit(
    conn: &mut AsyncMysqlConnection,
    op: &str,
    id: i64,
    amount: i64,
) -> Result<Account, AppError> {
    if !record_op(conn, op, "deposit", id, amount).await? {
        return balance_of(conn, id).await; // applied before: answer as then
    }
    let updated = diesel::sql_query("UPDATE bank_accounts SET balance = balance + ? WHERE id = ?")
        .bind::<BigInt, _>(amount)
        .bind::<BigInt, _>(id)
        .execute(conn)
        .await?;
    if updated == 0 {
        return Err(AppError::NotFound(id)); // the op row is rolled back too
    }
    balance_of(conn, id).await
}

#[db_txn(retry = 3, retry_conflicts = 3)]
async fn transfer(
    conn: &mut AsyncMysqlConnection,
    op: &str,
    from: i64,
    to: i64,
    amount: i64,
) -> Result<(Account, Account), AppError> {
    if from == to {
        return Err(AppError::BadRequest(
            "from and to are the same account".into(),
        ));
    }
    if record_op(conn, op, "transfer", from, amount).await? {
        // Both rows locked in id order, so opposite transfers wait for each
        // other instead of deadlocking (`retry_conflicts` covers what is left).
        let locked: Vec<Account> = diesel::sql_query(
            "SELECT id, balance FROM bank_accounts WHERE id IN (?, ?) ORDER BY id FOR UPDATE",
        )
        .bind::<BigInt, _>(from)
        .bind::<BigInt, _>(to)
        .load(conn)
        .await?;
        let find = |id| locked.iter().find(|a| a.id == id).copied();
        let source = find(from).ok_or(AppError::NotFound(from))?;
        find(to).ok_or(AppError::NotFound(to))?;
        if source.balance < amount {
            return Err(AppError::Overdraft {
                account: from,
                balance: source.balance,
                amount,
            });
        }
        for (id, delta) in [(from, -amount), (to, amount)] {
            diesel::sql_query("UPDATE bank_accounts SET balance = balance + ? WHERE id = ?")
                .bind::<BigInt, _>(delta)
                .bind::<BigInt, _>(id)
                .execute(conn)
                .await?;
        }
    }
    Ok((balance_of(conn, from).await?, balance_of(conn, to).await?))
}

#[db_txn(read_only, retry = 3)]
async fn account(conn: &mut AsyncMysqlConnection, id: i64) -> Result<Account, AppError> {
    balance_of(conn, id).await
}

async fn balance_of(conn: &mut AsyncMysqlConnection, id: i64) -> Result<Account, AppError> {
    diesel::sql_query("SELECT id, balance FROM bank_accounts WHERE id = ?")
        .bind::<BigInt, _>(id)
        .get_result(conn)
        .await
        .optional()?
        .ok_or(AppError::NotFound(id))
}

/// Record operation `op` in this transaction; `false` if it was recorded
/// (and so applied) before.
async fn record_op(
    conn: &mut AsyncMysqlConnection,
    op: &str,
    kind: &str,
    account: i64,
    amount: i64,
) -> Result<bool, AppError> {
    let inserted = diesel::sql_query(
        "INSERT INTO bank_ops (op_id, kind, account, amount) VALUES (?, ?, ?, ?)",
    )
    .bind::<Text, _>(op)
    .bind::<Text, _>(kind)
    .bind::<BigInt, _>(account)
    .bind::<BigInt, _>(amount)
    .execute(conn)
    .await;
    match inserted {
        Ok(_) => Ok(true),
        Err(diesel::result::Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Each connection the pool opened, as the server lists it: its id and the
/// client's address (`HOST`, with our port). Ids are unique only within one
/// run of the server, so after a restart an id recorded before may belong to
/// another client; the address tells them apart.
static OWN_CONNECTIONS: Mutex<Vec<Session>> = Mutex::new(Vec::new());

#[derive(QueryableByName, Debug, Clone, PartialEq, Eq)]
struct Session {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    host: String,
}

const SESSIONS_SQL: &str =
    "SELECT CAST(ID AS SIGNED) AS id, HOST AS host FROM information_schema.PROCESSLIST";

/// The pool's `on_connect` hook: remember this connection.
async fn record_connection(conn: &mut AsyncMysqlConnection) -> diesel::QueryResult<()> {
    let session: Session = diesel::sql_query(
        "SELECT CAST(ID AS SIGNED) AS id, HOST AS host FROM information_schema.PROCESSLIST \
         WHERE ID = CONNECTION_ID()",
    )
    .get_result(conn)
    .await?;
    own_connections().push(session);
    Ok(())
}

fn own_connections() -> std::sync::MutexGuard<'static, Vec<Session>> {
    OWN_CONNECTIONS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// The server's ids of this service's connections that are open now.
#[db_txn(read_only, retry = 3)]
pub async fn own_connection_ids(conn: &mut AsyncMysqlConnection) -> Result<Vec<i64>, AppError> {
    let open: Vec<Session> = diesel::sql_query(SESSIONS_SQL).load(conn).await?;
    let mut mine = own_connections();
    // Forget the connections that are gone.
    mine.retain(|s| open.contains(s));
    let mut ids: Vec<i64> = mine.iter().map(|s| s.id).collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Run a call again (up to 3 times) if the connection was lost while its
/// COMMIT was in flight: the one outcome `db_txn` cannot decide, and so
/// leaves to the caller. Safe here because every call is idempotent: a write
/// carries its operation id, which makes another run a no-op if the first
/// one did commit, and a read changes nothing.
async fn idempotent<T, F: Future<Output = Result<T, AppError>>>(
    call: impl Fn() -> F,
) -> Result<T, AppError> {
    let mut again = 3;
    loop {
        match call().await {
            Err(AppError::Db(e)) if e.is_commit_unknown() && again > 0 => {
                again -= 1;
                tracing::warn!("{e}; running it again (idempotent)");
            }
            other => return other,
        }
    }
}

/// The client's `Idempotency-Key`, or a fresh id.
fn operation_id(headers: &HeaderMap) -> Result<String, AppError> {
    if let Some(key) = headers.get("idempotency-key") {
        return match key.to_str() {
            Ok(k) if (1..=64).contains(&k.len()) => Ok(k.to_owned()),
            _ => Err(AppError::BadRequest(
                "Idempotency-Key must be 1 to 64 visible ASCII characters".into(),
            )),
        };
    }
    // Unique across restarts of the service too: ops are kept in the database.
    static PREFIX: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        format!("srv-{}-{}", t.as_nanos(), std::process::id())
    });
    Ok(format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed)))
}

fn amount(query: &HashMap<String, String>) -> Result<i64, AppError> {
    int_param(query, "amount").and_then(|n| match n {
        n if n > 0 => Ok(n),
        _ => Err(AppError::BadRequest("amount must be positive".into())),
    })
}

fn int_param(query: &HashMap<String, String>, key: &str) -> Result<i64, AppError> {
    let value = query
        .get(key)
        .ok_or_else(|| AppError::BadRequest(format!("missing query parameter `{key}`")))?;
    value
        .parse()
        .map_err(|_| AppError::BadRequest(format!("`{key}` must be an integer, not {value:?}")))
}

fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn open_handler(Path(id): Path<i64>) -> Result<Response, AppError> {
    let account = idempotent(|| open_account(id)).await?;
    Ok(json(account.json()))
}

async fn get_handler(Path(id): Path<i64>) -> Result<Response, AppError> {
    let account = idempotent(|| account(id)).await?;
    Ok(json(account.json()))
}

async fn deposit_handler(
    Path(id): Path<i64>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let (amount, op) = (amount(&query)?, operation_id(&headers)?);
    let account = idempotent(|| deposit(&op, id, amount)).await?;
    Ok(json(account.json()))
}

async fn transfer_handler(
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let (from, to) = (int_param(&query, "from")?, int_param(&query, "to")?);
    let (amount, op) = (amount(&query)?, operation_id(&headers)?);
    let (from, to) = idempotent(|| transfer(&op, from, to, amount)).await?;
    Ok(json(format!(
        r#"{{"from":{},"to":{}}}"#,
        from.json(),
        to.json()
    )))
}

async fn connections_handler() -> Result<Response, AppError> {
    let ids = own_connection_ids().await?;
    let lines: Vec<String> = ids.iter().map(|id| format!("{id}\n")).collect();
    Ok(lines.concat().into_response())
}

async fn stats_handler() -> Result<Response, AppError> {
    let pool = db_txn::installed_async::<AsyncMysqlConnection>()
        .ok_or_else(|| AppError::Internal("no pool installed".into()))?;
    Ok(json(stats_json(&pool.stats())))
}

/// The pool's counters as a JSON object.
pub fn stats_json(s: &PoolStats) -> String {
    let fields = [
        ("checkouts", s.checkouts),
        ("pings", s.pings),
        ("pings_skipped", s.pings_skipped),
        ("disconnects", s.disconnects),
        ("retries", s.retries),
        ("rollbacks", s.rollbacks),
        ("commit_unknowns", s.commit_unknowns),
        ("opened", s.opened),
        ("connect_failures", s.connect_failures),
        ("closed", s.closed),
        ("recycled", s.recycled),
        ("leaks", s.leaks),
        ("connections", u64::from(s.connections)),
        ("idle_connections", u64::from(s.idle_connections)),
    ];
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!(r#""{k}":{v}"#))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// The service's routes. The handlers use the pool installed by [`setup`].
pub fn router() -> Router {
    Router::new()
        .route("/accounts/{id}", put(open_handler).get(get_handler))
        .route("/accounts/{id}/deposit", post(deposit_handler))
        .route("/transfers", post(transfer_handler))
        .route("/stats", get(stats_handler))
        .route("/debug/connections", get(connections_handler))
}

/// Serve [`router`] on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router())
        .with_graceful_shutdown(shutdown)
        .await
}
