//! Queries through `XRayPool` against a real MariaDB server (the Debian package
//! `mariadb-server`, MySQL's protocol, started on a free loopback port): the same subsegments
//! as for PostgreSQL, typed with MySQL's error numbers, every document checked against the
//! schema. One test function, so that one server serves every case.

use serde_json::Value;
use sqlx::mysql::MySqlPoolOptions;
use xray_sdk::{FutureExt as _, InMemoryEmitter, Recorder, SamplerKind};
use xray_sqlx::XRayPool;
use xray_testkit::mariadb::MariaDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_are_recorded_against_mysql() {
    let server = MariaDb::start();
    let raw = MySqlPoolOptions::new()
        .max_connections(2)
        .connect(&server.url())
        .await
        .unwrap();
    let pool = XRayPool::new(raw)
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
        sqlx::query("CREATE TEMPORARY TABLE items (id INT PRIMARY KEY, name TEXT)")
            .execute(&pool)
            .await
            .unwrap();
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("CREATE TABLE IF NOT EXISTS t (id INT PRIMARY KEY, secret TEXT)")
            .execute(&mut tx)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES (1, \"password\")")
            .execute(&mut tx)
            .await
            .unwrap();
        let duplicate = sqlx::query("INSERT INTO t VALUES (1, 'again')")
            .execute(&mut tx)
            .await
            .unwrap_err();
        assert!(duplicate.as_database_error().unwrap().is_unique_violation());
        tx.commit().await.unwrap();
        let syntax = sqlx::query("SELEC 1").execute(&pool).await.unwrap_err();
        assert_eq!(syntax.as_database_error().unwrap().code().unwrap(), "42000");
    };
    work.with_context(segment.entity().clone()).await;
    segment.end();

    let docs = xray_testkit::checked(emitter.documents());
    assert_eq!(docs.len(), 1);
    let subs = docs[0]["subsegments"].as_array().unwrap();
    assert_eq!(subs.len(), 6, "{subs:#?}");
    for sub in subs {
        assert_eq!(sub["name"], "mysql@127.0.0.1");
        assert_eq!(sub["namespace"], "remote");
        let sql = &sub["sql"];
        assert_eq!(sql["database_type"], "MySQL");
        assert_eq!(
            sql["url"],
            Value::String(format!("mysql://app@127.0.0.1:{}/mysql", server.port))
        );
        assert_eq!(sql["user"], "app");
        assert!(
            sql["database_version"]
                .as_str()
                .unwrap()
                .contains("MariaDB"),
            "{sql}"
        );
        assert!(!sub.to_string().contains("password"), "{sub}");
        assert!(!sub.to_string().contains("not-to-be-recorded"), "{sub}");
    }
    let queries: Vec<&str> = subs
        .iter()
        .map(|s| s["sql"]["sanitized_query"].as_str().unwrap())
        .collect();
    assert_eq!(
        queries,
        [
            "CREATE TEMPORARY TABLE items (id INT PRIMARY KEY, name TEXT)",
            "CREATE TABLE IF NOT EXISTS t (id INT PRIMARY KEY, secret TEXT)",
            "INSERT INTO t VALUES (?, ?)",
            "INSERT INTO t VALUES (?, ?)",
            "COMMIT",
            "SELEC ?",
        ]
    );
    let cause_type = |sub: &Value| sub["cause"]["exceptions"][0]["type"].clone();
    assert_eq!(cause_type(&subs[3]), "1062");
    assert_eq!(subs[3]["fault"], true);
    assert_eq!(cause_type(&subs[5]), "1064");
}
