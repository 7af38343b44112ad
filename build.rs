//! Compiles `proto/service.proto` with the protoc binary shipped by `protoc-bin-vendored`,
//! so building needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY of intent: build scripts run single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto/service.proto");
    for (name, var) in [
        ("VCSP_TARGET_OS", "CARGO_CFG_TARGET_OS"),
        ("VCSP_TARGET_ARCH", "CARGO_CFG_TARGET_ARCH"),
    ] {
        println!(
            "cargo:rustc-env={name}={}",
            std::env::var(var).unwrap_or_default()
        );
    }
    // The commit in build information (metrics, -version): from the environment (an image
    // build without .git passes it), else git, else "unknown".
    println!("cargo:rerun-if-env-changed=VCSP_GIT_COMMIT");
    let commit = std::env::var("VCSP_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=VCSP_GIT_COMMIT={commit}");
    // A new commit builds again (HEAD, the branch it names, packed refs), so the commit
    // shown is never a stale one; paths that do not exist are not named (cargo would
    // rebuild every time).
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    for name in ["HEAD", "packed-refs"].into_iter().chain(branch.as_deref()) {
        if let Some(path) = git(&["rev-parse", "--git-path", name])
            && std::path::Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&["proto/service.proto"], &["proto"])?;
    Ok(())
}

/// What `git ARGS` prints, trimmed, when git runs and succeeds.
fn git(args: &[&str]) -> Option<String> {
    std::process::Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
