//! The `xray-local` binary as the daemon that forwards: started with the AWS daemon's flags
//! and pointed at moto's X-Ray API, with credentials from the environment, as a user would.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use xray_testkit::moto::Moto;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const REGION: &str = "us-east-1";

fn client(moto: &Moto) -> aws_sdk_xray::Client {
    let config = aws_sdk_xray::Config::builder()
        .region(aws_sdk_xray::config::Region::new(REGION))
        .credentials_provider(aws_sdk_xray::config::Credentials::new(
            "AKIDEXAMPLETESTKEY00",
            "test-secret",
            None,
            None,
            "test",
        ))
        .endpoint_url(&moto.endpoint)
        .behavior_version(aws_sdk_xray::config::BehaviorVersion::latest())
        .build();
    aws_sdk_xray::Client::from_conf(config)
}

type Lines = std::io::Lines<BufReader<std::process::ChildStderr>>;

/// Starts the binary forwarding to moto, with credentials in the environment; returns it, its
/// stderr after the first line, and the UDP and TCP addresses that line gives.
fn spawn(moto: &Moto, extra: &[&str]) -> (Running, Lines, String, String) {
    let mut args = vec![
        "-b",
        "127.0.0.1:0",
        "-n",
        REGION,
        "--endpoint",
        &moto.endpoint,
    ];
    args.extend_from_slice(extra);
    spawn_with(&args, &[("AWS_EC2_METADATA_DISABLED", "true")])
}

/// Starts the binary with `args` and `env`, with test credentials and no AWS settings of the
/// machine's.
fn spawn_with(args: &[&str], env: &[(&str, &str)]) -> (Running, Lines, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xray-local"));
    command
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLETESTKEY00")
        .env("AWS_SECRET_ACCESS_KEY", "test-secret")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_REGION")
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let first = lines.next().unwrap().unwrap();
    let (udp, tcp) = first
        .strip_prefix("xray-local: listening on udp ")
        .and_then(|rest| rest.split_once(" tcp "))
        .map(|(u, t)| (u.to_owned(), t.to_owned()))
        .unwrap_or_else(|| panic!("unexpected first line: {first}"));
    (Running(child), lines, udp, tcp)
}

/// Polls moto until it holds the trace; returns its documents.
fn stored(moto: &Moto, trace_id: &str) -> Vec<serde_json::Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = client(moto);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = rt
            .block_on(client.batch_get_traces().trace_ids(trace_id).send())
            .expect("BatchGetTraces");
        let docs: Vec<serde_json::Value> = out
            .traces()
            .iter()
            .flat_map(|t| t.segments())
            .filter_map(|s| serde_json::from_str(s.document()?).ok())
            .collect();
        if !docs.is_empty() {
            return docs;
        }
        assert!(Instant::now() < deadline, "the segment never reached X-Ray");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn send(udp: &str, doc: &serde_json::Value) {
    let datagram = format!("{{\"format\":\"json\",\"version\":1}}\n{doc}");
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(datagram.as_bytes(), udp)
        .unwrap();
}

#[test]
fn the_aws_daemon_flags_forward_what_arrives_over_udp() {
    let moto = Moto::start();
    let (running, mut lines, udp, _) = spawn(&moto, &["-o"]);
    let second = lines.next().unwrap().unwrap();
    assert!(
        second.contains("forwarding to AWS X-Ray in us-east-1"),
        "{second}"
    );
    // Keep reading stderr so the program never writes to a closed pipe.
    std::thread::spawn(move || for _ in lines {});

    let trace_id = "1-5759e988-bd862e3fe1be46a994272793";
    let doc = serde_json::json!({
        "name": "checkout", "id": "70de5b6f19ff9a0a", "trace_id": trace_id,
        "start_time": 1_735_689_600.5, "end_time": 1_735_689_601.25,
        "http": {"request": {"method": "POST", "url": "https://example.com/pay"},
                 "response": {"status": 200}},
        "annotations": {"tenant": "blue"},
        "subsegments": [{"name": "db", "id": "2c7a5d1f3e9b8a40",
                         "start_time": 1_735_689_600.6, "end_time": 1_735_689_600.9,
                         "namespace": "remote"}]
    });
    send(&udp, &doc);
    let stored = stored(&moto, trace_id);
    assert_eq!(stored, [doc], "what X-Ray holds is what the SDK sent");
    drop(running);
}

#[test]
fn a_cfg_yaml_points_it_at_x_ray_as_a_user_would() {
    let moto = Moto::start();
    let dir = xray_testkit::moto::TempDir::new();
    let log = dir.path.join("xray.log");
    let cfg = dir.path.join("cfg.yaml");
    std::fs::write(
        &cfg,
        format!(
            "# as a user writes it\nTotalBufferSizeMB: 8\nConcurrency: 2\nRegion: \"{REGION}\"\n\
             Endpoint: \"{}\"\nSocket:\n  UDPAddress: \"127.0.0.1:0\"\n  TCPAddress: \"127.0.0.1:0\"\n\
             Logging:\n  LogRotation: true\n  LogLevel: \"info\"\n  LogPath: \"{}\"\n\
             LocalMode: true\nResourceARN: \"\"\nRoleARN: \"\"\nProxyAddress: \"\"\nVersion: 2\n",
            moto.endpoint,
            log.display()
        ),
    )
    .unwrap();
    let (running, mut lines, udp, tcp) = spawn_with(&["-c", cfg.to_str().unwrap()], &[]);
    assert_ne!(
        udp, tcp,
        "both ports from the file, each picked by the system"
    );
    let second = lines.next().unwrap().unwrap();
    assert!(
        second.contains(&format!(
            "forwarding to AWS X-Ray in {REGION} at {}",
            moto.endpoint
        )),
        "{second}"
    );
    std::thread::spawn(move || for _ in lines {});
    let trace_id = "1-5759e988-0c0f1e2d3c4b5a6978869504";
    let doc = serde_json::json!({
        "name": "from-cfg", "id": "0a1b2c3d4e5f6071", "trace_id": trace_id,
        "start_time": 1_735_689_600.5, "end_time": 1_735_689_601.0
    });
    send(&udp, &doc);
    assert_eq!(stored(&moto, trace_id), [doc]);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains(&format!("Z [Info] configuration from {}", cfg.display())),
        "{logged}"
    );
    drop(running);
}

/// A stand-in for EC2 instance metadata (IMDSv2) on 127.0.0.1, answering as its documentation
/// says: a token for `PUT /latest/api/token`, the region for
/// `GET /latest/meta-data/placement/region` with that token. Returns its URL and the request
/// lines it was sent.
fn instance_metadata(
    region: &'static str,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = vec![0u8; 8192];
            let Ok(n) = stream.read(&mut buf) else {
                continue;
            };
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            let first = request.lines().next().unwrap_or("").to_owned();
            let has_token = request
                .to_ascii_lowercase()
                .contains("x-aws-ec2-metadata-token: imds-token");
            kept.lock().unwrap().push(first.clone());
            let (status, body) = if first.starts_with("PUT /latest/api/token ") {
                ("200 OK", "imds-token")
            } else if first.starts_with("GET /latest/meta-data/placement/region ") && has_token {
                ("200 OK", region)
            } else {
                ("401 Unauthorized", "")
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nx-aws-ec2-metadata-token-ttl-seconds: 21600\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, seen)
}

#[test]
fn with_a_cfg_yaml_and_without_local_mode_the_region_comes_from_instance_metadata() {
    let moto = Moto::start();
    let dir = xray_testkit::moto::TempDir::new();
    let cfg = dir.path.join("cfg.yaml");
    std::fs::write(
        &cfg,
        format!("Endpoint: \"{}\"\nVersion: 2\n", moto.endpoint),
    )
    .unwrap();
    let (imds, seen) = instance_metadata("eu-north-1");
    let (running, mut lines, _, _) = spawn_with(
        &["-b", "127.0.0.1:0", "-c", cfg.to_str().unwrap()],
        &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds)],
    );
    let second = lines.next().unwrap().unwrap();
    assert!(
        second.contains("forwarding to AWS X-Ray in eu-north-1"),
        "{second}"
    );
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|l| l.starts_with("GET /latest/meta-data/placement/region")),
        "{seen:?}"
    );
    drop(running);

    // Local mode does not ask, and neither does the local viewer without a cfg.yaml: with no
    // region anywhere, nothing is forwarded.
    let plain = dir.path.join("plain.yaml");
    std::fs::write(&plain, "Version: 2\n").unwrap();
    for args in [
        &["-b", "127.0.0.1:0", "-o", "-c", plain.to_str().unwrap()][..],
        &["-b", "127.0.0.1:0"][..],
    ] {
        let (imds, seen) = instance_metadata("eu-north-1");
        let (running, mut lines, _, _) =
            spawn_with(args, &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds)]);
        std::thread::sleep(Duration::from_millis(300));
        assert!(seen.lock().unwrap().is_empty(), "{args:?}");
        drop(running);
        // Its stderr ends with it; no line says it forwards.
        assert!(
            !lines.any(|l| l.is_ok_and(|l| l.contains("forwarding"))),
            "{args:?}"
        );
    }
}

#[test]
fn on_ecs_the_region_comes_from_the_container_metadata_file() {
    let moto = Moto::start();
    let dir = xray_testkit::moto::TempDir::new();
    let file = dir.path.join("ecs-container-metadata.json");
    std::fs::write(
        &file,
        r#"{"Cluster":"default","ContainerName":"xray","TaskARN":"arn:aws:ecs:ap-south-1:123456789012:task/default/0123456789abcdef","MetadataFileStatus":"READY"}"#,
    )
    .unwrap();
    let (running, mut lines, _, _) = spawn_with(
        &["-b", "127.0.0.1:0", "--endpoint", &moto.endpoint],
        &[
            ("ECS_ENABLE_CONTAINER_METADATA", "true"),
            ("ECS_CONTAINER_METADATA_FILE", file.to_str().unwrap()),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    let second = lines.next().unwrap().unwrap();
    assert!(
        second.contains("forwarding to AWS X-Ray in ap-south-1"),
        "{second}"
    );
    drop(running);
}

#[test]
fn a_bad_configuration_is_refused_with_a_message_never_ignored() {
    let dir = xray_testkit::moto::TempDir::new();
    let file = |name: &str, text: &str| {
        let path = dir.path.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let unknown = file(
        "unknown.yaml",
        "Version: 2\nSocket:\n  UDPAddres: \"127.0.0.1:2000\"\n",
    );
    let no_verify = file("noverify.yaml", "Version: 2\nNoVerifySSL: true\n");
    let v1 = file("v1.yaml", "Processor:\n  Region: us-east-1\n");
    let missing = dir.path.join("absent.yaml").to_str().unwrap().to_owned();
    for (args, says) in [
        (vec!["-c", unknown.as_str()], "Socket.UDPAddres"),
        (vec!["-c", no_verify.as_str()], "NoVerifySSL"),
        (vec!["-c", v1.as_str()], "Processor"),
        (vec!["-c", missing.as_str()], "absent.yaml"),
        (vec!["-l", "loud"], "loud"),
        (
            vec!["--role-arn", "arn:aws:iam::123456789012:role/x", "-o"],
            "region",
        ),
        (vec!["--endpoint", "http://127.0.0.1:9", "-o"], "region"),
        (vec!["-m", "2", "-n", "us-east-1"], "at least 3"),
        (vec!["-n", "us-east-1", "-p", "not a url"], "proxy"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_xray-local"))
            .args(&args)
            .env_remove("AWS_REGION")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("xray-local: "), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_xray-local"))
        .arg("-v")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("xray-local "));
}

#[test]
fn sigterm_sends_the_partial_batch_before_exiting() {
    let moto = Moto::start();
    let (mut running, lines, udp, tcp) = spawn(&moto, &[]);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    let trace_id = "1-5759e988-0a1b2c3d4e5f60718293a4b5";
    let datagram = format!(
        "{{\"format\":\"json\",\"version\":1}}\n{{\"name\":\"last\",\"id\":\"1a2b3c4d5e6f7081\",\"trace_id\":\"{trace_id}\",\"start_time\":1.0,\"end_time\":2.0}}"
    );
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(datagram.as_bytes(), &udp)
        .unwrap();
    // The daemon has read it (its /stats says so) before it is told to stop: well inside the
    // 1 s a partial batch waits.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = get_stats(&tcp);
        if stats["received"] == 1 {
            // The TCP port's /stats counts forwarding too.
            assert_eq!(stats["forwarding"]["queued"], 1, "{stats}");
            assert_eq!(stats["forwarding"]["failed"], 0, "{stats}");
            break;
        }
        assert!(Instant::now() < deadline, "never read: {stats}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let child = &mut running.0;
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "xray-local did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    assert!(exit.success(), "{exit:?}");
    // Its last words count what went: the pipe holds them after it exited.
    let mut said = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        let done = line.contains("forwarded 1 of 1");
        said.push(line);
        if done {
            break;
        }
    }
    assert!(
        said.iter().any(|l| l.contains("forwarded 1 of 1")),
        "{said:?}"
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let out = rt
        .block_on(client(&moto).batch_get_traces().trace_ids(trace_id).send())
        .expect("BatchGetTraces");
    assert_eq!(out.traces().len(), 1, "the last batch reached X-Ray");
}

/// `GET /stats` of a running daemon.
fn get_stats(tcp: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(tcp) else {
        return serde_json::Value::Null;
    };
    let _ = write!(
        s,
        "GET /stats HTTP/1.1\r\nHost: {tcp}\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or(serde_json::Value::Null)
}
