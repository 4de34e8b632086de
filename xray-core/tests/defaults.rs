//! The production defaults, through the builder and the environment: which sampler decides,
//! what the start-up line says, and what a bad value does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use xray_sdk::plugins::DetectOptions;
use xray_sdk::sampling::{DecidingRule, SamplingRequest};
use xray_sdk::transport::TransportErrorKind;
use xray_sdk::{ConfigError, InMemoryEmitter, Recorder, RecorderBuilder, TraceHeader};

/// The events logged under `xray_sdk` targets, each as its fields.
#[derive(Default)]
struct Lines(Mutex<Vec<HashMap<String, String>>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Subscriber for Lines {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if event.metadata().target().starts_with("xray_sdk") {
            let mut fields = HashMap::new();
            fields.insert("level".to_owned(), event.metadata().level().to_string());
            fields.insert("target".to_owned(), event.metadata().target().to_owned());
            event.record(&mut Fields(&mut fields));
            self.0.lock().unwrap().push(fields);
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// A builder reading only `vars`, sending into memory, detecting nothing.
fn with_vars(vars: &[(&str, &str)]) -> RecorderBuilder {
    reading(vars).with_emitter(InMemoryEmitter::new())
}

/// A builder reading only `vars`, with the default emitter (a socket to the daemon), detecting
/// nothing.
fn reading(vars: &[(&str, &str)]) -> RecorderBuilder {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Recorder::builder()
        .with_env(move |k| vars.get(k).cloned())
        .with_environment_detection(DetectOptions::disabled())
}

/// Builds, returning the recorder (or the error) and what was logged.
fn build_logged(
    builder: RecorderBuilder,
) -> (Result<Recorder, ConfigError>, Vec<HashMap<String, String>>) {
    let lines = Arc::new(Lines::default());
    let recorder = tracing::subscriber::with_default(lines.clone(), || builder.build());
    let logged = lines.0.lock().unwrap().clone();
    (recorder, logged)
}

fn ready_line(lines: &[HashMap<String, String>]) -> HashMap<String, String> {
    lines
        .iter()
        .find(|l| {
            l.get("message")
                .is_some_and(|m| m == "X-Ray recorder ready")
        })
        .cloned()
        .unwrap_or_else(|| panic!("no start-up line in {lines:?}"))
}

#[test]
fn centralized_sampling_is_the_default_and_says_so() {
    let (recorder, lines) = build_logged(with_vars(&[
        ("AWS_XRAY_DAEMON_ADDRESS", "127.0.0.1:9"),
        ("AWS_XRAY_TRACING_NAME", "orders"),
    ]));
    let recorder = recorder.unwrap();
    let line = ready_line(&lines);
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["service"], "orders");
    assert_eq!(line["daemon"], "127.0.0.1:9");
    assert_eq!(
        line["sampler"],
        "centralized through 127.0.0.1:9, falling back to the default rules"
    );
    assert_eq!(line["upstream_decisions"], "obeyed");
    assert_eq!(
        line["transport"],
        "segment documents, one UDP datagram each"
    );
    // Nothing answers at 127.0.0.1:9: the local default rule decides meanwhile.
    let why = recorder.sampler().explain(&SamplingRequest::new());
    assert_eq!(why.decision().rule(), &DecidingRule::LocalDefault);
}

#[test]
fn lambda_keeps_local_sampling() {
    let (_, lines) = build_logged(with_vars(&[("LAMBDA_TASK_ROOT", "/var/task")]));
    let line = ready_line(&lines);
    assert_eq!(line["sampler"], "local, default rules");
    assert_eq!(line["lambda"], "true");
}

#[test]
fn the_environment_chooses_the_sampler_and_the_rules() {
    // Everything, for development.
    let (recorder, lines) = build_logged(with_vars(&[("XRAY_SAMPLER", "always")]));
    assert_eq!(ready_line(&lines)["sampler"], "always");
    let recorder = recorder.unwrap();
    for _ in 0..10 {
        assert!(recorder.begin_segment("dev").is_sampled());
    }

    // Nothing new, but a caller's decision still counts.
    let recorder = with_vars(&[("XRAY_SAMPLER", "never")]).build().unwrap();
    assert!(!recorder.begin_segment("quiet").is_sampled());
    let told: TraceHeader = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
        .parse()
        .unwrap();
    let segment = recorder.begin_segment_with("quiet", Some(&told), &SamplingRequest::new());
    assert!(segment.is_sampled());
    // Unless upstream decisions are ignored.
    let edge = with_vars(&[("XRAY_SAMPLER", "never")])
        .with_upstream_decisions(false)
        .build()
        .unwrap();
    assert!(
        !edge
            .begin_segment_with("edge", Some(&told), &SamplingRequest::new())
            .is_sampled()
    );

    // A rules file, read from XRAY_SAMPLING_RULES, for the local sampler.
    let dir = std::env::temp_dir().join(format!("xray-defaults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rules.json");
    std::fs::write(
        &file,
        r#"{"version": 2, "default": {"fixed_target": 0, "rate": 0.0},
            "rules": [{"host": "*", "http_method": "*", "url_path": "/orders", "fixed_target": 0, "rate": 1.0}]}"#,
    )
    .unwrap();
    let path = file.display().to_string();
    let (recorder, lines) = build_logged(with_vars(&[
        ("XRAY_SAMPLER", "local"),
        ("XRAY_SAMPLING_RULES", &path),
    ]));
    assert_eq!(
        ready_line(&lines)["sampler"],
        format!("local, rules in {path}")
    );
    let orders = SamplingRequest::new().with_url_path("/orders");
    assert_eq!(
        recorder.unwrap().sampler().should_sample(&orders).rule(),
        &DecidingRule::Local(0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_rules_file_that_cannot_be_read_gives_the_operating_systems_reason() {
    let missing = std::env::temp_dir().join("xray-no-such-dir/rules.json");
    let err = xray_sdk::sampling::SamplingRules::from_file(&missing).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("xray-no-such-dir/rules.json"), "{text}");
    assert!(text.contains("os error"), "{text}");
}

#[test]
fn a_bad_value_names_its_variable_and_value() {
    for (variable, value) in [
        ("AWS_XRAY_DAEMON_ADDRESS", "nonsense"),
        ("AWS_XRAY_CONTEXT_MISSING", "PANIC"),
        ("XRAY_TRANSPORT", "pigeon"),
        ("XRAY_SAMPLER", "sometimes"),
    ] {
        let err = with_vars(&[(variable, value)]).build().unwrap_err();
        assert_eq!(err.variable(), variable);
        let text = err.to_string();
        assert!(text.contains(variable) && text.contains(value), "{text}");
    }
}

#[test]
fn an_unusable_daemon_is_not_replaced_by_the_default_one() {
    let lines = Arc::new(Lines::default());
    let recorder = tracing::subscriber::with_default(lines.clone(), || {
        // Not the in-memory emitter: the daemon's socket is what must not go elsewhere.
        reading(&[
            ("AWS_XRAY_DAEMON_ADDRESS", "nonsense"),
            ("AWS_XRAY_TRACING_NAME", "orders"),
            ("XRAY_SAMPLER", "always"),
        ])
        .build_lenient()
    });
    let lines = lines.0.lock().unwrap().clone();
    let error = lines
        .iter()
        .find(|l| l["level"] == "ERROR")
        .expect("the bad value is logged");
    assert_eq!(error["variable"], "AWS_XRAY_DAEMON_ADDRESS");
    assert!(error["error"].contains("nonsense"), "{error:?}");
    assert!(error["message"].contains("not be sent"), "{error:?}");
    // The other variables still apply.
    assert_eq!(recorder.service_name(), "orders");
    let segment = recorder.begin_segment("orders");
    assert!(segment.is_sampled());
    segment.end();
    let stats = recorder.stats().transport;
    assert_eq!((stats.sent, stats.failed), (0, 1));
    assert_eq!(stats.last_error, Some(TransportErrorKind::Closed));
}

#[test]
fn a_bad_value_costs_only_itself() {
    // "Disabled" wins whatever else is wrong.
    let recorder = reading(&[
        ("AWS_XRAY_DAEMON_ADDRESS", "garbage"),
        ("AWS_XRAY_SDK_ENABLED", "false"),
    ])
    .build_lenient();
    assert!(!recorder.is_enabled());
    assert!(!recorder.begin_segment("off").is_sampled());

    // A bad context-missing strategy leaves the good daemon address in force.
    let daemon = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    daemon
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let address = daemon.local_addr().unwrap().to_string();
    let recorder = reading(&[
        ("AWS_XRAY_DAEMON_ADDRESS", &address),
        ("AWS_XRAY_CONTEXT_MISSING", "nonsense"),
        ("XRAY_SAMPLER", "always"),
    ])
    .build_lenient();
    let segment = recorder.begin_segment("orders");
    let trace_id = segment.trace_id().to_string();
    segment.end();
    let mut buf = [0u8; 65_536];
    let (n, _) = daemon
        .recv_from(&mut buf)
        .expect("the segment reaches the daemon named");
    let datagram = String::from_utf8_lossy(&buf[..n]);
    assert!(datagram.contains(&trace_id), "{datagram}");
}

#[test]
fn a_bad_tracing_name_is_reported_once_not_per_segment() {
    let lines = Arc::new(Lines::default());
    tracing::subscriber::with_default(lines.clone(), || {
        let recorder = with_vars(&[
            ("AWS_XRAY_TRACING_NAME", "orders\u{7}\u{1b}[2J"),
            ("XRAY_SAMPLER", "always"),
        ])
        .build()
        .unwrap();
        assert_eq!(recorder.service_name(), "orders2J");
        for _ in 0..1_000 {
            recorder.begin_segment("ignored").end();
        }
    });
    let lines = lines.0.lock().unwrap();
    let warned: Vec<_> = lines.iter().filter(|l| l["level"] == "WARN").collect();
    assert_eq!(warned.len(), 1, "{lines:?}");
    assert_eq!(warned[0]["variable"], "AWS_XRAY_TRACING_NAME");
    assert_eq!(warned[0]["used"], "orders2J");
    // Sanitising logs at most once (here, at build), not once per segment.
    assert!(
        lines
            .iter()
            .filter(|l| l["target"] == "xray_sdk::document")
            .count()
            <= 1,
        "{lines:?}"
    );
}
