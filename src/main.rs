fn main() {
    return_large_allocations_to_the_system();
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(vault_csi_provider::main(args));
}

/// glibc's malloc raises its mmap threshold after large blocks are freed, so that later
/// large blocks (Vault answers, big requests) come from the heap and stay resident after
/// they are freed. A fixed threshold keeps blocks over 256 KiB in their own mappings,
/// returned to the system when freed: the provider's memory falls back after a burst.
fn return_large_allocations_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt is called once, first thing, before any other thread exists; it only
    // changes allocator tuning.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}
