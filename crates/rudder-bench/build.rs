//! The bench binary is the runtime suite's container shim: linked position-dependent like
//! `rudder` (see its build.rs), so the suite measures the shim the product runs.
fn main() {
    println!("cargo:rustc-link-arg-bin=rudder-bench=-no-pie");
}
