fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(vault_csi_provider::cli::main(args));
}
