//! The shim alone, for this crate's tests (the product runs it as `rudder shim ...`).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(rudder_runtime_native::shim::main(&args));
}
