//! Queries through `XRayPool` on an SQLite file in a temporary directory: the subsegment is
//! named after the file, failures carry SQLite's extended result code, and every document
//! passes the schema.

use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use xray_core::{FutureExt as _, InMemoryEmitter, Recorder, SamplerKind};
use xray_sqlx::XRayPool;
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
    let emitter = InMemoryEmitter::new();
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_sampler_kind(SamplerKind::Always)
        .with_emitter(emitter.clone())
        .build()
        .unwrap();

    let segment = recorder.begin_segment("orders");
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

    let docs = xray_testkit::checked(emitter.documents());
    assert_eq!(docs.len(), 1);
    let subs = docs[0]["subsegments"].as_array().unwrap();
    assert_eq!(subs.len(), 5, "{subs:#?}");
    for sub in subs {
        assert_eq!(sub["name"], "orders.db");
        assert_eq!(sub["namespace"], "remote");
        assert_eq!(sub["sql"]["database_type"], "SQLite");
        assert_eq!(
            sub["sql"]["url"],
            Value::String(format!("sqlite://{}", file.display()))
        );
        assert!(
            sub["sql"]["database_version"]
                .as_str()
                .unwrap()
                .starts_with('3')
        );
    }
    let queries: Vec<&str> = subs
        .iter()
        .map(|s| s["sql"]["sanitized_query"].as_str().unwrap())
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
    assert_eq!(subs[2]["cause"]["exceptions"][0]["type"], "2067");
    assert_eq!(subs[2]["fault"], true);
}
