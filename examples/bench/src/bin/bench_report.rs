//! Turns the load generator's raw figures (`examples/bench/results.jsonl`, one JSON object per
//! run) into the benchmark report: medians of the repeated runs as Markdown tables, the ratios
//! against the targets, and a bar chart as a hand-written SVG.
//!
//! ```text
//! cargo run --release -p session-bench --bin bench_report -- --results examples/bench/results.jsonl \
//!     --markdown examples/bench/REPORT.md --svg examples/bench/bench.svg
//! ```

use std::{collections::BTreeMap, fmt::Write as _, path::PathBuf};

use serde_json::Value;

struct Opts {
    results: PathBuf,
    markdown: PathBuf,
    svg: PathBuf,
    /// `LABEL=ANNOTATE=LOADGEN_JSON`: `callgrind_annotate --inclusive=yes` output of a server
    /// profiled while the load generator (whose JSON gives the event count) drove it.
    profiles: Vec<(String, PathBuf, PathBuf)>,
}

fn parse_args() -> Result<Opts, String> {
    let (mut results, mut markdown, mut svg) = (None, None, None);
    let mut profiles = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("`{flag}` needs a value"))?;
        match flag.as_str() {
            "--results" => results = Some(value.into()),
            "--markdown" => markdown = Some(value.into()),
            "--svg" => svg = Some(value.into()),
            "--profile" => {
                let mut parts = value.splitn(3, '=');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(label), Some(annotate), Some(json)) => {
                        profiles.push((label.to_owned(), annotate.into(), json.into()))
                    }
                    _ => return Err(format!("`--profile {value}`: expected `LABEL=ANNOTATE_FILE=LOADGEN_JSON`")),
                }
            }
            other => return Err(format!("unknown option `{other}`: expected `--results`, `--markdown`, `--svg` or `--profile`")),
        }
    }
    Ok(Opts {
        results: results.ok_or("`--results` is required")?,
        markdown: markdown.ok_or("`--markdown` is required")?,
        svg: svg.ok_or("`--svg` is required")?,
        profiles,
    })
}

fn main() {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(err) => {
            eprintln!("bench_report: {err}");
            std::process::exit(2);
        }
    };
    let text = std::fs::read_to_string(&opts.results).unwrap_or_else(|err| {
        eprintln!(
            "bench_report: cannot read {}: {err}",
            opts.results.display()
        );
        std::process::exit(1);
    });
    let runs: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut report = Report::new(&runs);
    for (label, annotate, json) in &opts.profiles {
        match Profile::read(label, annotate, json) {
            Ok(p) => report.profiles.push(p),
            Err(err) => eprintln!("bench_report: profile `{label}` skipped: {err}"),
        }
    }
    let svg_name = opts
        .svg
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::fs::write(&opts.markdown, report.markdown(&svg_name)).expect("write the Markdown report");
    std::fs::write(&opts.svg, report.svg()).expect("write the SVG");
}

/// The runs of one configuration (mode, label, event), to take medians over.
struct Group<'a> {
    runs: Vec<&'a Value>,
}

impl Group<'_> {
    fn values(&self, path: &str) -> Vec<f64> {
        let mut v: Vec<f64> = self
            .runs
            .iter()
            .filter_map(|r| path.split('.').try_fold(*r, |v, k| v.get(k)))
            .filter_map(Value::as_f64)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    }

    fn median(&self, path: &str) -> Option<f64> {
        let v = self.values(path);
        match v.len() {
            0 => None,
            n if n % 2 == 1 => Some(v[n / 2]),
            n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
        }
    }

    fn range(&self, path: &str) -> Option<(f64, f64)> {
        let v = self.values(path);
        Some((*v.first()?, *v.last()?))
    }

    /// The runs during which the rest of the machine stayed (nearly) idle.
    fn quiet(&self) -> Self {
        Group {
            runs: self.runs.iter().copied().filter(|r| is_quiet(r)).collect(),
        }
    }
}

/// Other processes used at most this many cores during a "quiet" run. On a shared machine
/// they slow the pinned server (same core, or its SMT sibling), so the targets are judged on
/// quiet runs when there are any.
const QUIET_CORES: f64 = 0.10;

fn is_quiet(run: &Value) -> bool {
    run["cpu"]["other_cores"]
        .as_f64()
        .is_some_and(|o| o <= QUIET_CORES)
}

struct Report<'a> {
    meta: Option<&'a Value>,
    groups: BTreeMap<(String, String, String), Group<'a>>,
    /// Closed-loop rows in the order they are shown.
    order: Vec<(String, String)>,
    profiles: Vec<Profile>,
}

/// Instructions per event of one server variant, by function (inclusive), from callgrind.
struct Profile {
    label: String,
    events: f64,
    total: f64,
    /// (function, inclusive instructions), most expensive first.
    functions: Vec<(String, f64)>,
}

impl Profile {
    fn read(label: &str, annotate: &PathBuf, json: &PathBuf) -> Result<Self, String> {
        let run: Value = serde_json::from_str(
            &std::fs::read_to_string(json).map_err(|e| format!("{}: {e}", json.display()))?,
        )
        .map_err(|e| format!("{}: {e}", json.display()))?;
        let events = run["events_total"]
            .as_f64()
            .filter(|&e| e > 0.0)
            .ok_or("no events")?;
        let text = std::fs::read_to_string(annotate)
            .map_err(|e| format!("{}: {e}", annotate.display()))?;
        let mut total = None;
        let mut functions = Vec::new();
        for line in text.lines() {
            let line = line.trim_start();
            let digits: String = line
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == ',')
                .collect();
            let Ok(count) = digits.replace(',', "").parse::<f64>() else {
                continue;
            };
            let rest = &line[digits.len()..];
            let Some(close) = rest.find(") ") else {
                continue;
            };
            let name = rest[close + 2..].trim();
            if name.starts_with("PROGRAM TOTALS") {
                total = Some(count);
                continue;
            }
            let name = name.split(" [").next().unwrap_or(name);
            let name = name.strip_prefix("???:").unwrap_or(name);
            functions.push((name.to_owned(), count));
        }
        Ok(Self {
            label: label.to_owned(),
            events,
            total: total.ok_or("no PROGRAM TOTALS line")?,
            functions,
        })
    }

    /// Inclusive instructions per event of the first (most expensive) function whose name
    /// contains each pattern, summed over the patterns.
    fn per_event(&self, patterns: &[&str]) -> Option<f64> {
        let mut sum = None;
        for p in patterns {
            if let Some((_, c)) = self.functions.iter().find(|(n, _)| n.contains(p)) {
                *sum.get_or_insert(0.0) += c / self.events;
            }
        }
        sum
    }
}

/// What the profile table shows: a row name and the function-name fragments it sums.
const PROFILE_ROWS: &[(&str, &[&str])] = &[
    ("handler, inclusive: hand-written closure (manual) or runtime wrapper (autosave, readonly); the session-less one is inlined", &["bench_server::incr::{{closure}}", "bench_server::whoami::{{closure}}", "bench_server::register_manual::{{closure}}::{{closure}}"]),
    ("store load, counting wrapper included", &["Counting<S> as tower_sessions_core::session_store::SessionStore>::load::{{closure}}"]),
    ("… of which `MemoryStore::load` (lock, lookup, clone of the record)", &["MemoryStore as tower_sessions_core::session_store::SessionStore>::load::{{closure}}"]),
    ("store save, counting wrapper included", &["Counting<S> as tower_sessions_core::session_store::SessionStore>::save::{{closure}}"]),
    ("… of which `MemoryStore::save` (clone of the record, insert, drop of the old one)", &["MemoryStore as tower_sessions_core::session_store::SessionStore>::save::{{closure}}"]),
    ("runtime: `SessionHandle::load_record` (load + expiry filter)", &["session_runtime::handle::SessionHandle::load_record"]),
    ("runtime: take the lock (`LocalSessionLocks::lock` + its future)", &["LocalSessionLocks as session_runtime::locks::SessionLocks>::lock", "LocalSessionLocks as session_runtime::locks::SessionLocks>::lock::{{closure}}"]),
    ("runtime: release the lock (drop `LocalGuard`: claim count, map removal)", &["drop_in_place<session_runtime::locks::LocalGuard>"]),
    ("runtime: `Session::insert_value`", &["session_runtime::session::Session::insert_value"]),
    ("runtime: `Session::get`", &["session_runtime::session::Session::get"]),
    ("runtime: `expiry_date` (now + 2 weeks)", &["session_runtime::handle::expiry_date"]),
    ("runtime: `Shared::new`", &["session_runtime::session::Shared::new"]),
    ("tower-sessions `Session::load` (hand-written variant)", &["tower_sessions_core::session::Session::load::{{closure}}"]),
    ("tower-sessions `Session::get_record`/`get_value` (hand-written variant)", &["tower_sessions_core::session::Session::get_record::{{closure}}", "tower_sessions_core::session::Session::get_value::{{closure}}"]),
    ("acknowledgement (`AckSender::send`)", &["AckSender<A>::send"]),
    ("SipHash `hash_one`, all callers (lock table, stores, socketioxide)", &["core::hash::BuildHasher::hash_one"]),
    ("allocator: `__rust_alloc` + `__rust_dealloc`, all callers", &["__rustc::__rust_alloc", "__rustc::__rust_dealloc"]),
    ("`tokio::spawn` of the handler task (socketioxide)", &["tokio::task::spawn::spawn"]),
    ("upstream, all variants: tungstenite zeroes its read buffer (`BytesMut::resize`)", &["bytes::bytes_mut::BytesMut::resize"]),
    ("upstream, all variants: socketioxide builds a serde_json error per event (`Error::custom`)", &["serde_json::error::Error as serde_core::de::Error>::custom"]),
];

const LOOP_ROWS: &[(&str, &str, &str)] = &[
    ("plain/memory", "incr", "(a) session-less ack handler"),
    ("plain/memory", "whoami", "(a) session-less ack handler"),
    ("manual/memory", "incr", "(b) hand-written reload/save"),
    ("autosave/memory", "incr", "(c) autosave"),
    ("manual/memory", "whoami", "(b) hand-written reload"),
    ("autosave/memory", "whoami", "(d) readonly"),
    ("manual/moka", "incr", "(b) hand-written reload/save"),
    ("autosave/moka", "incr", "(c) autosave"),
    ("manual/moka", "whoami", "(b) hand-written reload"),
    ("autosave/moka", "whoami", "(d) readonly"),
    ("manual/sqlite", "incr", "(b) hand-written reload/save"),
    ("autosave/sqlite", "incr", "(c) autosave"),
    ("manual/sqlite", "whoami", "(b) hand-written reload"),
    ("autosave/sqlite", "whoami", "(d) readonly"),
    (
        "node/memory",
        "incr",
        "Node: express-session + express-socket.io-session",
    ),
    (
        "node/memory",
        "whoami",
        "Node: express-session + express-socket.io-session",
    ),
];

fn fmt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) => format!("{v:.digits$}"),
        None => "–".into(),
    }
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "not measured",
    }
}

impl<'a> Report<'a> {
    fn new(runs: &'a [Value]) -> Self {
        let mut groups: BTreeMap<(String, String, String), Group<'a>> = BTreeMap::new();
        let mut meta = None;
        for r in runs {
            if r["kind"] == "meta" {
                meta = Some(r);
                continue;
            }
            let key = (
                r["mode"].as_str().unwrap_or_default().to_owned(),
                r["label"].as_str().unwrap_or_default().to_owned(),
                r["event"].as_str().unwrap_or_default().to_owned(),
            );
            groups
                .entry(key)
                .or_insert_with(|| Group { runs: Vec::new() })
                .runs
                .push(r);
        }
        let order = LOOP_ROWS
            .iter()
            .map(|(l, e, _)| (l.to_string(), e.to_string()))
            .collect();
        Self {
            meta,
            groups,
            order,
            profiles: Vec::new(),
        }
    }

    fn group(&self, mode: &str, label: &str, event: &str) -> Option<&Group<'a>> {
        self.groups
            .get(&(mode.to_owned(), label.to_owned(), event.to_owned()))
    }

    fn loop_median(&self, label: &str, event: &str, path: &str) -> Option<f64> {
        self.group("loop", label, event)?.median(path)
    }

    fn ratio(&self, a: (&str, &str), b: (&str, &str), path: &str) -> Option<f64> {
        Some(self.loop_median(a.0, a.1, path)? / self.loop_median(b.0, b.1, path)?)
    }

    /// The ratio of medians over quiet runs when both sides have some, else over all runs;
    /// with a note saying which.
    fn target_ratio(&self, a: (&str, &str), b: (&str, &str), path: &str) -> (Option<f64>, String) {
        let (Some(ga), Some(gb)) = (self.group("loop", a.0, a.1), self.group("loop", b.0, b.1))
        else {
            return (None, String::new());
        };
        let (qa, qb) = (ga.quiet(), gb.quiet());
        if !qa.runs.is_empty() && !qb.runs.is_empty() {
            let r = qa.median(path).zip(qb.median(path)).map(|(x, y)| x / y);
            (
                r,
                format!(" (quiet runs: {} and {})", qa.runs.len(), qb.runs.len()),
            )
        } else {
            (self.ratio(a, b, path), " (all runs: no quiet run)".into())
        }
    }

    fn markdown(&self, svg_name: &str) -> String {
        let mut md = String::new();
        let m = |k: &str| {
            self.meta
                .and_then(|m| m.get(k))
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                })
                .unwrap_or_else(|| "?".into())
        };
        let _ = writeln!(md, "# Benchmark report\n");
        let _ = writeln!(
            md,
            "Generated by `examples/bench/run.sh` (raw figures: `results.jsonl`). Every figure is the \
             median of {} repetitions run interleaved; the server is pinned to one core, the load \
             generator (one thread) to the other.\n",
            m("reps")
        );
        let _ = writeln!(
            md,
            "Run: {} · {} cores ({}) · pinned: {} · {} · node {} · commit {} · load average at start: {}\n",
            m("started"), m("nproc"), m("cpu"), m("pinned"), m("rustc"), m("node"), m("commit"), m("loadavg")
        );
        let others: Vec<f64> = self
            .groups
            .values()
            .flat_map(|g| g.values("cpu.other_cores"))
            .collect();
        if let (Some(lo), Some(hi)) = (
            others.iter().copied().reduce(f64::min),
            others.iter().copied().reduce(f64::max),
        ) {
            let mut sorted = others.clone();
            sorted.sort_by(f64::total_cmp);
            let _ = writeln!(
                md,
                "Load conditions: the machine is shared. Besides the server and the load generator, \
                 other processes used {lo:.2} to {hi:.2} cores (median {:.2}) during the measured \
                 windows (column *other*).\n",
                sorted[sorted.len() / 2]
            );
        }

        let _ = writeln!(md, "![server CPU per event and throughput]({svg_name})\n");

        // Targets first: that is what a reader looks for.
        let _ = writeln!(md, "## Targets\n");
        let _ = writeln!(md, "Ratios are judged on *quiet* runs (other processes below {QUIET_CORES:.2} cores) when both sides have some, since background load on a shared machine slows the pinned server; the tables below keep every run.\n");
        let _ = writeln!(md, "| target | measured | verdict |\n|---|---|---|");
        let cpu = "cpu.server_cpu_us_per_event";
        let eps = "events_per_s";
        let plain = ("plain/memory", "incr");
        let auto = ("autosave/memory", "incr");
        let ro = ("autosave/memory", "whoami");
        // The readonly handler answers `{"user": ..}`: compare it with the session-less
        // handler that answers the same shape.
        let plain_ro = ("plain/memory", "whoami");
        let node = ("node/memory", "incr");
        let (r, note) = self.target_ratio(auto, plain, cpu);
        let _ = writeln!(
            md,
            "| server CPU per autosave event ≤ 1.10 × session-less | {} ×{note} | {} |",
            fmt(r, 3),
            verdict(r.map(|r| r <= 1.10))
        );
        let (r, note) = self.target_ratio(ro, plain_ro, cpu);
        let _ = writeln!(
            md,
            "| (for reference: server CPU per readonly `whoami` vs session-less `whoami`) | {} ×{note} | – |",
            fmt(r, 3)
        );
        let (r, note) = self.target_ratio(node, auto, cpu);
        let _ = writeln!(
            md,
            "| Node's CPU per event ≥ 1.8 × autosave's | {} ×{note} | {} |",
            fmt(r, 2),
            verdict(r.map(|r| r >= 1.8))
        );
        let (r, note) = self.target_ratio(auto, plain, eps);
        let _ = writeln!(
            md,
            "| autosave throughput ≥ 90 % of session-less | {} %{note} | {} |",
            fmt(r.map(|r| r * 100.0), 1),
            verdict(r.map(|r| r >= 0.90))
        );
        let (r, note) = self.target_ratio(ro, plain_ro, eps);
        let _ = writeln!(
            md,
            "| readonly (`whoami`) throughput ≥ 95 % of session-less `whoami` | {} %{note} | {} |",
            fmt(r.map(|r| r * 100.0), 1),
            verdict(r.map(|r| r >= 0.95))
        );
        let (r, note) = self.target_ratio(plain, auto, cpu);
        let _ = writeln!(
            md,
            "| … the same per server core (1 / CPU per event): autosave ≥ 90 % | {} %{note} | {} |",
            fmt(r.map(|r| r * 100.0), 1),
            verdict(r.map(|r| r >= 0.90))
        );
        let (r, note) = self.target_ratio(plain_ro, ro, cpu);
        let _ = writeln!(
            md,
            "| … the same per server core: readonly ≥ 95 % | {} %{note} | {} |",
            fmt(r.map(|r| r * 100.0), 1),
            verdict(r.map(|r| r >= 0.95))
        );
        for store in ["memory", "sqlite"] {
            let label = format!("autosave/{store}");
            let lost = self
                .group("burst", &label, "incr")
                .and_then(|g| g.range("lost_updates"));
            let _ = writeln!(
                md,
                "| burst: 0 lost updates, autosave/{store} | {} | {} |",
                lost.map(|(lo, hi)| if lo == hi {
                    format!("{lo:.0}")
                } else {
                    format!("{lo:.0} to {hi:.0}")
                })
                .unwrap_or("–".into()),
                verdict(lost.map(|(_, hi)| hi == 0.0))
            );
        }
        let lost = self
            .group("burst", "autosave/memory+2ms", "incr")
            .and_then(|g| g.range("lost_updates"));
        let _ = writeln!(
            md,
            "| burst: 0 lost updates, autosave, store with 2 ms latency | {} | {} |",
            lost.map(|(lo, hi)| format!("{lo:.0} to {hi:.0}"))
                .unwrap_or("–".into()),
            verdict(lost.map(|(_, hi)| hi == 0.0))
        );
        let node_lost = self.group("burst", "node/memory", "incr");
        let _ = writeln!(
            md,
            "| burst: Node's figure (reported, no target) | {} lost of {} | – |",
            fmt(node_lost.and_then(|g| g.median("lost_updates")), 0),
            fmt(node_lost.and_then(|g| g.median("acked_ok")), 0)
        );
        let mem = |label: &str| {
            self.group("idle", label, "incr")
                .and_then(|g| g.median("rss_per_socket_bytes"))
        };
        let attach = mem("rust/session")
            .zip(mem("rust/no-session"))
            .map(|(a, b)| a - b);
        let _ = writeln!(
            md,
            "| session attachment ≤ 1 KiB per connected socket | {} B | {} |",
            fmt(attach, 0),
            verdict(attach.map(|a| a <= 1024.0))
        );
        for (label, event, name) in [
            ("autosave/memory", "incr", "autosave"),
            ("autosave/memory", "whoami", "readonly"),
        ] {
            let g = self.group("loop", label, event);
            let load = g.and_then(|g| g.median("store_ops_per_event.load"));
            let save = g.and_then(|g| g.median("store_ops_per_event.save"));
            let ok = load.zip(save).map(|(l, s)| {
                if name == "autosave" {
                    (l - 1.0).abs() < 1e-9 && s <= 1.0 + 1e-9
                } else {
                    (l - 1.0).abs() < 1e-9 && s == 0.0
                }
            });
            let want = if name == "autosave" {
                "1 load + ≤ 1 save"
            } else {
                "1 load, 0 saves"
            };
            let _ = writeln!(
                md,
                "| store operations per {name} event: {want} | {} load + {} save | {} |",
                fmt(load, 3),
                fmt(save, 3),
                verdict(ok)
            );
        }
        // Every quiet closed-loop run: was the server's core full while the load generator's
        // was not?
        let quiet: Vec<&Value> = self
            .groups
            .iter()
            .filter(|((mode, _, _), _)| mode == "loop")
            .flat_map(|(_, g)| g.runs.iter().copied())
            .filter(|r| is_quiet(r))
            .collect();
        let all_quiet = Group { runs: quiet };
        let server_cores = all_quiet.median("cpu.server_cores");
        let loadgen_max = all_quiet.range("cpu.loadgen_cores").map(|(_, hi)| hi);
        let _ = writeln!(
            md,
            "| saturation: the server, not the load generator, is the limit | {} quiet runs: server {} cores (median), load generator at most {} cores | {} |",
            all_quiet.runs.len(),
            fmt(server_cores, 2),
            fmt(loadgen_max, 2),
            verdict(server_cores.zip(loadgen_max).map(|(s, l)| s >= 0.90 && l < 0.95))
        );
        let _ = writeln!(md);

        let _ = writeln!(
            md,
            "## Closed loop ({} sockets, one session each, `incr` or `whoami` with acks)\n",
            m("clients")
        );
        let _ = writeln!(md, "Server CPU is user+sys of the server process per acknowledged event (`/proc/<pid>/stat`, 10 ms ticks), split into user and sys: every variant makes the same system calls per event (one `recvfrom`, one `sendto`), so sys is the loopback TCP + websocket floor that all share; *cores* is CPU time over wall time (1.00 = one core saturated). Store operations come from the counting store wrapper of `bench_server`.\n");
        let _ = writeln!(
            md,
            "| variant | store | event | events/s | p50 µs | p99 µs | p999 µs | server CPU µs/event | user µs | sys µs | events/s per server core | server cores | load generator cores | other cores | loads/event | saves/event | lost | runs |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for ((label, event), (_, _, name)) in self.order.iter().zip(LOOP_ROWS) {
            let Some(g) = self.group("loop", label, event) else {
                continue;
            };
            let store = label.split('/').nth(1).unwrap_or_default();
            let _ = writeln!(
                md,
                "| {name} | {store} | `{event}` | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                fmt(g.median("events_per_s"), 0),
                fmt(g.median("p50_us"), 0),
                fmt(g.median("p99_us"), 0),
                fmt(g.median("p999_us"), 0),
                fmt(g.median(cpu), 2),
                fmt(g.median("cpu.server_user_us_per_event"), 2),
                fmt(g.median("cpu.server_sys_us_per_event"), 2),
                fmt(g.median(cpu).map(|c| 1e6 / c), 0),
                fmt(g.median("cpu.server_cores"), 2),
                fmt(g.median("cpu.loadgen_cores"), 2),
                fmt(g.median("cpu.other_cores"), 2),
                fmt(g.median("store_ops_per_event.load"), 3),
                fmt(g.median("store_ops_per_event.save"), 3),
                fmt(g.median("lost_updates"), 0),
                g.runs.len()
            );
        }
        let _ = writeln!(
            md,
            "\nRatios against the session-less handler of the same event (medians):\n"
        );
        let _ = writeln!(md, "| variant | store | event | CPU/event ratio | throughput ratio | throughput ratio per server core |\n|---|---|---|---:|---:|---:|");
        for ((label, event), (_, _, name)) in self.order.iter().zip(LOOP_ROWS).skip(2) {
            if self.group("loop", label, event).is_none() {
                continue;
            }
            let store = label.split('/').nth(1).unwrap_or_default();
            let _ = writeln!(
                md,
                "| {name} | {store} | `{event}` | {} × | {} % | {} % |",
                fmt(self.ratio((label, event), ("plain/memory", event), cpu), 3),
                fmt(
                    self.ratio((label, event), ("plain/memory", event), eps)
                        .map(|r| r * 100.0),
                    1
                ),
                fmt(
                    self.ratio(("plain/memory", event), (label, event), cpu)
                        .map(|r| r * 100.0),
                    1
                )
            );
        }

        let _ = writeln!(
            md,
            "\n## Burst (concurrent `incr` on one session, not waiting for acks)\n"
        );
        let _ = writeln!(md, "*Lost* = acknowledged increments minus the increase of `count` read back over `GET /session`; min to max over the repetitions. The `+2ms` rows delay every store operation by 2 ms (a networked store). A burst lasts a fraction of a second, so its CPU per event rests on a few 10 ms ticks: read it as a rough figure.\n");
        let _ = writeln!(md, "| server | store | sockets × events | acked | applied | lost (median) | lost (min to max) | events/s | p99 ms | server CPU µs/event | loads/event | saves/event | runs |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for label in [
            "manual/memory",
            "autosave/memory",
            "manual/sqlite",
            "autosave/sqlite",
            "manual/memory+2ms",
            "autosave/memory+2ms",
            "node/memory",
        ] {
            let Some(g) = self.group("burst", label, "incr") else {
                continue;
            };
            let (variant, store) = label.split_once('/').unwrap_or((label, ""));
            let name = match variant {
                "manual" => "(b) hand-written reload/save",
                "autosave" => "(c) autosave",
                _ => "Node",
            };
            let sockets = g
                .runs
                .first()
                .and_then(|r| r["clients"].as_u64())
                .unwrap_or(0);
            let k = g
                .runs
                .first()
                .and_then(|r| r["burst"].as_u64())
                .unwrap_or(0);
            let _ = writeln!(
                md,
                "| {name} | {store} | {sockets} × {k} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                fmt(g.median("acked_ok"), 0),
                fmt(g.median("applied"), 0),
                fmt(g.median("lost_updates"), 0),
                g.range("lost_updates").map(|(a, b)| format!("{a:.0} to {b:.0}")).unwrap_or("–".into()),
                fmt(g.median("events_per_s"), 0),
                fmt(g.median("p99_us").map(|v| v / 1000.0), 1),
                fmt(g.median(cpu), 2),
                fmt(g.median("store_ops_per_event.load"), 3),
                fmt(g.median("store_ops_per_event.save"), 3),
                g.runs.len()
            );
        }

        self.redis_section(&mut md);

        let _ = writeln!(md, "\n## Memory (idle sockets)\n");
        let _ = writeln!(md, "Server RSS after connecting the sockets minus RSS before (all logins done first, so the session records are in both figures), divided by the number of sockets.\n");
        let _ = writeln!(md, "| server | sockets | RSS before MiB | RSS after MiB | bytes per socket | runs |\n|---|---:|---:|---:|---:|---:|");
        for (label, name) in [
            ("rust/no-session", "socketioxide, no session attached"),
            (
                "rust/session",
                "socketioxide + `SocketSessions::handler` (session attached)",
            ),
            ("node/no-session", "Node socket.io, no session middleware"),
            ("node/session", "Node socket.io + express-socket.io-session"),
        ] {
            let Some(g) = self.group("idle", label, "incr") else {
                continue;
            };
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} | {} | {} |",
                g.runs
                    .first()
                    .and_then(|r| r["clients"].as_u64())
                    .unwrap_or(0),
                fmt(g.median("rss_before_kib").map(|v| v / 1024.0), 1),
                fmt(g.median("rss_after_kib").map(|v| v / 1024.0), 1),
                fmt(g.median("rss_per_socket_bytes"), 0),
                g.runs.len()
            );
        }
        if let Some(a) = attach {
            let _ = writeln!(
                md,
                "\nSession attachment costs {a:.0} bytes per socket (target ≤ 1024)."
            );
        }
        if !self.profiles.is_empty() {
            self.profile_section(&mut md);
        }
        md
    }

    /// One and two nodes on one Redis: loops, round trips, the cross-node burst.
    fn redis_section(&self, md: &mut String) {
        let cpu = "cpu.server_cpu_us_per_event";
        let variants = [
            ("manual", "(b) hand-written reload/save"),
            ("autosave", "(c) `#[with_session]`"),
            ("node", "Node: connect-redis + @socket.io/redis-adapter"),
        ];
        let rows: Vec<_> = variants
            .iter()
            .flat_map(|v| ["1n", "2n"].map(move |n| (v, n)))
            .flat_map(|(v, n)| ["incr", "whoami"].map(move |e| (v, n, e)))
            .filter(|((variant, _), n, e)| {
                self.group("loop", &format!("redis/{variant}/{n}"), e)
                    .is_some()
            })
            .collect();
        if rows.is_empty() {
            return;
        }
        let _ = writeln!(md, "\n## Several nodes on one Redis\n");
        let _ = writeln!(md, "Each node is a server process; the load generator spreads its sockets over the nodes round-robin and sums their CPU. *Round trips* are the commands the nodes sent Redis per event, counted by `redis-cli MONITOR` in a short run of their own (10 sockets; a script counts once, the commands it runs don't). `(c)` is `autosave` for `incr` and `readonly` for `whoami`. The Rust servers use `session_runtime::redis` (records, leases, socketioxide-redis adapter); `(b)` takes no lock, as its users do today.\n");
        let _ = writeln!(md, "| server | nodes | event | events/s | p50 µs | p99 µs | server CPU µs/event | Redis round trips/event | lost | runs |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
        for ((variant, name), nodes, event) in rows {
            let label = format!("redis/{variant}/{nodes}");
            let Some(g) = self.group("loop", &label, event) else {
                continue;
            };
            let trips = self
                .group("loop", &format!("redis-rt/{variant}/{nodes}"), event)
                .and_then(|g| g.median("redis_round_trips_per_event"));
            let _ = writeln!(
                md,
                "| {name} | {} | `{event}` | {} | {} | {} | {} | {} | {} | {} |",
                nodes.trim_end_matches('n'),
                fmt(g.median("events_per_s"), 0),
                fmt(g.median("p50_us"), 0),
                fmt(g.median("p99_us"), 0),
                fmt(g.median(cpu), 2),
                fmt(trips, 2),
                fmt(g.median("lost_updates"), 0),
                g.runs.len()
            );
        }
        let _ = writeln!(md, "\nCross-node burst: two sockets of one session, one on each node, each sending its `incr` events at once without waiting for acks.\n");
        let _ = writeln!(md, "| server | sockets × events | acked | applied | lost (median) | lost (min to max) | p99 ms | runs |\n|---|---|---:|---:|---:|---:|---:|---:|");
        for (variant, name) in variants {
            let Some(g) = self.group("burst", &format!("redis/{variant}/2n"), "incr") else {
                continue;
            };
            let first = |k: &str| g.runs.first().and_then(|r| r[k].as_u64()).unwrap_or(0);
            let _ = writeln!(
                md,
                "| {name} | {} × {} | {} | {} | {} | {} | {} | {} |",
                first("clients"),
                first("burst"),
                fmt(g.median("acked_ok"), 0),
                fmt(g.median("applied"), 0),
                fmt(g.median("lost_updates"), 0),
                g.range("lost_updates")
                    .map(|(a, b)| format!("{a:.0} to {b:.0}"))
                    .unwrap_or("–".into()),
                fmt(g.median("p99_us").map(|v| v / 1000.0), 1),
                g.runs.len()
            );
        }
    }

    fn profile_section(&self, md: &mut String) {
        let _ = writeln!(md, "\n## Where the server's CPU goes (callgrind)\n");
        let _ = writeln!(md, "User-space instructions per event (`valgrind --tool=callgrind`, instrumentation on only while the events run, `--workers 1`, MemoryStore, 10 sockets closed loop), inclusive per function. Kernel time (one `recvfrom` and one `sendto` per event, the same for every variant) is not in these counts, which is why the CPU-time ratios above are smaller than these instruction ratios.\n");
        let _ = write!(md, "| instructions per event |");
        for p in &self.profiles {
            let _ = write!(md, " {} |", p.label);
        }
        let _ = write!(md, "\n|---|");
        for _ in &self.profiles {
            let _ = write!(md, "---:|");
        }
        let _ = write!(md, "\n| **total** (events profiled) |");
        for p in &self.profiles {
            let _ = write!(md, " **{:.0}** ({:.0}) |", p.total / p.events, p.events);
        }
        let _ = writeln!(md);
        // Each variant against the session-less handler of the same event.
        let base = |label: &str| {
            let plain = if label.contains("whoami") || label == "readonly" {
                "plain-whoami"
            } else {
                "plain"
            };
            self.profiles
                .iter()
                .find(|p| p.label == plain)
                .map(|p| p.total / p.events)
        };
        let _ = write!(
            md,
            "| total minus the session-less handler of the same event |"
        );
        for p in &self.profiles {
            let _ = write!(
                md,
                " {} |",
                fmt(base(&p.label).map(|b| p.total / p.events - b), 0)
            );
        }
        let _ = writeln!(md);
        for (name, patterns) in PROFILE_ROWS {
            let cells: Vec<Option<f64>> = self
                .profiles
                .iter()
                .map(|p| p.per_event(patterns))
                .collect();
            if cells.iter().all(Option::is_none) {
                continue;
            }
            let _ = write!(md, "| {name} |");
            for c in cells {
                let _ = write!(md, " {} |", fmt(c, 0));
            }
            let _ = writeln!(md);
        }
    }

    /// The variant's name in the chart: (a) to (d) of the benchmark, or Node.
    fn chart_name(label: &str, event: &str) -> &'static str {
        match (label.split('/').next().unwrap_or_default(), event) {
            ("plain", _) => "(a) session-less",
            ("manual", _) => "(b) hand-written",
            ("autosave", "whoami") => "(d) readonly",
            ("autosave", _) => "(c) autosave",
            _ => "Node",
        }
    }

    /// Two horizontal bar panels: server CPU per event, and throughput.
    fn svg(&self) -> String {
        let rows: Vec<(String, Option<f64>, Option<f64>)> = self
            .order
            .iter()
            // MemoryStore and Node only: sqlite's 10× bars would flatten the comparison that
            // matters (the tables have every store).
            .filter(|(l, e)| l.ends_with("/memory") && self.group("loop", l, e).is_some())
            .map(|(l, e)| {
                (
                    format!("{} {e}", Self::chart_name(l, e)),
                    self.loop_median(l, e, "cpu.server_cpu_us_per_event"),
                    self.loop_median(l, e, "events_per_s"),
                )
            })
            .collect();
        let (label_w, bar_w, row_h, top) = (220.0, 300.0, 22.0, 50.0);
        let panel_w = label_w + bar_w + 70.0;
        let width = panel_w * 2.0;
        let height = top + row_h * rows.len() as f64 + 20.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        for (panel, title, pick, color) in [
            (
                0.0,
                "server CPU per event, µs (MemoryStore; lower is better)",
                0,
                "#d9534f",
            ),
            (
                1.0,
                "throughput, events/s (MemoryStore; higher is better)",
                1,
                "#337ab7",
            ),
        ] {
            let x0 = panel * panel_w;
            let _ = writeln!(
                s,
                r#"<text x="{}" y="24" font-size="14" font-weight="bold">{title}</text>"#,
                x0 + 10.0
            );
            let value = |r: &(String, Option<f64>, Option<f64>)| if pick == 0 { r.1 } else { r.2 };
            let max = rows
                .iter()
                .filter_map(value)
                .fold(0.0f64, f64::max)
                .max(1e-9);
            for (i, row) in rows.iter().enumerate() {
                let y = top + row_h * i as f64;
                let _ = writeln!(
                    s,
                    r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                    x0 + label_w - 6.0,
                    y + 14.0,
                    row.0
                );
                if let Some(v) = value(row) {
                    let w = bar_w * v / max;
                    let fill = if row.0.starts_with("Node") {
                        "#777777"
                    } else {
                        color
                    };
                    let _ = writeln!(
                        s,
                        r#"<rect x="{}" y="{}" width="{w:.1}" height="{}" fill="{fill}"/>"#,
                        x0 + label_w,
                        y + 3.0,
                        row_h - 6.0
                    );
                    let text = if pick == 0 {
                        format!("{v:.1}")
                    } else {
                        format!("{v:.0}")
                    };
                    let _ = writeln!(
                        s,
                        r#"<text x="{:.0}" y="{}">{text}</text>"#,
                        x0 + label_w + w + 4.0,
                        y + 14.0
                    );
                }
            }
        }
        let _ = writeln!(s, "</svg>");
        s
    }
}
