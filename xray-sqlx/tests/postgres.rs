//! Queries through `XRayPool` and `XRayTransaction` against a real PostgreSQL server (the
//! Debian package, started on a free loopback port): each is a `remote` subsegment with its
//! `sql` block, failures carry the SQLSTATE, cancelled queries are marked, the query's own
//! result is untouched, and every document passes the schema. One test function, so that one
//! server serves every case in turn.

use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use xray_sdk::{FutureExt as _, InMemoryEmitter, Recorder, SamplerKind};
use xray_sqlx::XRayPool;
use xray_testkit::postgres::Postgres;

fn recorder(emitter: &InMemoryEmitter, kind: SamplerKind) -> Recorder {
    Recorder::builder()
        .ignore_environment()
        .with_service_name("orders")
        .with_sampler_kind(kind)
        .with_emitter(emitter.clone())
        .build()
        .unwrap()
}

/// The subsegments of the one segment sent, each checked against the schema.
fn subsegments(emitter: &InMemoryEmitter) -> Vec<Value> {
    let docs = xray_testkit::checked(emitter.take());
    assert_eq!(docs.len(), 1, "{docs:#?}");
    docs[0]["subsegments"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_are_remote_subsegments_with_their_sql_block() {
    let server = Postgres::start();
    let raw = PgPoolOptions::new()
        .max_connections(4)
        .connect(&server.url())
        .await
        .unwrap();
    let pool = XRayPool::new(raw.clone()).read_database_version().await;
    let emitter = InMemoryEmitter::new();
    let sampled = recorder(&emitter, SamplerKind::Always);

    // Outside any segment: the query runs, nothing is recorded.
    let (one,): (i32,) = sqlx::query_as("SELECT 1").fetch_one(&pool).await.unwrap();
    assert_eq!(one, 1);
    assert!(emitter.documents().is_empty());

    // Unsampled: the same.
    let unsampled = recorder(&emitter, SamplerKind::Never);
    let segment = unsampled.begin_segment("orders");
    let query = sqlx::query_as::<_, (i32,)>("SELECT 2").fetch_one(&pool);
    let (two,) = query.with_context(segment.entity().clone()).await.unwrap();
    assert_eq!(two, 2);
    segment.end();
    assert!(emitter.documents().is_empty());

    // Sampled: a success, through fetch_one, execute and fetch_all.
    let segment = sampled.begin_segment("orders");
    let work = async {
        sqlx::query("CREATE TABLE items (id INT PRIMARY KEY, name TEXT)")
            .execute(&pool)
            .await
            .unwrap();
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM items")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 0);
        let rows = sqlx::query("SELECT generate_series(1, 3)")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(rows.len(), 3);
    };
    work.with_context(segment.entity().clone()).await;
    segment.end();
    let subs = subsegments(&emitter);
    assert_eq!(subs.len(), 3, "{subs:#?}");
    for sub in &subs {
        assert_eq!(sub["name"], "postgres@127.0.0.1");
        assert_eq!(sub["namespace"], "remote");
        let sql = &sub["sql"];
        assert_eq!(
            sql["url"],
            format!("postgresql://postgres@127.0.0.1:{}/postgres", server.port)
        );
        assert!(!sub.to_string().contains("not-to-be-recorded"), "{sub}");
        assert_eq!(sql["database_type"], "PostgreSQL");
        assert_eq!(sql["driver_version"], "sqlx 0.9");
        assert_eq!(sql["user"], "postgres");
        let version = sql["database_version"].as_str().unwrap();
        assert!(
            version.starts_with(|c: char| c.is_ascii_digit()),
            "{version}"
        );
        // Not opted in: no query text.
        assert!(sql.get("sanitized_query").is_none(), "{sql}");
        assert!(
            sub.get("fault").is_none() && sub.get("error").is_none(),
            "{sub}"
        );
    }

    // Failures: a syntax error and a unique violation, with their SQLSTATE; the results are
    // sqlx's own.
    let segment = sampled.begin_segment("orders");
    let work = async {
        let syntax = sqlx::query("SELEC 1").execute(&pool).await.unwrap_err();
        let code = syntax.as_database_error().unwrap().code().unwrap();
        assert_eq!(code, "42601");
        sqlx::query("INSERT INTO items VALUES (1, 'a')")
            .execute(&pool)
            .await
            .unwrap();
        let unique = sqlx::query("INSERT INTO items VALUES (1, 'b')")
            .execute(&pool)
            .await
            .unwrap_err();
        assert!(unique.as_database_error().unwrap().is_unique_violation());
    };
    work.with_context(segment.entity().clone()).await;
    segment.end();
    let subs = subsegments(&emitter);
    assert_eq!(subs.len(), 3, "{subs:#?}");
    let cause_type = |sub: &Value| sub["cause"]["exceptions"][0]["type"].clone();
    assert_eq!(subs[0]["fault"], true);
    assert_eq!(cause_type(&subs[0]), "42601");
    assert!(
        subs[0]["cause"]["exceptions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("syntax error"),
        "{}",
        subs[0]
    );
    assert!(subs[1].get("fault").is_none());
    assert_eq!(subs[2]["fault"], true);
    assert_eq!(cause_type(&subs[2]), "23505");

    // Cancelled: by the application (the future dropped by a timeout), and by the server
    // (statement_timeout, SQLSTATE 57014).
    let segment = sampled.begin_segment("orders");
    let work = async {
        let slow = sqlx::query("SELECT pg_sleep(5)").execute(&pool);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), slow)
                .await
                .is_err()
        );
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("SET LOCAL statement_timeout = 50")
            .execute(&mut tx)
            .await
            .unwrap();
        let timed_out = sqlx::query("SELECT pg_sleep(2)")
            .execute(&mut tx)
            .await
            .unwrap_err();
        assert_eq!(
            timed_out.as_database_error().unwrap().code().unwrap(),
            "57014"
        );
        tx.rollback().await.unwrap();
    };
    work.with_context(segment.entity().clone()).await;
    segment.end();
    let subs = subsegments(&emitter);
    assert_eq!(subs.len(), 4, "{subs:#?}");
    assert_eq!(subs[0]["error"], true, "{}", subs[0]);
    assert!(subs[0].get("fault").is_none(), "{}", subs[0]);
    assert_eq!(cause_type(&subs[0]), "Cancelled");
    let took = subs[0]["end_time"].as_f64().unwrap() - subs[0]["start_time"].as_f64().unwrap();
    assert!(
        took < 2.0,
        "ended when it was cancelled, not when the query would have: {took}"
    );
    assert_eq!(subs[2]["fault"], true);
    assert_eq!(cause_type(&subs[2]), "57014");
    assert!(
        subs[3].get("fault").is_none(),
        "the rollback succeeded: {}",
        subs[3]
    );

    // A transaction, with its queries' text (opted in), literals stripped.
    let texts = pool.clone().with_sanitized_queries(true);
    let segment = sampled.begin_segment("orders");
    let work = async {
        let mut tx = texts.begin().await.unwrap();
        sqlx::query("INSERT INTO items VALUES (2, 'secret-name')")
            .execute(&mut tx)
            .await
            .unwrap();
        sqlx::query("UPDATE items SET name = $1 WHERE id = 2")
            .bind("also-secret")
            .execute(&mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    };
    work.with_context(segment.entity().clone()).await;
    segment.end();
    let subs = subsegments(&emitter);
    let queries: Vec<&str> = subs
        .iter()
        .map(|s| s["sql"]["sanitized_query"].as_str().unwrap())
        .collect();
    assert_eq!(
        queries,
        [
            "INSERT INTO items VALUES (?, ?)",
            "UPDATE items SET name = $1 WHERE id = ?",
            "COMMIT"
        ]
    );
    for sub in &subs {
        assert!(!sub.to_string().contains("secret"), "{sub}");
    }
    // Committed: the rows are there, read through the plain pool.
    let (name,): (String,) = sqlx::query_as("SELECT name FROM items WHERE id = 2")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(name, "also-secret");
    assert!(emitter.documents().is_empty());
}
