//! AWS X-Ray subsegments for the queries an application makes through [sqlx]: PostgreSQL,
//! MySQL and SQLite through one API.
//!
//! Wrap the pool where it is made, and use the wrapper wherever the pool was used:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sqlx::Error> {
//! use xray_sqlx::XRayPool;
//!
//! let pool = XRayPool::new(sqlx::SqlitePool::connect("sqlite::memory:").await?);
//!
//! // Inside a segment, each query is a `remote` subsegment with its `sql` block; outside one,
//! // or unsampled, it runs as it would without the wrapper.
//! let one: (i64,) = sqlx::query_as("SELECT 1").fetch_one(&pool).await?;
//! assert_eq!(one.0, 1);
//!
//! let mut tx = pool.begin().await?;
//! sqlx::query("CREATE TABLE t (x INTEGER)").execute(&mut tx).await?;
//! tx.commit().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # What is recorded
//!
//! Each query made through `&XRayPool` or `&mut XRayTransaction` while a sampled segment or
//! subsegment is current ([`xray_sdk::current`]) is a subsegment:
//!
//! - named `database@host` as the official SDKs name it (`orders@db.internal`), the file's
//!   name for SQLite, with `namespace: "remote"`;
//! - its `sql` block: `url` without the password (`postgresql://app@db.internal:5432/orders`),
//!   `database_type` (`PostgreSQL`, `MySQL`, `SQLite`), `driver_version` (`sqlx 0.9`),
//!   `user`, and `database_version` once [`XRayPool::read_database_version`] has read it (or
//!   [`XRayPool::with_database_version`] has set it);
//! - `sanitized_query` only with [`XRayPool::with_sanitized_queries`]: the query's text can
//!   hold secrets, so it is off by default, and when on every literal is replaced by `?` and
//!   comments are dropped;
//! - a query that fails has the error as its cause, a fault, with the database's error code
//!   as the cause's type: PostgreSQL's and SQLite's SQLSTATE or result code (`42601` for a
//!   syntax error, `23505` for a unique violation, `57014` for a cancelled statement), MySQL's
//!   error number (`1064`, `1062`), or sqlx's kind of error (`PoolTimedOut`, `Io`) when the
//!   database gave none. The query's own `Result` is never changed;
//! - a query whose future or stream is dropped before it ended (a timeout around it, a
//!   `select!` that took another branch, a stream read only in part) is ended at that moment
//!   as an error, with a `Cancelled` cause.
//!
//! Transactions ([`XRayPool::begin`]) record each query, and their `COMMIT` or `ROLLBACK`.
//! A connection taken with `pool.acquire()` is sqlx's own: its queries are not recorded.
//!
//! # Why a wrapper
//!
//! sqlx has no hook around a query: its pool hooks (`after_connect`, `before_acquire`,
//! `after_release`) see connections, not queries, and its statement logging reports a query
//! after the fact, without its error code. A query is run by an `Executor`, and `Executor` is
//! a public trait, so [`XRayPool`] and [`XRayTransaction`] implement it around sqlx's own:
//! every sqlx call that takes an executor (`query`, `query_as`, `query_scalar`, the `query!`
//! macros, `execute`, `fetch*`) takes them unchanged, and the query runs in sqlx as before.
//!
//! Not sampled, or outside any segment: the query is handed to sqlx's executor as it is,
//! with no allocation and no wrapping.
//!
//! [sqlx]: https://docs.rs/sqlx
#![deny(missing_docs)]
// On docs.rs, items behind a feature are marked with the feature they need.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod call;
mod database;
mod sanitize;

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use sqlx_core::Either;
use sqlx_core::database::Database;
use sqlx_core::error::Error;
use sqlx_core::executor::{Execute, Executor};
use sqlx_core::pool::Pool;
use sqlx_core::sql_str::SqlStr;
use sqlx_core::transaction::Transaction;
use xray_sdk::document::{Sql, capped_field};

use crate::call::{Call, Traced, TracedFuture};
pub use crate::database::XRayDatabase;
use crate::sanitize::Dialect;

/// What `driver_version` says.
const DRIVER_VERSION: &str = "sqlx 0.9";

/// What every query of one pool records alike.
#[derive(Debug)]
struct Shared {
    description: database::Description,
    dialect: Dialect,
    sanitized_queries: bool,
    /// The `sql` block of every query (the query's text aside), made once and shared.
    connection: Arc<Sql>,
    error_code: fn(&dyn sqlx_core::error::DatabaseError) -> Option<String>,
}

/// An sqlx [`Pool`] whose queries are recorded as subsegments: use `&XRayPool` wherever
/// `&Pool` was used. It derefs to the pool for everything else (`close`, `size`, `acquire`).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use xray_sdk::{FutureExt as _, InMemoryEmitter, Recorder};
/// use xray_sqlx::XRayPool;
///
/// let emitter = InMemoryEmitter::new();
/// let recorder = Recorder::builder()
///     .ignore_environment()
///     .with_emitter(emitter.clone())
///     .build()?;
/// let pool = XRayPool::new(sqlx::SqlitePool::connect("sqlite::memory:").await?)
///     .with_sanitized_queries(true);
///
/// let segment = recorder.begin_segment("orders");
/// let query = sqlx::query("SELECT 1 WHERE 'secret' = 'secret'").execute(&pool);
/// query.with_context(segment.entity().clone()).await?;
/// segment.end();
///
/// let sub = &emitter.documents()[0]["subsegments"][0];
/// assert_eq!(sub["namespace"], "remote");
/// assert_eq!(sub["sql"]["database_type"], "SQLite");
/// assert_eq!(sub["sql"]["sanitized_query"], "SELECT ? WHERE ? = ?");
/// # Ok(())
/// # }
/// ```
pub struct XRayPool<DB: Database> {
    pool: Pool<DB>,
    shared: Arc<Shared>,
}

impl<DB: Database> Clone for XRayPool<DB> {
    fn clone(&self) -> Self {
        XRayPool {
            pool: self.pool.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<DB: Database> fmt::Debug for XRayPool<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XRayPool")
            .field("pool", &self.pool)
            .field("name", &self.shared.description.name)
            .field("sanitized_queries", &self.shared.sanitized_queries)
            .finish()
    }
}

impl<DB: XRayDatabase> XRayPool<DB> {
    /// Wraps `pool`: its queries are recorded from now on. What the subsegments name (the
    /// host, the database, the user) is read from the pool's connect options.
    pub fn new(pool: Pool<DB>) -> Self {
        let description = DB::describe(&pool.connect_options());
        let mut connection = Sql::default();
        connection.url = Some(capped_field(&description.url).to_owned());
        connection.database_type = Some(description.database_type.to_owned());
        connection.driver_version = Some(DRIVER_VERSION.to_owned());
        connection.user.clone_from(&description.user);
        XRayPool {
            pool,
            shared: Arc::new(Shared {
                description,
                dialect: DB::dialect(),
                sanitized_queries: false,
                connection: Arc::new(connection),
                error_code: DB::error_code,
            }),
        }
    }

    /// Records each query's text, its literals replaced by `?` and its comments dropped, as
    /// `sql.sanitized_query`. Off by default: a query's text can hold secrets.
    pub fn with_sanitized_queries(self, on: bool) -> Self {
        self.reshape(|shared| shared.sanitized_queries = on)
    }

    /// Records `version` as `sql.database_version`.
    pub fn with_database_version(self, version: impl Into<String>) -> Self {
        let version = version.into();
        self.reshape(|shared| {
            Arc::make_mut(&mut shared.connection).database_version = Some(version);
        })
    }

    /// Asks the server for its version once (`SHOW server_version`, `SELECT VERSION()`,
    /// `SELECT sqlite_version()`), unrecorded, and records it as `sql.database_version` from
    /// then on. A failure is logged and leaves the version out; it is never returned.
    pub async fn read_database_version(self) -> Self {
        match DB::read_version(&self.pool).await {
            Ok(version) => self.with_database_version(version),
            Err(err) => {
                tracing::warn!(
                    target: "xray_sqlx",
                    %err,
                    "the database's version could not be read; subsegments go without it"
                );
                self
            }
        }
    }

    fn reshape(mut self, f: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = Shared {
            description: self.shared.description.clone(),
            dialect: self.shared.dialect,
            sanitized_queries: self.shared.sanitized_queries,
            connection: Arc::clone(&self.shared.connection),
            error_code: self.shared.error_code,
        };
        f(&mut shared);
        self.shared = Arc::new(shared);
        self
    }
}

impl<DB: Database> XRayPool<DB> {
    /// The wrapped pool: its queries are not recorded.
    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    /// Begins a transaction whose queries, and its `COMMIT` or `ROLLBACK`, are recorded.
    ///
    /// # Errors
    ///
    /// sqlx's, unchanged.
    pub async fn begin(&self) -> Result<XRayTransaction<'static, DB>, Error> {
        Ok(XRayTransaction {
            tx: self.pool.begin().await?,
            shared: Arc::clone(&self.shared),
        })
    }
}

impl<DB: Database> Deref for XRayPool<DB> {
    type Target = Pool<DB>;

    fn deref(&self) -> &Pool<DB> {
        &self.pool
    }
}

/// An sqlx [`Transaction`] whose queries are recorded: pass `&mut tx` where `&mut *tx` was
/// passed. Made by [`XRayPool::begin`]; dropped without a commit, it rolls back, as sqlx's
/// does.
pub struct XRayTransaction<'c, DB: Database> {
    tx: Transaction<'c, DB>,
    shared: Arc<Shared>,
}

impl<DB: Database> fmt::Debug for XRayTransaction<'_, DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XRayTransaction")
            .field("name", &self.shared.description.name)
            .finish_non_exhaustive()
    }
}

impl<'c, DB: Database> XRayTransaction<'c, DB> {
    /// Commits, recorded as a query (`COMMIT`).
    ///
    /// # Errors
    ///
    /// sqlx's, unchanged.
    pub async fn commit(self) -> Result<(), Error> {
        statement(&self.shared, "COMMIT", self.tx.commit()).await
    }

    /// Rolls back, recorded as a query (`ROLLBACK`).
    ///
    /// # Errors
    ///
    /// sqlx's, unchanged.
    pub async fn rollback(self) -> Result<(), Error> {
        statement(&self.shared, "ROLLBACK", self.tx.rollback()).await
    }

    /// The wrapped transaction: queries through it are not recorded.
    pub fn inner(&mut self) -> &mut Transaction<'c, DB> {
        &mut self.tx
    }
}

/// Runs a statement that is not an [`Execute`] (`COMMIT`, `ROLLBACK`), recorded as a query
/// with `text` when a sampled entity is current.
async fn statement<F: Future<Output = Result<(), Error>>>(
    shared: &Arc<Shared>,
    text: &'static str,
    run: F,
) -> Result<(), Error> {
    let run = std::pin::pin!(run);
    match Call::begin(shared) {
        None => run.await,
        Some(call) => {
            call.set_text(text);
            TracedFuture {
                inner: run,
                call: Some(call),
            }
            .await
        }
    }
}

/// What `fetch_many` streams: results and rows.
type Results<'e, DB> =
    BoxStream<'e, Result<Either<<DB as Database>::QueryResult, <DB as Database>::Row>, Error>>;

/// Runs `fetch_many` through `executor`, recorded when a sampled entity is current.
fn fetch_many<'e, 'q: 'e, DB, X, E>(shared: &Arc<Shared>, executor: X, query: E) -> Results<'e, DB>
where
    DB: Database,
    X: Executor<'e, Database = DB>,
    E: 'q + Execute<'q, DB>,
{
    match Call::begin(shared) {
        None => executor.fetch_many(query),
        Some(call) => {
            let inner = executor.fetch_many(call.watch(query));
            Box::pin(Traced {
                inner,
                call: Some(call),
            })
        }
    }
}

/// Runs `fetch_optional` through `executor`, recorded when a sampled entity is current.
fn fetch_optional<'e, 'q: 'e, DB, X, E>(
    shared: &Arc<Shared>,
    executor: X,
    query: E,
) -> BoxFuture<'e, Result<Option<DB::Row>, Error>>
where
    DB: Database,
    X: Executor<'e, Database = DB>,
    E: 'q + Execute<'q, DB>,
{
    match Call::begin(shared) {
        None => executor.fetch_optional(query),
        Some(call) => {
            let inner = executor.fetch_optional(call.watch(query));
            Box::pin(TracedFuture {
                inner,
                call: Some(call),
            })
        }
    }
}

impl<'p, DB> Executor<'p> for &'p XRayPool<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    type Database = DB;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> Results<'e, DB>
    where
        'p: 'e,
        E: 'q + Execute<'q, DB>,
    {
        fetch_many(&self.shared, &self.pool, query)
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<DB::Row>, Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, DB>,
    {
        fetch_optional(&self.shared, &self.pool, query)
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [DB::TypeInfo],
    ) -> BoxFuture<'e, Result<DB::Statement, Error>>
    where
        'p: 'e,
    {
        (&self.pool).prepare_with(sql, parameters)
    }

    fn describe<'e>(
        self,
        sql: SqlStr,
    ) -> BoxFuture<'e, Result<sqlx_core::describe::Describe<DB>, Error>>
    where
        'p: 'e,
    {
        (&self.pool).describe(sql)
    }
}

impl<'t, DB> Executor<'t> for &'t mut XRayTransaction<'_, DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    type Database = DB;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> Results<'e, DB>
    where
        't: 'e,
        E: 'q + Execute<'q, DB>,
    {
        fetch_many(&self.shared, &mut *self.tx, query)
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<DB::Row>, Error>>
    where
        't: 'e,
        E: 'q + Execute<'q, DB>,
    {
        fetch_optional(&self.shared, &mut *self.tx, query)
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [DB::TypeInfo],
    ) -> BoxFuture<'e, Result<DB::Statement, Error>>
    where
        't: 'e,
    {
        (&mut *self.tx).prepare_with(sql, parameters)
    }

    fn describe<'e>(
        self,
        sql: SqlStr,
    ) -> BoxFuture<'e, Result<sqlx_core::describe::Describe<DB>, Error>>
    where
        't: 'e,
    {
        (&mut *self.tx).describe(sql)
    }
}
