//! Command line: the server (default) and the subcommands `mount`, `check`, `version` and
//! `help`. Parses arguments into typed settings, sets up logging, starts the runtime, and
//! maps outcomes to exit codes.

pub mod check;
pub mod class;
pub mod client;
pub mod help;
pub mod mount;

use crate::goflag::{self, Flag, FlagError, Kind};
use crate::settings::{self, SERVER_FLAGS, Settings};
use help::{PROGRAM, Usage};

/// The server, run with no subcommand.
const SERVER: Usage = Usage {
    name: "",
    synopsis: "[flags]",
    about: "serve the provider API to the Secrets Store CSI driver (the DaemonSet's command)",
    examples: &[
        "-endpoint=/provider/vault.sock -endpoint=/provider/openbao.sock -vault-addr=https://vault.vault.svc:8200",
    ],
};

const VERSION: Usage = Usage {
    name: "version",
    synopsis: "[-output json|yaml|json-pretty]",
    about: "print build information (the same as -version)",
    examples: &["version -output yaml"],
};

const VERSION_FLAGS: &[Flag] = &[Flag::new(
    "output",
    Kind::String,
    "json",
    "format: json, yaml or json-pretty",
)];

/// Every command, in the order the overview lists them.
fn commands() -> [(&'static Usage, Vec<Flag>); 4] {
    [
        (&SERVER, SERVER_FLAGS.to_vec()),
        (&mount::USAGE, mount::flags()),
        (&check::USAGE, check::flags()),
        (&VERSION, VERSION_FLAGS.to_vec()),
    ]
}

fn overview() -> String {
    let commands = commands();
    let usages: Vec<&Usage> = commands.iter().map(|(u, _)| *u).collect();
    help::overview(&usages, SERVER_FLAGS)
}

/// Runs the program with `args` (without the program name); returns the exit code.
pub fn main(args: Vec<String>) -> i32 {
    match args.first().map(String::as_str) {
        Some("mount") => return mount::main(&args[1..]),
        Some("check") => return check::main(&args[1..]),
        Some("version") => {
            return match goflag::parse(VERSION_FLAGS, &args[1..]) {
                Ok(p) if p.rest.is_empty() => print_version(p.get("output").unwrap_or("json")),
                Ok(p) => {
                    eprintln!("unexpected argument {:?}", p.rest[0]);
                    2
                }
                Err(e) => usage_error(&e, &VERSION, VERSION_FLAGS),
            };
        }
        Some("help") => return help_command(&args[1..]),
        _ => {}
    }
    let parsed = match goflag::parse(SERVER_FLAGS, &args) {
        Ok(p) => p,
        Err(FlagError::Help) => {
            print!("{}", overview());
            return 0;
        }
        Err(e) => {
            eprintln!("{e}\n");
            eprint!("{}", overview());
            return 2;
        }
    };
    if let Some(extra) = parsed.rest.first() {
        eprintln!(
            "unexpected argument {extra:?}: the subcommands are mount, check, version and help\n"
        );
        eprint!("{}", overview());
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

/// `help` and `help SUBCOMMAND`: the text on standard output, exit 0.
fn help_command(args: &[String]) -> i32 {
    match args {
        [] => {
            print!("{}", overview());
            0
        }
        [name] if name == "help" => {
            print!("{}", overview());
            0
        }
        [name] => match commands().iter().find(|(u, _)| u.name == name.as_str()) {
            Some((usage, flags)) if !usage.name.is_empty() => {
                print!("{}", help::command(usage, flags));
                0
            }
            _ => {
                eprintln!(
                    "no subcommand {name:?}: the subcommands are mount, check, version and help"
                );
                2
            }
        },
        _ => {
            eprintln!("help takes at most one subcommand");
            2
        }
    }
}

/// A subcommand's flag error: `-h` prints its usage (exit 0), anything else the error and
/// its usage (exit 2).
pub(crate) fn usage_error(e: &FlagError, usage: &Usage, flags: &[Flag]) -> i32 {
    match e {
        FlagError::Help => {
            print!("{}", help::command(usage, flags));
            0
        }
        other => {
            eprintln!("{other}\n");
            eprint!("{}", help::command(usage, flags));
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
        ("commit", env!("VCSP_GIT_COMMIT")),
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
