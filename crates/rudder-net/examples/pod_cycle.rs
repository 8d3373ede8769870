//! Times `setup_pod` + `teardown_pod` cycles on a throw-away node (its own network
//! namespace, bridge and state), and optionally prints the state one pod leaves behind
//! (`ip -d link`, `ip addr`, `ip route` in the node and pod namespaces). Needs root.
//!
//! With `--burst`, sets up all pods first, then tears them all down (a burst of pod
//! starts), instead of alternating.
//!
//! `cargo run --release -p rudder-net --example pod_cycle -- [cycles] [--burst] [--dump]`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rudder_net::cmd::Cmd;
use rudder_net::{Network, NetworkConfig, names};

const TIMEOUT: Duration = Duration::from_secs(20);
const NODE_NETNS: &str = "rt-cycle-node";

fn ip(netns: &str, args: &[&str]) -> String {
    let out = Cmd::new("ip").args(["-n", netns]).args(args).run(TIMEOUT).expect("ip");
    out.stdout
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cycles: u32 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(30);
    let dump = args.iter().any(|a| a == "--dump");
    let burst = args.iter().any(|a| a == "--burst");
    Cmd::new("ip").args(["netns", "add", NODE_NETNS]).run(TIMEOUT).expect("ip netns add");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = NetworkConfig {
        bridge: "rtcycle0".into(),
        pod_cidr: "10.250.7.0/24".into(),
        mtu: 1400,
        node_netns: Some(PathBuf::from(names::NETNS_DIR).join(NODE_NETNS)),
        state_dir: dir.path().join("ipam"),
        run_dir: dir.path().join("ns"),
        masquerade: true,
        command_timeout_ms: 20_000,
    };
    let net = Network::new(cfg).expect("Network::new");
    net.ensure_node().expect("ensure_node");
    let (mut setup, mut teardown) = (Duration::ZERO, Duration::ZERO);
    let started = Instant::now();
    if burst {
        let t = Instant::now();
        for i in 0..cycles {
            net.setup_pod(&format!("cycle-{i}"), "cycle").expect("setup_pod");
        }
        setup = t.elapsed();
        let t = Instant::now();
        for i in 0..cycles {
            net.teardown_pod(&format!("cycle-{i}")).expect("teardown_pod");
        }
        teardown = t.elapsed();
    } else {
        for i in 0..cycles {
            let id = format!("cycle-{i}");
            let t = Instant::now();
            net.setup_pod(&id, "cycle").expect("setup_pod");
            setup += t.elapsed();
            let t = Instant::now();
            net.teardown_pod(&id).expect("teardown_pod");
            teardown += t.elapsed();
        }
    }
    let elapsed = started.elapsed();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{cycles} x (setup_pod + teardown_pod): {:.1} ms total, {:.2} ms per cycle \
         (setup {:.2} ms, teardown {:.2} ms)",
        ms(elapsed),
        ms(elapsed) / f64::from(cycles.max(1)),
        ms(setup) / f64::from(cycles.max(1)),
        ms(teardown) / f64::from(cycles.max(1)),
    );
    if dump {
        let pod = net.setup_pod("cycle-dump", "cycle").expect("setup_pod");
        let pod_ns = pod.netns.file_name().and_then(|n| n.to_str()).expect("netns name");
        for (label, ns) in [("node", NODE_NETNS), ("pod", pod_ns)] {
            println!("### {label}: ip -d link show\n{}", ip(ns, &["-d", "link", "show"]));
            println!("### {label}: ip addr\n{}", ip(ns, &["addr"]));
            println!("### {label}: ip route\n{}", ip(ns, &["route"]));
        }
        net.teardown_pod("cycle-dump").expect("teardown_pod");
    }
    net.teardown_node().expect("teardown_node");
    Cmd::new("ip").args(["netns", "del", NODE_NETNS]).run(TIMEOUT).expect("ip netns del");
}
