//! Command line: the server (default) and the `mount` subcommand. Parses arguments into
//! typed settings, sets up logging, starts the runtime, and maps outcomes to exit codes.

pub mod class;
pub mod client;
pub mod mount;

use crate::goflag::{self, FlagError};
use crate::settings::{self, SERVER_FLAGS, Settings};

const PROGRAM: &str = "vault-csi-provider";

/// Runs the program with `args` (without the program name); returns the exit code.
pub fn main(args: Vec<String>) -> i32 {
    if args.first().map(String::as_str) == Some("mount") {
        return mount::main(&args[1..]);
    }
    let parsed = match goflag::parse(SERVER_FLAGS, &args) {
        Ok(p) => p,
        Err(e) => return usage_error(&e, SERVER_FLAGS, ""),
    };
    if let Some(extra) = parsed.rest.first() {
        eprintln!("unexpected argument {extra:?}\n");
        eprint!("{}", goflag::usage(PROGRAM, SERVER_FLAGS));
        return 2;
    }
    if parsed.bool("version") {
        return print_version(parsed.get("output").unwrap_or("json"));
    }
    let settings = match Settings::from_flags(&parsed, &settings::process_env) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{PROGRAM}: {e}");
            return 2;
        }
    };
    crate::logs::init(settings.log_level, settings.log_format, settings.log_stream);
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{PROGRAM}: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(crate::server::run(settings, shutdown_signal())) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("{PROGRAM}: {e:#}");
            1
        }
    }
}

pub(crate) fn usage_error(e: &FlagError, flags: &[goflag::Flag], sub: &str) -> i32 {
    let name = if sub.is_empty() {
        PROGRAM.to_string()
    } else {
        format!("{PROGRAM} {sub}")
    };
    match e {
        FlagError::Help => {
            print!("{}", goflag::usage(&name, flags));
            0
        }
        other => {
            eprintln!("{other}");
            eprint!("{}", goflag::usage(&name, flags));
            2
        }
    }
}

/// Build information, in the formats of the Go provider's `-version -output`.
fn print_version(output: &str) -> i32 {
    let fields = [
        ("version", env!("CARGO_PKG_VERSION")),
        ("apiVersion", crate::server::API_VERSION),
        ("runtimeName", crate::server::RUNTIME_NAME),
        (
            "platform",
            concat!(env!("VCSP_TARGET_OS"), "/", env!("VCSP_TARGET_ARCH")),
        ),
    ];
    let map: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect();
    match output {
        "json" => println!("{}", serde_json::Value::Object(map)),
        "json-pretty" => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::Value::Object(map)).unwrap_or_default()
        ),
        "yaml" => {
            for (k, v) in fields {
                println!("{k}: {v}");
            }
        }
        other => {
            eprintln!("invalid value {other:?} for -output: use json, yaml or json-pretty");
            return 2;
        }
    }
    0
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// The async runtime of the server and of `mount`: worker threads with room on their stacks
/// for the deepest template nesting `-template-recursion-limit` allows.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 * 1024 * 1024)
        .build()
}
