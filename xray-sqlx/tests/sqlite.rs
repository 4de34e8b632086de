//! Queries through `XRayPool` on an SQLite file in a temporary directory: the subsegment is
//! named after the file, failures carry SQLite's extended result code, and every document
//! passes the schema.

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use xray_sdk::FutureExt as _;
use xray_sqlx::XRayPool;
use xray_testkit::capture::Capture;
use xray_testkit::moto::TempDir;

#[tokio::test]
async fn queries_on_a_file_are_recorded() {
    let dir = TempDir::new();
    let file = dir.path.join("orders.db");
    let options = SqliteConnectOptions::new()
        .filename(&file)
        .create_if_missing(true);
    let pool = XRayPool::new(
        SqlitePoolOptions::new()
            .connect_with(options)
            .await
            .unwrap(),
    )
    .with_sanitized_queries(true)
    .read_database_version()
    .await;
    let capture = Capture::new();

    let segment = capture.recorder().begin_segment("orders");
    let work = async {
        sqlx::query("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT UNIQUE)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO items (name) VALUES ('a')")
            .execute(&pool)
            .await
            .unwrap();
        let unique = sqlx::query("INSERT INTO items (name) VALUES ('a')")
            .execute(&pool)
            .await
            .unwrap_err();
        assert!(unique.as_database_error().unwrap().is_unique_violation());
        let mut tx = pool.begin().await.unwrap();
        let names: Vec<(String,)> = sqlx::query_as("SELECT name FROM items WHERE id > 0")
            .fetch_all(&mut tx)
            .await
            .unwrap();
        assert_eq!(names.len(), 1);
        tx.rollback().await.unwrap();
    };
    work.with_context(segment.entity().clone()).await;
    segment.end();

    let subs = capture.segment("orders").subsegments();
    assert_eq!(subs.len(), 5, "{subs:#?}");
    let url = format!("sqlite://{}", file.display());
    for sub in &subs {
        assert_eq!(sub.name(), "orders.db");
        sub.assert_namespace("remote")
            .assert_sql("database_type", "SQLite")
            .assert_sql("url", url.as_str());
        let version = sub.sql("database_version").and_then(|v| v.as_str());
        assert!(version.is_some_and(|v| v.starts_with('3')), "{version:?}");
    }
    let queries: Vec<&str> = subs
        .iter()
        .map(|s| s.sql("sanitized_query").and_then(|q| q.as_str()).unwrap())
        .collect();
    assert_eq!(
        queries,
        [
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT UNIQUE)",
            "INSERT INTO items (name) VALUES (?)",
            "INSERT INTO items (name) VALUES (?)",
            "SELECT name FROM items WHERE id > ?",
            "ROLLBACK",
        ]
    );
    // SQLITE_CONSTRAINT_UNIQUE.
    subs[2].assert_fault(true);
    assert_eq!(subs[2].exception_types(), ["2067"]);
}
