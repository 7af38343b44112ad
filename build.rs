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
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&["proto/service.proto"], &["proto"])?;
    Ok(())
}
