//! What each database tells of itself: the subsegment's name, and the `sql` block's URL,
//! engine and user, read from the pool's connect options.

use futures_core::future::BoxFuture;
use sqlx_core::connection::Connection;
use sqlx_core::database::Database;
use sqlx_core::error::{DatabaseError, Error};
use sqlx_core::pool::Pool;

use crate::sanitize::Dialect;

/// A database that [`XRayPool`](crate::XRayPool) can describe: implemented for sqlx's
/// `Postgres`, `MySql` and `Sqlite` (features `postgres`, `mysql`, `sqlite`).
pub trait XRayDatabase: Database + sealed::Sealed {
    #[doc(hidden)]
    fn describe(options: &<Self::Connection as Connection>::Options) -> Description;

    #[doc(hidden)]
    fn dialect() -> Dialect;

    /// The server's version, asked with one query, for
    /// [`XRayPool::read_database_version`](crate::XRayPool::read_database_version).
    #[doc(hidden)]
    fn read_version(pool: &Pool<Self>) -> BoxFuture<'_, Result<String, Error>>;

    /// The code a failed query's cause is typed with: the SQLSTATE, or MySQL's error number,
    /// which tells more than its SQLSTATE (`1062` for a duplicate key, where the SQLSTATE is
    /// `23000` for every integrity error).
    #[doc(hidden)]
    fn error_code(error: &dyn DatabaseError) -> Option<String> {
        error.code().map(std::borrow::Cow::into_owned)
    }
}

mod sealed {
    pub trait Sealed {}
}

/// How one pool's queries are recorded.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct Description {
    /// The subsegment's name: `database@host`, as the official SDKs name it.
    pub(crate) name: String,
    /// The connection URL without its password.
    pub(crate) url: String,
    pub(crate) database_type: &'static str,
    pub(crate) user: Option<String>,
}

/// `scheme://user@host:port/database`, without the password: the URL the `sql` block
/// records, and the subsegment name `database@host`.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn network(
    scheme: &str,
    database_type: &'static str,
    host: &str,
    port: u16,
    user: &str,
    database: Option<&str>,
) -> Description {
    // A Unix socket directory is a path: the URL then names it as a query parameter would.
    let host_part = if host.starts_with('/') {
        "localhost"
    } else {
        host
    };
    let database = database.unwrap_or(user);
    let user_part = if user.is_empty() {
        String::new()
    } else {
        format!("{user}@")
    };
    Description {
        name: format!("{database}@{host_part}"),
        url: format!("{scheme}://{user_part}{host_part}:{port}/{database}"),
        database_type,
        user: (!user.is_empty()).then(|| user.to_owned()),
    }
}

#[cfg(feature = "postgres")]
impl sealed::Sealed for sqlx_postgres::Postgres {}

#[cfg(feature = "postgres")]
impl XRayDatabase for sqlx_postgres::Postgres {
    fn describe(options: &sqlx_postgres::PgConnectOptions) -> Description {
        network(
            "postgresql",
            "PostgreSQL",
            options.get_host(),
            options.get_port(),
            options.get_username(),
            options.get_database(),
        )
    }

    fn dialect() -> Dialect {
        Dialect::Postgres
    }

    fn read_version(pool: &Pool<Self>) -> BoxFuture<'_, Result<String, Error>> {
        Box::pin(sqlx_core::query_scalar::query_scalar("SHOW server_version").fetch_one(pool))
    }
}

#[cfg(feature = "mysql")]
impl sealed::Sealed for sqlx_mysql::MySql {}

#[cfg(feature = "mysql")]
impl XRayDatabase for sqlx_mysql::MySql {
    fn describe(options: &sqlx_mysql::MySqlConnectOptions) -> Description {
        network(
            "mysql",
            "MySQL",
            options.get_host(),
            options.get_port(),
            options.get_username(),
            options.get_database(),
        )
    }

    fn dialect() -> Dialect {
        Dialect::MySql
    }

    fn read_version(pool: &Pool<Self>) -> BoxFuture<'_, Result<String, Error>> {
        Box::pin(sqlx_core::query_scalar::query_scalar("SELECT VERSION()").fetch_one(pool))
    }

    fn error_code(error: &dyn DatabaseError) -> Option<String> {
        error
            .try_downcast_ref::<sqlx_mysql::MySqlDatabaseError>()
            .map(|e| e.number().to_string())
            .or_else(|| error.code().map(std::borrow::Cow::into_owned))
    }
}

#[cfg(feature = "sqlite")]
impl sealed::Sealed for sqlx_sqlite::Sqlite {}

#[cfg(feature = "sqlite")]
impl XRayDatabase for sqlx_sqlite::Sqlite {
    fn describe(options: &sqlx_sqlite::SqliteConnectOptions) -> Description {
        let path = options.get_filename();
        let file = path
            .file_name()
            .map_or_else(|| "sqlite".to_owned(), |f| f.to_string_lossy().into_owned());
        Description {
            name: file,
            url: format!("sqlite://{}", path.display()),
            database_type: "SQLite",
            user: None,
        }
    }

    fn dialect() -> Dialect {
        Dialect::Sqlite
    }

    fn read_version(pool: &Pool<Self>) -> BoxFuture<'_, Result<String, Error>> {
        Box::pin(sqlx_core::query_scalar::query_scalar("SELECT sqlite_version()").fetch_one(pool))
    }
}
