//! Links `rudder` as a position-dependent executable (like Go's default for the kubelet and
//! k3s). The binary is its own container shim, exec'd once per container start: as a PIE,
//! the dynamic loader applied ~84,000 relative relocations per exec, and writing them
//! copied ~1.5 MiB of pages, about two fifths of a shim's CPU before it did any work.
fn main() {
    println!("cargo:rustc-link-arg-bin=rudder=-no-pie");
}
