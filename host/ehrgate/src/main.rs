//! `ehrgate`: the gateway binary.

mod cli;
mod config;
mod adapters;
mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: many threads allocate and free small buffers (lines, rows, Arrow
/// arrays); glibc's allocator spent a quarter of a bulk ingest in malloc/free and
/// its arena locks. Built without transparent huge pages (`no_thp`, and see
/// `no_huge_pages`): with them, the kernel zeroing fresh 2 MB pages was 40% of an
/// ingest into a 10M-row silver table; without, it was 1.5x faster (docs/tables.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "ehrgate", version, about = "A governed gateway between EHRs, interface engines and a Delta Lake")]
struct Cli {
    /// Configuration file (default: ./ehrgate.toml when present; every setting has a
    /// default that works on one machine).
    #[arg(long, global = true, env = "EHRGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with adapter components.
    Adapter {
        #[command(subcommand)]
        command: AdapterCommand,
    },
    /// The main job: every sample under ../shared/data through the built-in reference
    /// adapter into the lake (./ehrgate-data), then a look at what landed, with SQL.
    Demo {
        /// Folder to ingest (default: ../shared/data, searched upwards).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Map HL7v2 files (messages or batches) or FHIR NDJSON through an adapter into the
    /// lake: bronze (as received), silver (MERGE, newer wins), quarantine.
    Ingest {
        /// Adapter component (.wasm) or `reference` (built in).
        #[arg(long, default_value = "reference")]
        adapter: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run the gateway: MLLP listeners, file drops and webhooks into the lake, each
    /// unit durable (write-ahead log) before it is acknowledged. Without a config: an
    /// MLLP listener on 127.0.0.1:2575 through the reference adapter.
    Serve,
    /// A synthetic, fault-injecting EHR on 127.0.0.1: FHIR R4 REST, SMART Backend
    /// Services token endpoint, Bulk $export (see host/sandbox/README.md).
    Sandbox {
        /// Port (0 picks a free one).
        #[arg(long, default_value_t = 8090)]
        port: u16,
        /// Synthetic patients.
        #[arg(long, default_value_t = 10)]
        patients: usize,
        /// Seed of the synthetic data.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// generic, epic (Group-only export) or oracle:<tenant> (tenant id in the path).
        #[arg(long, default_value = "generic")]
        flavor: String,
        /// Bulk export: NDJSON lines per file before a type is split into more files.
        #[arg(long, default_value_t = 1000)]
        lines_per_file: usize,
        /// Bulk export: status polls answered 202 (in progress) before the manifest.
        #[arg(long, default_value_t = 2)]
        export_polls: u32,
        /// Bulk export: Retry-After (seconds) on an in-progress status poll.
        #[arg(long, default_value_t = 1)]
        retry_after: u64,
        /// Bulk export: every export gets an error file with one OperationOutcome for
        /// N failed resources, and N as its manifest count (as SMART's reference
        /// server does).
        #[arg(long)]
        error_count: Option<u64>,
    },
    /// SQL over the lake's tables (bronze_hl7_messages, silver_patient, ...). Every
    /// query is audited; with --as, only the principal's tables, masked by its
    /// profile (docs/governance.md).
    Sql {
        query: String,
        #[arg(long, value_enum, default_value = "table")]
        format: cli::lake_cmds::OutFormat,
        /// Read as this principal of [governance] principals.
        #[arg(long = "as")]
        principal: Option<String>,
        /// The principal's key, by reference: env:NAME or file:/path.
        #[arg(long, requires = "principal")]
        key: Option<String>,
        /// Purpose of use, recorded in the audit (e.g. TREAT, HOPERAT, HRESCH).
        #[arg(long)]
        purpose: Option<String>,
    },
    /// Export tables through a masking profile (de-identified) as NDJSON and Parquet,
    /// with a manifest.json; the export is audited.
    Export {
        /// Masking profile: safe-harbor or one of [governance.profiles].
        #[arg(long)]
        profile: String,
        /// Folder to write (created).
        #[arg(long)]
        to: PathBuf,
        /// Tables by SQL name; `prefix*` matches a prefix.
        #[arg(long, default_value = "silver_*")]
        tables: Vec<String>,
    },
    /// Unity Catalog: print Databricks SQL that registers every table (external
    /// location), creates the masking functions and column masks equivalent to
    /// [governance] profiles, and grants each principal's group (`ehrgate_<name>`)
    /// its tables.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// The audit table: verify its hash chain.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Inputs that were rejected.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
    /// FHIR Bulk Data `$export` from a configured connection into the lake:
    /// resumable (a rerun rejoins an unfinished export) and incremental.
    Bulk {
        #[command(subcommand)]
        command: BulkCommand,
    },
    /// Table maintenance.
    Lake {
        #[command(subcommand)]
        command: LakeCommand,
    },
    /// Workflows: events that trigger adapter actions (docs/workflows.md).
    Workflow {
        #[command(subcommand)]
        command: WorkflowCommand,
    },
    /// Operations KPIs per minute, source and adapter: received, quarantined, error
    /// rate, ACK p50/p95, SLA adherence (gold/kpi_minute, docs/operations.md).
    Kpi {
        /// How far back: a number and s, m, h or d.
        #[arg(long, default_value = "1h")]
        since: String,
        /// Print the table as it is, without recomputing it from bronze first.
        #[arg(long)]
        no_refresh: bool,
        #[arg(long)]
        json: bool,
    },
    /// The agent door: API keys, and its tools over MCP on stdio (docs/agent-door.md).
    Door {
        #[command(subcommand)]
        command: DoorCommand,
    },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Print the statements (each ends with `;`).
    Sql {
        #[arg(long)]
        catalog: String,
        /// The Databricks secret scope holding the pseudonym key.
        #[arg(long, default_value = "ehrgate")]
        secret_scope: String,
        #[arg(long, default_value = "pseudonym_key")]
        secret_key: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain of audit/access_log: exit 0 when every row is as
    /// written, 1 naming the first row deleted, edited or out of place.
    Verify,
    /// An evidence package for an auditor: the period's audit rows (with their chain
    /// columns), the chain's verification, the policies in force, the retention and
    /// purge attestations, and a manifest of SHA-256s.
    Export {
        /// Folder to write (created).
        #[arg(long)]
        to: PathBuf,
        /// Rows at or after this time (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long)]
        from: Option<String>,
        /// Rows before this time.
        #[arg(long)]
        until: Option<String>,
    },
}

#[derive(Subcommand)]
enum DoorCommand {
    /// Make a new client key: prints the key (give it to the client) and the
    /// `key_hash` line for [[agent_door.clients]] (the gateway keeps only that).
    Key,
    /// Serve the door's tools over MCP on stdin/stdout, for an agent that starts
    /// its tools as a subprocess. Every call goes to the running gateway's door
    /// (same scopes, throttle and audit); nothing but MCP is written to stdout.
    Mcp {
        /// The door's URL, e.g. http://127.0.0.1:9772.
        #[arg(long, default_value = "http://127.0.0.1:9772")]
        url: String,
        /// The client's key, by reference: env:NAME or file:/path.
        #[arg(long, default_value = "env:EHRGATE_DOOR_KEY")]
        key: String,
        /// The purpose of use declared on every call, e.g. TREAT.
        #[arg(long)]
        purpose: String,
    },
}

#[derive(Subcommand)]
enum WorkflowCommand {
    /// The configured workflows.
    List,
    /// Runs and their current state, oldest trigger first.
    Runs {
        /// Only runs in this state: pending, retrying, succeeded, failed, cancelled.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        workflow: Option<String>,
        /// Only runs triggered in the last: 30m, 2h, 7d.
        #[arg(long)]
        since: Option<String>,
    },
    /// Per workflow: runs, success and error rates, event-to-completion latency
    /// (p50/p95/p99) and the share completed within the SLA.
    Kpi {
        #[arg(long)]
        since: Option<String>,
    },
    /// Start a failed or cancelled run again (attempts from zero, a new deadline),
    /// on the running gateway.
    Retry {
        id: String,
        #[command(flatten)]
        gw: GatewayArgs,
    },
    /// Stop a run that is not final (between its attempts), on the running gateway.
    Cancel {
        id: String,
        #[command(flatten)]
        gw: GatewayArgs,
    },
}

#[derive(Subcommand)]
enum QuarantineCommand {
    /// List quarantined inputs not yet reprocessed.
    List {
        /// Include rows already reprocessed.
        #[arg(long)]
        all: bool,
    },
    /// Re-run the current adapter over quarantined inputs; those that now map land in
    /// silver and are marked reprocessed.
    Reprocess {
        #[arg(long, conflicts_with = "adapter")]
        id: Option<String>,
        /// Only rows rejected by this adapter (name).
        #[arg(long)]
        adapter: Option<String>,
        /// The adapter to reprocess with (component or `reference`).
        #[arg(long = "with", default_value = "reference")]
        with: String,
    },
}

#[derive(Subcommand)]
enum BulkCommand {
    /// Export (or rejoin the unfinished export of) a connection into bronze, silver
    /// (tombstones for deletions) and quarantine, with progress on stderr.
    Export {
        /// A connection from [[connections]] in the config.
        #[arg(long)]
        connection: String,
        /// Group-level export of this group.
        #[arg(long)]
        group: Option<String>,
        /// Patient-level export of these patients (id or Patient/<id>; repeat the flag).
        #[arg(long)]
        patient: Vec<String>,
        /// Resource types, comma-separated (default: all the server exports).
        #[arg(long, value_delimiter = ',')]
        r#type: Vec<String>,
        /// Only resources changed after this FHIR instant.
        #[arg(long, conflicts_with = "incremental")]
        since: Option<String>,
        /// Only what changed since the last completed export of this connection.
        #[arg(long)]
        incremental: bool,
        /// The adapter whose map-fhir maps the NDJSON (default: the job's, else reference).
        #[arg(long)]
        adapter: Option<String>,
        /// Files downloaded at once (default: [bulk] parallel, 4).
        #[arg(long)]
        parallel: Option<usize>,
    },
    /// Cancel the connection's export in progress (DELETE on its status URL).
    Cancel {
        #[arg(long)]
        connection: String,
    },
    /// The connection's export in progress and last figures.
    Status {
        #[arg(long)]
        connection: String,
    },
}

#[derive(Subcommand)]
enum LakeCommand {
    /// Compact small files in every table.
    Optimize,
    /// Delete unreferenced files older than the retention period.
    Vacuum {
        /// Retention in hours; below 168 (7 days) readers of older versions may break.
        #[arg(long, default_value_t = 168)]
        retention_hours: u64,
        #[arg(long)]
        dry_run: bool,
    },
    /// Apply [[governance.retention]]: delete rows older than each rule's window,
    /// vacuum the files that held them, and write an attestation to the audit.
    Retain {
        /// Keep the files the deleted rows were in this many minutes (0: delete
        /// them now, so older versions cannot be read). A live writer's files not
        /// yet committed are kept whatever this is.
        #[arg(long, default_value_t = 0)]
        vacuum_minutes: u64,
    },
    /// Remove every row about one patient from silver, bronze (the units they came
    /// from), quarantine and workflow runs, vacuum, and audit it.
    Purge {
        /// The patient's FHIR id (silver's Patient id).
        #[arg(long)]
        patient: String,
        /// Keep the files that held the patient's rows (and their change feed
        /// images) this many minutes; a later `ehrgate lake vacuum` deletes them.
        #[arg(long, default_value_t = 0)]
        vacuum_minutes: u64,
    },
}

/// Where a running gateway's admin API is, and its token.
#[derive(clap::Args)]
struct GatewayArgs {
    /// The gateway's admin server.
    #[arg(long, env = "EHRGATE_GATEWAY", default_value = "http://127.0.0.1:9771")]
    gateway: String,
    /// The admin token, by reference: env:NAME or file:/path.
    #[arg(long, default_value = "env:EHRGATE_ADMIN_TOKEN")]
    token: String,
}

#[derive(Subcommand)]
enum AdapterCommand {
    /// Start a new adapter: a crate (outside any workspace) that builds to a
    /// component with `cargo build --release --target wasm32-wasip2`, with a
    /// golden test that passes from the start.
    New {
        /// The adapter's name, e.g. acme-ehr.
        name: String,
        /// Folder to create (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The SDK by path (default: the sdk/ folder of the checkout this binary was built from).
        #[arg(long, conflicts_with = "sdk_git")]
        sdk: Option<PathBuf>,
        /// The SDK from a git repository.
        #[arg(long)]
        sdk_git: Option<String>,
        #[arg(long, default_value = "Acme")]
        vendor: String,
    },
    /// The conformance kit: golden files through the component, every output
    /// through the FHIR validator, the hostile-input corpus, describe() against
    /// the manifest. Exit 1 if anything fails.
    Check {
        /// A component (.wasm) or a package (.ehrpkg).
        input: PathBuf,
        /// Inputs for the golden check (default: tests/fixtures).
        #[arg(long)]
        fixtures: Option<PathBuf>,
        /// Golden files (default: tests/golden).
        #[arg(long)]
        golden: Option<PathBuf>,
        /// Public keys to trust when checking a package's signature.
        #[arg(long)]
        trust: Vec<PathBuf>,
    },
    /// Push a package to an OCI registry (oci://host[:port]/repo:tag); prints the
    /// manifest digest to pin it by.
    Push {
        package: PathBuf,
        target: String,
        /// Plain HTTP (loopback registries always use it).
        #[arg(long)]
        plain_http: bool,
    },
    /// Pull a package from an OCI registry (oci://host/repo:tag or @sha256:...).
    Pull {
        source: String,
        /// Refuse anything but this manifest digest (sha256:...).
        #[arg(long)]
        digest: Option<String>,
        /// Output file (default: NAME-VERSION.ehrpkg).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        plain_http: bool,
    },
    /// Make a publisher key pair: PREFIX.key (private, PKCS#8 PEM) and PREFIX.pub.
    Keygen {
        /// Path prefix of the two files.
        #[arg(long, default_value = "ehrgate-publisher")]
        out: PathBuf,
    },
    /// Package a component (its manifest from its describe()) and sign it; or
    /// re-sign a package.
    Sign {
        /// A component (.wasm) or a package (.ehrpkg).
        input: PathBuf,
        /// The private key (from `adapter keygen`).
        #[arg(long, required_unless_present = "unsigned")]
        key: Option<PathBuf>,
        /// Make an unsigned package (development only: gateways refuse it unless
        /// allow_unsigned = true).
        #[arg(long, conflicts_with = "key")]
        unsigned: bool,
        /// Output file (default: NAME-VERSION.ehrpkg).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check a package as a gateway would before installing it: signature by a
    /// trusted key, digest, contract, describe() against the manifest. Exit 1 if refused.
    Verify {
        package: PathBuf,
        /// Public keys to trust besides [adapter_store] trusted_keys.
        #[arg(long)]
        trust: Vec<PathBuf>,
    },
    /// Install a package into a running gateway (and activate it with --activate).
    Install {
        package: PathBuf,
        #[arg(long)]
        activate: bool,
        #[command(flatten)]
        gw: GatewayArgs,
    },
    /// Make an installed version the active one in a running gateway.
    Activate {
        name: String,
        version: String,
        #[command(flatten)]
        gw: GatewayArgs,
    },
    /// Go back to the previous version in a running gateway.
    Rollback {
        name: String,
        #[command(flatten)]
        gw: GatewayArgs,
    },
    /// Stop serving an adapter in a running gateway (its units are quarantined).
    Disable {
        name: String,
        #[command(flatten)]
        gw: GatewayArgs,
    },
    /// Send a share of an adapter's units to another version (stable by message
    /// control id, else content hash), in a running gateway.
    Canary {
        name: String,
        version: String,
        /// Share of units, 0-100.
        #[arg(long)]
        percent: f64,
        #[command(flatten)]
        gw: GatewayArgs,
    },
    /// Run another version beside the active one on every unit, writing only the
    /// active version's output and the differences (table ops/shadow_diffs).
    Shadow {
        name: String,
        version: String,
        #[command(flatten)]
        gw: GatewayArgs,
    },
    /// End a canary or shadow trial.
    ClearCandidate {
        name: String,
        #[command(flatten)]
        gw: GatewayArgs,
    },
    /// A running gateway's adapters, versions and states.
    List {
        #[command(flatten)]
        gw: GatewayArgs,
    },
    /// Map HL7v2 files (single messages or batches) or FHIR NDJSON files through a
    /// component and print the FHIR resources as JSON, one per line.
    Test {
        /// The adapter component (.wasm), or a built-in adapter (reference, epic,
        /// oracle-health, meditech, mirth, rhapsody, cloverleaf).
        component: String,
        /// Adapter config values: a JSON object file, as kept beside golden files.
        #[arg(long)]
        adapter_config: Option<PathBuf>,
        /// HL7v2 (.hl7, any other extension) or NDJSON (.ndjson) files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print what a component says about itself (describe()) as JSON.
    Describe {
        /// The adapter component (.wasm), or a built-in adapter.
        component: String,
    },
    /// Run a named action (e.g. discharge-checklist) through the configured
    /// connections; transient failures are retried. Prints the action's result.
    Action {
        /// The adapter component (.wasm), a built-in adapter, or a name under [adapters].
        component: String,
        /// The action's name.
        name: String,
        /// The action's input (JSON).
        #[arg(long, default_value = "{}")]
        input: String,
        #[arg(long)]
        adapter_config: Option<PathBuf>,
        /// Attempts on transient failure.
        #[arg(long, default_value_t = 3)]
        attempts: u32,
    },
}

/// Raise the soft limit on open files to the hard limit: a gateway holds many
/// sockets, and running out of descriptors must not be what an ordinary
/// `ulimit -n 1024` decides.
fn raise_fd_limit() {
    #[cfg(unix)]
    // SAFETY: getrlimit / setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            let want = libc::rlimit { rlim_cur: r.rlim_max, rlim_max: r.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) != 0 {
                tracing::warn!("could not raise the open-files limit from {} to {}", r.rlim_cur, r.rlim_max);
            }
        }
    }
}

/// No transparent huge pages for this process, whatever the host's setting
/// (`always` on some distributions): faulting in fresh 2 MB pages, each zeroed by
/// the kernel, was 40% of an ingest into a 10M-row silver table (docs/tables.md).
/// What mimalloc does for `MIMALLOC_ALLOW_THP=0`, the setting that was measured.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with integer arguments only.
    unsafe {
        if libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0 {
            tracing::debug!("could not turn transparent huge pages off for this process");
        }
    }
}

impl GatewayArgs {
    fn remote(&self) -> cli::adapter_admin::Remote {
        cli::adapter_admin::Remote { gateway: self.gateway.clone(), token: self.token.clone() }
    }
}

/// Warnings from ehrgate; the Delta libraries are chatty at `warn` about things that
/// are expected here (no statistics for binary columns, missing tables on first use).

/// See `main`.
const BLOCKING_THREADS: usize = 8192;

fn main() -> ExitCode {
    let _telemetry = telemetry::init();
    let cli = Cli::parse();
    raise_fd_limit();
    no_huge_pages();
    // deltalake 1.1.3 scans a table with deletion vectors by starting one blocking
    // task per file that has one, each waiting for a read that, on a local disk,
    // needs a blocking thread of its own: with tokio's default of 512 blocking
    // threads, a scan of more than about 500 such files waits forever. A higher
    // ceiling (threads are started only as needed) moves that limit; compaction
    // (`ehrgate lake optimize`) keeps the number of such files down
    // (docs/tables.md, "Silver by deletion vectors").
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().max_blocking_threads(BLOCKING_THREADS).build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = rt.block_on(async move {
        let cfg = || config::Config::load(cli.config.as_deref());
        match cli.command {
            Command::Adapter { command: AdapterCommand::Test { component, files, adapter_config } } => {
                cli::adapter_test::run(&cfg()?, &component, &files, adapter_config.as_deref()).await
            }
            Command::Adapter { command: AdapterCommand::New { name, dir, sdk, sdk_git, vendor } } => {
                let sdk = match (sdk, sdk_git) {
                    (Some(p), _) => Some(cli::adapter_new::Sdk::Path(p.canonicalize().map_err(|e| anyhow::anyhow!("--sdk {}: {e}", p.display()))?)),
                    (None, Some(g)) => Some(cli::adapter_new::Sdk::Git(g)),
                    (None, None) => None,
                };
                cli::adapter_new::new(&cfg()?, &name, dir.as_deref(), sdk, &vendor).await
            }
            Command::Adapter { command: AdapterCommand::Check { input, fixtures, golden, trust } } => {
                cli::adapter_check::check(&cfg()?, &input, fixtures.as_deref(), golden.as_deref(), &trust).await
            }
            Command::Adapter { command: AdapterCommand::Push { package, target, plain_http } } => cli::adapter_pkg::push(&package, &target, plain_http).await,
            Command::Adapter { command: AdapterCommand::Pull { source, digest, out, plain_http } } => {
                cli::adapter_pkg::pull(&cfg()?, &source, digest.as_deref(), out.as_deref(), plain_http).await
            }
            Command::Adapter { command: AdapterCommand::Keygen { out } } => cli::adapter_pkg::keygen(&out),
            Command::Adapter { command: AdapterCommand::Sign { input, key, unsigned: _, out } } => {
                cli::adapter_pkg::sign_cmd(&cfg()?, &input, key.as_deref(), out.as_deref()).await
            }
            Command::Adapter { command: AdapterCommand::Verify { package, trust } } => cli::adapter_pkg::verify(&cfg()?, &package, &trust).await,
            Command::Adapter { command: AdapterCommand::Install { package, activate, gw } } => cli::adapter_admin::install(&gw.remote(), &package, activate).await,
            Command::Adapter { command: AdapterCommand::Activate { name, version, gw } } => cli::adapter_admin::activate(&gw.remote(), &name, &version).await,
            Command::Adapter { command: AdapterCommand::Rollback { name, gw } } => cli::adapter_admin::rollback(&gw.remote(), &name).await,
            Command::Adapter { command: AdapterCommand::Disable { name, gw } } => cli::adapter_admin::disable(&gw.remote(), &name).await,
            Command::Adapter { command: AdapterCommand::Canary { name, version, percent, gw } } => {
                cli::adapter_admin::candidate(&gw.remote(), &name, &version, Some(percent)).await
            }
            Command::Adapter { command: AdapterCommand::Shadow { name, version, gw } } => cli::adapter_admin::candidate(&gw.remote(), &name, &version, None).await,
            Command::Adapter { command: AdapterCommand::ClearCandidate { name, gw } } => cli::adapter_admin::clear_candidate(&gw.remote(), &name).await,
            Command::Adapter { command: AdapterCommand::List { gw } } => cli::adapter_admin::list(&gw.remote()).await,
            Command::Adapter { command: AdapterCommand::Describe { component } } => cli::adapter_test::describe(&cfg()?, &component).await,
            Command::Adapter { command: AdapterCommand::Action { component, name, input, adapter_config, attempts } } => {
                cli::adapter_test::action(&cfg()?, &component, &name, &input, adapter_config.as_deref(), attempts).await
            }
            Command::Sandbox { port, patients, seed, flavor, lines_per_file, export_polls, retry_after, error_count } => {
                let opts = cli::sandbox::Args { port, patients, seed, lines_per_file, export_polls, retry_after, error_count };
                cli::sandbox::run(opts, &flavor).await
            }
            Command::Demo { data } => cli::demo::demo(&cfg()?, data).await,
            Command::Ingest { adapter, files } => cli::lake_cmds::ingest(&cfg()?, &adapter, &files).await,
            Command::Serve => cli::serve::serve(cfg()?).await,
            Command::Bulk { command } => match command {
                BulkCommand::Export { connection, group, patient, r#type, since, incremental, adapter, parallel } => {
                    let args = cli::bulk::ExportArgs { connection, group, patients: patient, types: r#type, since, incremental, adapter, parallel };
                    cli::bulk::export(&cfg()?, args).await
                }
                BulkCommand::Cancel { connection } => cli::bulk::cancel(&cfg()?, &connection).await,
                BulkCommand::Status { connection } => cli::bulk::status(&cfg()?, &connection).await,
            },
            Command::Sql { query, format, principal, key, purpose } => {
                let who = cli::govern_cmds::Who { principal, key, purpose };
                cli::govern_cmds::sql(&cfg()?, &query, format, who).await
            }
            Command::Export { profile, to, tables } => cli::govern_cmds::export(&cfg()?, &profile, &to, &tables).await,
            Command::Catalog { command: CatalogCommand::Sql { catalog, secret_scope, secret_key } } => {
                cli::govern_cmds::catalog_sql(&cfg()?, ehrgate_govern::catalog::CatalogOptions { catalog, secret_scope, secret_key }).await
            }
            Command::Audit { command: AuditCommand::Verify } => cli::govern_cmds::audit_verify(&cfg()?).await,
            Command::Audit { command: AuditCommand::Export { to, from, until } } => {
                cli::govern_cmds::audit_export(&cfg()?, &to, from.as_deref(), until.as_deref()).await
            }
            Command::Quarantine { command: QuarantineCommand::List { all } } => cli::lake_cmds::quarantine_list(&cfg()?, all).await,
            Command::Quarantine { command: QuarantineCommand::Reprocess { id, adapter, with } } => {
                cli::lake_cmds::quarantine_reprocess(&cfg()?, id, adapter, &with).await
            }
            Command::Kpi { since, no_refresh, json } => cli::kpi::kpi(&cfg()?, &since, !no_refresh, json).await,
            Command::Workflow { command: WorkflowCommand::List } => cli::workflow::list(&cfg()?),
            Command::Workflow { command: WorkflowCommand::Runs { status, workflow, since } } => {
                cli::workflow::runs(&cfg()?, status.as_deref(), workflow.as_deref(), since.as_deref()).await
            }
            Command::Workflow { command: WorkflowCommand::Kpi { since } } => cli::workflow::kpi(&cfg()?, since.as_deref()).await,
            Command::Workflow { command: WorkflowCommand::Retry { id, gw } } => cli::adapter_admin::workflow_run(&gw.remote(), &id, "retry").await,
            Command::Workflow { command: WorkflowCommand::Cancel { id, gw } } => cli::adapter_admin::workflow_run(&gw.remote(), &id, "cancel").await,
            Command::Door { command: DoorCommand::Key } => {
                let (key, hash) = ehrgate_door::new_key();
                println!("key:      {key}\nkey_hash: \"{hash}\"");
                eprintln!("Give the key to the client (it is shown once); put key_hash in its [[agent_door.clients]] entry.");
                Ok(std::process::ExitCode::SUCCESS)
            }
            Command::Door { command: DoorCommand::Mcp { url, key, purpose } } => {
                let key = ehrgate_connect::SecretRef::new(key).resolve("--key").map_err(|e| anyhow::anyhow!("{e}"))?;
                ehrgate_door::mcp::stdio(&url, key.expose(), &purpose).await.map(|()| std::process::ExitCode::SUCCESS).map_err(|e| anyhow::anyhow!(e))
            }
            Command::Lake { command: LakeCommand::Optimize } => cli::lake_cmds::optimize(&cfg()?).await,
            Command::Lake { command: LakeCommand::Vacuum { retention_hours, dry_run } } => {
                cli::lake_cmds::vacuum(&cfg()?, retention_hours, dry_run).await
            }
            Command::Lake { command: LakeCommand::Retain { vacuum_minutes } } => cli::govern_cmds::retain(&cfg()?, vacuum_minutes).await,
            Command::Lake { command: LakeCommand::Purge { patient, vacuum_minutes } } => cli::govern_cmds::purge(&cfg()?, &patient, vacuum_minutes).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
