// The futures of `#[db_txn]` async fns are `Send` when their arguments are:
// they can be spawned on a multi-threaded runtime and awaited in axum
// handlers. Concrete and generic connection types, a method, borrowed and
// owned arguments, a body that awaits across several statements, a pool
// with a read replica and its `last_write`.
use db_txn::{db_txn, AsyncPool, AsyncTxnConnection};
use diesel::sql_types::Text;
use diesel_async::{AsyncMysqlConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

#[db_txn]
async fn add_user(conn: &mut AsyncPgConnection, name: &str, tags: &[String]) -> Result<usize, db_txn::Error> {
    let n = diesel::sql_query("INSERT INTO users (name) VALUES ($1)")
        .bind::<Text, _>(name)
        .execute(conn)
        .await?;
    for tag in tags {
        conn.batch_execute(&format!("INSERT INTO tags VALUES ('{tag}')")).await?;
    }
    tokio::task::yield_now().await;
    Ok(n)
}

#[db_txn(pool = pool, retry_conflicts = 2)]
async fn generic<C: AsyncTxnConnection>(conn: &mut C, pool: &AsyncPool<C>) -> Result<(), db_txn::Error> {
    conn.batch_execute("SELECT 1").await?;
    Ok(())
}

struct Repo {
    pool: AsyncPool<AsyncMysqlConnection>,
}

impl Repo {
    #[db_txn(pool = self.pool, read_only)]
    async fn count(&self, conn: &mut AsyncMysqlConnection) -> Result<(), db_txn::Error> {
        conn.batch_execute("SELECT COUNT(*) FROM users").await?;
        Ok(())
    }
}

fn assert_send<T: Send>(_: &T) {}

async fn handler(repo: std::sync::Arc<Repo>) {
    let tags = vec!["a".to_owned()];
    let f = add_user("alice", &tags);
    assert_send(&f);
    let _ = f.await;
    let _ = repo.count().await;
}

fn main() {
    let repo = std::sync::Arc::new(Repo {
        pool: AsyncPool::builder("mysql://localhost/app")
            .replica("mysql://localhost:3307/app")
            .build_lazy(),
    });
    assert_send(&repo.count());
    assert_send(&repo.pool.last_write());
    let pool = AsyncPool::<AsyncPgConnection>::builder("postgres://localhost/app").build_lazy();
    assert_send(&generic(&pool));
    // tokio::spawn needs `Send + 'static` (type-checked, never run here).
    let _spawn = move |runtime: tokio::runtime::Runtime| {
        let _task = runtime.spawn(async move { generic(&pool).await });
        let _task = runtime.spawn(handler(repo));
    };
}
